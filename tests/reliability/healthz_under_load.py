#!/usr/bin/env python3
"""/healthz and small reviews while two hostile 8 MiB reviews run (issue 28).

Starts the release binary `serve --no-cluster` pinned to one core (taskset), with a policy of
5,000 StorageClasses, then for DURATION seconds:
  - two processes post hostile reviews of up to the 8 MiB body limit, in turn, over TLS (each on a
    new connection, as kube-apiserver's client may);
  - this process polls GET /healthz on the admin port every 20 ms;
  - another posts a small PVC review over a new TLS connection every 100 ms.
Polls /healthz alone first (the machine's own noise, for comparison), then under that load.
Prints the latency of each (median, p99, max) and every status seen. Exits 1 when /healthz ever
took more than 50 ms, a hostile review got no proper answer, or the webhook died.

Usage: python3 tests/reliability/healthz_under_load.py [BINARY] [DURATION_SECONDS]
  BINARY defaults to target/release/storage-policy-webhook (CARGO_TARGET_DIR honoured).
This is a measurement, not part of `cargo test` (it needs a quiet core to mean anything);
RELIABILITY.md gives its figures.
"""

import http.client
import json
import multiprocessing
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

LIMIT = 8 << 20


def review(group, kind, namespace, obj, uid="h"):
    req = {
        "uid": uid,
        "kind": {"group": group, "version": "v1", "kind": kind},
        "resource": {"group": group, "version": "v1", "resource": kind.lower() + "s"},
        "operation": "CREATE",
        "userInfo": {"username": "mallory"},
        "object": obj,
    }
    if namespace:
        req["namespace"] = namespace
    return json.dumps(
        {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req},
        separators=(",", ":"),
    ).encode()


def fill(make, limit=LIMIT - 4096):
    """The largest n (by doubling then bisection) whose body make(n) stays within limit."""
    lo, hi = 1, 2
    while len(make(hi)) <= limit:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if len(make(mid)) <= limit:
            lo = mid
        else:
            hi = mid
    return make(lo)


def hostile_bodies():
    def pv_annotation(n):
        names = ",".join(f"node-{i:07}" for i in range(n))
        return review("", "PersistentVolume", None, {
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": "pv", "annotations": {"storage-policy.io/node": names}},
            "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"],
                     "storageClassName": "local-storage", "local": {"path": "/data/x"}}})

    def pv_affinity(n):
        return review("", "PersistentVolume", None, {
            "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv"},
            "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"],
                     "storageClassName": "local-storage", "local": {"path": "/data/x"},
                     "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                         {"key": "kubernetes.io/hostname", "operator": "In",
                          "values": [f"node-{i:07}" for i in range(n)]}]}]}}}})

    def pod_unknown(n):
        vols = [{"name": f"v{i}", "ephemeral": {"volumeClaimTemplate": {"spec": {
            "storageClassName": f"class-{i % 5000:04}x", "accessModes": ["ReadWriteMany"],
            "resources": {"requests": {"storage": "1Gi"}}}}}} for i in range(n)]
        return review("", "Pod", "default", {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "x"}],
                     "volumes": vols}})

    def sts_templates(n):
        tpls = [{"metadata": {"name": f"t{i}"}, "spec": {
            "storageClassName": f"{i:05}" + "c" * 190, "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "5Gi"}}}} for i in range(n)]
        return review("apps", "StatefulSet", "default", {
            "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web"},
            "spec": {"replicas": 2147483647, "serviceName": "web", "selector": {},
                     "template": {"spec": {"nodeName": "node-1",
                                           "containers": [{"name": "c", "image": "x"}]}},
                     "volumeClaimTemplates": tpls}})

    return [
        ("pv-annotation", fill(pv_annotation)),
        ("pv-affinity", fill(pv_affinity)),
        ("pod-ephemeral-unknown", fill(pod_unknown)),
        ("sts-templates", fill(sts_templates)),
    ]


def small_body():
    return review("", "PersistentVolumeClaim", "default", {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"],
                 "resources": {"requests": {"storage": "1Gi"}}}}, uid="small")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(ctx, port, path, body, timeout=15):
    t = time.monotonic()
    conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=timeout)
    try:
        conn.request("POST", path + "?timeout=10s", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        status = resp.status
        if status == 200:
            answer = json.loads(data)
            assert answer["response"]["uid"], data[:200]
    except Exception as e:  # noqa: BLE001 - every failure is reported, none hides
        status = f"error: {e}"
    finally:
        conn.close()
    return status, (time.monotonic() - t) * 1e3


def summary(name, samples):
    ms = sorted(s for s in samples)
    if not ms:
        return f"{name}: no samples"
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return (f"{name}: n={len(ms)} median {statistics.median(ms):.1f} ms, p99 {p99:.1f} ms, "
            f"max {ms[-1]:.1f} ms")


def main():
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    binary = sys.argv[1] if len(sys.argv) > 1 else os.path.join(target, "release",
                                                                "storage-policy-webhook")
    duration = float(sys.argv[2]) if len(sys.argv) > 2 else 30.0
    tmp = tempfile.mkdtemp(prefix="spw-healthz-")
    classes = "\n".join(
        f"  - {{name: class-{i:04}, provisioner: ebs.csi.aws.com}}" for i in range(5000))
    policy = os.path.join(tmp, "policy.yaml")
    with open(policy, "w") as f:
        f.write("mode: enforce\nstorageClasses:\n"
                "  - {name: local-storage, provisioner: kubernetes.io/no-provisioner, kind: local,"
                " volumeBindingMode: WaitForFirstConsumer}\n" + classes + "\n")
    port, admin = free_port(), free_port()
    cmd = [binary, "serve", "--no-cluster", "--config", policy,
           "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin}",
           "--self-signed-dir", os.path.join(tmp, "certs")]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", "0"] + cmd
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPW_")}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(
        os.path.join(tmp, "serve.log"), "w"), env=env)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", admin, timeout=1)
                c.request("GET", "/readyz")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                print("the webhook did not become ready; log:", open(
                    os.path.join(tmp, "serve.log")).read()[-2000:])
                return 1
            time.sleep(0.1)
        ctx = ssl.create_default_context(cafile=os.path.join(tmp, "certs", "ca.crt"))
        bodies = hostile_bodies()
        print("hostile bodies:", ", ".join(f"{n} {len(b) / 2**20:.2f} MiB" for n, b in bodies))
        # The load runs in other processes, so that the poller's own latency is not the
        # interpreter's lock held by a thread writing 8 MiB.
        mp = multiprocessing.get_context("fork")
        stop, results = mp.Event(), mp.Queue()
        hostile, small, health = {}, [], []
        statuses = {}

        def poll_healthz(seconds, into):
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                t0 = time.monotonic()
                try:
                    c = http.client.HTTPConnection("127.0.0.1", admin, timeout=5)
                    c.request("GET", "/healthz")
                    ok = c.getresponse().status == 200
                    c.close()
                except OSError:
                    ok = False
                into.append((time.monotonic() - t0) * 1e3)
                statuses[f"healthz {ok}"] = statuses.get(f"healthz {ok}", 0) + 1
                time.sleep(0.02)

        # The same polling without load first: the machine's own noise, side by side.
        idle = []
        poll_healthz(min(10.0, duration / 3), idle)

        def hostile_loop(offset):
            i, seen, counts = offset, {}, {}
            while not stop.is_set():
                name, body = bodies[i % len(bodies)]
                for path in ("/validate", "/mutate"):
                    status, ms = post(ctx, port, path, body)
                    seen.setdefault(f"hostile {name} {path}", []).append(ms)
                    counts[f"hostile {status}"] = counts.get(f"hostile {status}", 0) + 1
                i += 1
            results.put((seen, counts))

        def small_loop():
            body, seen, counts = small_body(), [], {}
            while not stop.is_set():
                status, ms = post(ctx, port, "/validate", body)
                seen.append(ms)
                counts[f"small {status}"] = counts.get(f"small {status}", 0) + 1
                time.sleep(0.1)
            results.put(({"small": seen}, counts))

        workers = [mp.Process(target=hostile_loop, args=(k,)) for k in (0, 2)]
        workers.append(mp.Process(target=small_loop))
        for w in workers:
            w.start()
        poll_healthz(duration, health)
        stop.set()
        for _ in workers:
            seen, counts = results.get(timeout=60)
            small.extend(seen.pop("small", []))
            for k, v in seen.items():
                hostile.setdefault(k, []).extend(v)
            for k, v in counts.items():
                statuses[k] = statuses.get(k, 0) + v
        for w in workers:
            w.join()
        print(summary("/healthz, no other load", idle))
        print(summary("/healthz, two hostile reviews running", health))
        print(summary("small review (new TLS connection)", small))
        for name, samples in sorted(hostile.items()):
            print(summary(name, samples))
        print("statuses:", json.dumps(statuses, sort_keys=True))
        bad = (max(health) > 50 or proc.poll() is not None
               or any(k.startswith("hostile error") or k == "healthz False" for k in statuses))
        return 1 if bad else 0
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
