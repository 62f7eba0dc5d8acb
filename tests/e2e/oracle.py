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
from lib import Policy, case, chart_policy, check, create, items, kubectl, must, namespace, wait

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
        labels = {"oracle-world": w}
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
            spec = {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}],
                    "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": f"{w}-claim"}}]}
            if rng.random() < 0.3:
                # Past the scheduler: only a claim the PV controller binds by itself (reserved
                # by a PV's claimRef) is ever bound.
                spec["nodeName"] = rng.choice(NODES)
            namespaced.append({"apiVersion": "v1", "kind": "Pod",
                               "metadata": {"name": f"{w}-pod", "namespace": NS}, "spec": spec})
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


def admit(o, warnings, denied, world):
    """Creates one object through the webhook; a refused one is recorded and then created past
    the webhook (the chart's opt-out label on it and on its claim templates), so Kubernetes
    shows what it would have done with it."""
    r = create(o)
    warnings.setdefault(world, []).extend(r.warnings)
    if r.rc == 0:
        return
    check("is invalid: " in r.err, f"world {world}: {o['kind']} failed", r)
    denied.append((world, o["kind"], o["metadata"]["name"], r.err.strip().splitlines()[-1]))
    o["metadata"].setdefault("labels", {})["storage-policy.io/ignore"] = "true"
    for t in o.get("spec", {}).get("volumeClaimTemplates", []):
        t["metadata"]["labels"] = {"storage-policy.io/ignore": "true"}
    must("create", "-f", "-", input=o)


@case
def oracle_binding_predictions_agree_with_the_pv_controller_and_scheduler():
    """Also the no-false-denial property: every object (PV, claim, StatefulSet, pod) goes
    through the webhook in enforce mode; a denied one whose claim Kubernetes then binds is a
    false denial.

    Under the chart's policy with one change: `rejectReadWriteManyOn: [block]`. Refusing
    ReadWriteMany on node-local storage is a ban the administrator chooses (the default policy
    has it, and the public conformance cases pin it), not a prediction: the PV controller does
    bind a ReadWriteMany claim to a hand-made local PV offering it. Every other denial here
    must rest on certainty."""
    policy = chart_policy()
    policy.setdefault("rules", {}).setdefault("accessModes", {})["rejectReadWriteManyOn"] = ["block"]
    with Policy(policy):
        judge_worlds()


def judge_worlds():
    n = int(os.environ.get("SPW_ORACLE_WORLDS", "200"))
    seed = int(os.environ.get("SPW_ORACLE_SEED", "1"))
    rng = random.Random(seed)
    global NS
    NS = namespace("e2e-oracle")
    worlds = [world(i, rng) for i in range(n)]
    cluster_objs = [o for w in worlds for o in w["cluster"]]
    warnings, denied = {}, []
    classes = [o for o in cluster_objs if o["kind"] == "StorageClass"]
    must("apply", "-f", "-", input={"apiVersion": "v1", "kind": "List", "items": classes})
    for w in worlds:
        for o in w["cluster"]:
            if o["kind"] == "PersistentVolume":
                admit(o, {}, denied, w["name"])
    # The webhook's PV cache follows a watch: give it the last events.
    time.sleep(3)
    for w in worlds:
        for o in w["objects"]:
            if o["kind"] != "Pod":
                admit(o, warnings, denied, w["name"])
    for w in worlds:
        for o in w["objects"]:
            if o["kind"] == "Pod":
                admit(o, {}, denied, w["name"])
    objects = len(cluster_objs) + sum(len(w["objects"]) for w in worlds)
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
    # False denials: a refused PV that a claim bound to, a refused claim or StatefulSet whose
    # claims bound, a refused pod whose claim bound (the PV controller needed no scheduler).
    bound_to = {c["spec"].get("volumeName"): n for n, c in claims_now().items()
                if c.get("status", {}).get("phase") == "Bound"}
    false_denials = []
    for world_name, kind, name, why in denied:
        w = next(x for x in worlds if x["name"] == world_name)
        if kind == "PersistentVolume":
            served = name in bound_to
        else:
            served = all(last.get(c) == "Bound" for c in w["claims"])
        if served:
            false_denials.append((world_name, kind, name, why))
    # Claim predictions: a claim or StatefulSet refused, or warned to stay Pending, must stay so.
    claim_denied = {d[0] for d in denied if d[1] in ("PersistentVolumeClaim", "StatefulSet")}
    agree, disagree = 0, []
    for w in worlds:
        sts = w["kind"] == "sts"
        pending = any(last.get(c) != "Bound" for c in w["claims"]) if sts else None
        for c in w["claims"]:
            if not sts:
                pending = last.get(c) != "Bound"
            said = w["name"] in claim_denied or predicted_pending(warnings.get(w["name"], []), c, sts)
            if said == pending:
                agree += 1
            else:
                disagree.append((w, c, said, pending))
            if sts:
                break  # one warning covers the template
    out = os.environ.get("SPW_E2E_STATE", "/tmp/spw-e2e") + ".oracle"
    os.makedirs(out, exist_ok=True)
    for w, c, said, pending in disagree:
        with open(os.path.join(out, f"{w['name']}.json"), "w") as f:
            json.dump({"world": w, "claim": c, "webhook_said_pending": said,
                       "denials": [d for d in denied if d[0] == w["name"]],
                       "kubernetes_left_pending": pending,
                       "warnings": warnings.get(w["name"], [])}, f, indent=1)
    print(f"    oracle: {n} worlds (seed {seed}), {objects} objects through the webhook, "
          f"{len(denied)} denied, {len(false_denials)} false denials; {len(expected_claims)} "
          f"claims: {agree} agreements, {len(disagree)} disagreements"
          + (f" (written to {out})" if disagree else ""))
    kubectl("delete", "namespace", NS, "--wait=false")
    kubectl("delete", "-f", "-", "--wait=false", "--ignore-not-found",
            input={"apiVersion": "v1", "kind": "List", "items": cluster_objs})
    summary = [f"false denial: {kind} {name} (world {wn}): {why}"
               for wn, kind, name, why in false_denials[:8]]
    summary += [f"{w['name']} ({w['kind']}) {c}: webhook "
                f"{'denied it' if w['name'] in claim_denied else 'said Pending' if said else 'said it binds'}"
                f", Kubernetes left it {'Pending' if pending else 'Bound'}; warnings "
                f"{warnings.get(w['name'])}" for w, c, said, pending in disagree[:12]]
    check(not disagree and not false_denials,
          f"{len(disagree)} disagreements, {len(false_denials)} false denials", *summary)
