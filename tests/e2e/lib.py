"""The end-to-end suite's tools: kubectl against the cluster `tests/e2e/cluster up --webhook`
started, waits, the webhook's policy file, and a tiny runner whose last line is
`N passed, M failed`.

Everything is judged through the real kubectl, kube-apiserver, controllers and scheduler: what a
user would see (`Error from server ...`, `Warning: ...`, the object as stored) and what
Kubernetes then does with the object.
"""

import json
import os
import re
import subprocess
import sys
import time
import traceback
import urllib.request

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CLUSTER = os.path.join(HERE, "cluster")


def cluster_env():
    out = subprocess.run([CLUSTER, "env"], check=True, capture_output=True, text=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


ENV = cluster_env()
KUBECTL = os.path.join(ENV["BIN"], "kubectl")
KUBECONFIG = ENV["KUBECONFIG"]
STATE = ENV["STATE"]
POLICY = os.path.join(STATE, "webhook", "policy.yaml")
WEBHOOK_ADMIN = ENV["WEBHOOK_ADMIN"]
WEBHOOK_BIN = os.environ.get("SPW_E2E_WEBHOOK_BIN") or os.environ.get(
    "SPW_BIN",
    os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target")), "release",
                 "storage-policy-webhook"),
)


class Failure(AssertionError):
    pass


def check(cond, what, *details):
    if not cond:
        raise Failure(what + "".join("\n    " + str(d) for d in details))


class Result:
    def __init__(self, proc):
        self.rc = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr

    @property
    def warnings(self):
        """The `Warning: ...` lines kubectl printed, without the prefix."""
        return [l[len("Warning: "):] for l in self.err.splitlines() if l.startswith("Warning: ")]

    @property
    def errors(self):
        return [l for l in self.err.splitlines() if l.startswith("Error from server")]

    def __repr__(self):
        return f"rc={self.rc}\n    stdout: {self.out.strip()}\n    stderr: {self.err.strip()}"


def kubectl(*args, input=None, timeout=90):
    if isinstance(input, (dict, list)):
        input = dump(input)
    proc = subprocess.run(
        [KUBECTL, "--kubeconfig", KUBECONFIG, *args],
        input=input, capture_output=True, text=True, timeout=timeout,
    )
    return Result(proc)


def must(*args, input=None):
    r = kubectl(*args, input=input)
    check(r.rc == 0, f"kubectl {' '.join(args)} failed", r)
    return r


def dump(objs):
    if isinstance(objs, dict):
        objs = [objs]
    return "\n---\n".join(yaml.safe_dump(o, sort_keys=False) for o in objs)


def apply(objs, *extra):
    """`kubectl apply -f -` (client-side, as most users run it)."""
    return kubectl("apply", "-f", "-", *extra, input=dump(objs))


def create(objs, *extra):
    return kubectl("create", "-f", "-", *extra, input=dump(objs))


def get(kind, name, namespace=None):
    args = ["get", kind, name, "-o", "json"]
    if namespace:
        args += ["-n", namespace]
    r = kubectl(*args)
    if r.rc != 0:
        return None
    return json.loads(r.out)


def items(kind, namespace=None, selector=None):
    args = ["get", kind, "-o", "json"]
    args += ["-n", namespace] if namespace else []
    args += ["-l", selector] if selector else []
    return json.loads(must(*args).out)["items"]


def events(name):
    """Reasons and messages of the events about objects of this name, in any namespace
    (a cluster-scoped object's events land in `default`)."""
    r = must("get", "events", "--all-namespaces", "-o", "json",
             "--field-selector", f"involvedObject.name={name}")
    return [(e.get("reason"), e.get("message", "")) for e in json.loads(r.out)["items"]]


def wait(what, seconds, fn, interval=0.25):
    """Polls fn until it returns a truthy value; fails naming `what`."""
    deadline = time.monotonic() + seconds
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise Failure(f"timed out after {seconds}s waiting for {what} (last: {last!r})")


def stays(what, seconds, fn, interval=0.5):
    """fn must stay truthy for the whole period (the outcome Kubernetes keeps)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        v = fn()
        check(v, f"{what} changed", v)
        time.sleep(interval)


def phase(kind, name, namespace=None):
    o = get(kind, name, namespace)
    return (o or {}).get("status", {}).get("phase")


# PV controller resync here is 2 s (`--pvclaimbinder-sync-period`); two syncs and slack.
PV_SYNC = 6


# Names made by one run of the suite carry this, so a rerun on a running cluster never meets a
# leftover (pods bound to nodes without a kubelet never finish terminating).
RUN = format(int(time.time()) % 46656, "x")


def namespace(name, labels=None, annotations=None):
    """Creates `<name>-<run>` and returns that name."""
    name = f"{name}-{RUN}"
    meta = {"name": name}
    if labels:
        meta["labels"] = labels
    if annotations:
        meta["annotations"] = annotations
    must("apply", "-f", "-", input={"apiVersion": "v1", "kind": "Namespace", "metadata": meta})
    # Pods need the namespace's default ServiceAccount (made by the controller manager).
    wait(f"serviceaccount default in {name}", 30,
         lambda: kubectl("get", "serviceaccount", "default", "-n", name).rc == 0)
    return name


# --- the webhook ---------------------------------------------------------------------------


def metrics():
    with urllib.request.urlopen(WEBHOOK_ADMIN + "/metrics", timeout=5) as r:
        return r.read().decode()


def metric(name, **labels):
    """The sum of a metric's samples whose labels include `labels`."""
    total = 0.0
    for line in metrics().splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total


def chart_policy():
    with open(POLICY) as f:
        return yaml.safe_load(f)


class Policy:
    """Runs a block under another policy file (hot-reloaded by the webhook) and restores the
    chart's afterwards."""

    def __init__(self, policy):
        self.policy = policy

    def __enter__(self):
        with open(POLICY) as f:
            self.saved = f.read()
        write_policy(self.policy)
        return self

    def __exit__(self, *exc):
        write_policy(self.saved)


def write_policy(policy):
    text = policy if isinstance(policy, str) else yaml.safe_dump(policy, sort_keys=False)
    before = metric("storage_policy_webhook_policy_reloads_total")
    tmp = POLICY + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, POLICY)
    wait("the webhook to reload its policy", 15,
         lambda: metric("storage_policy_webhook_policy_reloads_total") > before)


def with_rules(base, **modes):
    """The chart's policy with some rules' modes changed (`willBind="off"`)."""
    p = json.loads(json.dumps(base))
    rules = p.setdefault("rules", {})
    for key, mode in modes.items():
        rules.setdefault(key, {})["mode"] = mode
    return p


def review(obj, endpoint, policy_file, operation="CREATE", namespace=None, old=None):
    """What the webhook's own `review` command answers for one object (no cluster)."""
    req = {"uid": "e2e", "kind": {"group": "", "version": "v1", "kind": obj["kind"]},
           "operation": operation, "object": obj, "dryRun": False,
           "userInfo": {"username": "e2e"}}
    if namespace:
        req["namespace"] = namespace
    if old is not None:
        req["oldObject"] = old
    body = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req}
    out = subprocess.run([WEBHOOK_BIN, "review", "--config", policy_file, "--endpoint", endpoint],
                         input=json.dumps(body), capture_output=True, text=True, check=True).stdout
    return json.loads(out)["response"]


# --- the runner ----------------------------------------------------------------------------

CASES = []


def case(fn):
    CASES.append(fn)
    return fn


def run(selected=None):
    passed, failed = 0, []
    started = time.monotonic()
    for fn in CASES:
        name = fn.__name__
        if selected and not any(s in name for s in selected):
            continue
        t0 = time.monotonic()
        try:
            fn()
        except Exception as e:  # noqa: BLE001: every failure is reported, the suite goes on
            failed.append(name)
            detail = str(e) if isinstance(e, Failure) else traceback.format_exc()
            print(f"FAIL {name} ({time.monotonic() - t0:.1f}s)\n    {detail}", flush=True)
        else:
            passed += 1
            print(f"ok   {name} ({time.monotonic() - t0:.1f}s)", flush=True)
    print(f"\ne2e: {time.monotonic() - started:.0f}s" + (f"; failed: {', '.join(failed)}" if failed else ""))
    print(f"{passed} passed, {len(failed)} failed")
    return 1 if failed else 0
