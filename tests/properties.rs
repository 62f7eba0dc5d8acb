//! Properties of the mutating path, over generated PVCs and PVs: every patch applies cleanly to
//! the exact object received (as kube-apiserver applies it), and a second pass over the patched
//! object (reinvocation) yields no patch. PVs cover both mutating PV rules (node affinity and
//! reclaim policy), alone and together. The PVCs exercise every claim patch together: the
//! default class, the ReadWriteMany rewrite (namespace `analytics` opts in) and the size raise.

use base64::Engine as _;
use k8s_openapi::api::core::v1::PersistentVolume;
use proptest::prelude::*;
use serde_json::{Value, json};
use storage_policy_webhook::admission::{self, Endpoint};
use storage_policy_webhook::policy::{self, Policy, pv_controller};

const POLICY: &str = r#"
storageClasses:
  - {name: standard, provisioner: ebs.csi.aws.com, default: true}
  - {name: local-path, provisioner: rancher.io/local-path}
  - {name: nfs, provisioner: nfs.csi.k8s.io}
  - {name: oci-bv, provisioner: blockvolume.csi.oraclecloud.com}
  - {name: capped, provisioner: nfs.csi.k8s.io, minSize: 10Gi, maxSize: 100Gi}
rules:
  defaultStorageClass:
    byAccessMode: {ReadWriteMany: nfs}
    namespaces: {analytics: local-path}
  accessModes:
    rewrite: {namespaces: [analytics]}
  localVolumeNodeAffinity:
    paths:
      - {prefix: /mnt/ssd, nodes: [k8s-worker-01, k8s-worker-02]}
      - {prefix: /, nodes: [k8s-worker-09]}
"#;

fn access_modes() -> impl Strategy<Value = Option<Vec<&'static str>>> {
    proptest::option::of(proptest::sample::subsequence(
        vec![
            "ReadWriteOnce",
            "ReadOnlyMany",
            "ReadWriteMany",
            "ReadWriteOncePod",
        ],
        0..=4,
    ))
}

fn annotations() -> impl Strategy<Value = Option<Value>> {
    proptest::option::of(prop_oneof![
        Just(json!({})),
        Just(json!({"volume.beta.kubernetes.io/storage-class": "nfs"})),
        Just(json!({"storage-policy.io/node": "k8s-worker-03"})),
        Just(json!({"storage-policy.io/node": " , "})),
        Just(json!({"a/b~c": "x"})),
    ])
}

prop_compose! {
    fn pvc()(has_spec in any::<bool>(), null_spec in any::<bool>(), class in proptest::option::of(prop_oneof![Just(""), Just("nfs"), Just("standard"), Just("unknown"), Just("local-path"), Just("oci-bv"), Just("capped")]),
             size in proptest::option::of(prop_oneof![Just("1Gi"), Just("50G"), Just("50Gi"), Just("1e9"), Just("500M"), Just("1.5Ti"), Just("100m"), Just("12Gi")]),
             modes in access_modes(), block in any::<bool>(), ann in annotations(), ns in prop_oneof![Just("default"), Just("analytics")]) -> (Value, &'static str) {
        let mut meta = json!({"name": "c", "namespace": ns});
        if let Some(a) = ann { meta["annotations"] = a; }
        let mut obj = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta});
        if has_spec {
            let mut spec = json!({});
            if let Some(c) = class { spec["storageClassName"] = json!(c); }
            if let Some(m) = modes { spec["accessModes"] = json!(m); }
            if block { spec["volumeMode"] = json!("Block"); }
            if let Some(s) = size { spec["resources"] = json!({"requests": {"storage": s}}); }
            obj["spec"] = spec;
        } else if null_spec {
            obj["spec"] = Value::Null;
        }
        (obj, ns)
    }
}

fn reclaim_policy() -> impl Strategy<Value = Option<&'static str>> {
    proptest::option::of(prop_oneof![Just("Delete"), Just("Recycle"), Just("Retain")])
}

/// Volume sources the reclaim-policy rule tells apart: deletable (hostPath under `/tmp/`,
/// portworx), recyclable (nfs, hostPath) and neither (local, CSI).
fn other_source() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({"hostPath": {"path": "/tmp/x"}})),
        Just(json!({"hostPath": {"path": "/var/tmp/"}})),
        Just(json!({"hostPath": {"path": "/data/tmp/a"}})),
        Just(json!({"portworxVolume": {"volumeID": "px"}})),
        Just(json!({"nfs": {"server": "nas", "path": "/export"}})),
        Just(json!({"csi": {"driver": "ebs.csi.aws.com", "volumeHandle": "vol-1"}})),
        Just(
            json!({"local": {"path": "/srv/disk"}, "nodeAffinity": {"required": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["a", "b"]}]}]}}})
        ),
    ]
}

prop_compose! {
    /// PersistentVolumes as written by hand or by provisioners, with every reclaim policy.
    fn reclaim_pv()(source in other_source(), reclaim in reclaim_policy(),
                    provisioner in proptest::option::of(prop_oneof![
                        Just(""), Just("kubernetes.io/host-path"), Just("ebs.csi.aws.com"),
                        Just("local-volume-provisioner-n1-abc")]),
                    claim_ref in proptest::option::of(prop_oneof![
                        Just(json!({"name": "www-web-0"})),
                        Just(json!({"name": "www-web-0", "namespace": "default"}))])) -> Value {
        let mut meta = json!({"name": "v"});
        if let Some(p) = provisioner {
            meta["annotations"] = json!({"pv.kubernetes.io/provisioned-by": p});
        }
        let mut spec = json!({"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]});
        for (k, v) in source.as_object().unwrap() { spec[k] = v.clone(); }
        if let Some(r) = reclaim { spec["persistentVolumeReclaimPolicy"] = json!(r); }
        if let Some(c) = claim_ref { spec["claimRef"] = c; }
        json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": meta, "spec": spec})
    }
}

prop_compose! {
    fn pv()(path in prop_oneof![Just("/mnt/ssd"), Just("/mnt/ssd/x"), Just("/mnt/ssd2"), Just("/srv/a"), Just("/mnt/../x")],
            host_path in any::<bool>(), affinity in 0u8..3, ann in annotations(), modes in access_modes(),
            reclaim in reclaim_policy()) -> Value {
        let mut meta = json!({"name": "v"});
        if let Some(a) = ann { meta["annotations"] = a; }
        let mut spec = json!({"capacity": {"storage": "1Gi"}});
        if host_path { spec["hostPath"] = json!({"path": path}); } else { spec["local"] = json!({"path": path}); }
        if let Some(m) = modes { spec["accessModes"] = json!(m); }
        if let Some(r) = reclaim { spec["persistentVolumeReclaimPolicy"] = json!(r); }
        match affinity {
            1 => spec["nodeAffinity"] = json!({}),
            2 => spec["nodeAffinity"] = json!({"required": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "k", "operator": "In", "values": ["n"]}]}]}}),
            _ => {}
        }
        json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": meta, "spec": spec})
    }
}

fn review(kind: &str, ns: Option<&str>, object: &Value) -> Vec<u8> {
    let mut req = json!({"uid": "u", "kind": {"group": "", "version": "v1", "kind": kind},
        "resource": {"group": "", "version": "v1", "resource": "r"}, "operation": "CREATE",
        "userInfo": {"username": "u"}, "object": object, "dryRun": false});
    if let Some(ns) = ns {
        req["namespace"] = json!(ns);
    }
    serde_json::to_vec(
        &json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req}),
    )
    .unwrap()
}

fn patch_of(policy: &Policy, body: &[u8]) -> Option<Vec<json_patch::PatchOperation>> {
    let out = admission::review(Endpoint::Mutate, policy, &policy.static_catalog(), body)
        .expect("decided");
    let v: Value = serde_json::from_slice(&out.to_json().unwrap()).unwrap();
    let p = v["response"]["patch"].as_str()?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(p)
        .expect("base64 patch");
    Some(serde_json::from_slice(&raw).expect("JSON Patch"))
}

fn check(policy: &Policy, kind: &str, ns: Option<&str>, obj: &Value) -> Result<(), TestCaseError> {
    let Some(ops) = patch_of(policy, &review(kind, ns, obj)) else {
        return Ok(());
    };
    let mut patched = obj.clone();
    json_patch::patch(&mut patched, &ops)
        .map_err(|e| TestCaseError::fail(format!("patch {ops:?} does not apply to {obj}: {e}")))?;
    prop_assert_ne!(&patched, obj, "a patch must change something");
    let again = patch_of(policy, &review(kind, ns, &patched));
    prop_assert!(
        again.is_none(),
        "second pass patched {:?} over {}",
        again,
        patched
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn pvc_patches_apply_and_are_idempotent((obj, ns) in pvc()) {
        let policy = Policy::parse(POLICY, None, false).unwrap();
        check(&policy, "PersistentVolumeClaim", Some(ns), &obj)?;
    }

    #[test]
    fn pv_patches_apply_and_are_idempotent(obj in pv()) {
        let policy = Policy::parse(POLICY, None, false).unwrap();
        check(&policy, "PersistentVolume", None, &obj)?;
    }

    #[test]
    fn reclaim_policy_patches_apply_and_are_idempotent(obj in reclaim_pv()) {
        let policy = Policy::parse(POLICY, None, false).unwrap();
        check(&policy, "PersistentVolume", None, &obj)?;
        // In enforce mode no reclaim policy the controller would fail on survives the webhook.
        let mut after = obj.clone();
        if let Some(ops) = patch_of(&policy, &review("PersistentVolume", None, &obj)) {
            json_patch::patch(&mut after, &ops).unwrap();
        }
        let pv: PersistentVolume = serde_json::from_value(after.clone()).unwrap();
        prop_assert!(pv_controller::unhonoured(&pv).is_none(), "{}", after);
    }
}

/// The decision kube-core's typed decoding of the whole review leads to (how the webhook decoded
/// before it read the body in one pass): the reference for the one-pass decoding.
fn typed_decision<K>(policy: &Policy, endpoint: Endpoint, body: &[u8]) -> policy::Decision
where
    K: kube::core::Resource + serde::de::DeserializeOwned,
    for<'a> &'a K: Into<Viewed<'a>>,
{
    use kube::core::admission::{AdmissionRequest, AdmissionReview, Operation as Op};
    let review: AdmissionReview<K> = serde_json::from_slice(body).expect("typed decode");
    let req: AdmissionRequest<K> = review.try_into().expect("a request");
    let name = req
        .object
        .as_ref()
        .and_then(|o| o.meta().name.as_deref())
        .unwrap_or(&req.name);
    let request = policy::Request {
        operation: match req.operation {
            Op::Create => policy::Operation::Create,
            Op::Update => policy::Operation::Update,
            Op::Delete => policy::Operation::Delete,
            Op::Connect => policy::Operation::Connect,
        },
        namespace: req.namespace.as_deref().filter(|n| !n.is_empty()),
        username: req.user_info.username.as_deref().unwrap_or_default(),
        subject: policy::Subject {
            group: &req.kind.group,
            kind: &req.kind.kind,
            name,
        },
        object: req.object.as_ref().map(|o| o.into().0),
        old_object: req.old_object.as_ref().map(|o| o.into().0),
    };
    let catalog = policy.static_catalog();
    match endpoint {
        Endpoint::Mutate => policy::mutate(policy, &catalog, &request),
        Endpoint::Validate => policy::validate(policy, &catalog, &request),
    }
}

/// A typed object as the rules see it.
struct Viewed<'a>(policy::Object<'a>);

impl<'a> From<&'a k8s_openapi::api::core::v1::PersistentVolumeClaim> for Viewed<'a> {
    fn from(o: &'a k8s_openapi::api::core::v1::PersistentVolumeClaim) -> Self {
        Viewed(policy::Object::Pvc(o))
    }
}

impl<'a> From<&'a PersistentVolume> for Viewed<'a> {
    fn from(o: &'a PersistentVolume) -> Self {
        Viewed(policy::Object::Pv(o))
    }
}

/// The one-pass decoding and kube-core's typed decoding lead to the same decision, on both
/// endpoints, and the answer encodes that decision.
fn same_as_typed<K>(policy: &Policy, body: &[u8]) -> Result<(), TestCaseError>
where
    K: kube::core::Resource + serde::de::DeserializeOwned,
    for<'a> &'a K: Into<Viewed<'a>>,
{
    for endpoint in [Endpoint::Mutate, Endpoint::Validate] {
        let out =
            admission::review(endpoint, policy, &policy.static_catalog(), body).expect("decided");
        let want = typed_decision::<K>(policy, endpoint, body);
        prop_assert_eq!(&out.decision, &want);
        let v: Value = serde_json::from_slice(&out.to_json().unwrap()).unwrap();
        prop_assert_eq!(&v["response"]["allowed"], &json!(want.denial.is_none()));
        let message = want.denial.as_ref().map(|d| d.message());
        prop_assert_eq!(
            v["response"]["status"]["message"].as_str(),
            message.as_deref()
        );
        let warnings: Vec<String> = v["response"]["warnings"]
            .as_array()
            .map(|w| w.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default();
        prop_assert_eq!(warnings, want.warnings);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn one_pass_decoding_decides_as_the_typed_decoding_pvc((obj, ns) in pvc()) {
        let policy = Policy::parse(POLICY, None, false).unwrap();
        same_as_typed::<k8s_openapi::api::core::v1::PersistentVolumeClaim>(
            &policy,
            &review("PersistentVolumeClaim", Some(ns), &obj),
        )?;
    }

    #[test]
    fn one_pass_decoding_decides_as_the_typed_decoding_pv(obj in pv()) {
        let policy = Policy::parse(POLICY, None, false).unwrap();
        same_as_typed::<PersistentVolume>(&policy, &review("PersistentVolume", None, &obj))?;
    }
}
