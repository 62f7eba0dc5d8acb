//! Rule `dataSources`: claims that restore a VolumeSnapshot or clone a claim
//! (`spec.dataSource` / `spec.dataSourceRef`) which the external-provisioner will refuse, leaving
//! the claim Pending with `ProvisioningFailed` events and nothing said at apply time.
//!
//! Facts, all from kubernetes-csi/external-provisioner `pkg/controller/controller.go`
//! (`prepareProvision` wraps every error below in `error getting handle for DataSource Type %s
//! by Name %s: %v` and retries forever):
//! - `dataSource` normalises `spec.dataSource`, else `spec.dataSourceRef` (same namespace; a
//!   cross-namespace reference needs a ReferenceGrant and is not judged here); other kinds go to
//!   a volume populator and are not judged.
//! - `getSnapshotSource`: the snapshot is read from the API server (`error getting snapshot %s
//!   from api server: %v`, a NotFound error when missing); no
//!   `status.boundVolumeSnapshotContentName`: `snapshot %s not bound`; a content whose
//!   `spec.driver` is not the class's provisioner: also `snapshot %s not bound` (the reason is
//!   only in its log); `status.readyToUse` not true: `snapshot %s is not Ready`; a request below
//!   `status.restoreSize`: `requested volume size %d is less than the size %d for the source
//!   snapshot %s`.
//! - `getPVCSource`: the source claim is read from the claim informer (`error getting PVC %s
//!   (namespace %q) from api server: %v`); a request below the source's
//!   `spec.resources.requests[storage]`: `error, new PVC request must be greater than or equal in
//!   size to the specified PVC data source, requested %v but source is %v`; a source volume whose
//!   CSI driver is not the class's provisioner: `claim in dataSource not bound or invalid`.
//!   Before v3.2 (PR #699, 2022) it also refused any other class: `the source PVC and destination
//!   PVCs must be in the same storage class for cloning.  Source is in %v, but new PVC is in %v`
//!   (two spaces); since then the driver decides, so that one is said only with
//!   `sameClassClones: true` (clusters that still run an older external-provisioner).
//!
//! Every finding is a warning, never a denial (`docs/certainty.md`): a snapshot not ready or
//! not yet bound usually becomes so, and a claim of a class served by something else than the
//! external-provisioner (an in-tree or other provisioner, a populator) is not bound by these
//! checks. Judged on CREATE of claims and StatefulSet claim templates, and in `audit` on claims
//! not yet bound. Silent without the cluster's claims (clones) or snapshots (restores: the CRD
//! may be absent, or not listed yet).

use k8s_openapi::api::core::v1::PersistentVolumeClaimSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;

use crate::kinds::Operation;
use crate::policy::engine::config::{ConfigError, Section};
use crate::policy::engine::decision::{Decision, judged_against};
use crate::policy::engine::rule::{
    Acts, Context, Endpoint, Entry, Judges, Meta, Object, Request, Rule, RuleId,
};
use crate::policy::model::field::{Path, go_quote};
use crate::policy::model::limits::MAX_VOLUMES;
use crate::policy::model::modes::Mode;
use crate::policy::model::snapshots::DataSource;
use crate::policy::model::storage;
use crate::policy::model::volumes::{Source, claim_request};

pub const META: Meta = Meta {
    key: "dataSources",
    annotation: "data-sources",
    summary: "claims restoring a VolumeSnapshot or cloning a claim that the external-provisioner will refuse are warned about",
    denies: "nothing",
    warns: "a source snapshot or claim that does not exist, a snapshot not bound or not ready, a snapshot of another driver than the class's, a clone from a class of another provisioner, a request below the snapshot's restoreSize or the source claim's request",
    default_mode: Mode::Enforce,
    acts: &[Acts {
        endpoint: Endpoint::Validate,
        operations: &[Operation::Create],
        judges: &[Judges::Claims, Judges::ClaimTemplates],
    }],
};
pub const ID: RuleId = RuleId(&META);
pub const ENTRY: Entry = Entry {
    meta: &META,
    compile,
};

/// `rules.dataSources` in the policy file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Config {
    #[serde(default, rename = "mode")]
    _mode: Option<Mode>,
    /// The cluster runs an external-provisioner older than v3.2, which clones only within one
    /// class: a clone from another class is warned about even when the driver is the same.
    #[serde(default)]
    same_class_clones: bool,
}

#[derive(Debug)]
struct DataSources {
    same_class_clones: bool,
}

fn compile(section: Section<'_>) -> Result<Box<dyn Rule>, ConfigError> {
    let c: Config = section.config()?.unwrap_or_default();
    Ok(Box::new(DataSources {
        same_class_clones: c.same_class_clones,
    }))
}

impl Rule for DataSources {
    fn meta(&self) -> &'static Meta {
        &META
    }

    fn check(&self, cx: &Context<'_>, req: &Request<'_>, _mode: Mode, d: &mut Decision) {
        let Some(object) = req.object.as_ref() else {
            return;
        };
        let namespace = req.namespace.unwrap_or("default");
        let mut found = Vec::new();
        match *object {
            Object::Pvc(pvc) => {
                // `audit` reads claims as they are: one already bound was provisioned.
                let bound = pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")
                    || pvc
                        .spec
                        .as_ref()
                        .and_then(|s| s.volume_name.as_deref())
                        .is_some_and(|v| !v.is_empty());
                if !bound {
                    self.judge(
                        cx,
                        namespace,
                        Some(&pvc.metadata),
                        pvc.spec.as_ref(),
                        &Path::new("spec"),
                        &mut found,
                    );
                }
            }
            Object::StatefulSet(sts) => {
                let templates = sts
                    .spec
                    .as_ref()
                    .and_then(|s| s.volume_claim_templates.as_ref());
                if templates.is_some_and(|t| t.len() > MAX_VOLUMES) {
                    cx.skip(format!(
                        "dataSources: claim templates past the first {MAX_VOLUMES}"
                    ));
                }
                for (i, t) in templates
                    .into_iter()
                    .flatten()
                    .take(MAX_VOLUMES)
                    .enumerate()
                {
                    let path = Path::new("spec")
                        .child("volumeClaimTemplates")
                        .index(i)
                        .child("spec");
                    self.judge(
                        cx,
                        namespace,
                        Some(&t.metadata),
                        t.spec.as_ref(),
                        &path,
                        &mut found,
                    );
                }
            }
            Object::Pv(_) | Object::PodSpec { .. } => {}
        }
        for (class, text) in found {
            d.warning(ID, class, text);
        }
    }
}

/// The message of `prepareProvision` around a source error.
fn provisioning_failed(kind: &str, name: &str, error: &str) -> String {
    format!("error getting handle for DataSource Type {kind} by Name {name}: {error}")
}

impl DataSources {
    /// What is wrong with one claim spec's data source: (class, warning) pairs.
    fn judge(
        &self,
        cx: &Context<'_>,
        namespace: &str,
        meta: Option<&ObjectMeta>,
        spec: Option<&PersistentVolumeClaimSpec>,
        path: &Path,
        out: &mut Vec<(Option<String>, String)>,
    ) {
        let Some(spec) = spec else { return };
        let Some((source, field)) = DataSource::of(spec, namespace) else {
            return;
        };
        let field = path.child(field);
        let class =
            storage::claim_class(cx.settings, cx.catalog, Some(namespace), meta, Some(spec));
        let request = claim_request(Some(spec));
        match source {
            DataSource::Snapshot(name) => {
                self.snapshot(cx, namespace, name, &field, class, request, path, out)
            }
            DataSource::Claim(name) => {
                self.clone_of(cx, namespace, name, &field, class, request, path, out)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn snapshot(
        &self,
        cx: &Context<'_>,
        namespace: &str,
        name: &str,
        field: &Path,
        class: Option<String>,
        request: Option<u64>,
        path: &Path,
        out: &mut Vec<(Option<String>, String)>,
    ) {
        let Some(index) = cx.catalog.snapshots() else {
            return;
        };
        let kind = "VolumeSnapshot";
        let pending = |error: String| {
            format!(
                "{field}: the claim would stay Pending (ProvisioningFailed: {})",
                provisioning_failed(kind, name, &error)
            )
        };
        let Some(snap) = index.snapshot(namespace, name) else {
            out.push((
                class,
                pending(format!(
                    "error getting snapshot {name} from api server: volumesnapshots.snapshot.storage.k8s.io {} not found",
                    go_quote(name)
                )),
            ));
            return;
        };
        let provisioner = class
            .as_deref()
            .and_then(|c| cx.catalog.class(c))
            .map(|c| c.provisioner.as_str());
        let driver = snap.content.as_deref().and_then(|c| index.driver(c));
        let first = if snap.content.is_none() {
            Some(pending(format!("snapshot {name} not bound")))
        } else if let (Some(driver), Some(provisioner)) = (driver, provisioner)
            // An in-tree provisioner name is translated to its CSI driver before the
            // comparison (`TranslateInTreeStorageClassToCSI`): not judged here.
            && !provisioner.starts_with("kubernetes.io/")
            && driver != provisioner
        {
            Some(format!(
                "{field}: VolumeSnapshot {} holds data of driver {driver}, class {} provisions with {provisioner}; the claim would stay Pending (ProvisioningFailed: ...: snapshot {name} not bound)",
                go_quote(name),
                go_quote(class.as_deref().unwrap_or_default()),
            ))
        } else if !snap.ready {
            Some(pending(format!("snapshot {name} is not Ready")))
        } else {
            None
        };
        out.extend(first.map(|w| (class.clone(), w)));
        if let (Some(size), Some(request)) = (snap.restore_size, request)
            && request < size
        {
            out.push((
                class,
                format!(
                    "{}: the claim would stay Pending (ProvisioningFailed: ...: requested volume size {request} is less than the size {size} for the source snapshot {name}); request at least the snapshot's restoreSize",
                    storage_field(path)
                ),
            ));
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn clone_of(
        &self,
        cx: &Context<'_>,
        namespace: &str,
        name: &str,
        field: &Path,
        class: Option<String>,
        request: Option<u64>,
        path: &Path,
        out: &mut Vec<(Option<String>, String)>,
    ) {
        let Some(index) = cx.catalog.volumes() else {
            return;
        };
        let kind = "PersistentVolumeClaim";
        let Some(source) = index.claim(namespace, name) else {
            // Files hold some of the claims only: one found nowhere among them may exist.
            if index.source == Source::Cluster {
                out.push((
                    class,
                    format!(
                        "{field}: the claim would stay Pending (ProvisioningFailed: {})",
                        provisioning_failed(
                            kind,
                            name,
                            &format!(
                                "error getting PVC {name} (namespace {}) from api server: persistentvolumeclaim {} not found",
                                go_quote(namespace),
                                go_quote(name)
                            )
                        )
                    ),
                ));
            }
            return;
        };
        if let (Some(from), Some(to)) = (source.class.as_deref(), class.as_deref())
            && from != to
        {
            let provisioner = |c: &str| cx.catalog.class(c).map(|i| i.provisioner.as_str());
            match (provisioner(from), provisioner(to)) {
                (Some(a), Some(b)) if a != b => out.push((
                    class.clone(),
                    judged_against(
                        index.source,
                        format!(
                            "{field}: claim {} is in class {} ({a}), not of {b}: the clone would stay Pending (ProvisioningFailed: ...: claim in dataSource not bound or invalid)",
                            go_quote(name),
                            go_quote(from),
                        ),
                    ),
                )),
                _ if self.same_class_clones => out.push((
                    class.clone(),
                    judged_against(
                        index.source,
                        format!(
                            "{field}: ProvisioningFailed: ...: the source PVC and destination PVCs must be in the same storage class for cloning.  Source is in {from}, but new PVC is in {to}"
                        ),
                    ),
                )),
                _ => {}
            }
        }
        if let Some(request) = request
            && source.request > request
        {
            out.push((
                class,
                judged_against(
                    index.source,
                    format!(
                        "{}: the clone would stay Pending (ProvisioningFailed: ...: error, new PVC request must be greater than or equal in size to the specified PVC data source, requested {request} but source is {})",
                        storage_field(path),
                        source.request
                    ),
                ),
            ));
        }
    }
}

/// `spec.resources.requests[storage]` under a claim spec's path.
fn storage_field(spec: &Path) -> Path {
    spec.child("resources").child("requests").key("storage")
}
