"""A differential oracle for the binding rules: many small generated worlds (classes, hand-made
PVs with sizes, access and volume modes, labels, claimRefs and node affinity; a claim, or a
StatefulSet's claims, sometimes consumed by a pod), the webhook's prediction for each claim
(warned that it stays Pending, or not) read from what `kubectl create` prints, then the real PV
controller and scheduler decide. A disagreement is a bug of ours until shown otherwise: the
worlds that disagree are written to $SPW_E2E_STATE.oracle/ (and the failure names them) so they
can be kept as cases.

SPW_ORACLE_WORLDS (default 200) and SPW_ORACLE_SEED (default 1) choose the worlds.
"""

import json
import os
import random
import time

import lib
from lib import case, check, create, items, kubectl, must, namespace, wait

NS = "e2e-oracle"
NODES = ["k8s-worker-01", "k8s-worker-02", "pi-1", "pi-2"]
SIZES = ["1Gi", "2Gi", "5Gi"]
REQUESTS = ["500Mi", "1Gi", "2Gi", "3Gi", "5Gi", "8Gi"]
MODES = [["ReadWriteOnce"], ["ReadWriteMany"], ["ReadOnlyMany"], ["ReadWriteOnce", "ReadOnlyMany"],
         ["ReadWriteOnce", "ReadWriteMany"], ["ReadWriteOncePod"]]


def world(i, rng):
    """One world: its cluster-scoped objects (classes, PVs), its namespaced objects (claims,
    StatefulSets, pods) and the claims to compare."""
    w = f"w{i}-{lib.RUN}"
    kind = rng.choice(["immediate", "immediate", "missing-class", "wffc", "no-class", "sts"])
    cls = "" if kind == "no-class" else f"oracle-{w}"
    classes = []
    if kind in ("immediate", "sts"):
        classes.append({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                        "metadata": {"name": cls}, "provisioner": "kubernetes.io/no-provisioner",
                        "volumeBindingMode": "Immediate"})
    elif kind == "wffc":
        classes.append({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                        "metadata": {"name": cls}, "provisioner": "kubernetes.io/no-provisioner",
                        "volumeBindingMode": "WaitForFirstConsumer"})
    pvs = []
    for k in range(rng.choice([0, 1, 1, 2, 2, 3])):
        spec = {"capacity": {"storage": rng.choice(SIZES)}, "accessModes": rng.choice(MODES),
                "storageClassName": cls}
        if rng.random() < 0.2:
            spec["volumeMode"] = "Block"
        # The oracle judges binding predictions: the PVs go in as generated, past the
        # webhook's PV rules (the chart's opt-out label).
        labels = {"oracle-world": w, "storage-policy.io/ignore": "true"}
        if rng.random() < 0.5:
            labels["tier"] = rng.choice(["fast", "slow"])
        if kind == "wffc" or rng.random() < 0.2:
            node = rng.choice(NODES + ["gone-node"])
            spec["local"] = {"path": f"/mnt/{w}-{k}"}
            spec["nodeAffinity"] = {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}
        else:
            spec["hostPath"] = {"path": f"/tmp/{w}-{k}"}
        r = rng.random()
        if r < 0.15:
            spec["claimRef"] = {"name": f"{w}-claim", "namespace": NS}
        elif r < 0.25:
            spec["claimRef"] = {"name": f"{w}-someone-else", "namespace": NS}
        pvs.append({"apiVersion": "v1", "kind": "PersistentVolume",
                    "metadata": {"name": f"oracle-{w}-pv{k}", "labels": labels}, "spec": spec})

    def claim_spec():
        s = {"accessModes": rng.choice(MODES[:5]),
             "resources": {"requests": {"storage": rng.choice(REQUESTS)}},
             "storageClassName": cls}
        if rng.random() < 0.2:
            s["volumeMode"] = "Block"
        # Worlds share the class "" : a selector keeps each to its own PVs.
        sel = {"oracle-world": w} if kind == "no-class" else {}
        if rng.random() < 0.3:
            sel["tier"] = rng.choice(["fast", "slow"])
        if sel:
            s["selector"] = {"matchLabels": sel}
        return s

    namespaced, claims = [], []
    if kind == "sts":
        replicas = rng.choice([1, 2, 3])
        start = rng.choice([None, None, 5])
        spec = {"serviceName": w, "replicas": replicas, "podManagementPolicy": "Parallel",
                "selector": {"matchLabels": {"app": w}},
                "template": {"metadata": {"labels": {"app": w}}, "spec": {"containers": [
                    {"name": "c", "image": "registry.k8s.io/pause:3.10"}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "d"}, "spec": claim_spec()}]}
        if start is not None:
            spec["ordinals"] = {"start": start}
        namespaced.append({"apiVersion": "apps/v1", "kind": "StatefulSet",
                           "metadata": {"name": w, "namespace": NS}, "spec": spec})
        claims = [f"d-{w}-{(start or 0) + o}" for o in range(replicas)]
    else:
        namespaced.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                           "metadata": {"name": f"{w}-claim", "namespace": NS},
                           "spec": claim_spec()})
        claims = [f"{w}-claim"]
        if kind == "wffc":
            namespaced.append({"apiVersion": "v1", "kind": "Pod",
                               "metadata": {"name": f"{w}-pod", "namespace": NS},
                               "spec": {"containers": [{"name": "c",
                                                        "image": "registry.k8s.io/pause:3.10"}],
                                        "volumes": [{"name": "d", "persistentVolumeClaim": {
                                            "claimName": f"{w}-claim"}}]}})
    return {"name": w, "kind": kind, "cluster": classes + pvs, "objects": namespaced,
            "claims": claims}


def predicted_pending(warnings, claim, sts):
    """Whether the webhook's warnings say this claim will wait."""
    for w in warnings:
        if "Pending" not in w:
            continue
        if not sts or f'"{claim}"' in w or f" {claim} " in w or "claims from this template" in w:
            return True
        # willBind's StatefulSet warning names the first claim that waits and a count.
        if "will stay Pending" in w:
            return True
    return False


@case
def oracle_binding_predictions_agree_with_the_pv_controller_and_scheduler():
    n = int(os.environ.get("SPW_ORACLE_WORLDS", "200"))
    seed = int(os.environ.get("SPW_ORACLE_SEED", "1"))
    rng = random.Random(seed)
    global NS
    NS = namespace("e2e-oracle")
    worlds = [world(i, rng) for i in range(n)]
    cluster_objs = [o for w in worlds for o in w["cluster"]]
    must("apply", "-f", "-", input={"apiVersion": "v1", "kind": "List", "items": cluster_objs})
    # The webhook's PV cache follows a watch: wait until it has every PV (the probe: a claim on
    # the last world's class that only a PV of it fits says nothing once the PV is cached).
    time.sleep(3)
    warnings, denied = {}, set()
    for w in worlds:
        for o in w["objects"]:
            if o["kind"] == "Pod":
                continue
            r = create(o)
            warnings[w["name"]] = r.warnings
            if r.rc != 0:
                # Refused: a prediction that it could never work. Let Kubernetes show what it
                # would have done (the chart's opt-out label on the object and its claims).
                check("is invalid: " in r.err, f"world {w['name']}: {o['kind']} failed", r)
                denied.add(w["name"])
                o["metadata"]["labels"] = {"storage-policy.io/ignore": "true"}
                for t in o.get("spec", {}).get("volumeClaimTemplates", []):
                    t["metadata"]["labels"] = {"storage-policy.io/ignore": "true"}
                must("create", "-f", "-", input=o)
    for w in worlds:
        for o in w["objects"]:
            if o["kind"] == "Pod":
                must("create", "-f", "-", input=o)
    # Decide: everything that binds does so within a few PV controller syncs and scheduling
    # rounds; what is still Pending after that stays so (nothing here would change it).
    expected_claims = {(w["name"], c) for w in worlds for c in w["claims"]}

    def claims_now():
        return {c["metadata"]["name"]: c for c in items("pvc", NS)}

    wait("every StatefulSet claim to exist", 60, lambda: all(
        c in claims_now() for _, c in expected_claims))
    time.sleep(lib.PV_SYNC * 2)
    last = None
    for _ in range(10):
        now = {n: c.get("status", {}).get("phase") for n, c in claims_now().items()}
        if now == last:
            break
        last = now
        time.sleep(lib.PV_SYNC)
    agree, disagree, false_denials = 0, [], []
    for w in worlds:
        sts = w["kind"] == "sts"
        for c in w["claims"]:
            pending = last.get(c) != "Bound"
            said = w["name"] in denied or predicted_pending(warnings.get(w["name"], []), c, sts)
            if sts:
                # One warning covers the template: it must be given iff some claim waits.
                pending = any(last.get(x) != "Bound" for x in w["claims"])
            if said == pending:
                agree += 1
            else:
                disagree.append((w, c, said, pending))
                if w["name"] in denied:
                    false_denials.append(w["name"])
            if sts:
                break
    out = os.environ.get("SPW_E2E_STATE", "/tmp/spw-e2e") + ".oracle"
    os.makedirs(out, exist_ok=True)
    for w, c, said, pending in disagree:
        with open(os.path.join(out, f"{w['name']}.json"), "w") as f:
            json.dump({"world": w, "claim": c, "webhook_said_pending": said,
                       "webhook_denied": w["name"] in denied,
                       "kubernetes_left_pending": pending,
                       "warnings": warnings.get(w["name"], [])}, f, indent=1)
    print(f"    oracle: {n} worlds (seed {seed}), {len(expected_claims)} claims, {len(denied)} worlds "
          f"denied ({len(false_denials)} falsely), {agree} agreements, {len(disagree)} disagreements"
          + (f" (written to {out})" if disagree else ""))
    # Clean up: the namespace, then the cluster-scoped objects.
    kubectl("delete", "namespace", NS, "--wait=false")
    kubectl("delete", "-f", "-", "--wait=false", "--ignore-not-found",
            input={"apiVersion": "v1", "kind": "List", "items": cluster_objs})
    summary = [f"{w['name']} ({w['kind']}) {c}: webhook "
               f"{'denied it' if w['name'] in denied else 'said Pending' if said else 'said it binds'}, Kubernetes left it "
               f"{'Pending' if pending else 'Bound'}; warnings {warnings.get(w['name'])}"
               for w, c, said, pending in disagree[:10]]
    check(not disagree, f"{len(disagree)} disagreements", *summary)
