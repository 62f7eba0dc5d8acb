#!/usr/bin/env python3
"""Checks the Helm chart with the real Helm engine, offline.

Lints the chart strictly and renders it (helm-python-sdk, the Helm v4 library) for the default
values, each certificate mode and the optional features; validates every rendered object against
the Kubernetes OpenAPI schema (kubernetes-validate, strict) for the oldest supported and a current
release; asserts the webhook configurations, RBAC, hardening, availability and policy settings the
webhook relies on; and checks that values.schema.json refuses bad values.

Run: python3 tests/chart/test_chart.py   (or bash tests/chart/run.sh, which makes the venv)
Prints one line per check and ends with "N passed, M failed"; exits 1 on any failure.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any, Callable

import helm_python as helm
import kubernetes_validate
import yaml

import observability

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "storage-policy-webhook"
RELEASE = "spw"
NAMESPACE = "storage-policy"
FULLNAME = f"{RELEASE}-storage-policy-webhook"
# Oldest release the chart supports (Chart.yaml kubeVersion) and the one the project targets.
KUBE_VERSIONS = ["1.30", "1.33"]
# Custom resources: kubernetes-validate ships only the built-in API's schemas.
CRD_KINDS = {
    ("cert-manager.io/v1", "Issuer"),
    ("cert-manager.io/v1", "Certificate"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}
CLUSTER_SCOPED = {
    "ClusterRole",
    "ClusterRoleBinding",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
}
# volumeTopology judges every pod spec that mounts claims or generic ephemeral volumes, which
# covers the other rules' filters (ephemeral volumes; nodeName with claims).
EPHEMERAL_CEL = ("has(object.spec.volumes) && "
                 "object.spec.volumes.exists(v, has(v.persistentVolumeClaim) || has(v.ephemeral))")
OPT_OUT = {"key": "storage-policy.io/ignore", "operator": "NotIn", "values": ["true"]}
WEBHOOK_KINDS = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
# The mutating registration skips PVs a provisioner made that no mutating rule changes.
NOT_PROVISIONED_CEL = (
    "request.resource.resource != 'persistentvolumes' || "
    "!(has(object.metadata.annotations) && 'pv.kubernetes.io/provisioned-by' in object.metadata.annotations && "
    "object.metadata.annotations['pv.kubernetes.io/provisioned-by'] != '' && "
    "!object.metadata.annotations['pv.kubernetes.io/provisioned-by'].startsWith('kubernetes.io/')) || "
    "((has(object.spec.local) || has(object.spec.hostPath)) && "
    "!(has(object.spec.nodeAffinity) && has(object.spec.nodeAffinity.required)))")
# The rules, as the registry lists them: filled by main() from `rules --output json` of the binary
# the cross-checks run (find_binary), else from the chart's spw.ruleKeys, which
# `UPDATE_CHART=1 cargo test --test chart_rules` generates from the registry.
RULE_KEYS: list[str] = []
DELETE_CEL = ("!has(oldObject.metadata.deletionTimestamp) && "
              "(request.resource.resource == 'persistentvolumeclaims' || "
              "(has(oldObject.status) && has(oldObject.status.phase) && oldObject.status.phase == 'Bound'))")


class Report:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def check(self, name: str, fn: Callable[[], Any]) -> Any:
        try:
            result = fn()
        except AssertionError as e:
            self.failed += 1
            print(f"FAIL {name}: {e}")
            return None
        except Exception as e:  # a crash in a check is a failure of that check, not of the run
            self.failed += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}")
            traceback.print_exc(limit=3, file=sys.stdout)
            return None
        self.passed += 1
        print(f"ok   {name}")
        return result

    @staticmethod
    def note(text: str) -> None:
        print(f"note {text}")


R = Report()
# Every successful scenario render, for the cross-checks against the webhook binary.
RENDERED: dict[str, "Rendered"] = {}


def expect(cond: Any, msg: str) -> None:
    if not cond:
        raise AssertionError(msg)


def expect_eq(got: Any, want: Any, what: str) -> None:
    if got != want:
        raise AssertionError(f"{what}: got {got!r}, want {want!r}")


# --- rendering ------------------------------------------------------------------------------

_chart: helm.Chart | None = None


def chart() -> helm.Chart:
    global _chart
    if _chart is None:
        _chart = helm.Chart.load(str(CHART))
    return _chart


class Rendered:
    """The objects of one render, indexed by kind and name."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values
        self.merged = chart().merge_values(values)
        manifests = chart().render(values=values, name=RELEASE, namespace=NAMESPACE)
        self.notes = ""
        self.objects: list[dict[str, Any]] = []
        for path, text in sorted(manifests.items()):
            if path.endswith("NOTES.txt"):
                self.notes = text
                continue
            for doc in yaml.safe_load_all(text):
                if doc:
                    self.objects.append(doc)
        # The webhook configurations are not chart objects: the webhook registers them from the
        # ConfigMap <fullname>-webhooks once it serves.
        self.registered: list[dict[str, Any]] = []
        for o in self.objects:
            if o["kind"] == "ConfigMap" and o["metadata"]["name"] == f"{FULLNAME}-webhooks":
                self.registered = json.loads(o["data"]["webhooks.json"])["items"]

    def all(self, kind: str) -> list[dict[str, Any]]:
        if kind in WEBHOOK_KINDS:
            return [o for o in self.registered if o["kind"] == kind]
        return [o for o in self.objects if o["kind"] == kind]

    def effective_modes(self) -> dict[str, str]:
        """Each rule's mode as the webhook resolves it from the rendered policy and flags."""
        cm = self.named("ConfigMap", f"{FULLNAME}-policy")
        policy = yaml.safe_load(cm["data"]["policy.yaml"])
        default = policy.get("mode") or "enforce"
        out = {}
        for key in RULE_KEYS:
            mode = (policy.get("rules", {}).get(key) or {}).get("mode") or default
            if self.flag("--audit-only") is not None and mode != "off":
                mode = "audit"
            out[key] = mode
        return out

    def one(self, kind: str) -> dict[str, Any]:
        found = self.all(kind)
        expect(len(found) == 1, f"expected exactly one {kind}, found {len(found)}")
        return found[0]

    def named(self, kind: str, name: str) -> dict[str, Any]:
        found = [o for o in self.all(kind) if o["metadata"]["name"] == name]
        expect(len(found) == 1, f"expected {kind}/{name}, found {len(found)}")
        return found[0]

    def deployment(self) -> dict[str, Any]:
        return self.one("Deployment")

    def pod(self) -> dict[str, Any]:
        return self.deployment()["spec"]["template"]["spec"]

    def container(self) -> dict[str, Any]:
        containers = self.pod()["containers"]
        expect(len(containers) == 1, f"expected one container, found {len(containers)}")
        return containers[0]

    def args(self) -> list[str]:
        return self.container()["args"]

    def flag(self, name: str) -> str | None:
        for a in self.args():
            if a == name:
                return ""
            if a.startswith(name + "="):
                return a.split("=", 1)[1]
        return None


# --- checks shared by every render ---------------------------------------------------------


def check_schema_valid(r: Rendered, label: str) -> None:
    for obj in r.objects:
        kind, name = obj["kind"], obj["metadata"]["name"]
        if (obj["apiVersion"], kind) in CRD_KINDS:
            R.note(f"[{label}] {kind}/{name}: skipped schema validation "
                   f"({obj['apiVersion']} is a custom resource, kubernetes-validate has no schema)")
            continue
        for version in KUBE_VERSIONS:
            def validate(obj: dict[str, Any] = obj, version: str = version) -> None:
                try:
                    kubernetes_validate.validate(obj, version, strict=True)
                except kubernetes_validate.ValidationError as e:
                    path = "/".join(str(p) for p in e.path)
                    raise AssertionError(f"{path}: {e.message}") from None
            R.check(f"[{label}] {kind}/{name} valid against Kubernetes {version} (strict)", validate)


def check_namespaces(r: Rendered) -> None:
    for obj in r.objects:
        ns = obj["metadata"].get("namespace")
        if obj["kind"] in CLUSTER_SCOPED:
            expect(ns is None, f"{obj['kind']}/{obj['metadata']['name']} is cluster-scoped but has namespace {ns}")
        elif obj["metadata"].get("labels", {}).get("grafana_dashboard") == "1":
            # The Grafana sidecar may watch one namespace only: grafanaDashboard.namespace.
            want = r.merged["grafanaDashboard"]["namespace"] or NAMESPACE
            expect_eq(ns, want, f"namespace of {obj['kind']}/{obj['metadata']['name']}")
        else:
            expect_eq(ns, NAMESPACE, f"namespace of {obj['kind']}/{obj['metadata']['name']}")


def selector_matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def rule_set(rules: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
    out = set()
    for rule in rules:
        for group in rule["apiGroups"]:
            for version in rule["apiVersions"]:
                for resource in rule["resources"]:
                    out.add((group, version, resource, tuple(sorted(rule["operations"])), rule.get("scope")))
    return out


def check_common_webhook(r: Rendered, hook: dict[str, Any], path: str, failure_policy: str) -> None:
    svc = hook["clientConfig"]["service"]
    expect_eq(svc, {"name": FULLNAME, "namespace": NAMESPACE, "path": path,
                    "port": r.merged["service"]["port"]}, f"{hook['name']} clientConfig.service")
    expect("url" not in hook["clientConfig"], "clientConfig must use the service, not a url")
    service = r.one("Service")
    expect(any(p["port"] == svc["port"] and p["targetPort"] == "https" for p in service["spec"]["ports"]),
           "the Service port the webhook calls must target the container's https port")
    expect_eq(hook["sideEffects"], "None", f"{hook['name']} sideEffects")
    expect_eq(hook["admissionReviewVersions"], ["v1"], f"{hook['name']} admissionReviewVersions")
    expect_eq(hook["timeoutSeconds"], r.merged["webhook"]["timeoutSeconds"], f"{hook['name']} timeoutSeconds")
    expect_eq(hook["failurePolicy"], failure_policy, f"{hook['name']} failurePolicy")
    exprs = hook["namespaceSelector"]["matchExpressions"]
    by_name = [e for e in exprs if e["key"] == "kubernetes.io/metadata.name"]
    expect(len(by_name) == 1 and by_name[0]["operator"] == "NotIn",
           f"{hook['name']} namespaceSelector needs one kubernetes.io/metadata.name NotIn expression: {exprs}")
    excluded = set(by_name[0]["values"])
    want = {NAMESPACE, "kube-system", *r.merged["webhook"]["namespaceSelector"]["excludeNamespaces"]}
    expect_eq(excluded, want, f"{hook['name']} excluded namespaces")
    if r.merged["webhook"]["objectOptOut"]["enabled"]:
        expect_eq(hook["objectSelector"], {"matchExpressions": [OPT_OUT]}, f"{hook['name']} objectSelector")
    else:
        expect_eq(hook.get("objectSelector", {}), {}, f"{hook['name']} objectSelector (opt-out disabled)")


def check_mutating(r: Rendered) -> None:
    cfg = r.one("MutatingWebhookConfiguration")
    hooks = cfg["webhooks"]
    expect_eq([h["name"] for h in hooks], ["mutate.storage-policy.io"], "mutating webhook names")
    hook = hooks[0]
    enforcing = "enforce" in r.effective_modes().values()
    want_fp = r.merged["webhook"]["mutating"]["failurePolicy"] or ("Fail" if enforcing else "Ignore")
    check_common_webhook(r, hook, "/mutate", want_fp)
    expect_eq(rule_set(hook["rules"]), {
        ("", "v1", "persistentvolumeclaims", ("CREATE",), "Namespaced"),
        ("", "v1", "persistentvolumes", ("CREATE",), "Cluster"),
    }, "mutating rules")
    expect_eq(hook.get("reinvocationPolicy"), "IfNeeded", "reinvocationPolicy")
    expect_eq(hook.get("matchConditions"), [{"name": "not-provisioned", "expression": NOT_PROVISIONED_CEL}],
              "mutating matchConditions: every PVC, every PV but those a provisioner made that no rule changes")


WORKLOAD_CEL = ("has(object.spec.template) && has(object.spec.template.spec) && "
                "has(object.spec.template.spec.volumes) && "
                "object.spec.template.spec.volumes.exists(v, has(v.persistentVolumeClaim) || has(v.ephemeral))")
_CJ = ("has(object.spec.jobTemplate) && has(object.spec.jobTemplate.spec) && "
       "has(object.spec.jobTemplate.spec.template) && has(object.spec.jobTemplate.spec.template.spec) && ")
CRONJOB_CEL = (_CJ + "has(object.spec.jobTemplate.spec.template.spec.volumes) && "
               "object.spec.jobTemplate.spec.template.spec.volumes.exists(v, "
               "has(v.persistentVolumeClaim) || has(v.ephemeral))")


def check_validating(r: Rendered) -> None:
    cfg = r.one("ValidatingWebhookConfiguration")
    hooks = {h["name"]: h for h in cfg["webhooks"]}
    expect_eq(sorted(hooks), ["cronjobs.validate.storage-policy.io", "deletes.validate.storage-policy.io",
                              "pods.validate.storage-policy.io", "validate.storage-policy.io",
                              "workloads.validate.storage-policy.io"],
              "validating webhook names")
    fp = r.merged["webhook"]["validating"]["failurePolicy"]
    main = hooks["validate.storage-policy.io"]
    check_common_webhook(r, main, "/validate", fp)
    expect_eq(rule_set(main["rules"]), {
        ("", "v1", "persistentvolumeclaims", ("CREATE", "UPDATE"), "Namespaced"),
        ("", "v1", "persistentvolumes", ("CREATE", "UPDATE"), "Cluster"),
        ("apps", "v1", "statefulsets", ("CREATE", "UPDATE"), "Namespaced"),
        ("storage.k8s.io", "v1", "storageclasses", ("CREATE",), "Cluster"),
    }, "validating rules")
    expect("matchConditions" not in main, "PVC/PV/StatefulSet validation must not be filtered by CEL")
    pods = hooks["pods.validate.storage-policy.io"]
    check_common_webhook(r, pods, "/validate", fp)
    expect_eq(rule_set(pods["rules"]), {("", "v1", "pods", ("CREATE",), "Namespaced")}, "pod rules")
    conds = pods.get("matchConditions", [])
    expect_eq([c["expression"] for c in conds], [EPHEMERAL_CEL], "pod matchConditions")
    # Every workload kind whose pod template a rule judges is sent (Deployments, DaemonSets,
    # ReplicaSets, Jobs and CronJobs were once reported by `audit` and admitted by the webhook).
    workloads = hooks["workloads.validate.storage-policy.io"]
    check_common_webhook(r, workloads, "/validate", fp)
    expect_eq(rule_set(workloads["rules"]), {
        ("apps", "v1", "deployments", ("CREATE", "UPDATE"), "Namespaced"),
        ("apps", "v1", "daemonsets", ("CREATE", "UPDATE"), "Namespaced"),
        ("apps", "v1", "replicasets", ("CREATE", "UPDATE"), "Namespaced"),
        ("batch", "v1", "jobs", ("CREATE", "UPDATE"), "Namespaced"),
    }, "workload rules")
    expect_eq([c["expression"] for c in workloads.get("matchConditions", [])], [WORKLOAD_CEL],
              "workload matchConditions")
    cronjobs = hooks["cronjobs.validate.storage-policy.io"]
    check_common_webhook(r, cronjobs, "/validate", fp)
    expect_eq(rule_set(cronjobs["rules"]), {("batch", "v1", "cronjobs", ("CREATE", "UPDATE"), "Namespaced")},
              "cronjob rules")
    expect_eq([c["expression"] for c in cronjobs.get("matchConditions", [])], [CRONJOB_CEL],
              "cronjob matchConditions")
    # DELETE (deleteInUse, warnings only): its own registration, always Ignore whatever the
    # validating failurePolicy, so a webhook outage never blocks a delete.
    deletes = hooks["deletes.validate.storage-policy.io"]
    check_common_webhook(r, deletes, "/validate", "Ignore")
    expect_eq(rule_set(deletes["rules"]), {
        ("", "v1", "persistentvolumeclaims", ("DELETE",), "Namespaced"),
        ("", "v1", "persistentvolumes", ("DELETE",), "Cluster"),
    }, "delete rules")
    expect_eq([c["expression"] for c in deletes.get("matchConditions", [])], [DELETE_CEL],
              "delete matchConditions")
    for h in cfg["webhooks"]:
        if h["name"] != deletes["name"]:
            expect(all("DELETE" not in x["operations"] for x in h["rules"]), f"{h['name']} must not get DELETE")


def check_ca(r: Rendered) -> None:
    mode = r.merged["certs"]["mode"]
    configs = r.all("MutatingWebhookConfiguration") + r.all("ValidatingWebhookConfiguration")
    expect(configs, "no webhook configuration rendered")
    bundles = {h["clientConfig"].get("caBundle") for c in configs for h in c["webhooks"]}
    inject = {c["metadata"].get("annotations", {}).get("cert-manager.io/inject-ca-from") for c in configs}
    secret_name = next(v["secret"]["secretName"] for v in r.pod()["volumes"] if v["name"] == "tls")
    if mode == "certManager":
        expect_eq(bundles, {None}, "caBundle with cert-manager (cainjector fills it)")
        cert_name = f"{FULLNAME}-tls"
        expect_eq(inject, {f"{NAMESPACE}/{cert_name}"}, "cert-manager.io/inject-ca-from")
        cert = r.named("Certificate", cert_name)
        expect_eq(cert["spec"]["secretName"], secret_name, "Certificate secretName vs the pod's TLS volume")
        expect(f"{FULLNAME}.{NAMESPACE}.svc" in cert["spec"]["dnsNames"], f"dnsNames {cert['spec']['dnsNames']}")
        expect_eq(r.all("Secret"), [], "Secrets rendered in certManager mode")
    else:
        expect_eq(inject, {None}, "inject-ca-from annotation outside certManager mode")
        expect(len(bundles) == 1 and None not in bundles, f"one caBundle for every webhook, got {len(bundles)}")
        bundle = bundles.pop()
        pem = base64.b64decode(bundle, validate=True).decode()
        expect(pem.startswith("-----BEGIN CERTIFICATE-----"), "caBundle is not a base64 PEM certificate")
        if mode == "generate":
            secret = r.named("Secret", secret_name)
            expect_eq(secret["type"], "kubernetes.io/tls", "generated Secret type")
            expect_eq(bundle, secret["data"]["ca.crt"], "caBundle vs the generated Secret's ca.crt")
            expect_eq(r.all("Certificate"), [], "Certificates rendered in generate mode")
        else:
            expect_eq(bundle, r.merged["certs"]["caBundle"], "caBundle vs certs.caBundle")
            expect_eq(secret_name, r.merged["certs"]["existingSecret"]["name"], "TLS volume secret")
            expect_eq(r.all("Secret") + r.all("Certificate"), [], "objects made for an existing Secret")


def check_deployment(r: Rendered) -> None:
    v = r.merged
    d = r.deployment()
    pod_labels = d["spec"]["template"]["metadata"]["labels"]
    expect(selector_matches(d["spec"]["selector"]["matchLabels"], pod_labels), "selector vs pod labels")
    expect(selector_matches(r.one("Service")["spec"]["selector"], pod_labels), "Service selector vs pod labels")
    expect_eq(d["spec"]["replicas"], v["replicaCount"], "replicas")
    ru = d["spec"]["strategy"]
    expect_eq(ru["type"], "RollingUpdate", "strategy")
    expect_eq(ru["rollingUpdate"]["maxUnavailable"], 0, "rollingUpdate.maxUnavailable")
    pod = r.pod()
    expect_eq(pod.get("priorityClassName"), v["priorityClassName"], "priorityClassName")
    psc = pod["securityContext"]
    expect_eq(psc.get("runAsNonRoot"), True, "pod runAsNonRoot")
    expect_eq(psc.get("seccompProfile"), {"type": "RuntimeDefault"}, "pod seccompProfile")
    c = r.container()
    sc = c["securityContext"]
    expect_eq(sc.get("allowPrivilegeEscalation"), False, "allowPrivilegeEscalation")
    expect_eq(sc.get("readOnlyRootFilesystem"), True, "readOnlyRootFilesystem")
    expect_eq(sc.get("runAsNonRoot"), True, "container runAsNonRoot")
    expect_eq(sc.get("capabilities"), {"drop": ["ALL"]}, "capabilities")
    expect_eq(sc.get("seccompProfile"), {"type": "RuntimeDefault"}, "container seccompProfile")
    expect(not sc.get("privileged"), "privileged")
    res = c["resources"]
    expect_eq(res["requests"], {"cpu": "50m", "memory": "64Mi"}, "requests")
    expect_eq(res["limits"], {"memory": "128Mi"}, "limits (memory only, no CPU limit)")
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    expect_eq(r.flag("--listen"), f"{v['bindAddress']}:{ports['https']}", "--listen vs https port")
    expect_eq(r.flag("--admin-listen"), f"{v['bindAddress']}:{ports['admin']}", "--admin-listen vs admin port")
    expect_eq(c["livenessProbe"]["httpGet"], {"path": "/healthz", "port": "admin"}, "liveness probe")
    expect_eq(c["readinessProbe"]["httpGet"], {"path": "/readyz", "port": "admin"}, "readiness probe")
    expect_eq(r.args()[0], "serve", "subcommand")
    expect_eq(r.flag("--max-body-bytes"), str(v["maxBodyBytes"]), "--max-body-bytes (no float formatting)")
    if v["bodyBudgetBytes"]:
        expect_eq(r.flag("--body-budget-bytes"), str(v["bodyBudgetBytes"]), "--body-budget-bytes (no float formatting)")
    else:
        expect(r.flag("--body-budget-bytes") is None, "no --body-budget-bytes: derived from the memory limit")
    expect_eq(r.flag("--body-read-timeout"), str(v["bodyReadTimeoutSeconds"]), "--body-read-timeout")
    expect_eq(r.flag("--log-format"), v["logFormat"], "--log-format")
    expect_eq(r.flag("--shutdown-delay"), str(v["shutdown"]["delaySeconds"]), "--shutdown-delay")
    expect_eq(r.flag("--drain-timeout"), str(v["shutdown"]["drainTimeoutSeconds"]), "--drain-timeout")
    expect_eq(r.flag("--audit-only") is not None, bool(v["auditOnly"] or v["dryRun"]),
              "--audit-only follows auditOnly (and the deprecated dryRun)")
    expect_eq(r.flag("--register-webhooks"), "/etc/storage-policy-webhook/webhooks/webhooks.json",
              "--register-webhooks: the pods register the configurations")
    expect_eq(r.flag("--register-owner"), r.one("ClusterRole")["metadata"]["name"],
              "--register-owner: the ClusterRole owns the configurations (uninstall removes them)")
    expect(int(r.flag("--register-settle")) > v["readinessProbe"]["periodSeconds"],
           "--register-settle lets the readiness probe and endpoints follow")
    wh_cm = r.named("ConfigMap", f"{FULLNAME}-webhooks")
    expect_eq(volumes_of(r)["webhooks"]["configMap"]["name"], wh_cm["metadata"]["name"], "webhooks volume")
    ann = d["spec"]["template"]["metadata"].get("annotations", {})
    expect(len(ann.get("checksum/webhooks", "")) == 64, "checksum/webhooks: a registration change rolls the pods")
    expect_eq(r.flag("--no-cluster") is not None, not v["cluster"]["watch"], "--no-cluster follows cluster.watch")
    expect_eq(pod.get("automountServiceAccountToken"), True,
              "service account token mounted: the pods register the webhook configurations")
    # Shutdown: preStop sleep, then the binary's delay and drain, all inside the grace period.
    sleep = v["shutdown"]["preStopSleepSeconds"]
    if sleep:
        expect_eq(c["lifecycle"]["preStop"], {"sleep": {"seconds": sleep}}, "preStop sleep")
    else:
        expect("lifecycle" not in c, "no lifecycle when preStopSleepSeconds is 0")
    budget = sleep + v["shutdown"]["delaySeconds"] + v["shutdown"]["drainTimeoutSeconds"]
    expect(pod["terminationGracePeriodSeconds"] > budget,
           f"terminationGracePeriodSeconds {pod['terminationGracePeriodSeconds']} <= {budget}")
    # Mounts: whole directories (subPath never updates), flags point inside them.
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    volumes = {vol["name"]: vol for vol in pod["volumes"]}
    for name, flag in (("policy", "--config"), ("tls", "--tls-cert"), ("tls", "--tls-key")):
        expect("subPath" not in mounts[name], f"{name} mounted with subPath (never refreshed)")
        expect(mounts[name].get("readOnly"), f"{name} mount not read-only")
        expect(r.flag(flag).startswith(mounts[name]["mountPath"] + "/"), f"{flag} outside the {name} mount")
    cm = r.named("ConfigMap", f"{FULLNAME}-policy")
    expect_eq(volumes["policy"]["configMap"]["name"], cm["metadata"]["name"], "policy volume vs ConfigMap")
    expect_eq(Path(r.flag("--config")).name in cm["data"], True, "--config file is a ConfigMap key")
    # Availability: spread over nodes and zones unless overridden.
    if not v["affinity"] and v["podAntiAffinity"] != "none":
        expect("podAntiAffinity" in pod.get("affinity", {}), "pod anti-affinity")
    if v["topologySpreadZoneKey"]:
        tsc = pod["topologySpreadConstraints"]
        expect_eq(tsc[0]["topologyKey"], v["topologySpreadZoneKey"], "topology spread key")
        expect(selector_matches(tsc[0]["labelSelector"]["matchLabels"], pod_labels), "spread selector")


def volumes_of(r: Rendered) -> dict[str, Any]:
    return {vol["name"]: vol for vol in r.pod()["volumes"]}


def check_rbac(r: Rendered) -> None:
    sa_name = r.pod()["serviceAccountName"]
    sa = r.named("ServiceAccount", sa_name)
    expect_eq(sa.get("automountServiceAccountToken"), False, "ServiceAccount automountServiceAccountToken")
    expect_eq(r.all("Role") + r.all("RoleBinding"), [], "namespaced RBAC")
    role = r.one("ClusterRole")
    granted = set()
    named = set()
    for rule in role["rules"]:
        expect(not rule.get("nonResourceURLs"), f"unexpected rule {rule}")
        if rule.get("resourceNames"):
            expect_eq(rule["resourceNames"], [FULLNAME], f"resourceNames of {rule}")
            named |= {(g, res, verb) for g in rule["apiGroups"] for res in rule["resources"] for verb in rule["verbs"]}
            continue
        for g in rule["apiGroups"]:
            for res in rule["resources"]:
                for verb in rule["verbs"]:
                    granted.add((g, res, verb))
    want = {(g, res, verb) for g, res in (("storage.k8s.io", "storageclasses"), ("", "namespaces"), ("", "nodes"),
                                          ("", "persistentvolumes"), ("", "persistentvolumeclaims"),
                                          ("", "pods"), ("storage.k8s.io", "csidrivers"),
                                          ("storage.k8s.io", "csinodes"))
            for verb in ("get", "list", "watch")} | {("snapshot.storage.k8s.io", res, verb)
            for res in ("volumesnapshots", "volumesnapshotcontents") for verb in ("list", "watch")} \
        if r.merged["cluster"]["watch"] else set()
    expect_eq(granted, want, "ClusterRole grants")
    # Registration: its own two configurations by name (server-side apply: a patch, and a create the first time; the API server authorizes both with the name), and the
    # ClusterRole's uid for the owner reference. No list, nothing else writable.
    expect_eq(named, {("admissionregistration.k8s.io", res, verb)
                      for res in ("mutatingwebhookconfigurations", "validatingwebhookconfigurations")
                      for verb in ("get", "create", "patch")} | {("rbac.authorization.k8s.io", "clusterroles", "get")},
              "ClusterRole grants by name (registration)")
    binding = r.one("ClusterRoleBinding")
    expect_eq(binding["roleRef"], {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                   "name": role["metadata"]["name"]}, "roleRef")
    expect_eq(binding["subjects"], [{"kind": "ServiceAccount", "name": sa_name, "namespace": NAMESPACE}], "subjects")


def check_pdb(r: Rendered) -> None:
    pdb = r.one("PodDisruptionBudget")
    expect_eq(pdb["spec"].get("maxUnavailable"), r.merged["podDisruptionBudget"]["maxUnavailable"], "maxUnavailable")
    expect("minAvailable" not in pdb["spec"], "minAvailable and maxUnavailable together")
    labels = r.deployment()["spec"]["template"]["metadata"]["labels"]
    expect(selector_matches(pdb["spec"]["selector"]["matchLabels"], labels), "PDB selector vs pod labels")


def check_policy(r: Rendered) -> dict[str, Any]:
    cm = r.named("ConfigMap", f"{FULLNAME}-policy")
    policy = yaml.safe_load(cm["data"]["policy.yaml"])
    expect(isinstance(policy, dict), "policy.yaml is not a YAML mapping")
    exempt = policy["exemptions"]["namespaces"]
    expect(NAMESPACE in exempt, f"release namespace missing from exemptions.namespaces {exempt}")
    expect("kube-system" in exempt, f"kube-system missing from exemptions.namespaces {exempt}")
    for ns in r.merged["webhook"]["namespaceSelector"]["excludeNamespaces"]:
        expect(ns in exempt, f"excluded namespace {ns} missing from exemptions")
    expect_eq(len(exempt), len(set(exempt)), "exemptions.namespaces has duplicates")
    given = r.merged["policy"]
    for ns in given.get("exemptions", {}).get("namespaces", []):
        expect(ns in exempt, f"configured exemption {ns} lost")
    rest = {k: val for k, val in policy.items() if k != "exemptions"}
    expect_eq(rest, {k: val for k, val in given.items() if k != "exemptions"}, "policy besides exemptions")
    return policy


def check_generated_certificate(r: Rendered) -> None:
    """The chart's own CA and certificate: chain, SANs, key pair (needs openssl)."""
    openssl = shutil.which("openssl")
    if not openssl:
        R.note("openssl not found: generated certificate chain not verified")
        return
    secret = r.named("Secret", f"{FULLNAME}-tls")
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for key in ("ca.crt", "tls.crt", "tls.key"):
            files[key] = Path(tmp) / key
            files[key].write_bytes(base64.b64decode(secret["data"][key]))

        def run(*args: str) -> str:
            return subprocess.run([openssl, *args], check=True, capture_output=True, text=True).stdout

        def chain() -> None:
            out = run("verify", "-purpose", "sslserver", "-CAfile", str(files["ca.crt"]), str(files["tls.crt"]))
            expect("OK" in out, out)

        def sans() -> None:
            text = run("x509", "-in", str(files["tls.crt"]), "-noout", "-text")
            for name in (FULLNAME, f"{FULLNAME}.{NAMESPACE}", f"{FULLNAME}.{NAMESPACE}.svc",
                         f"{FULLNAME}.{NAMESPACE}.svc.cluster.local"):
                expect(f"DNS:{name}," in text or f"DNS:{name}\n" in text, f"SAN DNS:{name} missing")

        def key_pair() -> None:
            cert_pub = run("x509", "-in", str(files["tls.crt"]), "-noout", "-pubkey")
            key_pub = run("pkey", "-in", str(files["tls.key"]), "-pubout")
            expect_eq(cert_pub, key_pub, "public key of tls.crt vs tls.key")

        R.check("[generate] serving certificate chains to ca.crt (openssl verify, sslserver)", chain)
        R.check("[generate] serving certificate names every Service DNS form", sans)
        R.check("[generate] tls.key belongs to tls.crt", key_pair)


def check_render(label: str, values: dict[str, Any], extra: Callable[[Rendered], None] | None = None) -> Rendered | None:
    def lint() -> None:
        report = helm.lint(str(CHART), values, strict=True, namespace=NAMESPACE)
        bad = [m for m in report["messages"] if m["severity"] >= 2]
        expect(not bad and not report["errors"], f"lint: {bad or report['errors']}")

    R.check(f"[{label}] helm lint --strict", lint)
    r = R.check(f"[{label}] renders", lambda: Rendered(values))
    if r is None:
        return None
    check_schema_valid(r, label)
    R.check(f"[{label}] namespaced objects in the release namespace, cluster-scoped ones without", lambda: check_namespaces(r))
    if r.merged["webhook"]["mutating"]["enabled"]:
        R.check(f"[{label}] MutatingWebhookConfiguration settings", lambda: check_mutating(r))
    if r.merged["webhook"]["validating"]["enabled"]:
        R.check(f"[{label}] ValidatingWebhookConfiguration settings", lambda: check_validating(r))
    R.check(f"[{label}] CA wiring for certs.mode={r.merged['certs']['mode']}", lambda: check_ca(r))
    R.check(f"[{label}] Deployment: hardening, rollout, probes, shutdown, flags", lambda: check_deployment(r))
    R.check(f"[{label}] RBAC: get/list/watch on storageclasses, namespaces, nodes, persistentvolumes, persistentvolumeclaims, csidrivers, csinodes; get/create/patch on its own webhook configurations only", lambda: check_rbac(r))
    R.check(f"[{label}] no webhook configuration is a chart object (the webhook registers them once it serves)",
            lambda: expect_eq([o["kind"] for o in r.objects if o["kind"] in WEBHOOK_KINDS], [],
                              "webhook configurations rendered as chart objects"))
    R.check(f"[{label}] NOTES.txt states the mode in force truthfully", lambda: check_notes_mode(r))
    R.check(f"[{label}] PodDisruptionBudget", lambda: check_pdb(r))
    R.check(f"[{label}] policy ConfigMap parses, exempts the release namespace", lambda: check_policy(r))
    if extra is not None:
        R.check(f"[{label}] scenario-specific settings", lambda: extra(r))
    RENDERED[label] = r
    return r


# --- scenarios ------------------------------------------------------------------------------


def ca_bundle_for_test() -> str:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        try:
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                            "-nodes", "-keyout", str(d / "k"), "-out", str(d / "c"), "-subj", "/CN=test-ca",
                            "-days", "1"], check=True, capture_output=True)
            pem = (d / "c").read_bytes()
        except (OSError, subprocess.CalledProcessError):
            pem = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    return base64.b64encode(pem).decode()


def extra_cert_manager(r: Rendered) -> None:
    issuers = {i["metadata"]["name"]: i for i in r.all("Issuer")}
    expect_eq(sorted(issuers), [f"{FULLNAME}-ca", f"{FULLNAME}-selfsigned"], "Issuers")
    expect_eq(issuers[f"{FULLNAME}-selfsigned"]["spec"], {"selfSigned": {}}, "self-signed Issuer")
    ca = r.named("Certificate", f"{FULLNAME}-ca")
    expect(ca["spec"]["isCA"], "CA Certificate isCA")
    expect_eq(issuers[f"{FULLNAME}-ca"]["spec"]["ca"]["secretName"], ca["spec"]["secretName"], "CA Issuer secret")
    serving = r.named("Certificate", f"{FULLNAME}-tls")
    expect_eq(serving["spec"]["issuerRef"]["name"], f"{FULLNAME}-ca", "serving certificate issuer")


def extra_cert_manager_issuer(r: Rendered) -> None:
    expect_eq(r.all("Issuer"), [], "chart Issuers when issuerRef is given")
    serving = r.one("Certificate")
    expect_eq(serving["spec"]["issuerRef"], {"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"},
              "issuerRef")


def extra_service_monitor(r: Rendered) -> None:
    sm = r.one("ServiceMonitor")
    svc = r.one("Service")
    expect(selector_matches(sm["spec"]["selector"]["matchLabels"], svc["metadata"]["labels"]), "selector vs Service")
    port_names = {p["name"] for p in svc["spec"]["ports"]}
    expect_eq([e["port"] for e in sm["spec"]["endpoints"]], ["metrics"], "endpoints")
    expect("metrics" in port_names, "Service has no metrics port")
    expect_eq(sm["spec"]["endpoints"][0]["path"], "/metrics", "metrics path")
    expect_eq(sm["metadata"]["labels"].get("release"), "prometheus", "extra ServiceMonitor labels")


def extra_network_policy(r: Rendered) -> None:
    np_ = r.one("NetworkPolicy")
    labels = r.deployment()["spec"]["template"]["metadata"]["labels"]
    expect(selector_matches(np_["spec"]["podSelector"]["matchLabels"], labels), "podSelector vs pod labels")
    expect_eq(sorted(np_["spec"]["policyTypes"]), ["Egress", "Ingress"], "policyTypes")
    ingress_ports = {p["port"] for rule in np_["spec"]["ingress"] for p in rule["ports"]}
    expect_eq(ingress_ports, {8443, 8080}, "ingress ports")
    egress = {(p["protocol"], p["port"]) for rule in np_["spec"]["egress"] for p in rule["ports"]}
    expect_eq(egress, {("TCP", 443), ("TCP", 6443), ("UDP", 53), ("TCP", 53)}, "egress ports")


def extra_everything(r: Rendered) -> None:
    d = r.deployment()
    pod = r.pod()
    ann = d["spec"]["template"]["metadata"].get("annotations", {})
    expect(len(ann.get("checksum/policy", "")) == 64, "checksum/policy annotation with rollOnConfigChange")
    expect_eq(ann.get("example.com/team"), "storage", "podAnnotations")
    expect_eq(pod.get("hostNetwork"), True, "hostNetwork")
    expect_eq(pod.get("dnsPolicy"), "ClusterFirstWithHostNet", "dnsPolicy with hostNetwork")
    expect_eq(r.flag("--client-ca"), "/etc/storage-policy-webhook/client-ca/ca.pem", "--client-ca")
    expect_eq(r.flag("--audit-only"), "", "--audit-only")
    expect_eq(r.flag("--body-budget-bytes"), "33554432", "--body-budget-bytes when set")
    required = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    expect_eq(required[0]["topologyKey"], "kubernetes.io/hostname", "hard anti-affinity")
    expect_eq(d["spec"]["replicas"], 3, "replicas")
    extras = r.one("MutatingWebhookConfiguration")["webhooks"][0]["namespaceSelector"]["matchExpressions"]
    expect({"key": "tier", "operator": "NotIn", "values": ["system"]} in extras, "extraMatchExpressions")
    expect_eq(r.args()[-1], "--example-extra=1", "extraArgs appended last")
    expect_eq(r.container()["env"], [{"name": "RUST_BACKTRACE", "value": "1"}], "extraEnv")
    expect_eq(r.one("PodDisruptionBudget")["spec"]["maxUnavailable"], "50%", "PDB percentage")
    expect("lifecycle" not in r.container(), "no preStop when preStopSleepSeconds is 0")
    expect_eq(r.all("ServiceMonitor") != [] and r.all("NetworkPolicy") != [], True, "optional objects")


def extra_no_cluster(r: Rendered) -> None:
    expect_eq(r.flag("--no-cluster"), "", "--no-cluster")
    np_ = r.one("NetworkPolicy")
    egress = {(p["protocol"], p["port"]) for rule in np_["spec"]["egress"] for p in rule["ports"]}
    expect(("TCP", 6443) not in egress, "API egress allowed without cluster watches")


def extra_opt_out_disabled(r: Rendered) -> None:
    expect("storage-policy.io/ignore" not in r.notes, "NOTES mention the opt-out label although disabled")


def check_notes_mode(r: Rendered) -> None:
    modes = r.effective_modes()
    enforced = sorted(k for k, m in modes.items() if m == "enforce")
    audited = sorted(k for k, m in modes.items() if m == "audit")
    if not enforced:
        expect("Mode: AUDIT" in r.notes, f"every rule audits but NOTES say otherwise: {r.notes[:400]}")
    elif not audited:
        expect("Mode: ENFORCE" in r.notes, f"every rule enforces but NOTES say otherwise: {r.notes[:400]}")
    else:
        expect(f"enforced: {', '.join(enforced)}; audited: {', '.join(audited)}" in r.notes,
               f"NOTES do not list the mixed modes {modes}: {r.notes[:600]}")
    expect("--reuse-values" not in r.notes.replace("not\n   --reuse-values", "").replace("not --reuse-values", ""),
           "NOTES recommend --reuse-values")


def extra_defaults(r: Rendered) -> None:
    """A first install cannot hurt: every rule audits, the mutating webhook fails open, the image is
    the chart's appVersion."""
    expect_eq(set(r.effective_modes().values()), {"audit"}, "rule modes of a default install")
    rules = yaml.safe_load((CHART / "values.yaml").read_text())["policy"]["rules"]
    expect_eq({k: v["mode"] for k, v in rules.items() if isinstance(v, dict) and "mode" in v}, {},
              "rule modes set in values.yaml (they would beat policy.mode)")
    expect_eq(r.one("MutatingWebhookConfiguration")["webhooks"][0]["failurePolicy"], "Ignore",
              "mutating failurePolicy while everything audits")
    expect_eq(r.container()["image"], f"ghcr.io/storage-policy-webhook/storage-policy-webhook:{chart().metadata['appVersion']}",
              "image defaults to the appVersion tag")
    expect("helm upgrade" in r.notes and "policy.mode=enforce" in r.notes, "NOTES say how to enforce")


def extra_enforce(r: Rendered) -> None:
    expect_eq(set(r.effective_modes().values()), {"enforce"}, "policy.mode=enforce reaches every rule")
    expect_eq(r.one("MutatingWebhookConfiguration")["webhooks"][0]["failurePolicy"], "Fail",
              "mutating failurePolicy when rules enforce")


def extra_dry_run(r: Rendered) -> None:
    expect("Mode: AUDIT (auditOnly)" in r.notes, "NOTES explain audit mode")
    expect("Deprecated: dryRun is now auditOnly" in r.notes, "NOTES note the dryRun deprecation")


def external_webhook() -> None:
    """webhook.url: the webhook runs outside the cluster (tests/e2e installs it so): the
    configurations call the URL with certs.caBundle; nothing that runs or serves a pod is
    rendered, the ServiceAccount, RBAC and policy are."""
    ca = ca_bundle_for_test()

    def renders() -> None:
        r = Rendered({"webhook": {"url": "https://127.0.0.1:39443/"}, "certs": {"caBundle": ca}})
        kinds = sorted({o["kind"] for o in r.objects})
        expect_eq(kinds, ["ClusterRole", "ClusterRoleBinding", "ConfigMap", "ServiceAccount"], "kinds rendered")
        expect_eq(sorted(o["kind"] for o in r.registered), list(WEBHOOK_KINDS), "configurations to register")
        hooks = [h for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
                 for h in r.one(kind)["webhooks"]]
        for h in hooks:
            cc = h["clientConfig"]
            expect("service" not in cc, f"{h['name']}: a service reference beside the URL")
            expect_eq(cc["caBundle"], ca, f"{h['name']} caBundle")
            path = "/mutate" if h["name"].startswith("mutate.") else "/validate"
            expect_eq(cc["url"], "https://127.0.0.1:39443" + path, f"{h['name']} url")
        check_policy(r)

    R.check("[webhook.url] configurations call the URL; no Deployment, Service, PDB or certificates", renders)
    must_refuse("webhook.url without certs.caBundle", {"webhook": {"url": "https://127.0.0.1:39443"}},
                "webhook.url needs certs.caBundle", schema=False)
    must_refuse("webhook.url over plain HTTP", {"webhook": {"url": "http://127.0.0.1:39443"},
                                                "certs": {"caBundle": ca}}, "/webhook/url")


def checksum_follows_policy() -> None:
    base = {"rollOnConfigChange": True}
    a = Rendered(base).deployment()["spec"]["template"]["metadata"]["annotations"]["checksum/policy"]
    b = Rendered({**base, "policy": {"mode": "enforce"}}).deployment()["spec"]["template"]["metadata"]["annotations"][
        "checksum/policy"]
    expect(a != b, "checksum/policy did not change with the policy")
    plain = Rendered({}).deployment()["spec"]["template"]["metadata"]
    expect("checksum/policy" not in plain.get("annotations", {}), "checksum annotation without rollOnConfigChange")
    w1 = plain["annotations"]["checksum/webhooks"]
    w2 = Rendered({"webhook": {"timeoutSeconds": 9}}).deployment()["spec"]["template"]["metadata"]["annotations"][
        "checksum/webhooks"]
    expect(w1 != w2, "checksum/webhooks did not change with the registration")


# --- values the schema (or a template guard) must refuse ------------------------------------


def must_refuse(label: str, values: dict[str, Any], needle: str, *, schema: bool = True) -> None:
    def render_refuses() -> None:
        try:
            chart().render(values=values, name=RELEASE, namespace=NAMESPACE)
        except helm.HelmValuesError as e:
            expect(schema, f"refused as values, expected a template failure: {e}")
            expect(needle in str(e), f"error does not mention {needle!r}: {e}")
            return
        except helm.HelmRenderError as e:
            expect(not schema, f"refused by a template, not by values.schema.json: {e}")
            expect(needle in str(e), f"error does not mention {needle!r}: {e}")
            return
        raise AssertionError("rendered without error")

    R.check(f"[refuse] {label}: render raises", render_refuses)
    if schema:
        def lint_refuses() -> None:
            report = helm.lint(str(CHART), values, strict=True, namespace=NAMESPACE)
            errors = [m["error"] for m in report["messages"] if m["severity"] >= 3]
            expect(any(needle in e for e in errors), f"lint reported no error mentioning {needle!r}: {errors}")

        R.check(f"[refuse] {label}: lint reports it", lint_refuses)


def refusals() -> None:
    must_refuse("mutating failurePolicy Maybe", {"webhook": {"mutating": {"failurePolicy": "Maybe"}}},
                "/webhook/mutating/failurePolicy")
    must_refuse("validating failurePolicy Maybe", {"webhook": {"validating": {"failurePolicy": "Maybe"}}},
                "/webhook/validating/failurePolicy")
    must_refuse("timeoutSeconds 31", {"webhook": {"timeoutSeconds": 31}}, "/webhook/timeoutSeconds")
    must_refuse("timeoutSeconds 0", {"webhook": {"timeoutSeconds": 0}}, "/webhook/timeoutSeconds")
    must_refuse("timeoutSeconds not an integer", {"webhook": {"timeoutSeconds": 2.5}}, "/webhook/timeoutSeconds")
    must_refuse("replicaCount 0", {"replicaCount": 0}, "/replicaCount")
    must_refuse("unknown cert mode", {"certs": {"mode": "selfSigned"}}, "/certs/mode")
    must_refuse("unknown top-level key", {"replicas": 3}, "replicas")
    must_refuse("unknown nested key", {"webhook": {"timeout": 5}}, "timeout")
    must_refuse("existingSecret without caBundle", {"certs": {"mode": "existingSecret",
                                                              "existingSecret": {"name": "my-tls"}}}, "/certs/caBundle")
    must_refuse("existingSecret without a Secret name", {"certs": {"mode": "existingSecret",
                                                                   "caBundle": ca_bundle_for_test()}}, "/certs/existingSecret/name")
    must_refuse("caBundle not base64", {"certs": {"mode": "existingSecret", "existingSecret": {"name": "t"},
                                                  "caBundle": "-----BEGIN CERTIFICATE-----"}}, "/certs/caBundle")
    must_refuse("policy mode strict", {"policy": {"mode": "strict"}}, "/policy/mode")
    must_refuse("policy unknown rule", {"policy": {"rules": {"defaultClass": {}}}}, "defaultClass")
    must_refuse("policy rejectReadWriteManyOn nfs",
                {"policy": {"rules": {"accessModes": {"rejectReadWriteManyOn": ["nfs"]}}}},
                "/policy/rules/accessModes/rejectReadWriteManyOn")
    must_refuse("policy byAccessMode with a bad access mode",
                {"policy": {"rules": {"defaultStorageClass": {"byAccessMode": {"RWX": "nfs"}}}}}, "RWX")
    must_refuse("policy class without a provisioner", {"policy": {"storageClasses": [{"name": "fast"}]}},
                "/policy/storageClasses/0")
    must_refuse("policy class name not a DNS subdomain",
                {"policy": {"storageClasses": [{"name": "Fast_SSD", "provisioner": "ebs.csi.aws.com"}]}},
                "/policy/storageClasses/0/name")
    must_refuse("PDB maxUnavailable 0 (blocks drains)", {"podDisruptionBudget": {"maxUnavailable": 0}},
                "/podDisruptionBudget/maxUnavailable")
    must_refuse("pullPolicy Sometimes", {"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy")
    must_refuse("logFormat xml", {"logFormat": "xml"}, "/logFormat")
    must_refuse("podAntiAffinity maybe", {"podAntiAffinity": "maybe"}, "/podAntiAffinity")
    must_refuse("port 70000", {"ports": {"https": 70000}}, "/ports/https")
    must_refuse("maxBodyBytes 1 KiB (below the API server's object size)", {"maxBodyBytes": 1024}, "/maxBodyBytes")
    must_refuse("excluded namespace not a DNS label", {"webhook": {"namespaceSelector": {"excludeNamespaces": ["Bad_NS"]}}},
                "/webhook/namespaceSelector/excludeNamespaces")
    must_refuse("bodyBudgetBytes below 4/3 of maxBodyBytes", {"bodyBudgetBytes": 8388608},
                "bodyBudgetBytes", schema=False)
    must_refuse("bodyReadTimeoutSeconds 0", {"bodyReadTimeoutSeconds": 0}, "/bodyReadTimeoutSeconds")
    must_refuse("grace shorter than preStop + delay + drain",
                {"shutdown": {"terminationGracePeriodSeconds": 20}}, "terminationGracePeriodSeconds", schema=False)


# --- cross-checks against the webhook binary, when one is built -----------------------------


def find_binary() -> Path | None:
    """SPW_BIN, else the newest target/{release,debug} build. Never builds one."""
    explicit = os.environ.get("SPW_BIN")
    if explicit:
        return Path(explicit)
    built = [p for p in (ROOT / "target" / "release" / "storage-policy-webhook",
                         ROOT / "target" / "debug" / "storage-policy-webhook") if p.is_file()]
    return max(built, key=lambda p: p.stat().st_mtime) if built else None


PROBE_REVIEW = {
    "apiVersion": "admission.k8s.io/v1",
    "kind": "AdmissionReview",
    "request": {
        "uid": "chart-test",
        "kind": {"group": "", "version": "v1", "kind": "PersistentVolumeClaim"},
        "resource": {"group": "", "version": "v1", "resource": "persistentvolumeclaims"},
        "namespace": "default",
        "name": "probe",
        "operation": "CREATE",
        "userInfo": {"username": "chart-test"},
        "dryRun": True,
        "object": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                   "metadata": {"name": "probe", "namespace": "default"},
                   "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}},
    },
}


def helper_rule_keys() -> list[str]:
    """The keys of spw.ruleKeys in _helpers.tpl (the block between the rule-keys markers)."""
    helper = (CHART / "templates" / "_helpers.tpl").read_text()
    block = re.search(r"rule-keys:start.*?\n(.*?)\n[^\n]*rule-keys:end", helper, re.S)
    expect(block, "_helpers.tpl has no rule-keys:start/rule-keys:end block")
    line = next((x for x in block.group(1).splitlines() if x.startswith("{{- list ")), "")
    keys = re.findall(r'"(\w+)"', line)
    expect(keys, "no `{{- list ... }}` of rule keys in the spw.ruleKeys block of _helpers.tpl")
    return keys


def registry_rule_keys() -> tuple[list[str], str]:
    """The registry's rule keys and where they were read."""
    binary = find_binary()
    if binary is not None and binary.is_file():
        run = subprocess.run([str(binary), "rules", "--output", "json"], capture_output=True, text=True, timeout=60)
        if run.returncode == 0:
            return [r["key"] for r in json.loads(run.stdout)["rules"]], f"`{binary} rules --output json`"
    return helper_rule_keys(), "spw.ruleKeys of _helpers.tpl (no webhook binary to ask)"


def check_against_binary() -> None:
    binary = find_binary()
    if binary is None:
        R.note("no webhook binary built (target/*/storage-policy-webhook, or set SPW_BIN): "
               "policy and flag cross-checks skipped")
        return
    R.note(f"cross-checking against {binary}")

    def loads_policy(r: Rendered) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "policy.yaml"
            path.write_text(r.named("ConfigMap", f"{FULLNAME}-policy")["data"]["policy.yaml"])
            run = subprocess.run([str(binary), "review", "--config", str(path), "--endpoint", "validate"],
                                 input=json.dumps(PROBE_REVIEW), capture_output=True, text=True, timeout=60)
            expect(run.returncode == 0, f"exit {run.returncode}: {run.stderr.strip()}")
            answer = json.loads(run.stdout)
            expect_eq(answer["response"]["uid"], "chart-test", "review answer uid")

    for label, r in RENDERED.items():
        R.check(f"[{label}] the webhook binary loads the rendered policy.yaml", lambda r=r: loads_policy(r))

    rules_run = subprocess.run([str(binary), "rules", "--output", "json"], capture_output=True, text=True,
                               timeout=60)

    def registrations_follow_the_kinds_table(r: Rendered) -> None:
        expect(rules_run.returncode == 0, f"`rules --output json` failed: {rules_run.stderr.strip()}")
        want = json.loads(rules_run.stdout)["webhooks"]
        got = []
        for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
            got += r.one(kind)["webhooks"]
        expect_eq(sorted(h["name"] for h in got), sorted(w["name"] for w in want), "webhook registrations")
        by_name = {h["name"]: h for h in got}
        for w in want:
            h = by_name[w["name"]]
            expect_eq(h["clientConfig"]["service"]["path"], w["path"], f"{w['name']} path")
            expect_eq(rule_set(h["rules"]), rule_set(w["rules"]), f"{w['name']} rules")
            expect_eq([c["expression"] for c in h.get("matchConditions", [])],
                      [c["expression"] for c in w.get("matchConditions", [])], f"{w['name']} matchConditions")

    def rule_keys_follow_the_registry() -> None:
        expect(rules_run.returncode == 0, f"`rules --output json` failed: {rules_run.stderr.strip()}")
        keys = [r["key"] for r in json.loads(rules_run.stdout)["rules"]]
        expect_eq(keys, RULE_KEYS, "rule keys (`rules --output json` and this test's RULE_KEYS)")
        expect_eq(helper_rule_keys(), keys, "spw.ruleKeys in _helpers.tpl (regenerate with "
                  "UPDATE_CHART=1 cargo test --test chart_rules)")

    R.check("the chart's rule list (effective modes, NOTES) follows the registry (`rules --output json`)",
            rule_keys_follow_the_registry)

    def default_install_audits() -> None:
        r = RENDERED["defaults"]
        claim = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": "chart-test", "kind": {"group": "", "version": "v1", "kind": "PersistentVolumeClaim"},
            "operation": "CREATE", "namespace": "default", "userInfo": {"username": "u"},
            "object": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "c", "namespace": "default"},
                       "spec": {"storageClassName": "oci-bv", "accessModes": ["ReadWriteMany"],
                                "resources": {"requests": {"storage": "1Gi"}}}}}}
        policy = yaml.safe_load(r.named("ConfigMap", f"{FULLNAME}-policy")["data"]["policy.yaml"])
        policy["storageClasses"] = [{"name": "oci-bv", "provisioner": "blockvolume.csi.oraclecloud.com"}]
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "policy.yaml"
            path.write_text(yaml.safe_dump(policy))
            run = subprocess.run([str(binary), "review", "--config", str(path), "--endpoint", "validate"],
                                 input=json.dumps(claim), capture_output=True, text=True, timeout=60)
        expect(run.returncode == 0, f"exit {run.returncode}: {run.stderr.strip()}")
        resp = json.loads(run.stdout)["response"]
        expect(resp["allowed"] and resp.get("warnings"), f"ReadWriteMany on block storage not audited: {resp}")

    R.check("[defaults] the webhook audits under the default policy (RWX on block: allowed, warned)",
            default_install_audits)

    R.check("[defaults] the chart's webhook registrations follow the kinds table and rule registry "
            "(`rules --output json`)", lambda: registrations_follow_the_kinds_table(RENDERED["defaults"]))

    help_run = subprocess.run([str(binary), "serve", "--help"], capture_output=True, text=True, timeout=60)
    if help_run.returncode != 0:
        R.note(f"{binary.name} has no serve subcommand yet: flag cross-check skipped")
        return
    flags = sorted({a.split("=", 1)[0] for r in RENDERED.values() for a in r.args()[1:]
                    if a.startswith("--") and a not in r.merged["extraArgs"]})

    def serve_knows_flags() -> None:
        unknown = [f for f in flags if not re.search(r"(?<![\w-])" + re.escape(f) + r"(?![\w-])", help_run.stdout)]
        expect(not unknown, f"flags the chart passes but `serve --help` does not list: {unknown}")

    R.check(f"`serve --help` lists every flag the chart passes ({', '.join(flags)})", serve_knows_flags)


# --- chart files ----------------------------------------------------------------------------


def leaf_paths(node: Any, prefix: str = "") -> list[str]:
    if isinstance(node, dict) and node:
        out = []
        for k, v in node.items():
            out.extend(leaf_paths(v, f"{prefix}.{k}" if prefix else k))
        return out
    return [prefix]


def check_files() -> None:
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    readme_path = CHART / "README.md"
    readme = readme_path.read_text() if readme_path.exists() else ""
    # Values documented as one block (Kubernetes objects, the policy file) rather than key by key.
    atomic = ["policy", "resources", "podSecurityContext", "securityContext", "nodeSelector"]
    documented = leaf_paths({k: v for k, v in defaults.items() if k not in atomic}) + atomic

    def readme_lists_values() -> None:
        expect(readme, f"{readme_path} missing or empty")
        missing = [p for p in documented if f"`{p}`" not in readme]
        expect(not missing, f"values missing from README.md: {missing}")

    def schema_declares_values() -> None:
        missing = []
        for path in leaf_paths(defaults):
            node = schema
            for part in path.split("."):
                props = node.get("properties", {})
                if part not in props:
                    if node.get("additionalProperties") is not False:
                        node = None
                        break
                    missing.append(path)
                    node = None
                    break
                node = props[part]
        expect(not missing, f"values.yaml keys the schema does not declare: {missing}")

    def schema_has_no_unknown_top_level() -> None:
        extra = set(schema["properties"]) - set(defaults) - {"global"}
        expect(not extra, f"schema declares keys values.yaml lacks: {sorted(extra)}")

    def readme_sections() -> None:
        for needle in ("helm install", "--dry-run=server", "policy.mode=enforce", "auditOnly", "failurePolicy",
                       "Gatekeeper", "Kyverno", "Kubewarden", "kind load docker-image", "k3s ctr images import",
                       "docker push", "--set image.repository="):
            expect(needle in readme, f"README.md lacks {needle!r}")

    def defaults_match_readme_table() -> None:
        # The table's default column for a few values a reader relies on.
        for path, shown in (("webhook.timeoutSeconds", "`5`"), ("webhook.mutating.failurePolicy", '`""`'),
                            ("webhook.validating.failurePolicy", "`Ignore`"), ("replicaCount", "`2`"),
                            ("certs.mode", "`generate`"), ("auditOnly", "`false`"), ("dryRun", "`false`")):
            row = next((line for line in readme.splitlines() if line.startswith(f"| `{path}` |")), "")
            expect(shown in row, f"README row for {path} does not show default {shown}: {row!r}")

    def dockerfile() -> None:
        text = (ROOT / "Dockerfile").read_text()
        for needle in ("cargo build --release --locked", "gcr.io/distroless/cc-debian12:nonroot",
                       "USER 65532:65532", "/usr/local/bin/storage-policy-webhook", "AS build",
                       "ENV MIMALLOC_PURGE_DELAY=0"):
            expect(needle in text, f"Dockerfile lacks {needle!r}")
        ignore = (ROOT / ".dockerignore").read_text().split()
        expect("target" in ignore and ".git" in ignore, ".dockerignore must drop target/ and .git")

    def policy_examples_accepted() -> None:
        # The conformance policies are the reference examples of the policy format: the chart's
        # schema must accept them, and the ConfigMap must carry them unchanged.
        shared = Path(os.environ.get("SHARED_DIR", ROOT.parent / "shared"))
        if not shared.is_absolute():
            shared = ROOT / shared
        examples = sorted((shared / "conformance" / "cases").glob("*/policy.yaml"))
        examples += sorted((ROOT / "tests" / "conformance").glob("*/policy.yaml"))
        if not examples:
            R.note("no conformance policies found (../shared or tests/conformance): policy-format cross-check skipped")
            return
        for path in examples:
            policy = yaml.safe_load(path.read_text())
            r = Rendered({"policy": policy})
            rendered = check_policy(r)
            expect(set(policy["exemptions"]["namespaces"]) <= set(rendered["exemptions"]["namespaces"]),
                   f"{path}: exemptions lost")

    R.check("README.md lists every value", readme_lists_values)
    R.check("README.md shows the documented defaults", defaults_match_readme_table)
    R.check("README.md has install, dry-run verification, audit-first rollout, image and failurePolicy sections", readme_sections)

    def no_reuse_values() -> None:
        for path in [readme_path, ROOT / "docs" / "rollout.md", ROOT / "README.md"]:
            # Shell commands continued over lines are one command.
            text = (path.read_text() if path.exists() else "").replace("\\\n", " ")
            # A shell comment may warn against it ("never --reuse-values").
            commands = [line.split(" #", 1)[0] for line in text.splitlines()]
            bad = [line for line in commands if "--reuse-values" in line and "helm upgrade" in line]
            expect(not bad, f"{path.name} upgrades with --reuse-values (keeps old defaults, drops new ones): {bad}")

    R.check("no documented upgrade uses --reuse-values", no_reuse_values)

    def rollout_doc() -> None:
        text = (ROOT / "docs" / "rollout.md").read_text()
        for needle in ("audit --cluster", "policy.mode=enforce", "kubectl delete mutatingwebhookconfiguration",
                       "validatingwebhookconfiguration", "helm rollback", "existingSecret", "cert-manager",
                       "StoragePolicyWebhookNoReadyReplica"):
            expect(needle in text, f"docs/rollout.md lacks {needle!r}")

    R.check("docs/rollout.md: audit first, enforce, break-glass, upgrade and rollback, certificates", rollout_doc)
    R.check("values.schema.json declares every key of values.yaml", schema_declares_values)
    R.check("values.schema.json declares no key values.yaml lacks", schema_has_no_unknown_top_level)
    R.check("Dockerfile: locked release build, distroless nonroot runtime, uid 65532", dockerfile)
    R.check("conformance policy files (shared and tests/conformance) pass the schema and reach the ConfigMap", policy_examples_accepted)


def check_kube_version_constraint() -> None:
    # The SDK renders with a fixed Kubernetes version and lint does not enforce kubeVersion, so
    # only the declared constraint can be checked here; helm install enforces it on a cluster.
    def declared() -> None:
        constraint = chart().metadata.get("kubeVersion", "")
        expect_eq(constraint, ">=1.30.0-0", "Chart.yaml kubeVersion (matchConditions GA, preStop sleep action)")

    R.check("Chart.yaml kubeVersion requires Kubernetes >= 1.30", declared)


def main() -> int:
    print(f"helm-python-sdk {helm.__version__} (Helm {helm.helm_sdk_version()}), "
          f"kubernetes-validate {kubernetes_validate.__version__ if hasattr(kubernetes_validate, '__version__') else '?'}")
    keys, source = registry_rule_keys()
    RULE_KEYS[:] = keys
    R.note(f"{len(RULE_KEYS)} rules, from {source}")
    check_files()
    check_kube_version_constraint()

    r = check_render("defaults", {}, extra_defaults)
    if r is not None:
        check_generated_certificate(r)
    check_render("generate", {"certs": {"mode": "generate", "generate": {"validityDays": 365}}})
    check_render("certManager", {"certs": {"mode": "certManager"}}, extra_cert_manager)
    check_render("certManager+issuerRef", {"certs": {"mode": "certManager", "certManager": {
        "issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}}}},
        extra_cert_manager_issuer)
    check_render("existingSecret", {"certs": {"mode": "existingSecret", "existingSecret": {"name": "my-tls"},
                                              "caBundle": ca_bundle_for_test()}})
    check_render("dryRun (deprecated)", {"dryRun": True}, extra_dry_run)
    check_render("auditOnly over enforce", {"auditOnly": True, "policy": {"mode": "enforce"}})
    check_render("policy.mode=enforce", {"policy": {"mode": "enforce"}}, extra_enforce)
    check_render("policy.mode=audit", {"policy": {"mode": "audit"}})
    check_render("mixed modes", {"policy": {"mode": "enforce", "rules": {"willBind": {"mode": "audit"},
                                                                         "volumeName": {"mode": "off"}}}})
    external_webhook()
    check_render("serviceMonitor", {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
                 extra_service_monitor)
    check_render("networkPolicy", {"networkPolicy": {"enabled": True}}, extra_network_policy)
    check_render("noCluster", {"cluster": {"watch": False}, "networkPolicy": {"enabled": True}}, extra_no_cluster)
    check_render("objectOptOut off", {"webhook": {"objectOptOut": {"enabled": False}}}, extra_opt_out_disabled)
    check_render("failurePolicy flipped", {"webhook": {"timeoutSeconds": 10, "mutating": {"failurePolicy": "Ignore"},
                                                       "validating": {"failurePolicy": "Fail"}}})
    check_render("everything on", {
        "replicaCount": 3,
        "dryRun": True,
        "rollOnConfigChange": True,
        "hostNetwork": True,
        "ports": {"https": 9443, "admin": 9080},
        "podAntiAffinity": "hard",
        "podAnnotations": {"example.com/team": "storage"},
        "podDisruptionBudget": {"maxUnavailable": "50%"},
        "tls": {"clientCAConfigMap": "apiserver-client-ca", "clientCAKey": "ca.pem"},
        "webhook": {"namespaceSelector": {"excludeNamespaces": ["monitoring", "storage-policy"],
                                          "extraMatchExpressions": [{"key": "tier", "operator": "NotIn",
                                                                     "values": ["system"]}]}},
        "policy": {"mode": "audit", "exemptions": {"namespaces": ["ci"], "usernames": ["system:admin"]},
                   "storageClasses": [{"name": "rbd-block", "provisioner": "rbd.csi.ceph.com",
                                       "allowReadWriteManyBlockMode": True, "parameters": {"pool": "k8s"}}],
                   "provisioners": {"shared": ["nfs.example.com"]},
                   "rules": {"defaultStorageClass": {"className": "rbd-block",
                                                     "byAccessMode": {"ReadWriteMany": "nfs"},
                                                     "namespaces": {"analytics": "local-path"}},
                             "localVolumeNodeAffinity": {"paths": [{"prefix": "/mnt/ssd", "nodes": ["w1"]}]}}},
        "shutdown": {"preStopSleepSeconds": 0},
        "extraArgs": ["--example-extra=1"],
        "extraEnv": [{"name": "RUST_BACKTRACE", "value": "1"}],
        "serviceMonitor": {"enabled": True},
        "networkPolicy": {"enabled": True},
        "image": {"digest": "sha256:" + "a" * 64},
        "bodyBudgetBytes": 33554432,
        "bodyReadTimeoutSeconds": 5,
    }, extra_everything)
    R.check("rollOnConfigChange: checksum/policy follows the policy", checksum_follows_policy)
    refusals()
    check_against_binary()
    observability.run(sys.modules[__name__])

    print(f"{R.passed} passed, {R.failed} failed")
    return 1 if R.failed else 0


if __name__ == "__main__":
    sys.exit(main())
