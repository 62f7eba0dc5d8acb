//! Rule `reclaimPolicy`: a hand-made PersistentVolume whose reclaim policy nothing will honour
//! gets `Retain` on CREATE.
//!
//! When the claim of a `Delete` volume goes, the PV controller hands the volume to the provisioner
//! named by its `pv.kubernetes.io/provisioned-by` annotation when that is not a `kubernetes.io/`
//! one, else to an in-tree deleter; kube-controller-manager loads only the host-path, nfs and
//! portworx plugins for that. Only hostPath under `/tmp/.+` and portworx volumes can be deleted;
//! everything else (local volumes, hostPath elsewhere, NFS) gets a `VolumeFailedDelete` event
//! nobody reads and the volume turns `Failed`. `Recycle` works only for nfs and hostPath.
//! `Retain` is what a volume made by hand needs: the data stays until someone cleans it up.
//! Volumes a provisioner made are never touched (their provisioner deletes them). The API's own
//! `Recycle` deprecation warning is not repeated.
//!
//! CSI volumes are the exception since Kubernetes 1.31 (`HonorPVReclaimPolicy` GA, KEP-2644):
//! the PV controller hands a `Delete` PV of a CSI driver to that driver's external provisioner
//! whether or not it was provisioned dynamically (`pv_controller.go`, `deleteVolumeOperation`),
//! so the driver deletes the backing volume and its data. Such a PV is no longer set to
//! `Retain`: `Delete` now does what it says, and overriding it would be the guess. It gets a
//! warning that the data goes with the claim; before 1.31 the same PV went `Failed` with
//! `no volume plugin matched`, and the warning says so too.

use json_patch::jsonptr::PointerBuf;
use json_patch::{PatchOperation, ReplaceOperation};
use k8s_openapi::api::core::v1::PersistentVolume;
use serde_json::json;

use crate::policy::engine::decision::Decision;
use crate::policy::engine::meta::CREATE;
use crate::policy::engine::rule::{
    Acts, Context, Endpoint, Entry, Judges, Meta, Object, Request, Rule, RuleId,
};
use crate::policy::model::field::go_quote;
use crate::policy::model::modes::{Acting, Mode};
use crate::policy::model::pv_controller::{NO_PLUGIN, csi_deleter, unhonoured};

pub const META: Meta = Meta {
    key: "reclaimPolicy",
    annotation: "reclaim-policy",
    summary: "a hand-made PV whose Delete or Recycle policy nothing would honour gets Retain instead of going Failed",
    denies: "never denies; patches Retain only where kube-controller-manager has no deleter or recycler for the source (local, hostPath outside /tmp/, NFS with Delete; Recycle outside nfs and hostPath)",
    warns: "a hand-made CSI PV with Delete: its driver deletes the volume and its data (1.31+)",
    default_mode: Mode::Enforce,
    acts: &[Acts {
        endpoint: Endpoint::Mutate,
        judges: &[Judges::Volumes.on(CREATE)],
    }],
};
pub const ID: RuleId = RuleId(&META);
pub const ENTRY: Entry = Entry::mode_only::<ReclaimPolicy>(&META);

#[derive(Debug, Default)]
struct ReclaimPolicy;

impl Rule for ReclaimPolicy {
    fn check(&self, _cx: &Context<'_>, req: &Request<'_>, mode: Acting, d: &mut Decision) {
        if let Some(Object::Pv(pv)) = req.object {
            run(pv, mode, d);
        }
    }
}

fn run(pv: &PersistentVolume, mode: Acting, d: &mut Decision) {
    let class = pv
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.clone())
        .filter(|c| !c.is_empty());
    if let Some(driver) = csi_deleter(pv) {
        let text = format!(
            "persistentVolumeReclaimPolicy Delete: when its claim is released, CSI driver {} deletes \
             the volume and its data (Kubernetes 1.31+; before, the PV went Failed: {}); set Retain to keep it",
            go_quote(driver),
            go_quote(NO_PLUGIN)
        );
        d.warning(ID, class, text);
        return;
    }
    let Some(u) = unhonoured(pv) else { return };
    let what = format!(
        "persistentVolumeReclaimPolicy Retain: on release {} fails ({}) and the PV goes Failed; \
         Retain keeps the data until you clean it up",
        u.policy,
        go_quote(&u.reason)
    );
    let op = PatchOperation::Replace(ReplaceOperation {
        path: PointerBuf::from_tokens(["spec", "persistentVolumeReclaimPolicy"]),
        value: json!("Retain"),
    });
    // `mutation` warns only in audit mode; in enforce the user must still learn why.
    if mode == Acting::Enforce {
        d.warn(format!("set {what}"));
    }
    d.mutation(ID, mode, &what, class, op);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::decision::Action;
    use crate::policy::model::pv_controller::*;
    use crate::policy::testing::{create, policy};
    use serde_json::Value;

    fn pv(annotations: Value, policy: Option<&str>, source: Value) -> PersistentVolume {
        let mut spec = json!({"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]});
        if let Some(p) = policy {
            spec["persistentVolumeReclaimPolicy"] = json!(p);
        }
        for (k, v) in source.as_object().unwrap() {
            spec[k] = v.clone();
        }
        serde_json::from_value(
            json!({"metadata": {"name": "pv-web-0", "annotations": annotations}, "spec": spec}),
        )
        .unwrap()
    }

    fn plain(policy: &str, source: Value) -> PersistentVolume {
        pv(json!({}), Some(policy), source)
    }

    fn decide(v: &PersistentVolume, mode: Mode) -> Decision {
        let p = policy("");
        create(Object::Pv(v)).check(
            &p,
            &p.static_catalog(),
            ID,
            Endpoint::Mutate,
            mode.acting().unwrap(),
        )
    }

    fn patched(v: &PersistentVolume, d: &Decision) -> PersistentVolume {
        let mut doc = serde_json::to_value(v).unwrap();
        json_patch::patch(&mut doc, &d.patch).unwrap();
        serde_json::from_value(doc).unwrap()
    }

    #[test]
    fn reads_the_deleter_regexp_unanchored() {
        assert!(deletable_host_path("/tmp/x"));
        assert!(deletable_host_path("/var/tmp/x"));
        assert!(deletable_host_path("/data/tmp/a/b"));
        assert!(deletable_host_path("/tmp//"));
        assert!(!deletable_host_path("/tmp/"));
        assert!(!deletable_host_path("/tmp"));
        assert!(!deletable_host_path("/tmpx/a"));
        assert!(!deletable_host_path("/data/web-0"));
        assert!(!deletable_host_path("/tmp/\n"));
        assert!(deletable_host_path("/tmp/\n/tmp/a"));
    }

    #[test]
    fn sets_retain_on_host_path_delete_outside_tmp() {
        let v = plain("Delete", json!({"hostPath": {"path": "/data/web-0"}}));
        let d = decide(&v, Mode::Enforce);
        assert_eq!(
            patched(&v, &d)
                .spec
                .unwrap()
                .persistent_volume_reclaim_policy
                .as_deref(),
            Some("Retain")
        );
        assert_eq!(
            d.warnings,
            [
                "set persistentVolumeReclaimPolicy Retain: on release Delete fails (\"host_path deleter only supports \
                 /tmp/.+ but received provided /data/web-0\") and the PV goes Failed; Retain keeps the data until you \
                 clean it up"
            ]
        );
        assert!(d.warnings[0].chars().count() <= 256);
        assert!(
            d.audit_annotations["reclaim-policy"]
                .starts_with("set persistentVolumeReclaimPolicy Retain")
        );
        assert_eq!(d.findings[0].action, Action::Mutated);
    }

    #[test]
    fn keeps_delete_where_a_deleter_takes_the_volume() {
        for source in [
            json!({"hostPath": {"path": "/tmp/web-0"}}),
            json!({"hostPath": {"path": "/var/tmp/x"}}),
            json!({"portworxVolume": {"volumeID": "v1"}}),
        ] {
            let v = plain("Delete", source.clone());
            assert_eq!(decide(&v, Mode::Enforce), Decision::default(), "{source}");
        }
    }

    #[test]
    fn sets_retain_on_local_host_path_and_nfs_delete_in_the_controllers_words() {
        let cases = [
            (json!({"local": {"path": "/mnt/ssd"}}), NO_PLUGIN),
            (
                json!({"nfs": {"server": "nas", "path": "/export"}}),
                NO_DELETABLE_PLUGIN,
            ),
            (json!({"hostPath": {"path": "/tmp/"}}), "/tmp/.+"),
        ];
        for (source, words) in cases {
            let d = decide(&plain("Delete", source.clone()), Mode::Enforce);
            assert_eq!(d.patch.len(), 1, "{source}");
            assert!(d.warnings[0].contains(words), "{source}: {:?}", d.warnings);
        }
    }

    #[test]
    fn recycle_only_where_a_recycler_exists() {
        let d = decide(
            &plain("Recycle", json!({"local": {"path": "/mnt/ssd"}})),
            Mode::Enforce,
        );
        assert_eq!(d.patch.len(), 1);
        assert!(
            d.warnings[0].contains(
                "on release Recycle fails (\"No recycler plugin found for the volume!\")"
            )
        );
        for source in [
            json!({"nfs": {"server": "nas", "path": "/export"}}),
            json!({"hostPath": {"path": "/data/web-0"}}),
        ] {
            // The API's own deprecation warning covers these; nothing to add.
            assert_eq!(
                decide(&plain("Recycle", source), Mode::Enforce),
                Decision::default()
            );
        }
    }

    #[test]
    fn never_touches_volumes_a_provisioner_made() {
        for ann in [
            json!({PROVISIONED_BY: "ebs.csi.aws.com"}),
            json!({PROVISIONED_BY: "local-volume-provisioner-k8s-worker-01-5f4e3d2c"}),
            json!({PROVISIONED_BY: "rancher.io/local-path"}),
            json!({MIGRATED_TO: "ebs.csi.aws.com", PROVISIONED_BY: "kubernetes.io/aws-ebs"}),
        ] {
            let v = pv(
                ann.clone(),
                Some("Delete"),
                json!({"local": {"path": "/mnt/ssd"}}),
            );
            assert_eq!(decide(&v, Mode::Enforce), Decision::default(), "{ann}");
        }
        // An in-tree name is the controller's own: judged by the source.
        let v = pv(
            json!({PROVISIONED_BY: "kubernetes.io/host-path"}),
            Some("Delete"),
            json!({"hostPath": {"path": "/srv/x"}}),
        );
        assert_eq!(decide(&v, Mode::Enforce).patch.len(), 1);
        let v = pv(
            json!({PROVISIONED_BY: ""}),
            Some("Delete"),
            json!({"local": {"path": "/x"}}),
        );
        assert_eq!(decide(&v, Mode::Enforce).patch.len(), 1);
    }

    #[test]
    fn leaves_retain_and_the_default_alone() {
        assert_eq!(
            decide(
                &plain("Retain", json!({"local": {"path": "/x"}})),
                Mode::Enforce
            ),
            Decision::default()
        );
        let v = pv(json!({}), None, json!({"local": {"path": "/x"}}));
        assert_eq!(decide(&v, Mode::Enforce), Decision::default());
        let bare: PersistentVolume =
            serde_json::from_value(json!({"metadata": {"name": "p"}})).unwrap();
        assert_eq!(decide(&bare, Mode::Enforce), Decision::default());
    }

    #[test]
    fn audit_mode_warns_once_without_patching() {
        let d = decide(
            &plain("Delete", json!({"local": {"path": "/mnt/ssd"}})),
            Mode::Audit,
        );
        assert!(d.patch.is_empty());
        assert_eq!(
            d.warnings,
            [
                "[audit] would set persistentVolumeReclaimPolicy Retain: on release Delete fails (\"no volume plugin \
                 matched\") and the PV goes Failed; Retain keeps the data until you clean it up"
            ]
        );
        assert!(d.audit_annotations["reclaim-policy"].starts_with("would set"));
        assert_eq!(d.findings[0].action, Action::Audited);
    }

    #[test]
    fn second_pass_is_a_no_op() {
        let v = plain("Delete", json!({"local": {"path": "/mnt/ssd"}}));
        let d = decide(&v, Mode::Enforce);
        assert_eq!(decide(&patched(&v, &d), Mode::Enforce), Decision::default());
    }

    #[test]
    fn a_hand_made_csi_volume_with_delete_is_left_to_its_driver_with_a_warning() {
        let csi = json!({"csi": {"driver": "ebs.csi.aws.com", "volumeHandle": "vol-1"}});
        let v = plain("Delete", csi.clone());
        assert_eq!(unhonoured(&v), None);
        assert_eq!(csi_deleter(&v), Some("ebs.csi.aws.com"));
        for mode in [Mode::Enforce, Mode::Audit] {
            let d = decide(&v, mode);
            assert!(d.patch.is_empty(), "the driver deletes it: no Retain");
            assert_eq!(
                d.warnings,
                [concat!(
                    r#"persistentVolumeReclaimPolicy Delete: when its claim is released, CSI driver "ebs.csi.aws.com" "#,
                    r#"deletes the volume and its data (Kubernetes 1.31+; before, the PV went Failed: "no volume plugin matched"); "#,
                    "set Retain to keep it"
                )]
            );
            assert!(!d.warnings[0].contains("fails"));
            assert!(d.warnings[0].chars().count() <= 256);
        }
        // Retain, a provisioner's volume, Recycle: not this warning.
        assert_eq!(
            decide(&plain("Retain", csi.clone()), Mode::Enforce),
            Decision::default()
        );
        let made = pv(
            json!({PROVISIONED_BY: "ebs.csi.aws.com"}),
            Some("Delete"),
            csi.clone(),
        );
        assert_eq!(decide(&made, Mode::Enforce), Decision::default());
        let d = decide(&plain("Recycle", csi), Mode::Enforce);
        assert_eq!(d.patch.len(), 1);
        assert!(d.warnings[0].contains(NO_RECYCLER));
    }
}
