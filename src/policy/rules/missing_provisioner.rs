//! Rule `missingProvisioner`: a claim (or a StatefulSet's claim templates, or a generic
//! ephemeral volume) of a dynamic class whose CSI driver the cluster does not have, and a
//! StorageClass created for such a driver, get a warning quoting the event the user would
//! otherwise wait for.
//!
//! The PV controller leaves every class that names no in-tree plugin to an external provisioner
//! (`findProvisionablePlugin`, `provisionClaimOperationExternal` in
//! `pkg/controller/volume/persistentvolume/pv_controller.go`): it records the
//! `ExternalProvisioning` event and waits, forever if nobody provisions. In-tree names migrate to
//! their CSI driver ([`csi::MIGRATED`]), which the event then names. A running CSI driver
//! registers on the nodes (CSINode `spec.drivers`) and usually has a CSIDriver object; when
//! neither names the class's driver, nobody is there to provision. Warnings only, in every mode:
//! the driver may be installed a minute later (and a controller-only driver registers on no
//! node, though it ships a CSIDriver object as a rule).
//!
//! Only CSI drivers can be judged: a provisioner that is no CSI driver registers nowhere. The
//! rule judges migrated in-tree names, names that say they are CSI drivers
//! ([`csi::looks_like_csi`]) and the policy's `csiDrivers`; never the common non-CSI
//! provisioners ([`csi::NOT_CSI`]), the policy's `notCsi`, or anything else. It says nothing
//! without the cluster's CSIDrivers and CSINodes (no cluster, not yet listed), for classes it
//! does not know (`unknownClass` speaks of those), and for claims already bound or pre-bound
//! with `spec.volumeName`. Per claim site: two set look-ups.

use k8s_openapi::api::core::v1::{PersistentVolumeClaimSpec, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;

use crate::kinds::Operation;
use crate::policy::engine::config::{ConfigError, Section};
use crate::policy::engine::decision::Decision;
use crate::policy::engine::rule::{
    Acts, Context, Endpoint, Entry, Judges, Meta, Object, PodFilter, Request, Rule, RuleId,
};
use crate::policy::model::catalog::Catalog;
use crate::policy::model::csi::{self, Judged};
use crate::policy::model::field::{Path, go_quote};
use crate::policy::model::limits::MAX_VOLUMES;
use crate::policy::model::modes::Mode;
use crate::policy::model::storage::{self, Settings};

pub const META: Meta = Meta {
    key: "missingProvisioner",
    annotation: "missing-provisioner",
    summary: "warns when a claim, claim template or new StorageClass needs a CSI driver that no node runs and no CSIDriver names",
    denies: "never denies",
    warns: "a dynamic class whose CSI driver (the migrated one for in-tree names) no CSINode lists and no CSIDriver object names; only CSI drivers are judged (non-CSI provisioners register nowhere)",
    default_mode: Mode::Enforce,
    acts: &[Acts {
        endpoint: Endpoint::Validate,
        operations: &[Operation::Create, Operation::Update],
        judges: &[
            Judges::Claims,
            Judges::ClaimTemplates,
            Judges::PodSpecs(PodFilter::EphemeralVolumes),
            Judges::Classes,
        ],
    }],
};
pub const ID: RuleId = RuleId(&META);
pub const ENTRY: Entry = Entry {
    meta: &META,
    compile,
};

/// `rules.missingProvisioner` in the policy file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Config {
    #[serde(default, rename = "mode")]
    _mode: Option<Mode>,
    /// Provisioners that are CSI drivers though their names do not say so: judged.
    #[serde(default)]
    csi_drivers: Vec<String>,
    /// Provisioners that register nowhere (no CSI driver): never judged.
    #[serde(default)]
    not_csi: Vec<String>,
}

#[derive(Debug, Default)]
struct MissingProvisioner {
    judged: Judged,
}

fn compile(section: Section<'_>) -> Result<Box<dyn Rule>, ConfigError> {
    let c: Config = section.config()?.unwrap_or_default();
    let mut judged = Judged::default();
    for (key, list, set) in [
        ("csiDrivers", &c.csi_drivers, &mut judged.csi),
        ("notCsi", &c.not_csi, &mut judged.not_csi),
    ] {
        for (i, name) in list.iter().enumerate() {
            let at = format!("{key}[{i}]");
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Err(section.invalid(&at, None, format!("{name:?} is not a provisioner name")));
            }
            if name == crate::policy::model::catalog::NO_PROVISIONER {
                return Err(section.invalid(
                    &at,
                    None,
                    format!("{name} provisions nothing: it is never judged"),
                ));
            }
            if !set.insert(name.clone()) {
                return Err(section.invalid(&at, None, format!("{name:?} is listed twice")));
            }
        }
    }
    if let Some((i, name)) = c
        .not_csi
        .iter()
        .enumerate()
        .find(|(_, n)| judged.csi.contains(*n))
    {
        return Err(section.invalid(
            &format!("notCsi[{i}]"),
            None,
            format!("{name:?} is also in csiDrivers"),
        ));
    }
    if let Some((i, name)) = c
        .csi_drivers
        .iter()
        .enumerate()
        .find(|(_, n)| n.contains('/'))
    {
        return Err(section.invalid(
            &format!("csiDrivers[{i}]"),
            None,
            format!("{name:?} is no CSI driver name (they hold no '/')"),
        ));
    }
    Ok(Box::new(MissingProvisioner { judged }))
}

impl Rule for MissingProvisioner {
    fn meta(&self) -> &'static Meta {
        &META
    }

    fn configure(&self, settings: &mut Settings) {
        settings.provisioners = self.judged.clone();
    }

    fn check(&self, cx: &Context<'_>, req: &Request<'_>, _mode: Mode, d: &mut Decision) {
        if cx.catalog.csi().is_none() {
            return;
        }
        let Some(object) = req.object else { return };
        if let Object::StorageClass(sc) = object {
            if req.operation != Operation::Create {
                return;
            }
            let name = sc.metadata.name.as_deref().unwrap_or_default();
            if let Some(m) = absent(cx.catalog, &self.judged, &sc.provisioner) {
                d.warning(
                    ID,
                    Some(name.to_owned()),
                    format!(
                        "provisioner: claims of StorageClass {} will stay Pending: {}",
                        shown(name),
                        m.why()
                    ),
                );
                d.warn(csi::external_provisioning_event(m.driver));
            }
            return;
        }
        if matches!(object, Object::Pvc(_)) && req.operation != Operation::Create {
            return;
        }
        for site in sites(cx.settings, cx.catalog, req.namespace, &object) {
            let Some(class) = cx.catalog.class(&site.class) else {
                continue;
            };
            let Some(m) = absent(cx.catalog, &self.judged, &class.provisioner) else {
                continue;
            };
            let who = if site.template {
                "claims from this template stay"
            } else {
                "the claim stays"
            };
            d.warning(
                ID,
                Some(site.class.clone()),
                format!(
                    "{}: {who} Pending: StorageClass {} {}",
                    site.field,
                    shown(&site.class),
                    m.why()
                ),
            );
            d.warn(csi::external_provisioning_event(m.driver));
        }
    }
}

/// A provisioner whose driver the cluster does not have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Absent<'a> {
    pub provisioner: &'a str,
    /// The CSI driver that would serve it (the migrated name for an in-tree one).
    pub driver: &'a str,
}

impl Absent<'_> {
    /// Why nobody provisions: which driver, and how the cluster shows it is not there.
    pub fn why(&self) -> String {
        let migrated = if self.driver == self.provisioner {
            String::new()
        } else {
            format!(" (in-tree {}, migrated to CSI)", self.provisioner)
        };
        format!(
            "needs CSI driver {}{migrated}, which no node runs (no CSINode lists it) and no CSIDriver object names",
            go_quote(self.driver)
        )
    }
}

/// The driver `provisioner` needs when it is judged and the cluster has neither a node running
/// it nor a CSIDriver object naming it; `None` otherwise, and when CSI drivers are not known.
pub fn absent<'a>(catalog: &Catalog, judged: &Judged, provisioner: &'a str) -> Option<Absent<'a>> {
    let drivers = catalog.csi()?;
    let driver = judged.driver(provisioner)?;
    (!drivers.has(driver)).then_some(Absent {
        provisioner,
        driver,
    })
}

/// A name as messages show it: quoted, cut to 63 characters (names may have 253).
fn shown(name: &str) -> String {
    if name.chars().count() <= 63 {
        go_quote(name)
    } else {
        format!("{}...", go_quote(&name.chars().take(63).collect::<String>()))
    }
}

/// A place that makes a claim, and the class the claim gets.
struct Site {
    class: String,
    field: Path,
    template: bool,
}

/// The claim sites of an object and the class each lands on (its own, or the default it would
/// get); sites with no class (`""`: static binding) and claims that are bound or pre-bound
/// (`spec.volumeName`: the PV controller binds, nothing provisions) are left out.
fn sites(
    settings: &Settings,
    catalog: &Catalog,
    namespace: Option<&str>,
    object: &Object<'_>,
) -> Vec<Site> {
    let mut out = Vec::new();
    let mut add = |meta: Option<&ObjectMeta>,
                   spec: Option<&PersistentVolumeClaimSpec>,
                   at: Path,
                   template: bool| {
        if spec
            .and_then(|s| s.volume_name.as_deref())
            .is_some_and(|v| !v.is_empty())
        {
            return;
        }
        if let Some(class) = storage::claim_class(settings, catalog, namespace, meta, spec) {
            let field = if spec.and_then(|s| s.storage_class_name.as_deref()).is_some() {
                at.child("spec").child("storageClassName")
            } else {
                at
            };
            out.push(Site {
                class,
                field,
                template,
            });
        }
    };
    match *object {
        Object::Pvc(pvc) => {
            if pvc.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Bound") {
                add(
                    Some(&pvc.metadata),
                    pvc.spec.as_ref(),
                    Path::default(),
                    false,
                );
            }
        }
        Object::StatefulSet(sts) => {
            let spec = sts.spec.as_ref();
            let templates = spec.and_then(|s| s.volume_claim_templates.as_ref());
            for (i, pvc) in templates.into_iter().flatten().take(MAX_VOLUMES).enumerate() {
                let at = Path::new("spec").child("volumeClaimTemplates").index(i);
                add(Some(&pvc.metadata), pvc.spec.as_ref(), at, true);
            }
            pod_spec(
                spec.and_then(|s| s.template.spec.as_ref()),
                "spec.template.spec",
                &mut add,
            );
        }
        Object::PodSpec { spec, path } => pod_spec(spec, path, &mut add),
        Object::Pv(_) | Object::StorageClass(_) => {}
    }
    out
}

/// The generic ephemeral volumes of a pod spec (the first [`MAX_VOLUMES`]).
fn pod_spec(
    spec: Option<&PodSpec>,
    path: &str,
    add: &mut impl FnMut(Option<&ObjectMeta>, Option<&PersistentVolumeClaimSpec>, Path, bool),
) {
    let volumes = spec.and_then(|s| s.volumes.as_ref());
    for (i, v) in volumes.into_iter().flatten().take(MAX_VOLUMES).enumerate() {
        if let Some(tpl) = v
            .ephemeral
            .as_ref()
            .and_then(|e| e.volume_claim_template.as_ref())
        {
            let at = Path::new(path)
                .child("volumes")
                .index(i)
                .child("ephemeral")
                .child("volumeClaimTemplate");
            add(tpl.metadata.as_ref(), Some(&tpl.spec), at, true);
        }
    }
}
