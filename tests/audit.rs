//! `storage-policy-webhook audit`: the binary over files made in a temp dir (every input form,
//! every output format, exit codes, broken documents, bad policies), the same decision as the
//! webhook for the same object, and `--cluster` against an in-process fake API server.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use base64::Engine as _;
use serde_json::{Value, json};
use storage_policy_webhook::admission::{self, Endpoint};
use storage_policy_webhook::policy::Policy;

const BIN: &str = env!("CARGO_BIN_EXE_storage-policy-webhook");

const POLICY: &str = r#"
storageClasses:
  - {name: standard, provisioner: ebs.csi.aws.com, default: true}
  - {name: oci-bv, provisioner: blockvolume.csi.oraclecloud.com}
  - {name: local-storage, provisioner: kubernetes.io/no-provisioner}
  - {name: nfs, provisioner: nfs.csi.k8s.io}
rules:
  localVolumeNodeAffinity:
    paths:
      - {prefix: /mnt/ssd, nodes: [k8s-worker-01, k8s-worker-02]}
  # The 1Gi claims here are about the report formats; sizes have their own test below.
  volumeSize: {mode: off}
"#;

const PVC_NO_CLASS: &str = "apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data, namespace: shop}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
";

const PVC_RWX_BLOCK: &str = "apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: uploads}
spec:
  storageClassName: oci-bv
  accessModes: [ReadWriteMany]
  resources: {requests: {storage: 1Gi}}
";

struct Dir {
    tmp: tempfile::TempDir,
}

impl Dir {
    fn new() -> Dir {
        let d = Dir {
            tmp: tempfile::tempdir().expect("tempdir"),
        };
        d.write("policy.yaml", POLICY);
        d
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }
}

fn command() -> Command {
    let mut c = Command::new(BIN);
    for v in [
        "SPW_AUDIT_CONFIG",
        "SPW_AUDIT_AUDIT_ONLY",
        "SPW_AUDIT_OUTPUT",
        "SPW_AUDIT_CLUSTER",
        "SPW_AUDIT_NAMESPACE",
        "SPW_AUDIT_ALL_NAMESPACES",
        "SPW_AUDIT_FILENAME",
        "SPW_AUDIT_DEFAULT_CLASS",
        "SPW_AUDIT_KUBECONFIG",
        "SPW_AUDIT_CONTEXT",
        "NO_COLOR",
    ] {
        c.env_remove(v);
    }
    c.env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT");
    c
}

fn run_with(mut cmd: Command, args: &[&str], stdin: Option<&str>) -> Output {
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn the binary");
    let mut pipe = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        pipe.write_all(text.as_bytes()).unwrap();
    }
    drop(pipe);
    child.wait_with_output().expect("wait")
}

fn audit(dir: &Dir, args: &[&str]) -> Output {
    audit_stdin(dir, args, None)
}

fn audit_stdin(dir: &Dir, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = command();
    cmd.current_dir(dir.tmp.path());
    let mut all = vec!["audit", "--config", "policy.yaml"];
    all.extend_from_slice(args);
    run_with(cmd, &all, stdin)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json_report(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("json report: {e}\n{}\n{}", stdout(o), stderr(o)))
}

fn findings_for<'a>(report: &'a Value, name: &str) -> Vec<&'a Value> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["name"] == name)
        .collect()
}

/// The json report's entry for one object: its patch, changes and warnings, once.
fn object_for<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == name)
        .unwrap_or_else(|| panic!("no object {name}: {report}"))
}

fn names(report: &Value) -> Vec<String> {
    let mut v: Vec<String> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_owned())
        .collect();
    v.dedup();
    v
}

// ---- input forms ----

#[test]
fn audits_a_file_and_shows_the_patch_as_changed_fields() {
    let d = Dir::new();
    d.write("pvc.yaml", PVC_NO_CLASS);
    let o = audit(&d, &["pvc.yaml"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    assert!(out.contains("PersistentVolumeClaim shop/data"), "{out}");
    assert!(
        out.contains("defaultStorageClass") && out.contains("mutated"),
        "{out}"
    );
    assert!(
        out.contains(r#"+ spec.storageClassName: "standard""#),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l
            == "1 object: 0 denied, 1 mutated, 0 warned, 0 allowed; 1 rule finding, 0 warnings"),
        "{out}"
    );
    assert!(
        !out.contains('\x1b'),
        "no colour when stdout is not a terminal: {out:?}"
    );
}

#[test]
fn reads_folders_recursively_skipping_other_files() {
    let d = Dir::new();
    d.write("manifests/a/pvc.yaml", PVC_NO_CLASS);
    d.write("manifests/b/c/rwx.yml", PVC_RWX_BLOCK);
    d.write(
        "manifests/pv.json",
        r#"{"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "ssd"},
            "spec": {"local": {"path": "/mnt/ssd/a"}, "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"}}}"#,
    );
    d.write(
        "manifests/notes.txt",
        "kind: PersistentVolumeClaim\nnot: yaml: at: all\n",
    );
    d.write("manifests/.git/config.yaml", "{ broken");
    let o = audit(&d, &["-o", "json", "manifests"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let r = json_report(&o);
    let files: Vec<&str> = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["file"].as_str().unwrap())
        .collect();
    assert!(files.contains(&"manifests/a/pvc.yaml"), "{files:?}");
    assert!(files.contains(&"manifests/b/c/rwx.yml"), "{files:?}");
    assert!(files.contains(&"manifests/pv.json"), "{files:?}");
    assert!(
        !files
            .iter()
            .any(|f| f.contains("notes") || f.contains(".git")),
        "{files:?}"
    );
    assert_eq!(r["summary"]["objects"], 3);
    assert_eq!(r["summary"]["errors"], 0);
}

#[test]
fn reads_yaml_and_json_from_stdin() {
    let d = Dir::new();
    let o = audit_stdin(&d, &["-o", "json", "-"], Some(PVC_RWX_BLOCK));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let r = json_report(&o);
    assert_eq!(r["findings"][0]["file"], "-");
    assert_eq!(r["findings"][0]["outcome"], "denied");
    let json_in = r#"{"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "j"},
                      "spec": {"accessModes": ["ReadWriteOnce"]}}"#;
    let o = audit_stdin(&d, &["-o", "json", "-"], Some(json_in));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(json_report(&o)["findings"][0]["name"], "j");
}

#[test]
fn reads_multi_document_yaml_and_lists() {
    let d = Dir::new();
    d.write(
        "all.yaml",
        &format!(
            "# a comment before the first document\n---\n{PVC_NO_CLASS}---\n---\n{PVC_RWX_BLOCK}---\napiVersion: v1\nkind: List\nitems:\n\
             - apiVersion: v1\n  kind: PersistentVolumeClaim\n  metadata: {{name: in-list}}\n  spec: {{accessModes: [ReadWriteOnce]}}\n\
             - apiVersion: v1\n  kind: ConfigMap\n  metadata: {{name: ignored}}\n---\n\
             apiVersion: v1\nkind: PersistentVolumeClaimList\nmetadata: {{}}\nitems:\n\
             - metadata: {{name: typed-item, namespace: shop}}\n  spec: {{accessModes: [ReadWriteOnce], storageClassName: nfs}}\n"
        ),
    );
    let o = audit(&d, &["-o", "json", "all.yaml"]);
    let r = json_report(&o);
    assert_eq!(names(&r), ["data", "uploads", "in-list", "typed-item"]);
    let in_list = findings_for(&r, "in-list")[0];
    assert_eq!(
        (in_list["document"].as_u64(), in_list["item"].as_u64()),
        (Some(3), Some(0))
    );
    let typed = findings_for(&r, "typed-item")[0];
    assert_eq!(
        typed["kind"], "PersistentVolumeClaim",
        "items of a typed list get its kind"
    );
    assert_eq!(
        (typed["document"].as_u64(), typed["item"].as_u64()),
        (Some(4), Some(0))
    );
    assert_eq!(r["summary"]["ignored"], 1, "the ConfigMap");
}

#[test]
fn reads_json_files_with_lists() {
    let d = Dir::new();
    d.write(
        "list.json",
        &serde_json::to_string(&json!({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "a"},
             "spec": {"storageClassName": "local-storage", "accessModes": ["ReadWriteMany"]}},
            {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web"}, "spec": {
                "selector": {}, "serviceName": "web", "template": {},
                "volumeClaimTemplates": [{"metadata": {"name": "d"}, "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "oci-bv"}}]}}
        ]}))
        .unwrap(),
    );
    let o = audit(&d, &["-o", "json", "list.json"]);
    assert_eq!(o.status.code(), Some(1));
    let r = json_report(&o);
    let web = findings_for(&r, "web")[0];
    assert_eq!(web["outcome"], "denied");
    assert!(
        web["message"].as_str().unwrap().starts_with(
            r#"StatefulSet.apps "web" is invalid: spec.volumeClaimTemplates[0].spec.accessModes: Unsupported value: "ReadWriteMany""#
        ),
        "{web}"
    );
    assert_eq!(web["item"], 1);
}

#[test]
fn storage_classes_and_namespaces_in_the_inputs_join_the_catalog() {
    let d = Dir::new();
    d.write("empty-policy.yaml", "# all defaults\n");
    d.write(
        "classes.yaml",
        "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata:\n  name: gp3\n  annotations: {storageclass.kubernetes.io/is-default-class: \"true\"}\n\
         provisioner: ebs.csi.aws.com\n---\napiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: lp}\nprovisioner: rancher.io/local-path\n\
         ---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: scratch\n  annotations: {storage-policy.io/default-storage-class: lp}\n",
    );
    d.write(
        "claims.yaml",
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: a}\nspec: {accessModes: [ReadWriteOnce]}\n---\n\
         apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: b, namespace: scratch}\nspec: {accessModes: [ReadWriteOnce]}\n---\n\
         apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: c}\nspec: {accessModes: [ReadWriteMany], storageClassName: lp}\n",
    );
    let mut cmd = command();
    cmd.current_dir(d.tmp.path());
    let o = run_with(
        cmd,
        &[
            "audit",
            "--config",
            "empty-policy.yaml",
            "-o",
            "json",
            "classes.yaml",
            "claims.yaml",
        ],
        None,
    );
    let r = json_report(&o);
    assert_eq!(
        object_for(&r, "a")["changes"]["spec.storageClassName"],
        "gp3"
    );
    assert_eq!(
        object_for(&r, "b")["changes"]["spec.storageClassName"],
        "lp"
    );
    assert_eq!(
        findings_for(&r, "c")[0]["outcome"],
        "denied",
        "lp is local storage"
    );
    // gp3 is annotated default while the namespace has its own default: the plugin runs first,
    // and the webhook replaces its class (managedFields), so the namespace default is the answer.
    let b = findings_for(&r, "b");
    assert!(!b.iter().any(|f| f["stage"] == "inventory"), "{b:?}");
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn audits_pods_and_every_workload_with_a_pod_template() {
    let d = Dir::new();
    let eph = r#"{"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "oci-bv", "resources": {"requests": {"storage": "1Gi"}}}}}}"#;
    let pod_spec =
        format!(r#"{{"containers": [{{"name": "c", "image": "busybox"}}], "volumes": [{eph}]}}"#);
    let template = format!(r#"{{"metadata": {{"labels": {{"app": "x"}}}}, "spec": {pod_spec}}}"#);
    let docs = [
        format!(r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "pod"}}, "spec": {pod_spec}}}"#),
        format!(r#"{{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {{"name": "deploy"}}, "spec": {{"selector": {{}}, "template": {template}}}}}"#),
        format!(r#"{{"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {{"name": "ds"}}, "spec": {{"selector": {{}}, "template": {template}}}}}"#),
        format!(r#"{{"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {{"name": "rs"}}, "spec": {{"selector": {{}}, "template": {template}}}}}"#),
        format!(r#"{{"apiVersion": "batch/v1", "kind": "Job", "metadata": {{"name": "job"}}, "spec": {{"template": {template}}}}}"#),
        format!(r#"{{"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {{"name": "cron"}}, "spec": {{"schedule": "@daily", "jobTemplate": {{"spec": {{"template": {template}}}}}}}}}"#),
        // An older API version of a kind the webhook reviews at v1 only is not audited.
        r#"{"apiVersion": "batch/v1beta1", "kind": "CronJob", "metadata": {"name": "old"}, "spec": {}}"#.to_owned(),
    ];
    d.write("workloads.json", &docs.join("\n"));
    let o = audit(&d, &["-o", "json", "workloads.json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let r = json_report(&o);
    let cases = [
        ("pod", r#"Pod "pod" is invalid: spec.volumes[0]"#),
        (
            "deploy",
            r#"Deployment.apps "deploy" is invalid: spec.template.spec.volumes[0]"#,
        ),
        (
            "ds",
            r#"DaemonSet.apps "ds" is invalid: spec.template.spec.volumes[0]"#,
        ),
        (
            "rs",
            r#"ReplicaSet.apps "rs" is invalid: spec.template.spec.volumes[0]"#,
        ),
        (
            "job",
            r#"Job.batch "job" is invalid: spec.template.spec.volumes[0]"#,
        ),
        (
            "cron",
            r#"CronJob.batch "cron" is invalid: spec.jobTemplate.spec.template.spec.volumes[0]"#,
        ),
    ];
    for (name, prefix) in cases {
        let f = findings_for(&r, name);
        assert_eq!(f.len(), 1, "{name}: {f:?}");
        assert_eq!(f[0]["outcome"], "denied", "{name}");
        let msg = f[0]["message"].as_str().unwrap();
        assert!(msg.starts_with(prefix), "{name}: {msg}");
        assert!(msg.contains(r#".ephemeral.volumeClaimTemplate.spec.accessModes: Unsupported value: "ReadWriteMany""#), "{msg}");
    }
    assert_eq!(r["summary"]["objects"], 6);
    assert_eq!(r["summary"]["ignored"], 1);
}

/// `audit` on files that hold the nodes, the PV and the claim: a pod that cannot be scheduled
/// because of volume topology is reported (volumeTopology), and the same pod with a selector a
/// node satisfies is not.
#[test]
fn audit_reports_pods_that_volume_topology_leaves_without_a_node() {
    let d = Dir::new();
    let node = |name: &str, zone: &str| {
        format!(
            "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n  labels: {{kubernetes.io/hostname: {name}, topology.kubernetes.io/zone: {zone}}}\n"
        )
    };
    let pod = |name: &str, zone: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  nodeSelector: {{topology.kubernetes.io/zone: {zone}}}\n  containers: [{{name: c, image: busybox}}]\n  volumes: [{{name: data, persistentVolumeClaim: {{claimName: data}}}}]\n"
        )
    };
    let pv = "apiVersion: v1
kind: PersistentVolume
metadata: {name: ssd-1}
spec:
  capacity: {storage: 10Gi}
  accessModes: [ReadWriteOnce]
  storageClassName: local-storage
  local: {path: /mnt/ssd/1}
  claimRef: {namespace: shop, name: data}
  nodeAffinity:
    required:
      nodeSelectorTerms:
        - matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [k8s-worker-01]}]
";
    let pvc = "apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data, namespace: shop}
spec:
  storageClassName: local-storage
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
";
    let docs = [
        node("k8s-worker-01", "zone-a"),
        node("k8s-worker-02", "zone-b"),
        pv.to_owned(),
        pvc.to_owned(),
        pod("stuck", "zone-b"),
        pod("fits", "zone-a"),
    ];
    d.write("app.yaml", &docs.join("---\n"));
    let o = audit(&d, &["-o", "json", "app.yaml"]);
    let r = json_report(&o);
    let stuck: Vec<&Value> = findings_for(&r, "stuck")
        .into_iter()
        .filter(|f| f["rule"] == "volumeTopology")
        .collect();
    assert_eq!(stuck.len(), 1, "{r}");
    let msg = stuck[0]["message"].as_str().unwrap();
    assert!(
        msg.starts_with(
            "node(s) didn't match PersistentVolume's node affinity: PV \"ssd-1\" of claim \"data\""
        ),
        "{msg}"
    );
    assert!(msg.contains("zone zone-b"), "{msg}");
    assert!(
        findings_for(&r, "fits")
            .iter()
            .all(|f| f["rule"] != "volumeTopology"),
        "{r}"
    );
}

// ---- output formats ----

#[test]
fn json_output_is_a_versioned_stable_document() {
    let d = Dir::new();
    d.write("pvc.yaml", &format!("{PVC_NO_CLASS}---\n{PVC_RWX_BLOCK}"));
    let o = audit(&d, &["--output", "json", "pvc.yaml"]);
    let r = json_report(&o);
    assert_eq!(r["apiVersion"], "storage-policy.io/v1alpha2");
    assert_eq!(r["kind"], "AuditReport");
    assert_eq!(r["policy"], "policy.yaml");
    assert_eq!(r["origin"], "files");
    assert_eq!(
        r["summary"],
        json!({"objects": 2, "denied": 1, "mutated": 1, "audited": 0, "warned": 0, "allowed": 0,
               "findings": 2, "warnings": 1, "errors": 0, "ignored": 0})
    );
    let keys = [
        "file",
        "document",
        "item",
        "line",
        "apiVersion",
        "kind",
        "namespace",
        "name",
        "rule",
        "stage",
        "outcome",
        "message",
        "storageClass",
    ];
    for f in r["findings"].as_array().unwrap() {
        let obj = f.as_object().unwrap();
        for k in keys {
            assert!(obj.contains_key(k), "finding lacks {k}: {f}");
        }
        assert_eq!(obj.len(), keys.len(), "{f}");
    }
    let object_keys = [
        "file",
        "document",
        "item",
        "line",
        "apiVersion",
        "kind",
        "namespace",
        "name",
        "outcome",
        "patch",
        "changes",
        "warnings",
    ];
    for o in r["objects"].as_array().unwrap() {
        let obj = o.as_object().unwrap();
        for k in object_keys {
            assert!(obj.contains_key(k), "object lacks {k}: {o}");
        }
        assert_eq!(obj.len(), object_keys.len(), "{o}");
    }
    let data = object_for(&r, "data");
    assert_eq!(
        data["patch"],
        json!([{"op": "add", "path": "/spec/storageClassName", "value": "standard"}])
    );
    assert_eq!(data["namespace"], "shop");
    assert_eq!(data["outcome"], "mutated");
    let uploads = findings_for(&r, "uploads")[0];
    assert_eq!(
        uploads["namespace"], "default",
        "namespaced objects without one are in default"
    );
    assert_eq!(uploads["rule"], "accessModes");
    assert_eq!(uploads["stage"], "validate");
    let uploads = object_for(&r, "uploads");
    assert_eq!(uploads["outcome"], "denied");
    assert!(
        uploads["warnings"][0].as_str().unwrap().contains("nfs"),
        "{uploads}"
    );
}

#[test]
fn policy_report_output_is_wgpolicyk8s_v1alpha2() {
    let d = Dir::new();
    d.write(
        "all.yaml",
        &format!(
            "{PVC_NO_CLASS}---\n{PVC_RWX_BLOCK}---\napiVersion: v1\nkind: PersistentVolume\nmetadata: {{name: ssd}}\n\
             spec: {{local: {{path: /mnt/ssd/x}}, accessModes: [ReadWriteOnce], capacity: {{storage: 1Gi}}}}\n"
        ),
    );
    let o = audit(&d, &["-o", "policy-report", "all.yaml"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let docs: Vec<Value> = serde_saphyr::from_multiple(&stdout(&o)).expect("multi-document YAML");
    let kinds: Vec<(&str, Option<&str>)> = docs
        .iter()
        .map(|d| {
            (
                d["kind"].as_str().unwrap(),
                d["metadata"]["namespace"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("PolicyReport", Some("default")),
            ("PolicyReport", Some("shop")),
            ("ClusterPolicyReport", None)
        ]
    );
    for doc in &docs {
        assert_eq!(doc["apiVersion"], "wgpolicyk8s.io/v1alpha2");
        assert_eq!(doc["metadata"]["name"], "storage-policy-webhook-audit");
        let results = doc["results"].as_array().unwrap();
        let mut counts = std::collections::BTreeMap::new();
        for r in results {
            assert_eq!(r["policy"], "storage-policy");
            assert_eq!(r["source"], "storage-policy-webhook");
            let result = r["result"].as_str().unwrap();
            assert!(
                ["pass", "fail", "warn", "error", "skip"].contains(&result),
                "{r}"
            );
            if let Some(s) = r.get("severity") {
                assert!(
                    ["high", "medium", "low"].contains(&s.as_str().unwrap()),
                    "{r}"
                );
            }
            assert!(
                r["timestamp"]["seconds"].as_i64().unwrap() > 1_600_000_000,
                "{r}"
            );
            assert_eq!(r["timestamp"]["nanos"], 0);
            assert!(r["resources"][0]["name"].is_string(), "{r}");
            *counts.entry(result.to_owned()).or_insert(0u64) += 1;
        }
        for k in ["pass", "fail", "warn", "error", "skip"] {
            assert_eq!(
                doc["summary"][k].as_u64(),
                Some(*counts.get(k).unwrap_or(&0)),
                "{k} in {doc}"
            );
        }
    }
    let denied = &docs[0]["results"][0];
    assert_eq!(
        (denied["result"].as_str(), denied["severity"].as_str()),
        (Some("fail"), Some("high"))
    );
    assert_eq!(denied["rule"], "accessModes");
    assert_eq!(
        denied["resources"][0],
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "uploads", "namespace": "default"})
    );
    let pv = &docs[2]["results"][0];
    assert_eq!(
        (pv["result"].as_str(), pv["rule"].as_str()),
        (Some("pass"), Some("localVolumeNodeAffinity"))
    );
    assert!(
        pv["properties"]["patch"]
            .as_str()
            .unwrap()
            .contains("nodeAffinity"),
        "{pv}"
    );
}

#[test]
fn openreports_output_is_openreports_v1alpha1() {
    let d = Dir::new();
    d.write(
        "all.yaml",
        &format!(
            "{PVC_NO_CLASS}---\n{PVC_RWX_BLOCK}---\napiVersion: v1\nkind: PersistentVolume\nmetadata: {{name: ssd}}\n\
             spec: {{local: {{path: /mnt/ssd/x}}, accessModes: [ReadWriteOnce], capacity: {{storage: 1Gi}}}}\n"
        ),
    );
    d.write("broken.yaml", "kind: [\n");
    let o = audit(&d, &["-o", "openreports", "all.yaml", "broken.yaml"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let docs: Vec<Value> = serde_saphyr::from_multiple(&stdout(&o)).expect("multi-document YAML");
    let kinds: Vec<(&str, Option<&str>)> = docs
        .iter()
        .map(|d| {
            (
                d["kind"].as_str().unwrap(),
                d["metadata"]["namespace"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("Report", Some("default")),
            ("Report", Some("shop")),
            ("ClusterReport", None)
        ]
    );
    let mut findings = 0;
    for doc in &docs {
        assert_eq!(doc["apiVersion"], "openreports.io/v1alpha1");
        assert_eq!(doc["source"], "storage-policy-webhook");
        assert_eq!(doc["metadata"]["name"], "storage-policy-webhook-audit");
        let results = doc["results"].as_array().unwrap();
        let mut counts = std::collections::BTreeMap::new();
        for r in results {
            let result = r["result"].as_str().unwrap();
            *counts.entry(result.to_owned()).or_insert(0u64) += 1;
            assert!(
                r["timestamp"]["seconds"].as_i64().unwrap() > 1_600_000_000,
                "{r}"
            );
            assert!(r["timestamp"]["nanos"].is_u64(), "{r}");
            for (k, v) in r["properties"].as_object().unwrap() {
                assert!(v.is_string(), "property {k} is not a string: {r}");
            }
            if result != "error" {
                findings += 1;
                assert!(r["resources"][0]["name"].is_string(), "{r}");
            }
        }
        let mut total = 0;
        for k in ["pass", "fail", "warn", "error", "skip"] {
            let n = doc["summary"][k].as_u64().unwrap();
            assert_eq!(n, *counts.get(k).unwrap_or(&0), "{k} in {doc}");
            total += n;
        }
        assert_eq!(total as usize, results.len(), "the summary adds up: {doc}");
    }
    let json = json_report(&audit(&d, &["-o", "json", "all.yaml"]));
    assert_eq!(
        findings,
        json["findings"].as_array().unwrap().len(),
        "one result per finding"
    );
    let denied = &docs[0]["results"][0];
    assert_eq!(
        (
            denied["policy"].as_str(),
            denied["result"].as_str(),
            denied["severity"].as_str()
        ),
        (Some("accessModes"), Some("fail"), Some("high")),
        "the rule is the policy"
    );
    assert_eq!(
        denied["resources"][0],
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "uploads", "namespace": "default"})
    );
    let cluster = &docs[2]["results"];
    assert_eq!(cluster[0]["policy"], "localVolumeNodeAffinity");
    assert_eq!(cluster[0]["resources"][0]["kind"], "PersistentVolume");
    // Then the one-disk-one-node warning about the same PV, then the unreadable file.
    let error = cluster.as_array().unwrap().last().unwrap();
    assert_eq!(error["result"], "error");
    assert!(
        error["properties"]["file"]
            .as_str()
            .unwrap()
            .ends_with("broken.yaml")
    );
}

#[test]
fn works_as_a_kubectl_plugin() {
    // kubectl runs `kubectl-storage_policy` from the PATH for `kubectl storage-policy`.
    let d = Dir::new();
    d.write("pvc.yaml", PVC_RWX_BLOCK);
    let plugin = d.path("bin/kubectl-storage_policy");
    std::fs::create_dir_all(plugin.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(BIN, &plugin).unwrap();
    let mut cmd = Command::new(&plugin);
    cmd.current_dir(d.tmp.path())
        .env_remove("SPW_AUDIT_OUTPUT")
        .env_remove("SPW_CONFIG");
    let o = run_with(
        cmd,
        &["audit", "--config", "policy.yaml", "-o", "json", "pvc.yaml"],
        None,
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(json_report(&o)["summary"]["denied"], 1);
    let help = run_with(Command::new(&plugin), &["audit", "--help"], None);
    assert!(
        stdout(&help).contains("Usage: kubectl storage-policy audit"),
        "{}",
        stdout(&help)
    );
    let plain = run_with(command(), &["audit", "--help"], None);
    assert!(
        stdout(&plain).contains("Usage: storage-policy-webhook audit"),
        "{}",
        stdout(&plain)
    );
}

#[test]
fn text_output_is_a_table_with_a_summary() {
    let d = Dir::new();
    d.write("pvc.yaml", PVC_RWX_BLOCK);
    let o = audit(&d, &["pvc.yaml"]);
    let out = stdout(&o);
    let header = out.lines().next().unwrap();
    for col in ["OBJECT", "RULE", "OUTCOME", "MESSAGE"] {
        assert!(header.contains(col), "{header}");
    }
    assert!(out.contains("pvc.yaml:"), "file heading: {out}");
    let row = out
        .lines()
        .find(|l| l.starts_with("PersistentVolumeClaim default/uploads"))
        .expect(&out);
    assert!(
        row.contains("accessModes") && row.contains("denied"),
        "{row}"
    );
    assert!(
        row.ends_with(r#"supported values: "ReadOnlyMany", "ReadWriteOnce", "ReadWriteOncePod""#),
        "{row}"
    );
    assert!(out.contains("warning: class \"oci-bv\""), "{out}");
    assert!(
        out.contains(
            "1 object: 1 denied, 0 mutated, 0 warned, 0 allowed; 1 rule finding, 1 warning"
        ),
        "{out}"
    );
}

// ---- exit codes ----

#[test]
fn exit_code_0_when_only_mutated_and_1_when_denied() {
    let d = Dir::new();
    d.write("ok.yaml", PVC_NO_CLASS);
    d.write("bad.yaml", PVC_RWX_BLOCK);
    assert_eq!(audit(&d, &["ok.yaml"]).status.code(), Some(0));
    assert_eq!(audit(&d, &["ok.yaml", "bad.yaml"]).status.code(), Some(1));
}

#[test]
fn dry_run_reports_audited_and_does_not_fail() {
    let d = Dir::new();
    d.write("bad.yaml", PVC_RWX_BLOCK);
    let o = audit(&d, &["--audit-only", "-o", "json", "bad.yaml"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let r = json_report(&o);
    assert_eq!(r["auditOnly"], true);
    assert_eq!(r["findings"][0]["outcome"], "audited");
    assert_eq!(r["summary"]["audited"], 1);
}

#[test]
fn a_broken_document_is_reported_with_file_and_index_and_the_rest_audited() {
    let d = Dir::new();
    d.write(
        "mixed.yaml",
        &format!("{PVC_NO_CLASS}---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: x\n---\n{PVC_RWX_BLOCK}"),
    );
    d.write("typed.yaml", "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: t}\nspec: {accessModes: 5}\n");
    let o = audit(&d, &["-o", "json", "mixed.yaml", "typed.yaml"]);
    assert_eq!(o.status.code(), Some(2), "input errors win over denials");
    let err = stderr(&o);
    assert!(err.contains("mixed.yaml: document 2 (line "), "{err}");
    assert!(err.contains("invalid YAML"), "{err}");
    assert!(err.contains("typed.yaml: document 1"), "{err}");
    assert!(err.contains("malformed PersistentVolumeClaim"), "{err}");
    let r = json_report(&o);
    assert_eq!(
        names(&r),
        ["data", "uploads"],
        "the other documents are audited"
    );
    assert_eq!(findings_for(&r, "uploads")[0]["document"], 3);
    assert_eq!(r["summary"]["errors"], 2);
    assert_eq!(r["errors"][0]["file"], "mixed.yaml");
    assert_eq!(r["errors"][0]["document"], 2);
    assert!(
        r["errors"][0]["line"]
            .as_u64()
            .is_some_and(|l| (7..=10).contains(&l)),
        "{}",
        r["errors"][0]
    );
}

#[test]
fn unreadable_input_exits_2_after_auditing_the_rest() {
    let d = Dir::new();
    d.write("ok.yaml", PVC_NO_CLASS);
    let o = audit(&d, &["missing.yaml", "ok.yaml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("missing.yaml: failed to read"),
        "{}",
        stderr(&o)
    );
    assert!(stdout(&o).contains("shop/data"), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("; 1 input could not be read"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn a_bad_policy_file_exits_2_naming_the_file() {
    let d = Dir::new();
    d.write("pvc.yaml", PVC_NO_CLASS);
    d.write("bad-policy.yaml", "rules:\n  accesModes: {}\n");
    let mut cmd = command();
    cmd.current_dir(d.tmp.path());
    let o = run_with(
        cmd,
        &["audit", "--config", "bad-policy.yaml", "pvc.yaml"],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("bad-policy.yaml") && err.contains("accesModes"),
        "{err}"
    );
    assert!(stdout(&o).is_empty());
    let mut cmd = command();
    cmd.current_dir(d.tmp.path());
    let o = run_with(cmd, &["audit", "--config", "nope.yaml", "pvc.yaml"], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("failed to read policy file nope.yaml"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn contradictory_flags_are_refused() {
    let d = Dir::new();
    d.write("pvc.yaml", PVC_NO_CLASS);
    assert_eq!(audit(&d, &["--cluster", "pvc.yaml"]).status.code(), Some(2));
    assert_eq!(
        audit(&d, &["-A", "-n", "a", "pvc.yaml"]).status.code(),
        Some(2)
    );
    assert_eq!(
        audit(&d, &[]).status.code(),
        Some(2),
        "a PATH or --cluster is required"
    );
}

// ---- kubectl's conventions: -f, -n, -A, -o yaml; variables of its own ----

/// Issue 30: `-n` was refused outside `--cluster`; on files it keeps the namespace's objects.
#[test]
fn namespace_on_files_keeps_that_namespace() {
    let d = Dir::new();
    d.write(
        "all.yaml",
        &format!(
            "{PVC_NO_CLASS}---\n{PVC_RWX_BLOCK}---\napiVersion: v1\nkind: PersistentVolume\n\
             metadata: {{name: pv-shop}}\nspec: {{capacity: {{storage: 1Gi}}, accessModes: [ReadWriteOnce], \
             nfs: {{server: nfs, path: /x}}, claimRef: {{namespace: shop, name: data}}}}\n---\n\
             apiVersion: v1\nkind: PersistentVolume\nmetadata: {{name: pv-other}}\n\
             spec: {{capacity: {{storage: 1Gi}}, accessModes: [ReadWriteOnce], nfs: {{server: nfs, path: /y}}}}\n"
        ),
    );
    let o = audit(&d, &["-n", "shop", "-o", "json", "all.yaml"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "uploads (default) is not audited: {}",
        stderr(&o)
    );
    let r = json_report(&o);
    assert_eq!(names(&r), ["data", "pv-shop"], "{r}");
    let o = audit(&d, &["--namespace", "default", "-o", "json", "all.yaml"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "uploads has no namespace: default"
    );
    assert_eq!(names(&json_report(&o)), ["uploads"]);
    let o = audit(&d, &["-A", "-o", "json", "all.yaml"]);
    assert_eq!(json_report(&o)["summary"]["objects"], 4);
}

#[test]
fn files_come_with_f_as_with_kubectl_and_yaml_is_the_json_document() {
    let d = Dir::new();
    d.write("a.yaml", PVC_NO_CLASS);
    d.write("dir/b.yaml", PVC_RWX_BLOCK);
    let json = json_report(&audit(
        &d,
        &["-o", "json", "-f", "a.yaml", "--filename", "dir"],
    ));
    assert_eq!(names(&json), ["data", "uploads"]);
    let both = json_report(&audit(&d, &["-o", "json", "-f", "a.yaml", "dir"]));
    assert_eq!(
        names(&both),
        ["data", "uploads"],
        "-f and positional paths together"
    );
    let o = audit(&d, &["-o", "yaml", "-f", "a.yaml,dir"]);
    assert_eq!(o.status.code(), Some(1));
    let yaml: Value = serde_saphyr::from_str(&stdout(&o)).unwrap();
    assert_eq!(yaml, json, "-o yaml is the json document");
    let o = audit_stdin(&d, &["-o", "json", "-f", "-"], Some(PVC_RWX_BLOCK));
    assert_eq!(names(&json_report(&o)), ["uploads"]);
}

/// Issue 30: `SPW_DRY_RUN` (for `serve`, now `SPW_AUDIT_ONLY`) also turned `audit` into a dry run, and `SPW_CONFIG`
/// changed its policy: `audit` reads only `SPW_AUDIT_*`.
#[test]
fn variables_of_serve_never_change_audit() {
    let d = Dir::new();
    d.write("pvc.yaml", PVC_RWX_BLOCK);
    d.write("other-policy.yaml", "mode: off\n");
    let mut cmd = command();
    cmd.current_dir(d.tmp.path())
        .env("SPW_AUDIT_ONLY", "true")
        .env("SPW_CONFIG", "other-policy.yaml")
        .env("SPW_KUBECONFIG", "missing-kubeconfig");
    let o = run_with(
        cmd,
        &["audit", "--config", "policy.yaml", "-o", "json", "pvc.yaml"],
        None,
    );
    assert_eq!(o.status.code(), Some(1), "still denied: {}", stderr(&o));
    let r = json_report(&o);
    assert_eq!(r["auditOnly"], false);
    let mut cmd = command();
    cmd.current_dir(d.tmp.path())
        .env("SPW_CONFIG", "other-policy.yaml");
    let o = run_with(cmd, &["audit", "-o", "json", "pvc.yaml"], None);
    assert_eq!(json_report(&o)["policy"], "(embedded default)");
    // Its own variables do.
    let mut cmd = command();
    cmd.current_dir(d.tmp.path())
        .env("SPW_AUDIT_AUDIT_ONLY", "true")
        .env("SPW_AUDIT_CONFIG", "policy.yaml")
        .env("SPW_AUDIT_OUTPUT", "json")
        .env("SPW_AUDIT_FILENAME", "pvc.yaml");
    let o = run_with(cmd, &["audit"], None);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let r = json_report(&o);
    assert_eq!(
        (r["auditOnly"].as_bool(), r["policy"].as_str()),
        (Some(true), Some("policy.yaml"))
    );
}

// ---- what the API server refuses ----

#[test]
fn local_volume_without_node_affinity_is_refused_as_the_api_refuses_it() {
    let d = Dir::new();
    d.write(
        "pv.yaml",
        "apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: disk7}\n\
         spec: {local: {path: /srv/disk7}, accessModes: [ReadWriteOnce], capacity: {storage: 1Gi}}\n",
    );
    let o = audit(&d, &["-o", "json", "pv.yaml"]);
    assert_eq!(o.status.code(), Some(1));
    let r = json_report(&o);
    let api = findings_for(&r, "disk7")
        .into_iter()
        .find(|f| f["stage"] == "api")
        .expect("api finding");
    assert_eq!(api["outcome"], "denied");
    assert_eq!(
        api["message"],
        r#"PersistentVolume "disk7" is invalid: spec.nodeAffinity: Required value: Local volume requires node affinity"#
    );
    // In audit mode the webhook does not patch even a covered path: the API still refuses it.
    d.write(
        "covered.yaml",
        "apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: ssd}\nspec: {local: {path: /mnt/ssd/x}, accessModes: [ReadWriteOnce]}\n",
    );
    let r = json_report(&audit(&d, &["--dry-run", "-o", "json", "covered.yaml"]));
    let ssd = findings_for(&r, "ssd");
    assert_eq!(ssd[0]["outcome"], "audited");
    assert_eq!(ssd[1]["stage"], "api");
    let r = json_report(&audit(&d, &["-o", "json", "covered.yaml"]));
    let stages: Vec<&str> = findings_for(&r, "ssd")
        .iter()
        .map(|f| f["stage"].as_str().unwrap())
        .collect();
    // Patched, the API accepts it; `/validate` then warns that the path rule names two nodes.
    assert_eq!(
        stages,
        ["mutate", "validate"],
        "patched: the API accepts it"
    );
}

// ---- one code path with the webhook ----

fn webhook_review(endpoint: Endpoint, policy: &Policy, object: &Value, namespace: &str) -> Value {
    // What kube-apiserver sends, written out by hand.
    let body = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "0b4f8c1e-6a1d-4c5e-9d33-2f0e3b7f0a11",
            "kind": {"group": "", "version": "v1", "kind": "PersistentVolumeClaim"},
            "resource": {"group": "", "version": "v1", "resource": "persistentvolumeclaims"},
            "requestKind": {"group": "", "version": "v1", "kind": "PersistentVolumeClaim"},
            "requestResource": {"group": "", "version": "v1", "resource": "persistentvolumeclaims"},
            "name": object["metadata"]["name"],
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
            "object": object,
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
        }
    });
    let catalog = policy.static_catalog();
    let outcome = admission::review(
        endpoint,
        policy,
        &catalog,
        &serde_json::to_vec(&body).unwrap(),
    )
    .unwrap();
    serde_json::from_slice(&outcome.to_json().unwrap()).unwrap()
}

#[test]
fn json_findings_for_a_pvc_are_the_webhooks_response() {
    let d = Dir::new();
    let policy = Policy::load(Some(&d.path("policy.yaml")), false).unwrap();
    // No class and RWX: the webhook sets the block default, then refuses RWX on it.
    let pvc = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                     "metadata": {"name": "shared", "namespace": "shop"},
                     "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}}});
    d.write("pvc.json", &pvc.to_string());

    let mutate = webhook_review(Endpoint::Mutate, &policy, &pvc, "shop");
    let patch_bytes = base64::engine::general_purpose::STANDARD
        .decode(mutate["response"]["patch"].as_str().expect("a patch"))
        .unwrap();
    let patch: Value = serde_json::from_slice(&patch_bytes).unwrap();
    let mut patched = pvc.clone();
    json_patch::patch(
        &mut patched,
        &serde_json::from_value::<json_patch::Patch>(patch.clone()).unwrap(),
    )
    .unwrap();
    let validate = webhook_review(Endpoint::Validate, &policy, &patched, "shop");
    assert_eq!(validate["response"]["allowed"], false);

    let r = json_report(&audit(&d, &["-o", "json", "pvc.json"]));
    let found = findings_for(&r, "shared");
    assert_eq!(found.len(), 2, "{found:?}");
    let (m, v) = (found[0], found[1]);
    assert_eq!(
        (m["stage"].as_str(), m["outcome"].as_str()),
        (Some("mutate"), Some("mutated"))
    );
    assert_eq!(
        (v["stage"].as_str(), v["outcome"].as_str()),
        (Some("validate"), Some("denied"))
    );
    assert_eq!(
        v["message"], validate["response"]["status"]["message"],
        "the denial the webhook returns"
    );
    // The object's patch and the warnings of both responses, once each, on the object.
    let object = object_for(&r, "shared");
    assert_eq!(object["patch"], patch, "the patch the webhook returns");
    let mut warnings: Vec<Value> = Vec::new();
    for response in [&mutate, &validate] {
        for w in response["response"]["warnings"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            if !warnings.contains(&w) {
                warnings.push(w);
            }
        }
    }
    assert_eq!(object["warnings"], json!(warnings));
    assert_eq!(r["summary"]["denied"], 1);
}

#[test]
fn shows_the_size_raise_and_the_rwx_rewrite_as_mutations() {
    let d = Dir::new();
    d.write(
        "policy.yaml",
        "storageClasses:\n  - {name: oci-bv, provisioner: blockvolume.csi.oraclecloud.com}\n  \
         - {name: local-path, provisioner: rancher.io/local-path}\nrules:\n  accessModes:\n    \
         rewrite: {namespaces: [apps]}\n",
    );
    d.write(
        "claims.yaml",
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: small, namespace: web}\n\
         spec: {accessModes: [ReadWriteOnce], storageClassName: oci-bv, resources: {requests: {storage: 1Gi}}}\n\
         ---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: minio, namespace: apps}\n\
         spec: {accessModes: [ReadWriteMany], storageClassName: local-path, resources: {requests: {storage: 1Gi}}}\n",
    );
    let o = audit(&d, &["-o", "json", "claims.yaml"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let r = json_report(&o);
    let small = findings_for(&r, "small");
    assert_eq!(small.len(), 1, "{small:?}");
    assert_eq!(
        (small[0]["rule"].as_str(), small[0]["outcome"].as_str()),
        (Some("volumeSize"), Some("mutated"))
    );
    assert_eq!(
        object_for(&r, "small")["changes"]["spec.resources.requests.storage"],
        "50Gi"
    );
    let minio = findings_for(&r, "minio");
    assert_eq!(minio.len(), 1, "{minio:?}");
    assert_eq!(
        (minio[0]["rule"].as_str(), minio[0]["outcome"].as_str()),
        (Some("accessModes"), Some("mutated"))
    );
    assert_eq!(
        object_for(&r, "minio")["changes"]["spec.accessModes"],
        serde_json::json!(["ReadWriteOnce"])
    );
}

// ---- the examples folder (what docs/audit.md shows) ----

#[test]
fn examples_folder_reports_the_real_situations() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = command();
    cmd.current_dir(root);
    let o = run_with(
        cmd,
        &[
            "audit",
            "--config",
            "examples/policy.yaml",
            "-o",
            "json",
            "examples/",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let r = json_report(&o);
    let outcome = |name: &str| -> Vec<String> {
        findings_for(&r, name)
            .iter()
            .map(|f| f["outcome"].as_str().unwrap().to_owned())
            .collect()
    };
    // Injected on two workers: admitted, with the one-disk-one-node warning.
    assert_eq!(outcome("ssd-data"), ["mutated", "warned"]);
    assert_eq!(outcome("disk7"), ["warned", "denied"]);
    assert_eq!(
        outcome("kafka"),
        ["denied", "warned"],
        "no PV among the files for its 3 claims on a static class"
    );
    assert_eq!(outcome("uploads"), ["denied"]);
    assert_eq!(
        outcome("legacy-data"),
        ["warned"],
        "an empty class is static binding, to a PV that is not among the files"
    );
    assert_eq!(outcome("build-cache"), ["allowed"]);
    // The class default, then the OCI minimum: 20Gi is raised to 50Gi.
    assert_eq!(outcome("postgres-data"), ["mutated", "mutated"]);
    assert!(
        outcome("oci-bv").is_empty(),
        "annotated default beside byAccessMode: the webhook replaces the plugin's class"
    );
    assert_eq!(
        r["summary"]["ignored"], 0,
        "the policy file in the folder is not read as a manifest"
    );
}

/// Issue 30: a patch made by two rules was printed under each, and in `--dry-run` each finding
/// came back a second time as its `[audit]` warning; json copied warnings into findings.
#[test]
fn each_patch_and_each_finding_is_said_once() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let run = |extra: &[&str]| {
        let mut cmd = command();
        cmd.current_dir(root);
        let mut args = vec!["audit", "--config", "examples/policy.yaml"];
        args.extend_from_slice(extra);
        args.push("examples/");
        stdout(&run_with(cmd, &args, None))
    };
    let out = run(&[]);
    // postgres-data: defaultStorageClass and volumeSize both patch, in one response.
    assert_eq!(
        out.matches(r#"+ spec.storageClassName: "oci-bv""#).count(),
        1,
        "{out}"
    );
    assert_eq!(
        out.matches(r#"+ spec.resources.requests.storage: "50Gi""#)
            .count(),
        1,
        "{out}"
    );
    let dry = run(&["--dry-run"]);
    assert!(!dry.contains("warning: [audit]"), "{dry}");
    assert!(
        dry.contains(r#"audited  would set spec.storageClassName "oci-bv" (cluster default)"#),
        "{dry}"
    );
    let summary = dry.lines().last().unwrap();
    assert!(
        summary.starts_with("9 objects: ") && summary.contains(" rule findings, "),
        "the summary says what it counts: {summary}"
    );
    let r: Value = serde_json::from_str(&run(&["--dry-run", "-o", "json"])).unwrap();
    for f in r["findings"].as_array().unwrap() {
        assert!(
            f.get("warnings").is_none() && f.get("patch").is_none(),
            "{f}"
        );
    }
    let s = &r["summary"];
    let by_outcome: u64 = ["denied", "mutated", "audited", "warned", "allowed"]
        .iter()
        .map(|k| s[k].as_u64().unwrap())
        .sum();
    assert_eq!(
        Some(by_outcome),
        s["objects"].as_u64(),
        "objects add up: {s}"
    );
    assert_eq!(
        s["findings"].as_u64(),
        Some(
            r["findings"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|f| f["outcome"] != "allowed")
                .count() as u64
        )
    );
    let warnings: usize = r["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["warnings"].as_array().unwrap().len())
        .sum();
    assert!(warnings > 0 && s["warnings"].as_u64() >= Some(warnings as u64));
}

#[test]
fn docs_show_the_real_output_of_the_examples() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let docs = std::fs::read_to_string(root.join("docs/audit.md")).unwrap();
    let start = "$ storage-policy-webhook audit --config examples/policy.yaml examples/\n";
    let shown = &docs[docs.find(start).expect("the examples command") + start.len()..];
    let shown = &shown[..shown.find("$ echo $?").expect("the exit status")];
    let mut cmd = command();
    cmd.current_dir(root);
    let o = run_with(
        cmd,
        &["audit", "--config", "examples/policy.yaml", "examples/"],
        None,
    );
    assert_eq!(
        stdout(&o),
        shown,
        "docs/audit.md is out of date: paste the new output"
    );
}

// ---- --cluster against the fake API server ----

fn cluster_objects() -> Vec<Value> {
    let node = |name: &str| json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}});
    let local_pv = |name: &str, node: &str, ns: &str| {
        json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name, "resourceVersion": "7", "uid": "u"},
               "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "local-storage",
                        "local": {"path": "/mnt/ssd"}, "claimRef": {"namespace": ns, "name": "x"},
                        "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                            {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}},
               "status": {"phase": "Bound"}})
    };
    let pvc = |name: &str, ns: &str, class: Option<&str>, mode: &str, phase: &str| {
        let mut spec =
            json!({"accessModes": [mode], "resources": {"requests": {"storage": "1Gi"}}});
        if let Some(c) = class {
            spec["storageClassName"] = json!(c);
        }
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
               "metadata": {"name": name, "namespace": ns, "resourceVersion": "9", "uid": "u2",
                            "managedFields": [{"manager": "kubectl"}]},
               "spec": spec, "status": {"phase": phase}})
    };
    vec![
        json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "provisioner": "blockvolume.csi.oraclecloud.com",
               "metadata": {"name": "oci-bv", "creationTimestamp": "2024-01-01T00:00:00Z",
                            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}}}),
        json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "provisioner": "kubernetes.io/no-provisioner",
               "metadata": {"name": "local-storage"}}),
        json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "provisioner": "nfs.csi.k8s.io",
               "metadata": {"name": "nfs"}}),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "web"}}),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "batch", "labels": {"storage-policy.io/mode": "audit"}}}),
        node("k8s-worker-01"),
        node("k8s-worker-02"),
        // The block and NFS drivers run on a node: missingProvisioner has nothing to say here.
        json!({"apiVersion": "storage.k8s.io/v1", "kind": "CSINode", "metadata": {"name": "k8s-worker-01"},
               "spec": {"drivers": [{"name": "blockvolume.csi.oraclecloud.com", "nodeID": "n1"},
                                    {"name": "nfs.csi.k8s.io", "nodeID": "n1"}]}}),
        local_pv("ssd-01", "k8s-worker-01", "web"),
        local_pv("ssd-03", "k8s-worker-03", "batch"),
        pvc("uploads", "web", Some("oci-bv"), "ReadWriteMany", "Pending"),
        pvc("db", "web", Some("oci-bv"), "ReadWriteOnce", "Bound"),
        pvc(
            "reports",
            "batch",
            Some("oci-bv"),
            "ReadWriteMany",
            "Pending",
        ),
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "kafka", "namespace": "batch"},
               "spec": {"selector": {}, "serviceName": "kafka", "template": {},
                        "volumeClaimTemplates": [{"metadata": {"name": "d"}, "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "local-storage"}}]}}),
    ]
}

const CLUSTER_POLICY: &str =
    "rules:\n  defaultStorageClass:\n    byAccessMode: {ReadWriteMany: nfs}\n";

fn cluster_audit(api: &support::fake_apiserver::FakeApiServer, d: &Dir, extra: &[&str]) -> Output {
    d.write("cluster-policy.yaml", CLUSTER_POLICY);
    let kubeconfig = api.kubeconfig(d.tmp.path());
    let mut cmd = command();
    cmd.current_dir(d.tmp.path()).env("KUBECONFIG", &kubeconfig);
    let mut args = vec!["audit", "--config", "cluster-policy.yaml", "--cluster"];
    args.extend_from_slice(extra);
    run_with(cmd, &args, None)
}

#[test]
fn cluster_audit_reports_volumes_stranded_by_reclaim_policy_or_claim_ref() {
    let pv = |name: &str, phase: &str, policy: &str, claim_ref: Value| {
        json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name, "resourceVersion": "3", "uid": "u"},
               "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"],
                        "persistentVolumeReclaimPolicy": policy, "claimRef": claim_ref,
                        "local": {"path": "/mnt/ssd"},
                        "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                            {"key": "kubernetes.io/hostname", "operator": "In", "values": ["k8s-worker-01"]}]}]}}},
               "status": {"phase": phase}})
    };
    let api = support::fake_apiserver::FakeApiServer::start_blocking(vec![
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "k8s-worker-01",
               "labels": {"kubernetes.io/hostname": "k8s-worker-01"}}}),
        pv(
            "ssd-failed",
            "Failed",
            "Delete",
            json!({"name": "gone", "namespace": "web"}),
        ),
        pv(
            "ssd-waiting",
            "Available",
            "Retain",
            json!({"name": "www-web-0"}),
        ),
        pv(
            "ssd-fine",
            "Bound",
            "Retain",
            json!({"name": "www-web-1", "namespace": "web"}),
        ),
    ]);
    let d = Dir::new();
    let o = cluster_audit(&api, &d, &["-o", "json"]);
    let r = json_report(&o);
    let inventory = |name: &str| -> Vec<(String, String)> {
        findings_for(&r, name)
            .iter()
            .filter(|f| f["stage"] == "inventory")
            .map(|f| {
                (
                    f["rule"].as_str().unwrap().to_owned(),
                    f["message"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let failed = inventory("ssd-failed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].0, "reclaimPolicy");
    assert!(
        failed[0].1.starts_with(
            r#"volume is Failed: its Delete reclaim policy cannot be carried out ("no volume plugin matched")"#
        ),
        "{failed:?}"
    );
    let waiting = inventory("ssd-waiting");
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    assert_eq!(waiting[0].0, "claimRefNamespace");
    assert!(
        waiting[0]
            .1
            .contains(r#"spec.claimRef "www-web-0" names no namespace"#),
        "{waiting:?}"
    );
    // Re-applied as it is, the webhook would refuse it too.
    assert!(
        findings_for(&r, "ssd-waiting")
            .iter()
            .any(|f| f["stage"] == "validate" && f["outcome"] == "denied"),
        "{r}"
    );
    assert!(inventory("ssd-fine").is_empty());
}

/// `audit --cluster` reports a Pending pod whose bound PV sits on a node its nodeSelector
/// excludes (volumeTopology), and not the one that fits.
#[test]
fn cluster_audit_reports_pods_that_volume_topology_leaves_without_a_node() {
    let node = |name: &str, zone: &str| {
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name,
               "labels": {"kubernetes.io/hostname": name, "topology.kubernetes.io/zone": zone}}})
    };
    let pod = |name: &str, zone: &str| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "web"},
               "spec": {"nodeSelector": {"topology.kubernetes.io/zone": zone},
                        "containers": [{"name": "c", "image": "busybox"}],
                        "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]},
               "status": {"phase": "Pending"}})
    };
    let api = support::fake_apiserver::FakeApiServer::start_blocking(vec![
        node("k8s-worker-01", "zone-a"),
        node("k8s-worker-02", "zone-b"),
        json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "ssd-01", "uid": "u"},
               "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"],
                        "storageClassName": "local-storage", "local": {"path": "/mnt/ssd"},
                        "claimRef": {"namespace": "web", "name": "data"},
                        "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                            {"key": "kubernetes.io/hostname", "operator": "In", "values": ["k8s-worker-01"]}]}]}}},
               "status": {"phase": "Bound"}}),
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
               "metadata": {"name": "data", "namespace": "web", "uid": "u2"},
               "spec": {"storageClassName": "local-storage", "volumeName": "ssd-01", "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Gi"}}},
               "status": {"phase": "Bound"}}),
        pod("stuck", "zone-b"),
        pod("fits", "zone-a"),
    ]);
    let d = Dir::new();
    let o = cluster_audit(&api, &d, &["-o", "json"]);
    let r = json_report(&o);
    let topo = |name: &str| -> Vec<String> {
        findings_for(&r, name)
            .iter()
            .filter(|f| f["rule"] == "volumeTopology")
            .map(|f| f["message"].as_str().unwrap().to_owned())
            .collect()
    };
    let stuck = topo("stuck");
    assert_eq!(stuck.len(), 1, "{r}");
    assert!(
        stuck[0]
            .starts_with("node(s) didn't match PersistentVolume's node affinity: PV \"ssd-01\""),
        "{stuck:?}"
    );
    assert!(topo("fits").is_empty(), "{r}");
}

#[test]
fn cluster_audit_reads_live_objects_and_reports_what_only_the_cluster_shows() {
    let api = support::fake_apiserver::FakeApiServer::start_blocking(cluster_objects());
    let d = Dir::new();
    let o = cluster_audit(&api, &d, &["-o", "json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let r = json_report(&o);
    assert_eq!(r["origin"], "cluster");
    assert_eq!(
        names(&r),
        ["ssd-01", "ssd-03", "uploads", "db", "reports", "kafka"],
        "PVs, PVCs, StatefulSets in list order, then the classes with findings"
    );
    assert!(
        r["findings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["file"].is_null())
    );

    // A local PV pinned to a node that is gone.
    let ssd03 = findings_for(&r, "ssd-03");
    assert!(
        ssd03.iter().any(|f| f["stage"] == "inventory"
            && f["message"]
                .as_str()
                .unwrap()
                .contains("no node k8s-worker-03")),
        "{ssd03:?}"
    );
    assert_eq!(findings_for(&r, "ssd-01")[0]["outcome"], "allowed");
    // A claim Pending on a class that cannot serve RWX; re-applied, the webhook would refuse it.
    let uploads = findings_for(&r, "uploads");
    assert!(
        uploads
            .iter()
            .any(|f| f["outcome"] == "denied" && f["stage"] == "validate"),
        "{uploads:?}"
    );
    assert!(
        uploads.iter().any(
            |f| f["stage"] == "inventory" && f["message"].as_str().unwrap().contains("Pending")
        ),
        "{uploads:?}"
    );
    // The batch namespace's mode label puts its rules in audit mode.
    let reports = findings_for(&r, "reports");
    assert!(
        reports.iter().any(|f| f["outcome"] == "audited"),
        "{reports:?}"
    );
    assert_eq!(findings_for(&r, "kafka")[0]["outcome"], "audited");
    // The annotated default class beside the policy's byAccessMode default is no finding: the
    // webhook replaces the plugin's class on claims created without one.
    assert!(findings_for(&r, "oci-bv").is_empty());

    // Every resource was listed, in pages.
    let requests = api.uris();
    for path in [
        "/apis/storage.k8s.io/v1/storageclasses",
        "/api/v1/namespaces?",
        "/api/v1/nodes",
        "/api/v1/persistentvolumes",
        "/api/v1/persistentvolumeclaims",
        "/apis/apps/v1/statefulsets",
    ] {
        assert!(
            requests.iter().any(|r| r.starts_with(path)),
            "{path} not listed: {requests:?}"
        );
    }
    assert!(
        requests.iter().any(|r| r.contains("continue=")),
        "pagination followed: {requests:?}"
    );
}

#[test]
fn cluster_audit_reports_classes_whose_csi_driver_is_missing_with_their_waiting_claims() {
    let claim = |name: &str, phase: &str| {
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
               "metadata": {"name": name, "namespace": "web"},
               "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "gp2",
                        "resources": {"requests": {"storage": "1Gi"}}},
               "status": {"phase": phase}})
    };
    let mut objects = cluster_objects();
    objects.extend([
        json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "provisioner": "kubernetes.io/aws-ebs",
               "metadata": {"name": "gp2"}}),
        json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "provisioner": "rancher.io/local-path",
               "metadata": {"name": "local-path"}}),
        claim("waits", "Pending"),
        claim("old", "Bound"),
    ]);
    let api = support::fake_apiserver::FakeApiServer::start_blocking(objects);
    let d = Dir::new();
    let o = cluster_audit(&api, &d, &["-o", "json"]);
    let r = json_report(&o);
    let class = findings_for(&r, "gp2");
    assert_eq!(class.len(), 1, "{class:?}");
    let msg = class[0]["message"].as_str().unwrap();
    assert!(
        msg.starts_with(
            "provisioner \"kubernetes.io/aws-ebs\": the class needs CSI driver \"ebs.csi.aws.com\" \
             (migrated from kubernetes.io/aws-ebs), which no node registers"
        ) && msg.contains("; 1 claim Pending on it: web/waits (event ExternalProvisioning: Waiting for a volume to be created either by the external provisioner 'ebs.csi.aws.com'"),
        "{msg}"
    );
    assert_eq!(class[0]["rule"], "missingProvisioner");
    // The waiting claim carries the webhook's own warning; the bound one says nothing.
    let waits = findings_for(&r, "waits");
    assert!(
        waits.iter().any(|f| f["rule"] == "missingProvisioner"),
        "{waits:?}"
    );
    assert!(
        findings_for(&r, "old")
            .iter()
            .all(|f| f["rule"] != "missingProvisioner")
    );
    // A driver that registers on a node, and a provisioner that registers nowhere: nothing.
    for name in ["oci-bv", "nfs", "local-path", "uploads"] {
        assert!(
            findings_for(&r, name)
                .iter()
                .all(|f| f["rule"] != "missingProvisioner"),
            "{name}"
        );
    }
    assert!(
        api.uris()
            .iter()
            .any(|u| u.starts_with("/apis/storage.k8s.io/v1/csinodes"))
    );
    assert!(
        api.uris()
            .iter()
            .any(|u| u.starts_with("/apis/storage.k8s.io/v1/csidrivers"))
    );
}

#[test]
fn file_audit_judges_provisioners_only_against_csi_objects_in_the_files() {
    let d = Dir::new();
    d.write("empty-policy.yaml", "# all defaults\n");
    d.write(
        "app.yaml",
        "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: gp3}\nprovisioner: ebs.csi.aws.com\n---\n\
         apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data}\nspec: {accessModes: [ReadWriteOnce], storageClassName: gp3}\n",
    );
    let run = |d: &Dir| {
        let mut cmd = command();
        cmd.current_dir(d.tmp.path());
        json_report(&run_with(
            cmd,
            &["audit", "--config", "empty-policy.yaml", "-o", "json", "."],
            None,
        ))
    };
    let r = run(&d);
    assert!(
        r["findings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["rule"] != "missingProvisioner"),
        "no CSI objects in the files: silent; {r}"
    );
    d.write(
        "nodes.yaml",
        "apiVersion: storage.k8s.io/v1\nkind: CSINode\nmetadata: {name: n1}\nspec:\n  drivers: [{name: efs.csi.aws.com, nodeID: n1}]\n",
    );
    let r = run(&d);
    let data = findings_for(&r, "data");
    assert!(
        data.iter().any(|f| f["rule"] == "missingProvisioner"
            && f["message"]
                .as_str()
                .unwrap()
                .contains("needs CSI driver \"ebs.csi.aws.com\"")),
        "{data:?}"
    );
    assert!(
        findings_for(&r, "gp3").iter().any(|f| f["message"]
            .as_str()
            .unwrap()
            .contains("1 claim Pending on it: default/data")),
        "{r}"
    );
}

#[test]
fn cluster_audit_reports_every_workload_kind_of_the_kinds_table() {
    let eph = json!({"containers": [{"name": "app", "image": "busybox"}], "restartPolicy": "Never",
        "volumes": [{"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {
            "accessModes": ["ReadWriteMany"], "storageClassName": "oci-bv",
            "resources": {"requests": {"storage": "1Gi"}}}}}}]});
    let template = json!({"metadata": {"labels": {"app": "w"}}, "spec": eph});
    let sel = json!({"matchLabels": {"app": "w"}});
    let mut objects = cluster_objects();
    objects.extend([
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pod-w", "namespace": "web"}, "spec": eph}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "deploy-w", "namespace": "web"},
               "spec": {"selector": sel, "template": template}}),
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "ds-w", "namespace": "web"},
               "spec": {"selector": sel, "template": template}}),
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "rs-w", "namespace": "web"},
               "spec": {"selector": sel, "template": template}}),
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "job-w", "namespace": "web"},
               "spec": {"template": template}}),
        json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "cron-w", "namespace": "web"},
               "spec": {"schedule": "0 * * * *", "jobTemplate": {"spec": {"template": template}}}}),
    ]);
    let api = support::fake_apiserver::FakeApiServer::start_blocking(objects);
    let d = Dir::new();
    let o = cluster_audit(&api, &d, &["-o", "json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let r = json_report(&o);
    for (name, field) in [
        ("pod-w", "spec.volumes[0]"),
        ("deploy-w", "spec.template.spec.volumes[0]"),
        ("ds-w", "spec.template.spec.volumes[0]"),
        ("rs-w", "spec.template.spec.volumes[0]"),
        ("job-w", "spec.template.spec.volumes[0]"),
        ("cron-w", "spec.jobTemplate.spec.template.spec.volumes[0]"),
    ] {
        let f = findings_for(&r, name);
        assert!(
            f.iter().any(|f| f["outcome"] == "denied"
                && f["rule"] == "accessModes"
                && f["message"].as_str().unwrap().contains(&format!(
                    "{field}.ephemeral.volumeClaimTemplate.spec.accessModes: Unsupported value: \"ReadWriteMany\""
                ))),
            "{name}: {f:?}"
        );
    }
    let requests = api.uris();
    for path in [
        "/api/v1/pods",
        "/apis/apps/v1/deployments",
        "/apis/apps/v1/daemonsets",
        "/apis/apps/v1/replicasets",
        "/apis/batch/v1/jobs",
        "/apis/batch/v1/cronjobs",
    ] {
        assert!(
            requests.iter().any(|r| r.starts_with(path)),
            "{path} not listed: {requests:?}"
        );
    }
}

#[test]
fn cluster_audit_of_one_namespace() {
    let api = support::fake_apiserver::FakeApiServer::start_blocking(cluster_objects());
    let d = Dir::new();
    let o = cluster_audit(&api, &d, &["--namespace", "web", "-o", "json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let r = json_report(&o);
    assert_eq!(r["namespace"], "web");
    assert_eq!(
        names(&r),
        ["ssd-01", "uploads", "db"],
        "PVs bound to web's claims only"
    );
    let requests = api.uris();
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("/api/v1/namespaces/web/persistentvolumeclaims")),
        "{requests:?}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("/apis/apps/v1/namespaces/web/statefulsets")),
        "{requests:?}"
    );

    let o = cluster_audit(&api, &d, &["-n", "web", "-o", "policy-report"]);
    let docs: Vec<Value> = serde_saphyr::from_multiple(&stdout(&o)).unwrap();
    assert_eq!(docs[0]["kind"], "PolicyReport");
    assert_eq!(docs[0]["metadata"]["namespace"], "web");
    assert_eq!(docs.last().unwrap()["kind"], "ClusterPolicyReport");
}

#[test]
fn cluster_text_output_has_no_progress_when_stderr_is_not_a_terminal() {
    let api = support::fake_apiserver::FakeApiServer::start_blocking(cluster_objects());
    let d = Dir::new();
    let o = cluster_audit(&api, &d, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("StatefulSet batch/kafka"),
        "{}",
        stdout(&o)
    );
    assert!(!stderr(&o).contains("listing"), "{}", stderr(&o));
}

#[test]
fn unreachable_cluster_exits_2() {
    let d = Dir::new();
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let kubeconfig =
        support::fake_apiserver::kubeconfig_for(&format!("http://127.0.0.1:{port}"), d.tmp.path());
    let mut cmd = command();
    cmd.current_dir(d.tmp.path()).env("KUBECONFIG", &kubeconfig);
    let o = run_with(
        cmd,
        &["audit", "--config", "policy.yaml", "--cluster"],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("failed to list storageclasses"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn cluster_flags_pick_the_kubeconfig_and_its_context() {
    let api = support::fake_apiserver::FakeApiServer::start_blocking(cluster_objects());
    let d = Dir::new();
    d.write("cluster-policy.yaml", CLUSTER_POLICY);
    // A port that was free a moment ago: nothing listens there.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    // The current context is the dead server; the context "live" is the fake API server.
    let kubeconfig = d.write(
        "two-contexts.yaml",
        &format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: dead\n  cluster:\n    server: http://{dead}\n\
             - name: live\n  cluster:\n    server: {}\n\
             users:\n- name: u\n  user: {{}}\ncontexts:\n- name: dead\n  context:\n    cluster: dead\n    user: u\n\
             - name: live\n  context:\n    cluster: live\n    user: u\ncurrent-context: dead\n",
            api.url()
        ),
    );
    let kubeconfig = kubeconfig.to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut cmd = command();
        // --kubeconfig wins over KUBECONFIG.
        cmd.current_dir(d.tmp.path())
            .env("KUBECONFIG", d.path("missing-kubeconfig"));
        let mut args = vec![
            "audit",
            "--config",
            "cluster-policy.yaml",
            "--cluster",
            "-o",
            "json",
        ];
        args.extend_from_slice(extra);
        run_with(cmd, &args, None)
    };

    let o = run(&["--kubeconfig", kubeconfig, "--context", "live"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(json_report(&o)["origin"], "cluster");

    let o = run(&["--kubeconfig", kubeconfig]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "the current context is the dead server"
    );
    assert!(
        stderr(&o).contains("failed to list storageclasses"),
        "{}",
        stderr(&o)
    );

    let o = run(&["--kubeconfig", kubeconfig, "--context", "nope"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("failed to load kubeconfig"),
        "{}",
        stderr(&o)
    );

    let o = run(&[]);
    assert_eq!(o.status.code(), Some(2), "KUBECONFIG names a missing file");
    assert!(stderr(&o).contains("missing-kubeconfig"), "{}", stderr(&o));

    d.write("pvc.yaml", PVC_NO_CLASS);
    let o = audit(&d, &["--context", "live", "pvc.yaml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--context only applies with --cluster"),
        "{}",
        stderr(&o)
    );
}

// ---- raw block on file storage, classes that do not exist ----

const CLASSES_FILE: &str = "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: fast}\nprovisioner: ebs.csi.aws.com\n---\n\
apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: shared-fs}\nprovisioner: efs.csi.aws.com\n";

const CLAIMS_FILE: &str = "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: typo}\n\
spec: {accessModes: [ReadWriteOnce], storageClassName: fats, resources: {requests: {storage: 1Gi}}}\n---\n\
apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: policy-class}\n\
spec: {accessModes: [ReadWriteOnce], storageClassName: nfs, resources: {requests: {storage: 1Gi}}}\n---\n\
apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: raw}\n\
spec: {accessModes: [ReadWriteOnce], volumeMode: Block, storageClassName: shared-fs, resources: {requests: {storage: 1Gi}}}\n";

const RAW_BLOCK_DENIAL: &str = r#"PersistentVolumeClaim "raw" is invalid: spec.volumeMode: Unsupported value: "Block": supported values: "Filesystem""#;

fn rule_findings<'a>(report: &'a Value, name: &str, rule: &str) -> Vec<&'a Value> {
    findings_for(report, name)
        .into_iter()
        .filter(|f| f["rule"] == rule)
        .collect()
}

#[test]
fn files_with_storage_classes_warn_about_classes_found_nowhere_and_refuse_raw_block_on_files() {
    let d = Dir::new();
    d.write("classes.yaml", CLASSES_FILE);
    d.write("claims.yaml", CLAIMS_FILE);
    let o = audit(&d, &["-o", "json", "classes.yaml", "claims.yaml"]);
    assert_eq!(o.status.code(), Some(1), "raw is denied: {}", stderr(&o));
    let r = json_report(&o);
    let typo = rule_findings(&r, "typo", "unknownClass");
    assert_eq!(typo.len(), 1, "{r}");
    assert_eq!(typo[0]["outcome"], "warned");
    assert_eq!(typo[0]["stage"], "validate");
    assert_eq!(
        typo[0]["message"],
        r#"spec.storageClassName: StorageClass "fats" not found in the audited files or the policy: the claim stays Pending until it or a PersistentVolume of that class exists; closest: fast"#
    );
    // The policy's classes are known too.
    assert!(
        rule_findings(&r, "policy-class", "unknownClass").is_empty(),
        "{r}"
    );
    let raw = rule_findings(&r, "raw", "accessModes");
    assert_eq!(raw[0]["outcome"], "denied", "{raw:?}");
    assert_eq!(raw[0]["message"], RAW_BLOCK_DENIAL);
    assert!(
        object_for(&r, "raw")["warnings"].as_array().unwrap().iter().any(|w| w
            .as_str()
            .unwrap()
            .starts_with(r#"class "shared-fs" (efs.csi.aws.com) is shared storage, which serves no raw block; for volumeMode Block use "#)),
        "{raw:?}"
    );
}

#[test]
fn files_without_storage_classes_say_nothing_about_unknown_classes() {
    let d = Dir::new();
    d.write("claims.yaml", CLAIMS_FILE);
    let o = audit(&d, &["-o", "json", "claims.yaml"]);
    let r = json_report(&o);
    for name in ["typo", "policy-class", "raw"] {
        assert!(rule_findings(&r, name, "unknownClass").is_empty(), "{r}");
    }
    // shared-fs is unknown here: raw block on it is not judged either.
    assert_eq!(o.status.code(), Some(0), "{r}");
}

#[test]
fn cluster_audit_warns_about_classes_the_cluster_does_not_have() {
    let mut objects = cluster_objects();
    objects.push(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "typo", "namespace": "web"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "local-storag",
                 "resources": {"requests": {"storage": "1Gi"}}}, "status": {"phase": "Pending"}}));
    objects.push(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "raw", "namespace": "web"},
        "spec": {"accessModes": ["ReadWriteOnce"], "volumeMode": "Block", "storageClassName": "nfs",
                 "resources": {"requests": {"storage": "1Gi"}}}, "status": {"phase": "Pending"}}));
    let api = support::fake_apiserver::FakeApiServer::start_blocking(objects);
    let d = Dir::new();
    let o = cluster_audit(&api, &d, &["-o", "json"]);
    let r = json_report(&o);
    let typo = rule_findings(&r, "typo", "unknownClass");
    assert_eq!(
        typo[0]["message"],
        r#"spec.storageClassName: StorageClass "local-storag" not found: the claim stays Pending until it or a PersistentVolume of that class exists; closest: local-storage"#,
        "{r}"
    );
    let raw = rule_findings(&r, "raw", "accessModes");
    assert!(
        raw.iter()
            .any(|f| f["outcome"] == "denied" && f["message"] == RAW_BLOCK_DENIAL),
        "{raw:?}"
    );
    assert!(
        raw.iter().any(|f| f["stage"] == "inventory"
            && f["message"].as_str().unwrap().contains(
                r#"class "nfs" (nfs.csi.k8s.io), shared storage that cannot serve volumeMode Block: it will not bind"#
            )),
        "{raw:?}"
    );
}

#[test]
fn binding_is_judged_against_the_volumes_and_claims_in_the_files() {
    let d = Dir::new();
    d.write(
        "policy.yaml",
        "storageClasses:\n  - {name: local-storage, provisioner: kubernetes.io/no-provisioner, volumeBindingMode: WaitForFirstConsumer}\n",
    );
    let pv = |name: &str, size: &str| {
        format!(
            "apiVersion: v1\nkind: PersistentVolume\nmetadata: {{name: {name}}}\nspec:\n  storageClassName: local-storage\n  \
             capacity: {{storage: {size}}}\n  accessModes: [ReadWriteOnce]\n  local: {{path: /mnt/ssd}}\n  nodeAffinity:\n    required:\n      \
             nodeSelectorTerms: [{{matchExpressions: [{{key: kubernetes.io/hostname, operator: In, values: [node-1]}}]}}]\nstatus: {{phase: Available}}\n"
        )
    };
    d.write(
        "volumes.yaml",
        &format!("{}---\n{}", pv("pv-a", "10Gi"), pv("pv-small", "1Gi")),
    );
    d.write(
        "app.yaml",
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: big}\nspec: {storageClassName: local-storage, accessModes: [ReadWriteOnce], resources: {requests: {storage: 50Gi}}}\n---\n\
         apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: fits}\nspec: {storageClassName: local-storage, accessModes: [ReadWriteOnce], resources: {requests: {storage: 5Gi}}}\n---\n\
         apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: pinned}\nspec: {storageClassName: local-storage, volumeName: pv-small, accessModes: [ReadWriteOnce], resources: {requests: {storage: 5Gi}}}\n",
    );
    let o = audit(&d, &["-o", "json", "volumes.yaml", "app.yaml"]);
    let r = json_report(&o);
    let messages = |name: &str| -> Vec<String> {
        findings_for(&r, name)
            .iter()
            .filter_map(|f| f["message"].as_str().map(str::to_owned))
            .collect()
    };
    assert!(
        messages("big").contains(
            &"claim \"big\" will stay Pending: no Available PersistentVolume of class local-storage has 50Gi \
              (judged against the PersistentVolumes in the files)"
                .to_owned()
        ),
        "{:?}",
        messages("big")
    );
    assert!(
        messages("fits").iter().all(|m| !m.contains("Pending")),
        "{:?}",
        messages("fits")
    );
    assert!(
        messages("pinned").iter().any(|m| m
            .contains("Cannot bind to requested volume \"pv-small\": requested PV is too small")),
        "{:?}",
        messages("pinned")
    );
}

#[test]
fn cluster_audit_lists_claims_pending_today_with_the_reason() {
    let mut objects = cluster_objects();
    let claim = |name: &str, size: &str| {
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
               "metadata": {"name": name, "namespace": "web", "uid": format!("uid-{name}")},
               "spec": {"storageClassName": "local-storage", "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": size}}},
               "status": {"phase": "Pending"}})
    };
    objects.push(claim("stuck", "500Gi"));
    objects.push(claim("soon", "5Gi"));
    // A free PV that can serve "soon": cluster-scoped and bound to no claim of "web", so a
    // namespace audit does not list it, yet still counts it.
    objects.push(json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "free-20g"},
        "spec": {"capacity": {"storage": "20Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "local-storage",
                 "local": {"path": "/mnt/ssd"}, "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                     {"key": "kubernetes.io/hostname", "operator": "In", "values": ["k8s-worker-01"]}]}]}}},
        "status": {"phase": "Available"}}));
    let api = support::fake_apiserver::FakeApiServer::start_blocking(objects);
    let d = Dir::new();
    for extra in [&["-o", "json"][..], &["-n", "web", "-o", "json"][..]] {
        let o = cluster_audit(&api, &d, extra);
        let r = json_report(&o);
        let messages = |name: &str| -> Vec<String> {
            findings_for(&r, name)
                .iter()
                .filter_map(|f| f["message"].as_str().map(str::to_owned))
                .collect()
        };
        assert!(
            messages("stuck").contains(
                &"claim \"stuck\" will stay Pending: no Available PersistentVolume of class local-storage has 500Gi"
                    .to_owned()
            ),
            "{extra:?}: {:?}",
            messages("stuck")
        );
        assert!(
            messages("soon").iter().all(|m| !m.contains("Pending")),
            "{extra:?}: {:?}",
            messages("soon")
        );
        assert!(
            messages("db").iter().all(|m| !m.contains("Pending")),
            "a Bound claim is past binding: {:?}",
            messages("db")
        );
    }
}

#[test]
fn hand_written_volumes_in_files_are_available_and_judged_by_their_source() {
    // Issue 23: manifests carry no status (the PV controller makes such a PV Available), a
    // no-provisioner class holding an NFS PV serves ReadWriteMany, and a class that has no
    // StorageClass but a PV of that name (the docs' `manual`) is no typo.
    let d = Dir::new();
    d.write(
        "policy.yaml",
        "storageClasses:\n  - {name: static-nfs, provisioner: kubernetes.io/no-provisioner}\n",
    );
    d.write(
        "volumes.yaml",
        "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: fast}\nprovisioner: ebs.csi.aws.com\n---\n\
         apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: nfs-share}\nspec:\n  storageClassName: static-nfs\n  \
         capacity: {storage: 100Gi}\n  accessModes: [ReadWriteMany]\n  nfs: {server: 10.0.0.5, path: /export}\n---\n\
         apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: task-pv-volume}\nspec:\n  storageClassName: manual\n  \
         capacity: {storage: 10Gi}\n  accessModes: [ReadWriteOnce]\n  hostPath: {path: /mnt/data}\n  nodeAffinity:\n    required:\n      \
         nodeSelectorTerms: [{matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [node-1]}]}]\n",
    );
    d.write(
        "app.yaml",
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: shared}\nspec: {storageClassName: static-nfs, accessModes: [ReadWriteMany], resources: {requests: {storage: 50Gi}}}\n---\n\
         apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: task-pv-claim}\nspec: {storageClassName: manual, accessModes: [ReadWriteOnce], resources: {requests: {storage: 3Gi}}}\n---\n\
         apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: too-big}\nspec: {storageClassName: manual, accessModes: [ReadWriteOnce], resources: {requests: {storage: 30Gi}}}\n",
    );
    let o = audit(&d, &["-o", "json", "volumes.yaml", "app.yaml"]);
    let r = json_report(&o);
    for name in ["shared", "task-pv-claim"] {
        assert!(
            findings_for(&r, name)
                .iter()
                .all(|f| f["outcome"] != "denied"
                    && f["rule"] != "willBind"
                    && f["rule"] != "unknownClass"),
            "{name}: {:?}",
            findings_for(&r, name)
        );
    }
    let big: Vec<&str> = findings_for(&r, "too-big")
        .iter()
        .filter_map(|f| f["message"].as_str())
        .collect();
    assert!(
        big.contains(
            &"claim \"too-big\" will stay Pending: no Available PersistentVolume of class manual has 30Gi \
              (judged against the PersistentVolumes in the files)"
        ),
        "{big:?}"
    );
}

#[test]
fn application_manifests_without_classes_are_audited_on_the_clusters_default_or_left_alone() {
    // An application's claims without a class, and no StorageClass among the files: every
    // cluster with a default class provisions them, so nothing is said about binding.
    let d = Dir::new();
    // The embedded default policy: no class of its own.
    d.write("policy.yaml", "{}\n");
    d.write(
        "app.yaml",
        r#"apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data, namespace: app}
spec:
  accessModes: [ReadWriteMany]
  resources: {requests: {storage: 5Gi}}
"#,
    );
    let o = audit(&d, &["-o", "json", "app.yaml"]);
    let r = json_report(&o);
    assert_eq!(o.status.code(), Some(0), "{r}");
    assert!(rule_findings(&r, "data", "willBind").is_empty(), "{r}");
    // --default-class names the cluster's default: the admission chain puts it on the claim;
    // of a class whose provisioner the files do not show, nothing more is judged.
    let o = audit(&d, &["-o", "json", "--default-class", "gp3", "app.yaml"]);
    let r = json_report(&o);
    assert_eq!(o.status.code(), Some(0), "{r}");
    assert_eq!(
        object_for(&r, "data")["changes"]["spec.storageClassName"],
        "gp3",
        "{r}"
    );
    // A default class the files show is judged as the cluster would: RWX on block is denied.
    d.write(
        "sc.yaml",
        r#"apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: gp3}
provisioner: ebs.csi.aws.com
"#,
    );
    let o = audit(
        &d,
        &[
            "-o",
            "json",
            "--default-class",
            "gp3",
            "app.yaml",
            "sc.yaml",
        ],
    );
    let r = json_report(&o);
    assert_eq!(o.status.code(), Some(1), "{r}");
    assert!(
        findings_for(&r, "data")
            .iter()
            .any(|f| f["outcome"] == "denied"),
        "{r}"
    );
    // Only with files.
    let o = audit(&d, &["--cluster", "--default-class", "gp3"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn audit_on_files_finds_shared_and_missing_claims_among_the_files() {
    let d = Dir::new();
    d.write(
        "claims.yaml",
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: grafana}\nspec: {storageClassName: standard, accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}\n---\n\
         apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: solo}\nspec: {storageClassName: standard, accessModes: [ReadWriteOncePod], resources: {requests: {storage: 1Gi}}}\n",
    );
    let deployment = |name: &str, replicas: u32, strategy: &str, claim: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: {replicas}\n  strategy: {strategy}\n  \
             selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      \
             containers: [{{name: c, image: busybox}}]\n      volumes: [{{name: data, persistentVolumeClaim: {{claimName: {claim}}}}}]\n"
        )
    };
    d.write(
        "apps.yaml",
        &[
            deployment("grafana", 1, "{}", "grafana"),
            deployment("safe", 1, "{type: Recreate}", "grafana"),
            deployment("solo", 2, "{type: Recreate}", "solo"),
            deployment("orphan", 1, "{type: Recreate}", "nowhere"),
        ]
        .join("---\n"),
    );
    let o = audit(&d, &["-o", "json", "claims.yaml", "apps.yaml"]);
    let r = json_report(&o);
    let messages = |name: &str, rule: &str| -> Vec<String> {
        rule_findings(&r, name, rule)
            .iter()
            .filter_map(|f| f["message"].as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(
        messages("grafana", "sharedClaims"),
        [
            "claim \"grafana\" is ReadWriteOnce, mounted by the old and the new pod of a rollout: \
          a pod on another node waits with \"Multi-Attach error for volume <its PersistentVolume> \
          Volume is already used by pod(s) ...\" (judged against the claims in the files)"
        ],
        "{r}"
    );
    assert!(messages("safe", "sharedClaims").is_empty(), "{r}");
    assert!(
        messages("solo", "sharedClaims")[0].contains("all pods but one stay Pending"),
        "{r}"
    );
    assert_eq!(
        messages("orphan", "missingClaims"),
        [
            "spec.template.spec.volumes[0].persistentVolumeClaim.claimName: its pods stay Pending: \
          \"persistentvolumeclaim \"nowhere\" not found\" (scheduler) (judged against the \
          claims in the files)"
        ],
        "{r}"
    );
    assert!(messages("grafana", "missingClaims").is_empty(), "{r}");
    // Warnings only: nothing is denied.
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // Without the claims' file, no claim is known: nothing is said.
    let o = audit(&d, &["-o", "json", "apps.yaml"]);
    let r = json_report(&o);
    for name in ["grafana", "solo", "orphan"] {
        assert!(rule_findings(&r, name, "sharedClaims").is_empty(), "{r}");
        assert!(rule_findings(&r, name, "missingClaims").is_empty(), "{r}");
    }
}

#[test]
fn cluster_audit_reports_claims_terminating_while_pods_use_them() {
    let mut objects = cluster_objects();
    let claim = |name: &str| {
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
               "metadata": {"name": name, "namespace": "web", "uid": format!("uid-{name}"),
                            "deletionTimestamp": "2026-12-01T00:00:00Z",
                            "finalizers": ["kubernetes.io/pvc-protection"]},
               "spec": {"storageClassName": "local-storage", "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "5Gi"}}},
               "status": {"phase": "Bound"}})
    };
    objects.push(claim("held"));
    objects.push(claim("let-go"));
    let pod = |name: &str, claim: &str, node: Option<&str>| {
        let mut p = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "web", "uid": format!("uid-{name}")},
            "spec": {"containers": [{"name": "c", "image": "x"}],
                     "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": claim}}]},
            "status": {"phase": "Running"}});
        if let Some(n) = node {
            p["spec"]["nodeName"] = json!(n);
        }
        p
    };
    objects.push(pod("app-0", "held", Some("k8s-worker-01")));
    // Never scheduled: the pvc-protection controller does not count it.
    objects.push(pod("app-1", "let-go", None));
    let api = support::fake_apiserver::FakeApiServer::start_blocking(objects);
    let d = Dir::new();
    for extra in [&["-o", "json"][..], &["-n", "web", "-o", "json"][..]] {
        let o = cluster_audit(&api, &d, extra);
        let r = json_report(&o);
        let messages = |name: &str| -> Vec<String> {
            findings_for(&r, name)
                .iter()
                .filter(|f| f["rule"] == "deleteInUse")
                .filter_map(|f| f["message"].as_str().map(str::to_owned))
                .collect()
        };
        eprintln!("{:#}", json!(findings_for(&r, "held")));
        assert_eq!(
            messages("held"),
            [
                "PersistentVolumeClaim \"held\" is Terminating and still used by 1 pod(s): \
              app-0 (node k8s-worker-01); the finalizer kubernetes.io/pvc-protection keeps it \
              until none uses it: delete or scale down their workload first"
            ],
            "{extra:?}"
        );
        assert!(messages("let-go").is_empty(), "{extra:?}");
    }
}
