#!/usr/bin/env python3
"""The end-to-end suite: the webhook installed by `helm install` into a real kube-apiserver
v1.37.2 (tests/e2e/cluster up --webhook), judged by kubectl, the PV controller and the scheduler.

Run through tests/e2e/run (which starts and stops the cluster); `suite.py NAME...` runs the cases
whose names contain one of the words. The last line is `N passed, M failed`.
"""

import base64
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import lib  # noqa: E402
from lib import (  # noqa: E402
    PV_SYNC, Policy, apply, case, check, chart_policy, create, get, items, kubectl, must,
    namespace, phase, stays, wait, with_rules,
)

V = "validate.storage-policy.io"
M = "mutate.storage-policy.io"


def sc(name, provisioner, binding="Immediate", default=False, annotations=None, **extra):
    meta = {"name": name, "annotations": dict(annotations or {})}
    if default:
        meta["annotations"]["storageclass.kubernetes.io/is-default-class"] = "true"
    o = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": meta,
         "provisioner": provisioner, "volumeBindingMode": binding}
    o.update(extra)
    return o


def pvc(name, ns, size="1Gi", modes=("ReadWriteOnce",), cls=None, **spec):
    s = {"accessModes": list(modes), "resources": {"requests": {"storage": size}}}
    if cls is not None:
        s["storageClassName"] = cls
    s.update(spec)
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": ns}, "spec": s}


def pv(name, size="1Gi", modes=("ReadWriteOnce",), cls="", source=None, annotations=None,
       **spec):
    s = {"capacity": {"storage": size}, "accessModes": list(modes), "storageClassName": cls}
    s.update(source or {"hostPath": {"path": f"/tmp/e2e/{name}"}})
    s.update(spec)
    meta = {"name": name}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": meta, "spec": s}


def pod(name, ns, claims=(), node_name=None, node_selector=None):
    spec = {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}],
            "volumes": [{"name": f"v{i}", "persistentVolumeClaim": {"claimName": c}}
                        for i, c in enumerate(claims)]}
    if node_name:
        spec["nodeName"] = node_name
    if node_selector:
        spec["nodeSelector"] = node_selector
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
            "spec": spec}


def statefulset(name, ns, replicas, template_spec, start=None):
    spec = {
        "serviceName": name, "replicas": replicas,
        "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}},
                     "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
                                              "volumeMounts": [{"name": "data",
                                                                "mountPath": "/data"}]}]}},
        "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": template_spec}],
    }
    if start is not None:
        spec["ordinals"] = {"start": start}
    return {"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


def denied_by(r, hook=V):
    """The message of a denial as kubectl prints it (None when not denied).

    kubectl prints an `Invalid` status that carries causes as the API's own validation error
    (`The PersistentVolumeClaim "x" is invalid: <causes>`), whoever returned it: the webhook's
    denials read exactly like the API server's. Other denials print as `Error from server
    (<reason>): ... admission webhook "<hook>" denied the request: <message>`."""
    prefix = f'admission webhook "{hook}" denied the request: '
    for line in r.err.splitlines():
        if prefix in line:
            return line.split(prefix, 1)[1]
        if line.startswith("The ") and " is invalid: " in line:
            return line[len("The "):]
    return None


class CsiDrivers:
    """CSIDriver objects for these drivers while the block runs, seen by the webhook's cache:
    the fake nodes run no driver, so without them missingProvisioner warns on every claim of a
    CSI class (cases that show other rules' exact output stand for a cluster with its drivers)."""

    def __init__(self, *names):
        self.names = names

    def __enter__(self):
        for n in self.names:
            must("apply", "-f", "-", input={"apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver",
                                            "metadata": {"name": n}, "spec": {}})
        for n in self.names:
            wait(f"the webhook to see CSIDriver {n}", 15, lambda: not any(
                "needs CSI driver" in w for w in create(sc(f"e2e-probe-{lib.RUN}", n),
                                                        "--dry-run=server").warnings))
        return self

    def __exit__(self, *exc):
        cleanup_cluster_scoped(*[("csidriver", n) for n in self.names])


def cleanup_cluster_scoped(*names):
    for kind, name in names:
        kubectl("delete", kind, name, "--ignore-not-found", "--wait=false")


# --- the control plane itself ------------------------------------------------------------


@case
def control_plane_is_the_pinned_release():
    v = json.loads(must("version", "-o", "json").out)
    check(v["serverVersion"]["gitVersion"] == "v1.37.2", "server version", v["serverVersion"])
    check(v["clientVersion"]["gitVersion"] == "v1.37.2", "kubectl version", v["clientVersion"])
    nodes = items("nodes")
    check(len(nodes) >= 4, "fake nodes", [n["metadata"]["name"] for n in nodes])


@case
def pv_controller_binds_a_matching_pv_and_claim():
    ns = namespace("e2e-bind")
    must("apply", "-f", "-", input=pv("e2e-bind-pv", "2Gi", cls="e2e-manual"))
    must("apply", "-f", "-", input=pvc("data", ns, "1Gi", cls="e2e-manual"))
    t0 = time.monotonic()
    wait("the claim to bind", 30, lambda: phase("pvc", "data", ns) == "Bound")
    check(time.monotonic() - t0 < 15, "binding took more than 15 s")
    check(get("pvc", "data", ns)["spec"]["volumeName"] == "e2e-bind-pv", "bound to another PV")


@case
def scheduler_binds_pods_to_the_fake_nodes():
    ns = namespace("e2e-sched")
    must("apply", "-f", "-", input=pod("p", ns, node_selector={"kubernetes.io/hostname": "pi-2"}))
    wait("the pod to be scheduled", 30,
         lambda: (get("pod", "p", ns) or {}).get("spec", {}).get("nodeName") == "pi-2")


@case
def the_chart_installed_configurations_answer_for_every_kind():
    """Every kind of the kinds table reaches the webhook through the chart's registrations (and
    its CEL matchConditions, evaluated by the real API server): each object below carries an
    ephemeral or claim volume on a class the webhook knows refuses ReadWriteMany."""
    rules = json.loads(subprocess.run([lib.WEBHOOK_BIN, "rules", "-o", "json"], check=True,
                                      capture_output=True, text=True).stdout)
    kinds = {k["kind"] for k in rules["kinds"]}
    ns = namespace("e2e-kinds")
    must("apply", "-f", "-", input=sc("e2e-kinds-local", "rancher.io/local-path",
                                      "WaitForFirstConsumer"))
    eph = {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {
        "storageClassName": "e2e-kinds-local", "accessModes": ["ReadWriteMany"],
        "resources": {"requests": {"storage": "1Gi"}}}}}}
    podspec = {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}],
               "volumes": [eph]}
    tpl = {"metadata": {"labels": {"app": "x"}}, "spec": podspec}
    sel = {"matchLabels": {"app": "x"}}
    objs = {
        "Pod": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "k-pod"}, "spec": podspec},
        "Deployment": {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "k-deploy"},
                       "spec": {"selector": sel, "template": tpl}},
        "ReplicaSet": {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "k-rs"},
                       "spec": {"selector": sel, "template": tpl}},
        "DaemonSet": {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "k-ds"},
                      "spec": {"selector": sel, "template": tpl}},
        "Job": {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "k-job"},
                "spec": {"template": {"spec": dict(podspec, restartPolicy="Never")}}},
        "CronJob": {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "k-cron"},
                    "spec": {"schedule": "0 0 * * *", "jobTemplate": {"spec": {"template": {
                        "spec": dict(podspec, restartPolicy="Never")}}}}},
        "StatefulSet": statefulset("k-sts", ns, 1, {
            "storageClassName": "e2e-kinds-local", "accessModes": ["ReadWriteMany"],
            "resources": {"requests": {"storage": "1Gi"}}}),
        "PersistentVolumeClaim": pvc("k-pvc", ns, modes=["ReadWriteMany"], cls="e2e-kinds-local"),
        "PersistentVolume": pv("e2e-kinds-pv", modes=["ReadWriteMany"], cls="e2e-kinds-local",
                               source={"local": {"path": "/mnt/disk"}},
                               nodeAffinity={"required": {"nodeSelectorTerms": [{"matchExpressions": [
                                   {"key": "kubernetes.io/hostname", "operator": "In",
                                    "values": ["pi-1"]}]}]}}),
    }
    # A StorageClass carries no claim: it reaches the webhook when its CSI driver is missing
    # (missingProvisioner warns; nobody runs drivers on the fake nodes).
    objs["StorageClass"] = sc(f"e2e-kinds-sc-{lib.RUN}", "kinds.csi.example.com")
    missing = kinds - set(objs)
    check(not missing, "kinds without a case here", missing)
    wait("the webhook to see the class", 10,
         lambda: denied_by(create(objs["PersistentVolumeClaim"], "--dry-run=server")))
    for kind in sorted(kinds):
        o = objs[kind]
        if kind == "StorageClass":
            r = create(o)
            check(r.rc == 0 and any('needs CSI driver "kinds.csi.example.com"' in w
                                    for w in r.warnings),
                  "StorageClass: not warned by the webhook", r)
            continue
        if kind != "PersistentVolume":
            o["metadata"]["namespace"] = ns
        r = create(o)
        msg = denied_by(r)
        check(r.rc != 0 and msg and "Unsupported value: \"ReadWriteMany\"" in msg,
              f"{kind}: not refused by the webhook", r)
    cleanup_cluster_scoped(("storageclass", "e2e-kinds-local"),
                           ("storageclass", f"e2e-kinds-sc-{lib.RUN}"))


# --- rules end to end: what kubectl prints, what is stored -------------------------------


@case
def rwx_on_block_storage_is_refused_with_the_api_servers_own_words():
    ns = namespace("e2e-rwx")
    must("apply", "-f", "-", input=sc("e2e-oci-bv", "blockvolume.csi.oraclecloud.com",
                                      "WaitForFirstConsumer"))
    wait("the webhook to see the class", 10, lambda: denied_by(
        create(pvc("probe", ns, "50Gi", ["ReadWriteMany"], "e2e-oci-bv"), "--dry-run=server")))
    r = create(pvc("uploads", ns, "50Gi", ["ReadWriteMany"], "e2e-oci-bv"))
    # kubectl prints the webhook's Invalid status (with causes) as it prints the API server's
    # own validation errors.
    expected = ('The PersistentVolumeClaim "uploads" is invalid: '
                'spec.accessModes: Unsupported value: "ReadWriteMany": supported values: '
                '"ReadOnlyMany", "ReadWriteOnce", "ReadWriteOncePod"')
    check(r.rc == 1 and expected in r.err.splitlines(), "the denial as kubectl prints it", expected, r)
    check(any('class "e2e-oci-bv" (blockvolume.csi.oraclecloud.com) is block storage' in w
              for w in r.warnings), "the warning naming the storage", r.warnings)
    check(get("pvc", "uploads", ns) is None, "a refused claim was stored")
    cleanup_cluster_scoped(("storageclass", "e2e-oci-bv"))


@case
def oci_block_claim_below_50gi_is_raised_as_stored():
    """The seeds: an OCI block claim of 10Gi (the driver rounds up to 50Gi): the stored claim
    equals the webhook's patch. Nothing provisions here: class and provisioner only."""
    ns = namespace("e2e-oci")
    must("apply", "-f", "-", input=sc("e2e-oci-size", "blockvolume.csi.oraclecloud.com",
                                      "WaitForFirstConsumer"))
    claim = pvc("small", ns, "10Gi", cls="e2e-oci-size")
    wait("the webhook to see the class", 10, lambda: "50Gi" in json.dumps(
        json.loads(create(claim, "--dry-run=server", "-o", "json").out or "{}")))
    r = create(claim, "-o", "json")
    check(r.rc == 0, "create failed", r)
    stored = get("pvc", "small", ns)
    check(stored["spec"]["resources"]["requests"]["storage"] == "50Gi", "stored size", stored["spec"])
    check(any("50Gi" in w for w in r.warnings), "a warning says why", r.warnings)
    # What the webhook's own review would patch, applied to what the user sent, is what is stored.
    policy = chart_policy()
    policy["storageClasses"] = [{"name": "e2e-oci-size",
                                 "provisioner": "blockvolume.csi.oraclecloud.com",
                                 "volumeBindingMode": "WaitForFirstConsumer"}]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        f.write(json.dumps(policy))
        f.flush()
        resp = lib.review(claim, "mutate", f.name, namespace=ns)
    patch = json.loads(base64.b64decode(resp["patch"]))
    check(any(op["path"] == "/spec/resources/requests/storage" and op["value"] == "50Gi"
              for op in patch), "the review's patch", patch)
    cleanup_cluster_scoped(("storageclass", "e2e-oci-size"))


@case
def audit_mode_stores_the_object_untouched_and_warns():
    ns = namespace("e2e-audit", labels={"storage-policy.io/mode": "audit"})
    must("apply", "-f", "-", input=sc("e2e-audit-bv", "ebs.csi.aws.com", "WaitForFirstConsumer"))
    wait("the webhook to see the namespace label and class", 10, lambda: any(
        "[audit]" in w for w in create(pvc("probe", ns, "1Gi", ["ReadWriteMany"], "e2e-audit-bv"),
                                       "--dry-run=server").warnings))
    claim = pvc("shared", ns, "1Gi", ["ReadWriteMany"], "e2e-audit-bv")
    r = create(claim)
    check(r.rc == 0, "audit mode refused", r)
    check(any(w.startswith("[audit] would deny: ") for w in r.warnings), "audit warning", r.warnings)
    stored = get("pvc", "shared", ns)
    check(stored["spec"]["accessModes"] == ["ReadWriteMany"], "stored access modes changed")
    check(stored["spec"]["storageClassName"] == "e2e-audit-bv", "stored class changed")
    cleanup_cluster_scoped(("storageclass", "e2e-audit-bv"))


@case
def local_pv_on_a_raspberry_pi_gets_node_affinity_and_its_pod_lands_there():
    """The seeds: a hand-made local PV on a Pi, pinned by the storage-policy.io/node annotation;
    without the webhook the API would refuse it (`Local volume requires node affinity`)."""
    ns = namespace("e2e-pi")
    must("apply", "-f", "-", input=sc("e2e-pi-local", "kubernetes.io/no-provisioner",
                                      "WaitForFirstConsumer"))
    vol = pv("e2e-pi-disk", "32Gi", cls="e2e-pi-local", source={"local": {"path": "/mnt/usb1"}},
             annotations={"storage-policy.io/node": "pi-1"})
    r = create(vol)
    check(r.rc == 0, "the local PV was refused", r)
    stored = get("pv", "e2e-pi-disk")
    terms = stored["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
    check(terms == [{"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In",
                                           "values": ["pi-1"]}]}], "stored node affinity", terms)
    # Without the webhook (opt-out label) the API server refuses the same PV.
    bare = json.loads(json.dumps(vol))
    bare["metadata"]["name"] = "e2e-pi-disk-bare"
    bare["metadata"]["labels"] = {"storage-policy.io/ignore": "true"}
    r = create(bare)
    check(r.rc != 0 and "spec.nodeAffinity: Required value: Local volume requires node affinity" in r.err,
          "the API server's own refusal", r)
    must("apply", "-f", "-", input=pvc("media", ns, "16Gi", cls="e2e-pi-local"))
    must("apply", "-f", "-", input=pod("jellyfin", ns, ["media"]))
    wait("the pod on pi-1", 40,
         lambda: (get("pod", "jellyfin", ns) or {}).get("spec", {}).get("nodeName") == "pi-1")
    wait("the claim bound to the Pi's disk", 30, lambda: phase("pvc", "media", ns) == "Bound")
    must("delete", "namespace", ns, "--wait=false")
    cleanup_cluster_scoped(("storageclass", "e2e-pi-local"))


@case
def admission_order_default_class_plugin_then_mutate_then_validate():
    """DefaultStorageClass runs before /mutate: with an annotated default block class, a
    ReadWriteMany claim without a class reaches /validate on that class and is refused there,
    with the class the plugin set."""
    ns = namespace("e2e-order")
    must("apply", "-f", "-", input=sc("e2e-default-gp3", "ebs.csi.aws.com",
                                      "WaitForFirstConsumer", default=True))
    try:
        claim = pvc("shared", ns, "1Gi", ["ReadWriteMany"])
        r = wait("the webhook to see the default class", 15,
                 lambda: (lambda r: r if denied_by(r) else None)(create(claim, "--dry-run=server")))
        check("spec.accessModes: Unsupported value: \"ReadWriteMany\"" in denied_by(r),
              "refused on the plugin's class", r)
        check(any('"e2e-default-gp3"' in w for w in r.warnings), "warning names the class", r.warnings)
        ok = pvc("db", ns, "1Gi")
        r = create(ok)
        check(r.rc == 0, "a RWO claim without class", r)
        check(get("pvc", "db", ns)["spec"]["storageClassName"] == "e2e-default-gp3",
              "the plugin's class is stored")
    finally:
        cleanup_cluster_scoped(("storageclass", "e2e-default-gp3"))


@case
def the_documented_examples_happen_as_audit_and_the_readme_say():
    """examples/ under examples/policy.yaml (docs/audit.md is that folder's audit): every object
    applied with kubectl to the real API server, one document at a time, is refused exactly
    when the audit says, with the same message; what the audit patches is what is stored; the
    audit's warnings are among kubectl's. Where the audit says the DefaultStorageClass plugin
    will set the annotated default first, the cluster must do just that. The README's
    `kubectl apply -f examples/pvc-rwx-block.yaml` block is compared line by line."""
    import yaml
    examples = os.path.join(lib.REPO, "examples")
    audit = json.loads(subprocess.run(
        [lib.WEBHOOK_BIN, "audit", "--config", os.path.join(examples, "policy.yaml"), "-o", "json",
         examples], capture_output=True, text=True).stdout)
    by_object = {}
    for f in audit["findings"]:
        by_object.setdefault((f["kind"], f["namespace"], f["name"]), []).append(f)
    # The patch and the warnings belong to the object (once each), not to its findings.
    objects = {(o["kind"], o["namespace"], o["name"]): o for o in audit["objects"]}
    with open(os.path.join(examples, "policy.yaml")) as f:
        policy = yaml.safe_load(f)
    policy["exemptions"]["namespaces"] = sorted(set(policy["exemptions"]["namespaces"])
                                               | {"storage-policy"})
    created = []
    # The README shows a cluster whose drivers run: CSIDriver objects stand for them.
    with Policy(policy), CsiDrivers("blockvolume.csi.oraclecloud.com", "nfs.csi.k8s.io"):
        for ns in ("web", "ci", "streaming", "analytics"):  # a rerun's may still terminate
            wait(f"namespace {ns} gone", 90, lambda: kubectl("get", "namespace", ns).rc != 0)
        for ns in ("web", "ci", "streaming"):
            must("create", "namespace", ns)
            created.append(("namespace", ns))
        must("apply", "-f", os.path.join(examples, "namespaces.yaml"))
        created.append(("namespace", "analytics"))
        must("apply", "-f", os.path.join(examples, "storageclasses.yaml"))
        created += [("storageclass", n) for n in ("oci-bv", "local-storage", "local-path", "nfs")]
        try:
            wait("the webhook to see the example classes", 15, lambda: denied_by(create(
                pvc("probe", "web", "50Gi", ["ReadWriteMany"], "oci-bv"), "--dry-run=server")))
            problems = []
            for name in sorted(os.listdir(examples)):
                if name in ("policy.yaml", "namespaces.yaml", "storageclasses.yaml"):
                    continue
                with open(os.path.join(examples, name)) as fh:
                    docs = [d for d in yaml.safe_load_all(fh) if d]
                for doc in docs:
                    key = (doc["kind"], doc["metadata"].get("namespace"), doc["metadata"]["name"])
                    findings = by_object.get(key, [])
                    r = apply(doc)
                    if doc["kind"] == "PersistentVolume":
                        created.append(("pv", doc["metadata"]["name"]))
                    problems += compare_example(key, doc, findings, objects.get(key, {}), r)
                    if name == "pvc-rwx-block.yaml":
                        problems += compare_readme_block(r)
            check(not problems, f"{len(problems)} differences between the docs and the cluster",
                  *problems)
        finally:
            for kind, n in reversed(created):
                kubectl("delete", kind, n, "--wait=false", "--ignore-not-found")


def compare_example(key, doc, findings, obj, r):
    out = []
    plugin = [f for f in findings if "DefaultStorageClass admission plugin" in f["message"]]
    denied = [f for f in findings if f["outcome"] == "denied"]
    if plugin:
        # The audit says what the in-tree plugin does first; the cluster must agree.
        m = plugin[0]["message"]
        cls = m.split(" this claim gets ")[1].split('"')[1]
        if "the webhook then denies it" in m:
            if r.rc == 0:
                out.append(f"{key}: the audit said the plugin's {cls} gets it denied; kubectl: {r!r}")
        else:
            stored = get("pvc", key[2], key[1])
            got = (stored or {}).get("spec", {}).get("storageClassName")
            if got != cls:
                out.append(f"{key}: the audit said the plugin sets {cls}; stored {got}")
        return out
    if denied:
        msg = denied[0]["message"]
        # kubectl names the kind without its group (`The StatefulSet "kafka" is invalid: ...`),
        # as for the API server's own validation errors.
        kind, rest = msg.split(" ", 1)
        shown = f"The {kind.split('.')[0]} {rest}"
        if r.rc == 0:
            out.append(f"{key}: the audit denies it ({msg}); the cluster stored it")
        elif shown not in r.err.splitlines():
            out.append(f"{key}: denial differs: audit {shown!r}; kubectl {r.err.strip()!r}")
        return out
    if r.rc != 0:
        return [f"{key}: the audit admits it; kubectl: {r!r}"]
    kind = {"PersistentVolumeClaim": "pvc", "PersistentVolume": "pv"}.get(key[0], key[0].lower())
    stored = get(kind, key[2], key[1])
    for path, value in obj.get("changes", {}).items():
        at = stored
        for part in path.split("."):
            at = (at or {}).get(part) if isinstance(at, dict) else None
        if at != value:
            out.append(f"{key}: the audit patches {path} to {value!r}; stored {at!r}")
    for w in obj.get("warnings", []):
        # On files the audit says what it judged against; the cluster's answer does not.
        w = w.removesuffix(" (judged against the PersistentVolumes in the files)")
        if w not in r.warnings:
            out.append(f"{key}: the audit warns {w!r}; kubectl printed {r.warnings!r}")
    return out


def compare_readme_block(r):
    """The README's `$ kubectl apply -f examples/pvc-rwx-block.yaml` block, line by line."""
    with open(os.path.join(lib.REPO, "README.md")) as f:
        text = f.read()
    start = text.index("$ kubectl apply -f examples/pvc-rwx-block.yaml\n")
    block = text[start:text.index("```", start)].splitlines()[1:]
    got = [l for l in r.err.splitlines() if l]
    if got != block:
        return [f"README block differs:\n      README:  {block}\n      kubectl: {got}"]
    return []


@case
def namespace_defaults_apply_with_the_default_class_annotated():
    """The DefaultStorageClass plugin sets the annotated default on claims without a class;
    the webhook reads metadata.managedFields (nobody owns that class) and puts the namespace's
    default in its place, for kubectl apply, apply --server-side, create and the StatefulSet
    controller; a class the user wrote, even the default, stays."""
    must("apply", "-f", "-", input=[
        sc("e2e-md-gp3", "ebs.csi.aws.com", "WaitForFirstConsumer", default=True),
        sc("e2e-md-nfs", "nfs.csi.k8s.io")])
    drivers = CsiDrivers("ebs.csi.aws.com", "nfs.csi.k8s.io").__enter__()
    try:
        ns = namespace("e2e-md", annotations={"storage-policy.io/default-storage-class":
                                              "e2e-md-nfs"})
        plain = namespace("e2e-md-plain")
        wait("the webhook to see the classes and the namespace", 15, lambda: json.loads(
            create(pvc("probe", ns), "--dry-run=server", "-o", "json").out or "{}").get(
                "spec", {}).get("storageClassName") == "e2e-md-nfs")
        ways = {
            "applied": lambda o: apply(o),
            "server-side": lambda o: kubectl("apply", "--server-side", "-f", "-", input=o),
            "created": lambda o: create(o),
        }
        for name, way in ways.items():
            r = way(pvc(name, ns))
            check(r.rc == 0, f"{name}: refused", r)
            got = get("pvc", name, ns)["spec"]["storageClassName"]
            check(got == "e2e-md-nfs", f"{name}: stored class {got}", r)
            check(any('in place of "e2e-md-gp3", which the DefaultStorageClass admission plugin set'
                      in w for w in r.warnings), f"{name}: the warning", r.warnings)
        # Written by the user, even the default itself: never changed.
        for name, cls in (("mine", "e2e-md-gp3"),):
            for way_name, way in ways.items():
                r = way(pvc(f"{name}-{way_name}", ns, cls=cls))
                got = get("pvc", f"{name}-{way_name}", ns)["spec"]["storageClassName"]
                check(r.rc == 0 and got == cls and not r.warnings,
                      f"{way_name}: the user's {cls} became {got}", r)
        # No namespace default there: the plugin's class is the answer.
        r = apply(pvc("plain", plain))
        check(get("pvc", "plain", plain)["spec"]["storageClassName"] == "e2e-md-gp3"
              and not r.warnings, "the plain namespace's claim", r)
        # Claims the StatefulSet controller makes from a template without a class.
        sts = statefulset("db", ns, 2, {"accessModes": ["ReadWriteOnce"],
                                        "resources": {"requests": {"storage": "1Gi"}}})
        sts["spec"]["podManagementPolicy"] = "Parallel"
        must("apply", "-f", "-", input=sts)
        wait("the controller's claims", 30, lambda: {
            c["metadata"]["name"]: c["spec"].get("storageClassName") for c in items("pvc", ns)
            if c["metadata"]["name"].startswith("data-db-")} == {
                "data-db-0": "e2e-md-nfs", "data-db-1": "e2e-md-nfs"})
    finally:
        drivers.__exit__()
        cleanup_cluster_scoped(("storageclass", "e2e-md-gp3"), ("storageclass", "e2e-md-nfs"))


# --- predictions the PV controller and the scheduler must make true ----------------------


@case
def a_claim_warned_pending_stays_pending_and_one_not_warned_binds():
    ns = namespace("e2e-willbind")
    must("apply", "-f", "-", input=sc("e2e-static", "kubernetes.io/no-provisioner"))
    must("apply", "-f", "-", input=pv("e2e-static-5g", "5Gi", cls="e2e-static"))
    wait("the webhook to see the PV", 10, lambda: not any(
        "will stay Pending" in w for w in create(pvc("probe", ns, "1Gi", cls="e2e-static"),
                                                 "--dry-run=server").warnings))
    big = create(pvc("big", ns, "50Gi", cls="e2e-static"))
    check(big.rc == 0, "a warning claim was refused", big)
    check(big.warnings == ['claim "big" will stay Pending: no Available PersistentVolume of class '
                           'e2e-static has 50Gi'], "the warning", big.warnings)
    fits = create(pvc("fits", ns, "2Gi", cls="e2e-static"))
    check(fits.rc == 0 and not fits.warnings, "no warning for a claim a PV fits", fits)
    wait("the fitting claim to bind", 30, lambda: phase("pvc", "fits", ns) == "Bound")
    stays("the warned claim Pending", PV_SYNC, lambda: phase("pvc", "big", ns) == "Pending")
    cleanup_cluster_scoped(("storageclass", "e2e-static"), ("pv", "e2e-static-5g"))


@case
def a_statefulset_on_hand_made_pvs_binds_as_predicted():
    """The seeds: a StatefulSet of 3 on 2 hand-made PVs: the webhook says the third claim waits,
    the controller makes three claims, two bind, the third stays Pending."""
    ns = namespace("e2e-sts")
    must("apply", "-f", "-", input=sc("e2e-sts-static", "kubernetes.io/no-provisioner"))
    for i in range(2):
        must("apply", "-f", "-", input=pv(f"e2e-sts-pv-{i}", "10Gi", cls="e2e-sts-static"))
    tpl = {"storageClassName": "e2e-sts-static", "accessModes": ["ReadWriteOnce"],
           "resources": {"requests": {"storage": "5Gi"}}}
    sts = statefulset("web", ns, 3, tpl)
    # Parallel: with no kubelet no pod becomes ready, and OrderedReady would make one claim only.
    sts["spec"]["podManagementPolicy"] = "Parallel"
    r = wait("the webhook to see both PVs", 10, lambda: (lambda r: r if any(
        "(2 of 3 served)" in w for w in r.warnings) else None)(create(sts, "--dry-run=server")))
    r = create(sts)
    check(r.rc == 0, "refused", r)
    warned = [w for w in r.warnings if "will stay Pending" in w]
    check(len(warned) == 1 and "data-web-2" in warned[0], "warned about data-web-2", r.warnings)
    wait("three claims", 30, lambda: len(items("pvc", ns)) == 3)
    wait("two bound", 30, lambda: sorted(phase("pvc", f"data-web-{i}", ns) or "" for i in range(3))
         == ["Bound", "Bound", "Pending"])
    stays("one claim Pending", PV_SYNC,
          lambda: [phase("pvc", f"data-web-{i}", ns) for i in range(3)].count("Pending") == 1)
    cleanup_cluster_scoped(("storageclass", "e2e-sts-static"), ("pv", "e2e-sts-pv-0"),
                           ("pv", "e2e-sts-pv-1"))


@case
def node_name_with_wait_for_first_consumer_is_refused_and_would_stay_pending():
    ns = namespace("e2e-nodename")
    must("apply", "-f", "-", input=sc("e2e-wffc", "kubernetes.io/no-provisioner",
                                      "WaitForFirstConsumer"))
    must("apply", "-f", "-", input=pv("e2e-wffc-pv", "5Gi", cls="e2e-wffc",
                                      source={"local": {"path": "/mnt/d1"}},
                                      nodeAffinity={"required": {"nodeSelectorTerms": [{"matchExpressions": [
                                          {"key": "kubernetes.io/hostname", "operator": "In",
                                           "values": ["k8s-worker-01"]}]}]}}))
    must("apply", "-f", "-", input=pvc("data", ns, "1Gi", cls="e2e-wffc"))
    pinned = pod("pinned", ns, ["data"], node_name="k8s-worker-01")
    r = wait("the webhook to see the claim", 15,
             lambda: (lambda r: r if denied_by(r) else None)(create(pinned, "--dry-run=server")))
    msg = denied_by(r)
    check(msg.startswith('Pod "pinned" is invalid: spec.nodeName: Forbidden: claim "data" is not '
                         'bound and has class "e2e-wffc" with volumeBindingMode '
                         'WaitForFirstConsumer'), "the denial", msg)
    # Let it through (rule in audit) and watch Kubernetes: the claim never binds.
    with Policy(with_rules(chart_policy(), nodeNameWaitForFirstConsumer="audit")):
        r = create(pinned)
        check(r.rc == 0 and any(w.startswith("[audit] would deny: ") for w in r.warnings),
              "audit lets it in with a warning", r)
    stays("the claim Pending behind nodeName", PV_SYNC * 2,
          lambda: phase("pvc", "data", ns) == "Pending"
          and not get("pvc", "data", ns)["metadata"].get("annotations", {}).get(
              "volume.kubernetes.io/selected-node"))
    # The fix the warning names works: a nodeSelector lets the scheduler bind it.
    must("delete", "pod", "pinned", "-n", ns, "--grace-period=0", "--force")
    must("apply", "-f", "-", input=pod("selected", ns, ["data"],
                                       node_selector={"kubernetes.io/hostname": "k8s-worker-01"}))
    wait("the claim bound through the scheduler", 40, lambda: phase("pvc", "data", ns) == "Bound")
    must("delete", "namespace", ns, "--wait=false")
    cleanup_cluster_scoped(("storageclass", "e2e-wffc"))


@case
def a_hand_made_pv_left_with_delete_goes_failed_on_release_as_warned():
    ns = namespace("e2e-reclaim")
    vol = pv("e2e-reclaim-pv", "1Gi", cls="e2e-reclaim", source={"hostPath": {"path": "/srv/e2e"}},
             persistentVolumeReclaimPolicy="Delete")
    expected_reason = "host_path deleter only supports /tmp/.+ but received provided /srv/e2e"
    r = create(vol, "--dry-run=server")
    check(any(expected_reason in w for w in r.warnings), "enforce warns and sets Retain", r.warnings)
    with Policy(with_rules(chart_policy(), reclaimPolicy="audit")):
        r = create(vol)
        check(r.rc == 0 and any(expected_reason in w for w in r.warnings), "audit warns", r)
    check(get("pv", "e2e-reclaim-pv")["spec"]["persistentVolumeReclaimPolicy"] == "Delete",
          "audit changed the PV")
    must("apply", "-f", "-", input=pvc("c", ns, "1Gi", cls="e2e-reclaim"))
    wait("bound", 30, lambda: phase("pvc", "c", ns) == "Bound")
    must("delete", "pvc", "c", "-n", ns)
    wait("the PV Failed", 40, lambda: phase("pv", "e2e-reclaim-pv") == "Failed")
    evs = wait("the VolumeFailedDelete event", 30, lambda: [
        e for e in lib.events("e2e-reclaim-pv") if e[0] == "VolumeFailedDelete"])
    check(any(reason == "VolumeFailedDelete" and expected_reason in msg for reason, msg in evs),
          "the controller's event quotes the warning's reason", evs)
    cleanup_cluster_scoped(("pv", "e2e-reclaim-pv"))


@case
def a_claim_ref_without_namespace_is_refused_and_would_never_bind():
    ns = namespace("e2e-claimref")
    vol = pv("e2e-claimref-pv", "1Gi", cls="e2e-claimref", claimRef={"name": "data"})
    r = create(vol)
    check(r.rc == 1 and 'The PersistentVolume "e2e-claimref-pv" is invalid: spec.claimRef.namespace: '
          'Required value: the PV controller binds a claim only by name and namespace, so this '
          'volume stays Available and never binds: set the namespace of the claim'
          in r.err.splitlines(), "the denial", r)
    with Policy(with_rules(chart_policy(), claimRefNamespace="audit")):
        check(create(vol).rc == 0, "audit refused")
    must("apply", "-f", "-", input=pvc("data", ns, "1Gi", cls="e2e-claimref"))
    stays("the claim Pending and the PV Available", PV_SYNC * 2,
          lambda: phase("pvc", "data", ns) == "Pending" and phase("pv", "e2e-claimref-pv") == "Available")
    cleanup_cluster_scoped(("pv", "e2e-claimref-pv"))


@case
def a_claim_deleted_in_use_stays_terminating_as_warned_until_its_pod_goes():
    """deleteInUse, proven by the protection controllers: a claim mounted by a scheduled pod (never
    running: no kubelet) is deleted with the webhook's warning naming the pod, and really stays
    Terminating under kubernetes.io/pvc-protection until the pod is deleted; its bound PV, deleted
    too, stays Terminating under kubernetes.io/pv-protection until the claim is gone."""
    ns = namespace("e2e-inuse")
    name = f"e2e-inuse-pv-{lib.RUN}"
    must("apply", "-f", "-", input=pv(name, "1Gi", cls="e2e-inuse"))
    try:
        must("apply", "-f", "-", input=pvc("data", ns, "1Gi", cls="e2e-inuse"))
        wait("the claim to bind", 30, lambda: phase("pvc", "data", ns) == "Bound")
        must("apply", "-f", "-", input=pod("app", ns, claims=["data"]))
        node = wait("the pod to be scheduled", 30,
                    lambda: (get("pod", "app", ns) or {}).get("spec", {}).get("nodeName"))
        said = (f'PersistentVolumeClaim "data" is still used by 1 pod(s): app (node {node}); it will '
                'stay Terminating (finalizer kubernetes.io/pvc-protection) until none uses it: '
                'delete or scale down their workload first')
        # The webhook learns of the pod through its watch: a server-side dry run (sent to the
        # webhook, stored nowhere) shows when it has.
        wait("the webhook's pod cache to hold the pod", 20, lambda: said in kubectl(
            "delete", "pvc", "data", "-n", ns, "--dry-run=server").warnings)
        r = kubectl("delete", "pvc", "data", "-n", ns, "--wait=false")
        check(r.rc == 0 and r.warnings == [said], "the DELETE's warning", r)

        def terminating(kind, name, namespace, finalizer):
            o = get(kind, name, namespace) or {}
            m = o.get("metadata", {})
            return "deletionTimestamp" in m and finalizer in m.get("finalizers", [])

        stays("the claim Terminating under pvc-protection", 8,
              lambda: terminating("pvc", "data", ns, "kubernetes.io/pvc-protection"))
        r = kubectl("delete", "pvc", "data", "-n", ns, "--wait=false")
        check(r.rc == 0 and r.warnings == [], "a second delete of a Terminating claim is not sent", r)

        r = kubectl("delete", "pv", name, "--wait=false")
        check(r.rc == 0 and r.warnings == [
            f'PersistentVolume "{name}" is Bound to claim {ns}/data: it will stay Terminating '
            f'(finalizer kubernetes.io/pv-protection) until it is no longer Bound: delete claim {ns}/data first'],
            "the PV DELETE's warning", r)
        stays("the PV Terminating under pv-protection", PV_SYNC * 2,
              lambda: terminating("pv", name, None, "kubernetes.io/pv-protection"))

        # No kubelet finishes the pod: force it, as `kubectl delete --force` does for a lost node.
        must("delete", "pod", "app", "-n", ns, "--grace-period=0", "--force")
        wait("the claim to go once no pod uses it", 30, lambda: get("pvc", "data", ns) is None)
        wait("the PV to go once no longer Bound", 40, lambda: get("pv", name) is None)
    finally:
        cleanup_cluster_scoped(("pv", name))


# --- failure behaviour as the chart documents it -----------------------------------------


@case
def webhook_stopped_the_api_server_applies_failure_policy():
    """Mutating failurePolicy Fail: a claim create is refused while the webhook is down; the
    validating webhooks (Ignore) let a StatefulSet through, and the DELETE registration (always
    Ignore) lets a claim's delete through."""
    ns = namespace("e2e-down")
    check(create(pvc("old", ns)).rc == 0, "the claim to delete later")
    subprocess.run([lib.CLUSTER, "webhook", "stop"], check=True)
    try:
        r = create(pvc("c", ns))
        check(r.rc != 0 and f'failed calling webhook "{M}"' in r.err, "refused under Fail", r)
        r = create(statefulset("s", ns, 1, {"accessModes": ["ReadWriteOnce"],
                                            "resources": {"requests": {"storage": "1Gi"}}}))
        check(r.rc == 0, "the validating webhook (Ignore) blocked", r)
        r = kubectl("delete", "pvc", "old", "-n", ns, "--wait=false")
        check(r.rc == 0, "a claim's DELETE blocked while the webhook is down", r)
    finally:
        subprocess.run([lib.CLUSTER, "webhook", "start"], check=True)
    check(create(pvc("c", ns)).rc == 0, "not answering after restart")


@case
def webhook_slow_the_api_server_times_out_and_applies_failure_policy():
    ns = namespace("e2e-slow")
    pid = int(open(os.path.join(lib.STATE, "pids", "webhook.pid")).read())
    os.kill(pid, 19)  # SIGSTOP: accepted connections, no answer
    try:
        t0 = time.monotonic()
        r = create(pvc("c", ns))
        took = time.monotonic() - t0
        check(r.rc != 0 and "context deadline exceeded" in r.err or "timeout" in r.err.lower(),
              "a timeout under Fail", r)
        check(took < 30, f"took {took:.0f}s, webhook.timeoutSeconds is 5")
    finally:
        os.kill(pid, 18)  # SIGCONT
    wait("the webhook answering again", 20, lambda: create(pvc("c2", ns)).rc == 0)


@case
def certificate_rotated_while_kubectl_applies_in_a_loop_refuses_nothing():
    ns = namespace("e2e-rotate")
    pki = os.path.join(lib.STATE, "pki")
    stop = threading.Event()
    results = []

    def loop():
        i = 0
        while not stop.is_set():
            r = create(pvc(f"c{i}", ns))
            results.append((i, r))
            i += 1

    t = threading.Thread(target=loop)
    t.start()
    try:
        time.sleep(2)
        for n in range(2):
            key, csr, crt = (os.path.join(pki, f"rot{n}.{e}") for e in ("key", "csr", "crt"))
            subprocess.run(["openssl", "req", "-newkey", "ec", "-pkeyopt",
                            "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", csr,
                            "-subj", f"/CN=storage-policy-webhook-{n}"], check=True,
                           capture_output=True)
            subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", os.path.join(pki, "ca.crt"),
                            "-CAkey", os.path.join(pki, "ca.key"), "-CAcreateserial", "-days", "2",
                            "-extfile", os.path.join(pki, "webhook.ext"), "-out", crt], check=True,
                           capture_output=True)
            # As a Secret volume swaps files: the key and certificate replaced by rename.
            for src, dst in ((key, "webhook.key"), (crt, "webhook.crt")):
                tmp = os.path.join(pki, dst + ".new")
                with open(src, "rb") as f, open(tmp, "wb") as g:
                    g.write(f.read())
                os.replace(tmp, os.path.join(pki, dst))
            time.sleep(4)
    finally:
        stop.set()
        t.join()
    bad = [(i, r) for i, r in results if r.rc != 0]
    check(len(results) >= 10 and not bad, f"{len(bad)} of {len(results)} creates refused", *bad[:3])
    reloads = lib.metric("storage_policy_webhook_tls_reloads_total")
    check(reloads >= 2, "the webhook did not reload its certificate", reloads)


# --- an install that cannot hurt ----------------------------------------------------------

HELM = os.path.join(lib.ENV["BIN"], "helm")
CHART = os.path.join(lib.REPO, "charts", "storage-policy-webhook")


def helm(*args, check_rc=True):
    r = subprocess.run([HELM, "--kubeconfig", lib.KUBECONFIG, *args], capture_output=True, text=True,
                       timeout=180)
    if check_rc:
        check(r.returncode == 0, f"helm {' '.join(args[:2])} failed", r.stdout[-2000:], r.stderr[-2000:])
    return r


def configurations(name):
    """The webhook configurations named `name` that exist: [(kind, object)]."""
    out = []
    for kind in ("mutatingwebhookconfiguration", "validatingwebhookconfiguration"):
        o = get(kind, name)
        if o:
            out.append((kind, o))
    return out


def admission_counts():
    return {e: lib.metric("storage_policy_webhook_requests_total", endpoint=e) for e in ("mutate", "validate")}


@case
def a_bare_helm_install_whose_pods_never_run_blocks_no_pvc_or_pv():
    """`helm install` of the chart as a newcomer types it, enforcing, with both failure policies
    Fail and an image that cannot be pulled (no pod ever runs here: no kubelet). Before, the
    configurations existed at once and every PVC and PV create was refused (no endpoints)."""
    ns = f"e2e-bare-{lib.RUN}"
    rel = f"bare-{lib.RUN}"
    name = f"{rel}-storage-policy-webhook"
    out = helm("install", rel, CHART, "--namespace", ns, "--create-namespace",
               "--set", "image.repository=127.0.0.1:1/no-such-image", "--set", "policy.mode=enforce",
               "--set", "webhook.mutating.failurePolicy=Fail", "--set", "webhook.validating.failurePolicy=Fail")
    try:
        check("Mode: ENFORCE" in out.stdout, "NOTES do not say ENFORCE", out.stdout[:800])
        check(get("deployment", name, ns) is not None, "the release has no Deployment")
        stays("no webhook configuration while no pod serves", 3, lambda: configurations(name) == [])
        app = namespace("e2e-bare-app")
        r = create(pvc("data", app))
        check(r.rc == 0, "a PVC create was refused", r)
        r = create(pv(f"e2e-bare-pv-{lib.RUN}", source={"hostPath": {"path": "/srv/bare"}}))
        check(r.rc == 0, "a PV create was refused", r)
    finally:
        helm("uninstall", rel, "--namespace", ns, "--wait", check_rc=False)
        cleanup_cluster_scoped(("pv", f"e2e-bare-pv-{lib.RUN}"))


@case
def the_default_install_audits_and_its_notes_say_so():
    """A default install renders a policy in which every rule audits: the webhook's own `review`
    lets a ReadWriteMany claim on block storage through with a warning."""
    ns = f"e2e-default-{lib.RUN}"
    rel = f"default-{lib.RUN}"
    out = helm("install", rel, CHART, "--namespace", ns, "--create-namespace")
    try:
        check("Mode: AUDIT (policy.mode=audit)" in out.stdout, "NOTES do not say AUDIT", out.stdout[:800])
        cm = get("configmap", f"{rel}-storage-policy-webhook-policy", ns)
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write(cm["data"]["policy.yaml"])
        claim = pvc("x", "default", modes=["ReadWriteMany"], cls="oci-bv")
        claim["spec"]["storageClassName"] = "oci-bv"
        policy = lib.yaml.safe_load(cm["data"]["policy.yaml"])
        policy["storageClasses"] = [{"name": "oci-bv", "provisioner": "blockvolume.csi.oraclecloud.com"}]
        with open(f.name, "w") as g:
            g.write(lib.yaml.safe_dump(policy))
        resp = lib.review(claim, "validate", f.name, namespace="default")
        os.unlink(f.name)
        check(resp["allowed"] and resp.get("warnings"), "the default policy did not audit", resp)
        hooks = json.loads(get("configmap", f"{rel}-storage-policy-webhook-webhooks", ns)["data"]["webhooks.json"])
        fp = {i["kind"]: {h["failurePolicy"] for h in i["webhooks"]} for i in hooks["items"]}
        check(fp["MutatingWebhookConfiguration"] == {"Ignore"}, "mutating failurePolicy of an audit install", fp)
    finally:
        helm("uninstall", rel, "--namespace", ns, "--wait", check_rc=False)


@case
def the_webhook_registers_itself_and_uninstall_removes_the_configurations():
    """A second release run outside the cluster (as the suite's own): its process registers the
    configurations with the chart's RBAC once ready, owned by the ClusterRole; `helm uninstall`
    deletes the ClusterRole and the garbage collector the configurations."""
    ns = f"e2e-owned-{lib.RUN}"
    rel = f"owned-{lib.RUN}"
    name = f"{rel}-storage-policy-webhook"
    port, admin = 39444, 39081
    pki = os.path.join(lib.STATE, "pki")
    with open(os.path.join(pki, "ca.crt"), "rb") as f:
        ca = base64.b64encode(f.read()).decode()
    helm("install", rel, CHART, "--namespace", ns, "--create-namespace",
         "--set-string", f"webhook.url=https://127.0.0.1:{port}", "--set-string", f"certs.caBundle={ca}")
    work = tempfile.mkdtemp(prefix="spw-e2e-owned-")
    proc = None
    try:
        check(configurations(name) == [], "configurations exist before the webhook runs")
        for key, cm in (("policy.yaml", f"{name}-policy"), ("webhooks.json", f"{name}-webhooks")):
            with open(os.path.join(work, key), "w") as f:
                f.write(get("configmap", cm, ns)["data"][key])
        token = must("create", "token", name, "-n", ns, "--duration", "1h").out.strip()
        kc = os.path.join(work, "kubeconfig")
        with open(kc, "w") as f:
            f.write(lib.yaml.safe_dump({
                "apiVersion": "v1", "kind": "Config",
                "clusters": [{"name": "c", "cluster": {
                    "server": lib.yaml.safe_load(open(lib.KUBECONFIG))["clusters"][0]["cluster"]["server"],
                    "certificate-authority": os.path.join(pki, "ca.crt")}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "sa"}}],
                "current-context": "c", "users": [{"name": "sa", "user": {"token": token}}]}))
        log = open(os.path.join(work, "webhook.log"), "w")
        proc = subprocess.Popen([
            lib.WEBHOOK_BIN, "serve", "--config", os.path.join(work, "policy.yaml"),
            "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin}",
            "--tls-cert", os.path.join(pki, "webhook.crt"), "--tls-key", os.path.join(pki, "webhook.key"),
            "--kubeconfig", kc, "--log-format", "plain", "--shutdown-delay", "0", "--drain-timeout", "2",
            "--register-webhooks", os.path.join(work, "webhooks.json"), "--register-owner", name,
        ], stdout=log, stderr=subprocess.STDOUT)
        wait("the webhook to register both configurations", 60, lambda: len(configurations(name)) == 2)
        role_uid = get("clusterrole", name)["metadata"]["uid"]
        for kind, o in configurations(name):
            refs = o["metadata"].get("ownerReferences", [])
            check([(r["kind"], r["name"], r["uid"]) for r in refs] == [("ClusterRole", name, role_uid)],
                  f"{kind} not owned by the ClusterRole", refs)
        app = namespace("e2e-owned-app")
        r = create(pvc("data", app))
        check(r.rc == 0, "a PVC create through both webhooks was refused", r)
        helm("uninstall", rel, "--namespace", ns, "--wait")
        wait("the garbage collector to delete the configurations", 60, lambda: configurations(name) == [])
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=20)
        helm("uninstall", rel, "--namespace", ns, check_rc=False)


@case
def a_provisioned_pv_is_not_sent_to_the_mutating_webhook():
    """The mutating registration's matchConditions, evaluated by the API server: a PV a
    provisioner made and no mutating rule changes never reaches /mutate (so a webhook outage never
    stalls provisioning); a hand-made one, an in-tree-provisioned one and a node-local one without
    affinity still do. Counted on the webhook's own request metrics."""
    cases = [
        # name, annotations, source, sent to /mutate
        ("e2e-prov-csi", {"pv.kubernetes.io/provisioned-by": "ebs.csi.aws.com"},
         {"csi": {"driver": "ebs.csi.aws.com", "volumeHandle": "vol-1"}}, False),
        ("e2e-prov-nfs", {"pv.kubernetes.io/provisioned-by": "nfs.csi.k8s.io"},
         {"nfs": {"server": "nas", "path": "/export/a"}}, False),
        ("e2e-prov-pinned", {"pv.kubernetes.io/provisioned-by": "rancher.io/local-path"},
         {"hostPath": {"path": "/srv/p"}, "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
             {"key": "kubernetes.io/hostname", "operator": "In", "values": ["pi-1"]}]}]}}}, False),
        ("e2e-prov-handmade", None, {"nfs": {"server": "nas", "path": "/export/b"}}, True),
        ("e2e-prov-intree", {"pv.kubernetes.io/provisioned-by": "kubernetes.io/host-path"},
         {"hostPath": {"path": "/tmp/x"}}, True),
        ("e2e-prov-unpinned", {"pv.kubernetes.io/provisioned-by": "microk8s.io/hostpath"},
         {"hostPath": {"path": "/srv/u"}}, True),
    ]
    try:
        for name, ann, source, sent in cases:
            before = admission_counts()
            r = create(pv(f"{name}-{lib.RUN}", source=source, annotations=ann,
                          persistentVolumeReclaimPolicy="Delete"))
            check(r.rc == 0, f"{name}: create failed", r)
            after = admission_counts()
            check(after["validate"] > before["validate"], f"{name}: not validated at all", before, after)
            check((after["mutate"] > before["mutate"]) == sent,
                  f"{name}: sent to /mutate is {after['mutate'] > before['mutate']}, want {sent}", before, after)
    finally:
        cleanup_cluster_scoped(*[("pv", f"{c[0]}-{lib.RUN}") for c in cases])


def deployment(name, ns, replicas, claim, strategy=None):
    spec = {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": "c",
                                                  "image": "registry.k8s.io/pause:3.10"}],
                                  "volumes": [{"name": "data",
                                               "persistentVolumeClaim": {"claimName": claim}}]}}}
    if strategy:
        spec["strategy"] = strategy
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


def bound_claim(ns, name, mode):
    """A claim bound to a hand-made CSI PV (attachable storage: not node-local) of `mode`."""
    pv_name = f"e2e-{name}-{lib.RUN}"
    must("apply", "-f", "-", input=pv(pv_name, "1Gi", modes=(mode,),
                                      source={"csi": {"driver": "ebs.csi.aws.com",
                                                      "volumeHandle": pv_name}},
                                      claimRef={"namespace": ns, "name": name}))
    must("apply", "-f", "-", input=pvc(name, ns, "1Gi", modes=(mode,), cls=""))
    wait(f"claim {name} to bind", 30, lambda: phase("pvc", name, ns) == "Bound")
    return pv_name


def scheduled(ns, app):
    """The pods of app: (name, node or None, PodScheduled message)."""
    out = []
    for p in items("pod", ns, f"app={app}"):
        cond = [c for c in p.get("status", {}).get("conditions", [])
                if c.get("type") == "PodScheduled"]
        out.append((p["metadata"]["name"], p["spec"].get("nodeName"),
                    cond[0].get("message", "") if cond else ""))
    return out


def seen(obj, word):
    """Waits for the webhook's caches to hold what makes it warn `word` on obj (a dry run)."""
    return wait(f"the webhook to warn '{word}'", 15, lambda: (lambda r: r if any(
        word in w for w in r.warnings) else None)(create(obj, "--dry-run=server")))


def cluster_audit(ns):
    """`audit --cluster -n ns -o json` with the chart's policy: (name, rule, message) per finding."""
    out = subprocess.run([lib.WEBHOOK_BIN, "audit", "--cluster", "--kubeconfig", lib.KUBECONFIG,
                          "--config", lib.POLICY, "-n", ns, "-o", "json"],
                         capture_output=True, text=True, timeout=60)
    report = json.loads(out.stdout)
    return [(f["name"], f["rule"], f["message"]) for f in report["findings"]]


def sched_message(ns, name):
    """The PodScheduled condition's message of a pod (the scheduler's reason), if any."""
    p = get("pod", name, ns) or {}
    return next((c.get("message") for c in p.get("status", {}).get("conditions", [])
                 if c.get("type") == "PodScheduled" and c.get("message")), None)


# kube-scheduler v1.37 (volumerestrictions, ErrReasonReadWriteOncePodConflict since 1.28).
RWOP_CONFLICT = ("node(s) unavailable due to PersistentVolumeClaim with ReadWriteOncePod access "
                 "mode already in-use by another pod")


@case
def a_read_write_once_pod_claim_shared_by_two_replicas_is_warned_and_one_pod_stays_pending():
    ns = namespace("e2e-rwop")
    pv_name = bound_claim(ns, "solo", "ReadWriteOncePod")
    d = deployment("solo", ns, 2, "solo", strategy={"type": "Recreate"})
    seen(d, "ReadWriteOncePod")
    r = create(d)
    check(r.rc == 0, "a warning Deployment was refused", r)
    check(r.warnings[:1] == ['claim "solo" is ReadWriteOncePod, mounted by 2 replicas: all pods '
                             f'but one stay Pending: "{RWOP_CONFLICT}"'], "the warning", r.warnings)
    check(any(w.startswith("spec.template.spec.volumes[0]: ReadWriteOncePod is one pod; give each "
                           "pod its own claim") for w in r.warnings), "the fix", r.warnings)
    # Kubernetes: one pod is placed, the other is refused by the scheduler in those words.
    pods = wait("one pod placed and one refused", 40, lambda: (lambda ps: ps if len(ps) == 2 and
                sum(1 for p in ps if p[1]) == 1 and
                any(RWOP_CONFLICT in p[2] for p in ps if not p[1]) else None)(scheduled(ns, "solo")))
    stays("the second pod Pending", PV_SYNC,
          lambda: sum(1 for p in scheduled(ns, "solo") if p[1]) == 1)
    check(pods, "pods", pods)
    must("delete", "namespace", ns, "--wait=false")
    cleanup_cluster_scoped(("pv", pv_name))


@case
def a_read_write_once_claim_shared_by_two_replicas_is_warned_and_the_pods_land_on_two_nodes():
    """Multi-Attach needs a kubelet and an attach step: the evidence here is the scheduler
    placing the two pods that mount one ReadWriteOnce claim on different nodes, which is where
    the attach/detach controller reports `Multi-Attach error`."""
    ns = namespace("e2e-rwo")
    pv_name = bound_claim(ns, "data", "ReadWriteOnce")
    d = deployment("web", ns, 2, "data")
    seen(d, "Multi-Attach")
    r = create(d)
    check(r.rc == 0, "a warning Deployment was refused", r)
    check(r.warnings[:1] == ['claim "data" is ReadWriteOnce, mounted by 2 replicas: a pod on '
                             f'another node waits with "Multi-Attach error for volume "{pv_name}" '
                             'Volume is already used by pod(s) ..."'], "the warning", r.warnings)
    nodes = wait("both pods placed", 40, lambda: (lambda ps: ps if len(ps) == 2 and
                 all(p[1] for p in ps) else None)(scheduled(ns, "web")))
    check(len({p[1] for p in nodes}) == 2, "the two pods on two nodes", nodes)
    # The fix the warning names for one replica is quiet: Recreate stops the old pod first.
    single = deployment("single", ns, 1, "data", strategy={"type": "Recreate"})
    r = create(single, "--dry-run=server")
    check(r.rc == 0 and not any("Multi-Attach" in w for w in r.warnings), "Recreate is quiet", r)
    surge = create(deployment("surge", ns, 1, "data"), "--dry-run=server")
    check(any("mounted by the old and the new pod of a rollout" in w for w in surge.warnings),
          "the default RollingUpdate is warned about", surge.warnings)
    # audit --cluster: the Deployment that hits Multi-Attach on another node, as it exists now.
    found = cluster_audit(ns)
    check(any(n == "web" and r == "sharedClaims" and "Multi-Attach" in m for n, r, m in found),
          "audit --cluster reports the Deployment", found)
    must("delete", "namespace", ns, "--wait=false")
    cleanup_cluster_scoped(("pv", pv_name))


@case
def a_pod_naming_a_missing_claim_is_warned_and_stays_pending_in_the_schedulers_words():
    ns = namespace("e2e-missing")
    p = pod("orphan", ns, ["nowhere"])
    seen(p, "not found")
    r = create(p)
    check(r.rc == 0, "a warning pod was refused", r)
    check(r.warnings[:1] == ['spec.volumes[0].persistentVolumeClaim.claimName: the pod stays '
                             'Pending: "persistentvolumeclaim "nowhere" not found" (scheduler)'],
          "the warning", r.warnings)
    msg = wait("the scheduler's reason", 30, lambda: sched_message(ns, "orphan"))
    check('persistentvolumeclaim "nowhere" not found' in msg, "the scheduler's words", msg)
    stays("the pod Pending", PV_SYNC, lambda: not get("pod", "orphan", ns)["spec"].get("nodeName"))
    found = cluster_audit(ns)
    check(("orphan", "missingClaims", 'spec.volumes[0].persistentVolumeClaim.claimName: the pod '
           'stays Pending: "persistentvolumeclaim "nowhere" not found" (scheduler)') in found,
          "audit --cluster reports the Pending pod", found)
    # A claim being deleted (held by a finalizer): the scheduler's other words.
    going = pvc("going", ns, "1Gi", cls="")
    going["metadata"]["finalizers"] = ["e2e.storage-policy.io/hold"]
    must("apply", "-f", "-", input=going)
    must("delete", "pvc", "going", "-n", ns, "--wait=false")
    p = pod("late", ns, ["going"])
    seen(p, "is being deleted")
    r = create(p)
    check(r.rc == 0 and any('"persistentvolumeclaim "going" is being deleted" (scheduler)' in w
                            for w in r.warnings), "the warning", r)
    msg = wait("the scheduler's reason", 30, lambda: sched_message(ns, "late"))
    check('persistentvolumeclaim "going" is being deleted' in msg, "the scheduler's words", msg)
    must("patch", "pvc", "going", "-n", ns, "--type=merge", "-p",
         '{"metadata": {"finalizers": null}}')
    must("delete", "namespace", ns, "--wait=false")
# --- restores and clones (issue 27) ---------------------------------------------------------


def snapshot_crds():
    """The VolumeSnapshot CRDs as kubernetes-csi/external-snapshotter ships them
    (`config/crd/` of its client module), fetched through the Go module proxy."""
    r = subprocess.run(["go", "mod", "download", "-json",
                        "github.com/kubernetes-csi/external-snapshotter/client/v8@v8.7.0"],
                       capture_output=True, text=True, timeout=300, cwd=tempfile.gettempdir())
    check(r.returncode == 0, "go mod download of the snapshot CRDs", r.stderr)
    crd = os.path.join(json.loads(r.stdout)["Dir"], "config", "crd")
    return [os.path.join(crd, f"snapshot.storage.k8s.io_{p}.yaml")
            for p in ("volumesnapshotclasses", "volumesnapshotcontents", "volumesnapshots")]


@case
def restores_and_clones_the_provisioner_would_refuse_are_warned_and_stay_pending():
    """Without the snapshot CRDs a restore is not judged; once they are installed the webhook
    discovers them and warns about a snapshot that does not exist or is not ready; a clone from
    a class of another provisioner is warned about too. The claims stay Pending. Weak proof: no
    provisioner runs here, so any claim of these classes would stay Pending; what is shown is that
    Kubernetes stores the claim, the warning reaches kubectl, and nothing binds it."""
    ns = namespace("e2e-datasrc")
    must("apply", "-f", "-", input=lib.dump([sc("e2e-snap-a", "a.csi.example.com"),
                                             sc("e2e-snap-b", "b.csi.example.com")]))
    snap = {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": "nightly"}
    restore = pvc("restore", ns, "1Gi", cls="e2e-snap-a", dataSource=snap)
    crds = snapshot_crds()
    try:
        if get("crd", "volumesnapshots.snapshot.storage.k8s.io") is None:
            r = create(restore, "--dry-run=server")
            check(r.rc == 0 and not [w for w in r.warnings if "DataSource" in w],
                  "a restore judged without the snapshot API", r.warnings)
        for f in crds:
            must("apply", "--server-side", "-f", f)
        wait("the CRDs to be served", 30, lambda: kubectl("get", "volumesnapshots", "-n", ns).rc == 0)
        missing = ("spec.dataSource: the claim would stay Pending (ProvisioningFailed: error getting handle "
                   "for DataSource Type VolumeSnapshot by Name nightly: error getting snapshot nightly from "
                   'api server: volumesnapshots.snapshot.storage.k8s.io "nightly" not found)')
        wait("the webhook to discover the snapshot API", 40,
             lambda: missing in create(restore, "--dry-run=server").warnings)
        r = create(restore)
        check(r.rc == 0 and missing in r.warnings, "the restore's warning", r)

        # A snapshot bound to a content of the class's driver, not ready yet.
        must("apply", "-f", "-", input=lib.dump([
            {"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotContent",
             "metadata": {"name": f"e2e-content-{lib.RUN}"},
             "spec": {"driver": "a.csi.example.com", "deletionPolicy": "Delete",
                      "source": {"snapshotHandle": "snap-1"},
                      "volumeSnapshotRef": {"name": "creating", "namespace": ns}}},
            {"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
             "metadata": {"name": "creating", "namespace": ns},
             "spec": {"source": {"volumeSnapshotContentName": f"e2e-content-{lib.RUN}"}}}]))
        must("patch", "volumesnapshot", "creating", "-n", ns, "--subresource=status", "--type=merge",
             "-p", json.dumps({"status": {"boundVolumeSnapshotContentName": f"e2e-content-{lib.RUN}",
                                          "readyToUse": False, "restoreSize": "2Gi"}}))
        not_ready = ("spec.dataSource: the claim would stay Pending (ProvisioningFailed: error getting "
                     "handle for DataSource Type VolumeSnapshot by Name creating: snapshot creating is not Ready)")
        too_small = ("spec.resources.requests[storage]: the claim would stay Pending (ProvisioningFailed: ...: "
                     "requested volume size 1073741824 is less than the size 2147483648 for the source "
                     "snapshot creating); request at least the snapshot's restoreSize")
        pending = pvc("from-creating", ns, "1Gi", cls="e2e-snap-a", dataSource=dict(snap, name="creating"))
        r = wait("the webhook to see the snapshot's status", 20,
                 lambda: (lambda r: r if not_ready in r.warnings else None)(create(pending, "--dry-run=server")))
        check(too_small in r.warnings, "the size warning", r.warnings)
        r = create(pending)
        check(r.rc == 0 and not_ready in r.warnings, "the not-ready warning", r)

        # A clone from a claim of another provisioner's class.
        must("apply", "-f", "-", input=lib.dump([pvc("source", ns, "1Gi", cls="e2e-snap-b")]))
        other = ('spec.dataSource: claim "source" is in class "e2e-snap-b" (b.csi.example.com), not of '
                 "a.csi.example.com: the clone would stay Pending (ProvisioningFailed: ...: claim in "
                 "dataSource not bound or invalid)")
        clone = pvc("clone", ns, "1Gi", cls="e2e-snap-a",
                    dataSource={"kind": "PersistentVolumeClaim", "name": "source"})
        wait("the webhook to see the source claim", 20, lambda: other in create(clone, "--dry-run=server").warnings)
        r = create(clone)
        check(r.rc == 0 and other in r.warnings, "the clone's warning", r)
        stays("the restores and the clone Pending", PV_SYNC, lambda: all(
            phase("pvc", n, ns) == "Pending" for n in ("restore", "from-creating", "clone")))
    finally:
        kubectl("delete", "namespace", ns, "--wait=false")
        cleanup_cluster_scoped(("storageclass", "e2e-snap-a"), ("storageclass", "e2e-snap-b"),
                               ("volumesnapshotcontent", f"e2e-content-{lib.RUN}"))


@case
def a_pod_whose_pv_sits_on_another_node_than_its_selector_allows_stays_pending_as_warned():
    """volumeTopology: a claim bound to a local PV on k8s-worker-01 (zone-a), mounted by a pod
    whose nodeSelector asks zone-b. The webhook warns with the scheduler's words; the scheduler
    then really leaves the pod Pending with them; the same pod without the selector schedules."""
    ns = namespace("e2e-topo")
    must("apply", "-f", "-", input=sc("e2e-topo", "kubernetes.io/no-provisioner"))
    must("apply", "-f", "-", input=pv("e2e-topo-pv", "5Gi", cls="e2e-topo",
                                      source={"local": {"path": "/mnt/topo"}},
                                      nodeAffinity={"required": {"nodeSelectorTerms": [{"matchExpressions": [
                                          {"key": "kubernetes.io/hostname", "operator": "In",
                                           "values": ["k8s-worker-01"]}]}]}}))
    must("apply", "-f", "-", input=pvc("data", ns, "1Gi", cls="e2e-topo"))
    wait("the claim bound to the local PV", 30, lambda: phase("pvc", "data", ns) == "Bound")
    elsewhere = pod("elsewhere", ns, ["data"], node_selector={"topology.kubernetes.io/zone": "zone-b"})
    reason = "node(s) didn't match PersistentVolume's node affinity"
    r = wait("the webhook to see the bound claim", 15, lambda: (lambda r: r if any(
        reason in w for w in r.warnings) else None)(create(elsewhere, "--dry-run=server")))
    r = create(elsewhere)
    check(r.rc == 0, "a warning rule refused the pod", r)
    check(r.warnings == [
        reason + ': PV "e2e-topo-pv" of claim "data" (kubernetes.io/hostname In [k8s-worker-01]: '
        'node k8s-worker-01) and the pod (nodeSelector topology.kubernetes.io/zone=zone-b: zone '
        'zone-b) share no node'], "the warning", r.warnings)

    def unschedulable():
        conds = (get("pod", "elsewhere", ns) or {}).get("status", {}).get("conditions") or []
        return next((c for c in conds if c.get("type") == "PodScheduled"
                     and c.get("status") == "False" and reason in (c.get("message") or "")), None)
    cond = wait("the scheduler's reason on the pod", 40, unschedulable)
    check(cond.get("reason") == "Unschedulable", "PodScheduled reason", cond)
    stays("the warned pod unscheduled", 5,
          lambda: not (get("pod", "elsewhere", ns) or {}).get("spec", {}).get("nodeName"))
    # The control: no conflicting selector, no warning, and the scheduler places it by the PV.
    control = create(pod("control", ns, ["data"]))
    check(control.rc == 0 and not control.warnings, "no warning for the control", control)
    wait("the control on k8s-worker-01", 40,
         lambda: (get("pod", "control", ns) or {}).get("spec", {}).get("nodeName") == "k8s-worker-01")
    must("delete", "namespace", ns, "--wait=false")
    cleanup_cluster_scoped(("storageclass", "e2e-topo"), ("pv", "e2e-topo-pv"))
def external_provisioning(driver):
    """The PV controller's event on a claim left to an external provisioner, v1.37.2
    (`provisionClaimOperationExternal`): the name in single quotes."""
    return (f"Waiting for a volume to be created either by the external provisioner '{driver}' "
            "or manually by the system administrator. If volume creation is delayed, please "
            "verify that the provisioner is running and correctly registered.")


@case
def a_class_whose_csi_driver_runs_nowhere_is_warned_and_its_claims_wait():
    """missingProvisioner against the real PV controller: nobody runs `ebs.csi.aws.com` on the
    fake nodes (no CSINode lists it) and no CSIDriver names it, so the webhook warns on a new
    class and on a claim, with the event the claim then really gets; an in-tree
    `kubernetes.io/aws-ebs` class is migrated and waits for the same CSI driver. A CSIDriver
    object named `ebs.csi.aws.com` ends the warnings (the cache sees it)."""
    ns = namespace("e2e-prov")
    csi, intree = f"e2e-ebs-{lib.RUN}", f"e2e-gp2-{lib.RUN}"
    event = external_provisioning(DRIVER)
    kubectl("delete", "csidriver", DRIVER, "--ignore-not-found")
    try:
        wait("the webhook to see no CSIDriver", 15, lambda: event in create(
            sc(f"e2e-probe-{lib.RUN}", DRIVER), "--dry-run=server").warnings)
        r = create(sc(csi, DRIVER))
        check(r.rc == 0, "the class was refused", r)
        check(r.warnings == [
            f'provisioner: claims of StorageClass "{csi}" will stay Pending: needs CSI driver '
            f'"{DRIVER}", which no node registers (CSINode) and no CSIDriver names',
            event], "the class's warnings", r.warnings)
        r = create(sc(intree, "kubernetes.io/aws-ebs"))
        check(r.rc == 0 and r.warnings[0].endswith(
            f'needs CSI driver "{DRIVER}" (migrated from kubernetes.io/aws-ebs), which '
            'no node registers (CSINode) and no CSIDriver names') and
            r.warnings[1:] == [event], "the in-tree class's warnings", r)
        for cls, claim in ((csi, "e2e-prov-csi"), (intree, "e2e-prov-intree")):
            r = create(pvc(claim, ns, cls=cls))
            check(r.rc == 0, f"{claim}: refused", r)
            check(r.warnings == [
                f'spec.storageClassName: the claim stays Pending: StorageClass "{cls}" needs CSI '
                f'driver "{DRIVER}"' + (" (migrated from kubernetes.io/aws-ebs)"
                                         if cls == intree else "") +
                ", which no node registers (CSINode) and no CSIDriver names",
                event], f"{claim}: the warnings", r.warnings)
        # What Kubernetes says: the same words, for the in-tree class too (migrated name).
        for claim in ("e2e-prov-csi", "e2e-prov-intree"):
            wait(f"{claim}: the ExternalProvisioning event", 30,
                 lambda: ("ExternalProvisioning", event) in lib.events(claim))
            got = get("pvc", claim, ns)["metadata"].get("annotations", {})
            check(got.get("volume.kubernetes.io/storage-provisioner") == DRIVER,
                  f"{claim}: left to another provisioner", got)
        stays("the claims Pending", PV_SYNC, lambda: all(
            phase("pvc", c, ns) == "Pending" for c in ("e2e-prov-csi", "e2e-prov-intree")))

        must("apply", "-f", "-", input={"apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver",
                                        "metadata": {"name": DRIVER}, "spec": {}})
        wait("the webhook to see the CSIDriver", 15, lambda: not create(
            pvc("probe", ns, cls=csi), "--dry-run=server").warnings)
        r = create(pvc("e2e-prov-after", ns, cls=intree))
        check(r.rc == 0 and not r.warnings, "warned although a CSIDriver names the driver", r)
        r = create(sc(f"e2e-after-{lib.RUN}", DRIVER), "--dry-run=server")
        check(r.rc == 0 and not r.warnings, "a class warned although a CSIDriver names it", r)
    finally:
        cleanup_cluster_scoped(("csidriver", DRIVER), ("storageclass", csi),
                               ("storageclass", intree))


DRIVER = "ebs.csi.aws.com"


# Registered last: its hundreds of Pending claims keep the controller manager's event writer
# busy for a while, which later cases reading events would wait behind.
import oracle  # noqa: E402,F401


def main():
    return lib.run(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
