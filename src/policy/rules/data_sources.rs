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

use crate::policy::engine::config::{ConfigError, Section};
use crate::policy::engine::decision::{Decision, judged_against};
use crate::policy::engine::meta::CREATE;
use crate::policy::engine::rule::{
    Acts, Context, Endpoint, Entry, Judges, Meta, Object, Request, Rule, RuleId,
};
use crate::policy::model::field::{Path, go_quote};
use crate::policy::model::limits::MAX_VOLUMES;
use crate::policy::model::modes::{Acting, Mode};
use crate::policy::model::snapshots::DataSource;
use crate::policy::model::storage;
use crate::policy::model::volumes::{Source, claim_request};

pub const META: Meta = Meta {
    key: "dataSources",
    annotation: "data-sources",
    summary: "claims restoring a VolumeSnapshot or cloning a claim that the external-provisioner will refuse are warned about",
    denies: "never denies",
    warns: "a source snapshot or claim that does not exist, a snapshot not bound or not ready, a snapshot of another driver than the class's, a clone from a class of another provisioner, a request below the snapshot's restoreSize or the source claim's request",
    default_mode: Mode::Enforce,
    acts: &[Acts {
        endpoint: Endpoint::Validate,
        judges: &[Judges::Claims.on(CREATE), Judges::ClaimTemplates.on(CREATE)],
    }],
};
pub const ID: RuleId = RuleId(&META);
pub const ENTRY: Entry = Entry::new(&META, compile);

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
    fn check(&self, cx: &Context<'_>, req: &Request<'_>, _mode: Acting, d: &mut Decision) {
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
            Object::Pv(_) | Object::PodSpec { .. } | Object::StorageClass(_) => {}
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::snapshots::{ContentMap, SnapshotIndex, SnapshotInfo, SnapshotMap};
    use crate::policy::testing::{cluster, create, messages_of};
    use crate::policy::{Catalog, LiveState, Policy};
    use k8s_openapi::api::apps::v1::StatefulSet;
    use k8s_openapi::api::core::v1::PersistentVolumeClaim;
    use serde_json::json;
    use std::sync::Arc;

    const POLICY: &str = r#"
storageClasses:
  - {name: gp3, provisioner: ebs.csi.aws.com, default: true}
  - {name: io2, provisioner: ebs.csi.aws.com}
  - {name: nfs, provisioner: nfs.csi.k8s.io}
  - {name: legacy, provisioner: kubernetes.io/aws-ebs}
"#;

    fn policy(extra: &str) -> Policy {
        Policy::parse(&format!("{POLICY}{extra}"), None, false).unwrap()
    }

    fn claim(
        name: &str,
        class: Option<&str>,
        size: &str,
        source: serde_json::Value,
    ) -> PersistentVolumeClaim {
        let mut spec = json!({"accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": size}}});
        if let Some(c) = class {
            spec["storageClassName"] = json!(c);
        }
        if !source.is_null() {
            spec["dataSource"] = source;
        }
        serde_json::from_value(
            json!({"metadata": {"name": name, "namespace": "team-a"}, "spec": spec}),
        )
        .unwrap()
    }

    fn from_snapshot(name: &str) -> serde_json::Value {
        json!({"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": name})
    }

    fn from_claim(name: &str) -> serde_json::Value {
        json!({"kind": "PersistentVolumeClaim", "name": name})
    }

    /// A snapshot of team-a: name, content, ready, restoreSize.
    type Snap<'a> = (&'a str, Option<&'a str>, bool, Option<u64>);

    /// A catalog with the claims `claims` (namespace team-a) and, when given, snapshots of
    /// team-a (name, content, ready, restoreSize) whose contents belong to `ebs.csi.aws.com`.
    fn catalog(
        p: &Policy,
        claims: &[PersistentVolumeClaim],
        snapshots: Option<&[Snap<'_>]>,
    ) -> Catalog {
        let cat = cluster(p, &[], claims, "team-a", LiveState::default());
        let Some(snapshots) = snapshots else {
            return cat;
        };
        let mut snaps = SnapshotMap::default();
        let mut contents = ContentMap::default();
        for (name, content, ready, size) in snapshots {
            snaps.insert(
                Arc::from(format!("team-a/{name}")),
                SnapshotInfo {
                    content: content.map(Arc::from),
                    ready: *ready,
                    restore_size: *size,
                },
            );
            if let Some(c) = content {
                contents.insert(Arc::from(*c), Arc::from("ebs.csi.aws.com"));
            }
        }
        cat.with_snapshots(SnapshotIndex {
            snapshots: Arc::new(snaps),
            contents: Arc::new(contents),
        })
    }

    /// Every rule of `p` on the CREATE of `c` in team-a, as the webhook decides.
    fn decide(p: &Policy, cat: &Catalog, c: &PersistentVolumeClaim) -> Decision {
        create(Object::Pvc(c))
            .namespace(Some("team-a"))
            .decide(p, cat, Endpoint::Validate)
    }

    fn warnings(p: &Policy, cat: &Catalog, c: &PersistentVolumeClaim) -> Vec<String> {
        let d = decide(p, cat, c);
        assert!(d.allowed(), "never a denial");
        // This rule's warnings only (a claim without a class also concerns willBind here).
        messages_of(&d.findings, ID)
    }

    /// This rule's warnings on claim `restore` of team-a, restored from snapshot `snap`.
    fn restore(
        p: &Policy,
        cat: &Catalog,
        class: Option<&str>,
        size: &str,
        snap: &str,
    ) -> Vec<String> {
        warnings(p, cat, &claim("restore", class, size, from_snapshot(snap)))
    }

    /// This rule's warnings on claim `clone` of team-a, cloned from claim `source`.
    fn clone(
        p: &Policy,
        cat: &Catalog,
        class: Option<&str>,
        size: &str,
        source: &str,
    ) -> Vec<String> {
        warnings(p, cat, &claim("clone", class, size, from_claim(source)))
    }

    const GI: u64 = 1 << 30;

    #[test]
    fn warns_about_a_snapshot_that_does_not_exist() {
        let p = policy("");
        let cat = catalog(&p, &[], Some(&[]));
        let w = restore(&p, &cat, Some("gp3"), "10Gi", "nightly");
        assert_eq!(
            w,
            [
                r#"spec.dataSource: the claim would stay Pending (ProvisioningFailed: error getting handle for DataSource Type VolumeSnapshot by Name nightly: error getting snapshot nightly from api server: volumesnapshots.snapshot.storage.k8s.io "nightly" not found)"#
            ]
        );
        let d = decide(
            &p,
            &cat,
            &claim("restore", Some("gp3"), "10Gi", from_snapshot("nightly")),
        );
        assert_eq!(d.findings[0].rule, ID);
        assert_eq!(d.findings[0].storage_class.as_deref(), Some("gp3"));
        assert!(d.audit_annotations["data-sources"].contains("not found"));
    }

    #[test]
    fn says_nothing_of_snapshots_while_they_are_not_known() {
        let p = policy("");
        let cat = catalog(&p, &[], None);
        assert!(restore(&p, &cat, Some("gp3"), "1Gi", "nightly").is_empty());
        // Without a cluster at all, neither restores nor clones are judged.
        let cat = p.static_catalog();
        assert!(restore(&p, &cat, Some("gp3"), "1Gi", "nightly").is_empty());
        assert!(clone(&p, &cat, Some("gp3"), "1Gi", "data").is_empty());
    }

    #[test]
    fn warns_about_a_snapshot_not_bound_not_ready_or_too_large() {
        let p = policy("");
        let cat = catalog(
            &p,
            &[],
            Some(&[
                ("unbound", None, false, None),
                ("creating", Some("c-1"), false, Some(10 * GI)),
                ("ready", Some("c-2"), true, Some(10 * GI)),
            ]),
        );
        let w = |snap: &str, size: &str| restore(&p, &cat, Some("gp3"), size, snap);
        assert_eq!(
            w("unbound", "10Gi"),
            [
                "spec.dataSource: the claim would stay Pending (ProvisioningFailed: error getting handle for DataSource Type VolumeSnapshot by Name unbound: snapshot unbound not bound)"
            ]
        );
        assert_eq!(
            w("creating", "10Gi"),
            [
                "spec.dataSource: the claim would stay Pending (ProvisioningFailed: error getting handle for DataSource Type VolumeSnapshot by Name creating: snapshot creating is not Ready)"
            ]
        );
        assert!(w("ready", "10Gi").is_empty());
        assert!(
            w("ready", "20Gi").is_empty(),
            "larger than the snapshot is fine"
        );
        assert_eq!(
            w("ready", "5Gi"),
            [
                "spec.resources.requests[storage]: the claim would stay Pending (ProvisioningFailed: ...: requested volume size 5368709120 is less than the size 10737418240 for the source snapshot ready); request at least the snapshot's restoreSize"
            ]
        );
        // Both at once: the first error the provisioner meets, and the size.
        assert_eq!(w("creating", "1Gi").len(), 2);
    }

    #[test]
    fn warns_about_a_snapshot_of_another_driver() {
        let p = policy("");
        let cat = catalog(&p, &[], Some(&[("ready", Some("c-2"), true, Some(GI))]));
        let w = restore(&p, &cat, Some("nfs"), "1Gi", "ready");
        assert_eq!(
            w,
            [
                r#"spec.dataSource: VolumeSnapshot "ready" holds data of driver ebs.csi.aws.com, class "nfs" provisions with nfs.csi.k8s.io; the claim would stay Pending (ProvisioningFailed: ...: snapshot ready not bound)"#
            ]
        );
        // The same driver under another class restores; an in-tree name is not judged.
        assert!(restore(&p, &cat, Some("io2"), "1Gi", "ready").is_empty());
        assert!(restore(&p, &cat, Some("legacy"), "1Gi", "ready").is_empty());
        // The class a claim without one gets (the default) is the one compared.
        let w = restore(&p, &cat, None, "1Gi", "ready");
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn reads_data_source_ref_too_and_leaves_populators_alone() {
        let p = policy("");
        let cat = catalog(&p, &[], Some(&[]));
        let mut c = claim("restore", Some("gp3"), "1Gi", serde_json::Value::Null);
        c.spec.as_mut().unwrap().data_source_ref =
            serde_json::from_value(from_snapshot("nightly")).ok();
        let w = warnings(&p, &cat, &c);
        assert!(w[0].starts_with("spec.dataSourceRef: "), "{w:?}");
        let populator = json!({"apiGroup": "hello.example.com", "kind": "Hello", "name": "x"});
        assert!(warnings(&p, &cat, &claim("restore", Some("gp3"), "1Gi", populator)).is_empty());
    }

    #[test]
    fn warns_about_a_clone_of_a_claim_that_does_not_exist() {
        let p = policy("");
        let cat = catalog(&p, &[], None);
        assert_eq!(
            clone(&p, &cat, Some("gp3"), "1Gi", "data"),
            [
                r#"spec.dataSource: the claim would stay Pending (ProvisioningFailed: error getting handle for DataSource Type PersistentVolumeClaim by Name data: error getting PVC data (namespace "team-a") from api server: persistentvolumeclaim "data" not found)"#
            ]
        );
    }

    #[test]
    fn warns_about_a_clone_smaller_than_its_source() {
        let p = policy("");
        let source = claim("data", Some("gp3"), "10Gi", serde_json::Value::Null);
        let cat = catalog(&p, &[source], None);
        let w = |size: &str| clone(&p, &cat, Some("gp3"), size, "data");
        assert!(w("10Gi").is_empty());
        assert!(w("10240Mi").is_empty());
        assert_eq!(
            w("5Gi"),
            [
                "spec.resources.requests[storage]: the clone would stay Pending (ProvisioningFailed: ...: error, new PVC request must be greater than or equal in size to the specified PVC data source, requested 5368709120 but source is 10737418240)"
            ]
        );
    }

    #[test]
    fn warns_about_a_clone_from_a_class_of_another_provisioner() {
        let p = policy("");
        let source = claim("data", Some("nfs"), "1Gi", serde_json::Value::Null);
        let cat = catalog(&p, std::slice::from_ref(&source), None);
        assert_eq!(
            clone(&p, &cat, Some("gp3"), "1Gi", "data"),
            [
                r#"spec.dataSource: claim "data" is in class "nfs" (nfs.csi.k8s.io), not of ebs.csi.aws.com: the clone would stay Pending (ProvisioningFailed: ...: claim in dataSource not bound or invalid)"#
            ]
        );
        // Another class of the same driver clones (external-provisioner v3.2 and later) ...
        let io2 = claim("data", Some("io2"), "1Gi", serde_json::Value::Null);
        let cat = catalog(&p, &[io2], None);
        let clone = claim("clone", Some("gp3"), "1Gi", from_claim("data"));
        assert!(warnings(&p, &cat, &clone).is_empty());
        // ... unless the policy says the cluster's provisioner is older.
        let old = policy("rules:\n  dataSources: {sameClassClones: true}\n");
        let cat = catalog(
            &old,
            &[claim("data", Some("io2"), "1Gi", serde_json::Value::Null)],
            None,
        );
        assert_eq!(
            warnings(&old, &cat, &clone),
            [
                "spec.dataSource: ProvisioningFailed: ...: the source PVC and destination PVCs must be in the same storage class for cloning.  Source is in io2, but new PVC is in gp3"
            ]
        );
    }

    #[test]
    fn bound_claims_are_past_provisioning() {
        let p = policy("");
        let cat = catalog(&p, &[], Some(&[]));
        let mut c = claim("restore", Some("gp3"), "1Gi", from_snapshot("gone"));
        c.status = serde_json::from_value(json!({"phase": "Bound"})).ok();
        assert!(warnings(&p, &cat, &c).is_empty());
        c.status = serde_json::from_value(json!({"phase": "Pending"})).ok();
        assert_eq!(warnings(&p, &cat, &c).len(), 1);
        // Pre-bound to a PV (`spec.volumeName`): no provisioning either; an empty name is none.
        let mut c = claim("restore", Some("gp3"), "1Gi", from_snapshot("gone"));
        c.spec.as_mut().unwrap().volume_name = Some("pv-1".into());
        assert!(warnings(&p, &cat, &c).is_empty());
        c.spec.as_mut().unwrap().volume_name = Some(String::new());
        assert_eq!(warnings(&p, &cat, &c).len(), 1);
    }

    /// What a StatefulSet with `n` claim templates leaves unjudged, as the request budget
    /// records it.
    fn skipped_of_templates(n: usize) -> Vec<String> {
        let p = policy("");
        let cat = catalog(&p, &[], Some(&[]));
        let templates: Vec<_> = (0..n)
            .map(|i| json!({"metadata": {"name": format!("d{i}")}, "spec": {}}))
            .collect();
        let s: StatefulSet = serde_json::from_value(json!({"metadata": {"name": "db"}, "spec": {
            "selector": {}, "serviceName": "db", "template": {},
            "volumeClaimTemplates": templates}}))
        .unwrap();
        let budget = crate::policy::Budget::with_units(u64::MAX, None);
        let mut cx = p.context(Endpoint::Validate, &cat);
        cx.budget = Some(&budget);
        let req = create(Object::StatefulSet(&s))
            .namespace(Some("team-a"))
            .request;
        p.rule(ID)
            .check(&cx, &req, Acting::Enforce, &mut Decision::default());
        budget.skipped()
    }

    #[test]
    fn claim_templates_past_the_cap_are_recorded_as_skipped() {
        assert!(skipped_of_templates(MAX_VOLUMES).is_empty());
        assert_eq!(
            skipped_of_templates(MAX_VOLUMES + 1),
            [format!(
                "dataSources: claim templates past the first {MAX_VOLUMES}"
            )]
        );
    }

    #[test]
    fn judges_claim_templates_at_their_path() {
        let p = policy("");
        let cat = catalog(&p, &[], Some(&[]));
        let s: StatefulSet = serde_json::from_value(json!({"metadata": {"name": "db"}, "spec": {
            "selector": {}, "serviceName": "db", "template": {},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                "storageClassName": "gp3", "dataSource": from_snapshot("nightly"),
                "resources": {"requests": {"storage": "1Gi"}}}}]}}))
        .unwrap();
        let d = create(Object::StatefulSet(&s))
            .namespace(Some("team-a"))
            .decide(&p, &cat, Endpoint::Validate);
        assert!(d.allowed());
        assert!(
            d.warnings[0].starts_with("spec.volumeClaimTemplates[0].spec.dataSource: "),
            "{:?}",
            d.warnings
        );
    }

    #[test]
    fn off_says_nothing_and_bad_sections_are_refused() {
        let p = policy("rules:\n  dataSources: {mode: off}\n");
        let cat = catalog(&p, &[], Some(&[]));
        assert!(restore(&p, &cat, Some("gp3"), "1Gi", "x").is_empty());
        let err = Policy::parse("rules:\n  dataSources: {sameClass: true}\n", None, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("sameClass"), "{err}");
    }
}
