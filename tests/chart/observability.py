"""Checks of the chart's monitoring objects: the PrometheusRule (`prometheusRule.*`) and the
Grafana dashboard ConfigMap (`grafanaDashboard.*`).

- Both render, pass lint and carry their labels; the dashboard has the panels operators need.
- The alerts pass `promtool check rules`, and `promtool test rules` runs tests/alerts/alerts.test.yaml,
  where every alert fires on series that should fire it and stays quiet on healthy ones.
- Every metric the alert and dashboard expressions use is one the webhook exports: the real binary
  is started (with a cluster that cannot be reached, so the cluster-cache series exist too), sent
  reviews, and its /metrics is scraped; nothing else (`up`, kube-state-metrics) may be queried.

Called from test_chart.py's main with that module, whose Report, helpers and constants it uses.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

ALERTS_TEST = Path(__file__).resolve().parents[1] / "alerts" / "alerts.test.yaml"
ALERTS = [
    "StoragePolicyWebhookNoReadyReplica",
    "StoragePolicyWebhookErrors",
    "StoragePolicyWebhookBadRequests",
    "StoragePolicyWebhookSlow",
    "StoragePolicyWebhookCertificateExpiring",
    "StoragePolicyWebhookPolicyReloadFailing",
    "StoragePolicyWebhookCertificateReloadFailing",
    "StoragePolicyWebhookClusterCacheNotSynced",
    "StoragePolicyWebhookWatchErrors",
    "StoragePolicyWebhookDenialSpike",
    "StoragePolicyWebhookReviewsNotJudged",
    "StoragePolicyWebhookDecisionPanics",
]
PANELS = [
    "Reviews per second by endpoint and outcome",
    "Latency p50 / p99 by endpoint",
    "Decisions by rule and action",
    "Denials by kind",
    "Certificate expiry",
    "Cluster cache: sync and watch errors",
    "Policy and certificate reloads",
]
# PromQL words that are not metric names.
PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "rate", "irate", "increase", "histogram_quantile", "absent",
    "time", "or", "and", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "offset", "bool", "label_values", "inf", "nan",
}

t: ModuleType  # test_chart, set by run()


# --- PromQL ---------------------------------------------------------------------------------


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects: identifiers left once strings, label matchers,
    ranges, grouping clauses, function calls and numbers are taken out."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    s = re.sub(r"\b[a-zA-Z_][a-zA-Z0-9_]*\s*\(", "(", s)  # function names
    names = set(re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b", s))
    return {n for n in names if n.lower() not in PROMQL_WORDS and not re.fullmatch(r"\d.*", n)}


def exported_samples(text: str) -> set[str]:
    """Sample names in a Prometheus/OpenMetrics exposition."""
    out = set()
    for line in text.splitlines():
        if line and not line.startswith("#"):
            m = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line)
            if m:
                out.add(m.group(0))
    return out


def rule_exprs(r: Any) -> list[str]:
    rule = r.one("PrometheusRule")
    return [x["expr"] for g in rule["spec"]["groups"] for x in g["rules"]]


def dashboard(r: Any) -> dict[str, Any]:
    cm = r.named("ConfigMap", f"{t.FULLNAME}-dashboard")
    return json.loads(cm["data"]["storage-policy-webhook.json"])


def dashboard_exprs(d: dict[str, Any]) -> list[str]:
    exprs = [target["expr"] for p in d["panels"] for target in p.get("targets", [])]
    for v in d.get("templating", {}).get("list", []):
        q = v.get("query")
        if isinstance(q, dict):
            q = q.get("query")
        if v.get("type") == "query" and q:
            m = re.fullmatch(r"label_values\((.*),\s*[a-zA-Z_]+\)", q)
            exprs.append(m.group(1) if m else q)
    return exprs


# --- the scenarios --------------------------------------------------------------------------


def extra_prometheus_rule(r: Any) -> None:
    rule = r.one("PrometheusRule")
    t.expect_eq(rule["apiVersion"], "monitoring.coreos.com/v1", "apiVersion")
    t.expect_eq(rule["metadata"]["labels"].get("release"), "prometheus", "prometheusRule.labels")
    rules = [x for g in rule["spec"]["groups"] for x in g["rules"]]
    names = [x.get("alert") for x in rules]
    t.expect_eq(names[: len(ALERTS)], ALERTS, "alerts")
    t.expect_eq(names[len(ALERTS):], ["MyExtraAlert"], "additionalRules appended")
    for x in rules[: len(ALERTS)]:
        ann = x.get("annotations", {})
        t.expect(ann.get("summary") and len(ann.get("description", "")) > 120,
                 f"{x['alert']}: summary and a runbook-style description")
        t.expect(x["labels"]["severity"] in ("critical", "warning"), f"{x['alert']}: severity")
        t.expect(f'job="{t.FULLNAME}"' in x["expr"] and f'namespace="{t.NAMESPACE}"' in x["expr"],
                 f"{x['alert']}: selects this release's series: {x['expr']}")
    slow = next(x for x in rules if x["alert"] == "StoragePolicyWebhookSlow")
    t.expect(slow["expr"].rstrip().endswith(">= 1"), f"timeoutSeconds 2 gives a 1 s threshold: {slow['expr']}")


def extra_grafana_dashboard(r: Any) -> None:
    cm = r.named("ConfigMap", f"{t.FULLNAME}-dashboard")
    t.expect_eq(cm["metadata"]["labels"].get("grafana_dashboard"), "1", "sidecar label")
    t.expect_eq(cm["metadata"]["labels"].get("team"), "storage", "grafanaDashboard.labels")
    t.expect_eq(cm["metadata"].get("annotations"), {"grafana_folder": "Storage"}, "grafanaDashboard.annotations")
    d = dashboard(r)
    t.expect_eq(d["uid"], "storage-policy-webhook", "dashboard uid")
    titles = [p["title"] for p in d["panels"]]
    missing = [p for p in PANELS if p not in titles]
    t.expect(not missing, f"panels missing: {missing}")
    ids = [p["id"] for p in d["panels"]]
    t.expect_eq(len(set(ids)), len(ids), "unique panel ids")
    # No two panels overlap on Grafana's 24-column grid.
    cells: set[tuple[int, int]] = set()
    for p in d["panels"]:
        g = p["gridPos"]
        t.expect(g["x"] + g["w"] <= 24, f"{p['title']} exceeds the grid")
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                t.expect((x, y) not in cells, f"{p['title']} overlaps another panel")
                cells.add((x, y))
    exprs = " ".join(dashboard_exprs(d))
    for needle in ("storage_policy_webhook_requests_total", "histogram_quantile(0.5", "histogram_quantile(0.99",
                   "storage_policy_webhook_decisions_total", 'action="denied"', "by (kind)",
                   "storage_policy_webhook_tls_certificate_expiry_timestamp_seconds",
                   "storage_policy_webhook_cluster_synced", "storage_policy_webhook_cluster_watch_errors_total",
                   "storage_policy_webhook_policy_reloads_total"):
        t.expect(needle in exprs, f"dashboard queries lack {needle!r}")


def extra_dashboard_namespace(r: Any) -> None:
    cm = r.named("ConfigMap", f"{t.FULLNAME}-dashboard")
    t.expect_eq(cm["metadata"]["namespace"], "monitoring", "grafanaDashboard.namespace")


def extra_rule_without_service_monitor(r: Any) -> None:
    t.expect("serviceMonitor.enabled" in r.notes and "NoReadyReplica" in r.notes,
             f"NOTES warn that the alerts need the ServiceMonitor's job label: {r.notes[-400:]}")


def extra_rule_with_service_monitor(r: Any) -> None:
    extra_prometheus_rule(r)
    t.expect("NoReadyReplica" not in r.notes, "NOTES warn although the ServiceMonitor is enabled")


def off_by_default() -> None:
    r = t.RENDERED.get("defaults")
    t.expect(r is not None, "default render missing")
    t.expect_eq(r.all("PrometheusRule"), [], "PrometheusRule by default")
    t.expect_eq([c["metadata"]["name"] for c in r.all("ConfigMap") if "dashboard" in c["metadata"]["name"]], [],
                "dashboard ConfigMap by default")


# --- promtool ---------------------------------------------------------------------------------


def promtool() -> str | None:
    return shutil.which("promtool")


def check_promtool(r: Any) -> None:
    tool = promtool()
    if tool is None:
        if os.environ.get("CI"):
            t.R.check("promtool is installed (CI installs Debian's prometheus package)",
                      lambda: t.expect(False, "promtool not found"))
        else:
            t.R.note("promtool not found (apt-get install prometheus): alert rule checks skipped")
        return
    groups = r.one("PrometheusRule")["spec"]["groups"]
    tmp = Path(tempfile.mkdtemp(prefix="spw-alerts-"))
    try:
        full = tmp / "full-rules.yaml"
        full.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))

        def check_rules() -> None:
            p = subprocess.run([tool, "check", "rules", str(full)], capture_output=True, text=True)
            t.expect(p.returncode == 0, f"promtool check rules:\n{p.stdout}{p.stderr}")
            t.expect(f"SUCCESS: {len(ALERTS)} rules found" in p.stdout, f"promtool check rules: {p.stdout}")

        t.R.check("promtool check rules: the rendered alerts (annotation templates included)", check_rules)

        bare = [{**g, "rules": [{k: v for k, v in x.items() if k != "annotations"} for x in g["rules"]]}
                for g in groups]
        (tmp / "rules.yaml").write_text(yaml.safe_dump({"groups": bare}, sort_keys=False))
        shutil.copy(ALERTS_TEST, tmp / ALERTS_TEST.name)

        def unit_tests() -> None:
            p = subprocess.run([tool, "test", "rules", ALERTS_TEST.name], cwd=tmp, capture_output=True, text=True)
            t.expect(p.returncode == 0, f"promtool test rules:\n{p.stdout}{p.stderr}")

        t.R.check("promtool test rules tests/alerts/alerts.test.yaml", unit_tests)

        def every_alert_tested_both_ways() -> None:
            cases = [c for test in yaml.safe_load(ALERTS_TEST.read_text())["tests"] for c in test["alert_rule_test"]]
            for name in ALERTS:
                fires = [c for c in cases if c["alertname"] == name and c.get("exp_alerts")]
                quiet = [c for c in cases if c["alertname"] == name and not c.get("exp_alerts")]
                t.expect(fires and quiet, f"{name}: needs a case where it fires and one where it does not")

        t.R.check("every alert has a firing and a quiet promtool case", every_alert_tested_both_ways)

        def a_broken_case_fails() -> None:
            # The harness can fail: expecting the healthy case to fire must make promtool fail.
            doc = yaml.safe_load(ALERTS_TEST.read_text())
            quiet = next(c for test in doc["tests"] for c in test["alert_rule_test"] if not c.get("exp_alerts"))
            quiet["exp_alerts"] = [{"exp_labels": {"severity": "critical"}}]
            (tmp / "broken.test.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
            p = subprocess.run([tool, "test", "rules", "broken.test.yaml"], cwd=tmp, capture_output=True, text=True)
            t.expect(p.returncode != 0, "promtool accepted an alert expected to fire on healthy series")

        t.R.check("promtool test rules fails when a healthy case is expected to fire", a_broken_case_fails)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --- the live /metrics ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: bytes) -> None:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        urllib.request.urlopen(req, context=ctx, timeout=5).read()
    except urllib.error.HTTPError:
        pass  # a 400 is what the bad request is for


def scrape_live_metrics(binary: Path) -> str:
    """Starts `serve` with a kubeconfig whose API server refuses connections (so the cluster
    cache's watches run and fail), sends a mutate, a validate and a malformed review, and returns
    /metrics once the watch errors are counted."""
    tmp = Path(tempfile.mkdtemp(prefix="spw-metrics-"))
    https, admin, dead = free_port(), free_port(), free_port()
    kubeconfig = tmp / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "dead",
        "clusters": [{"name": "dead", "cluster": {"server": f"https://127.0.0.1:{dead}",
                                                   "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "dead", "context": {"cluster": "dead", "user": "u"}}],
    }))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPW_", "KUBERNETES_", "RUST_LOG"))}
    env.update({"KUBECONFIG": str(kubeconfig), "HOME": str(tmp)})
    log = open(tmp / "serve.log", "wb")
    proc = subprocess.Popen([str(binary), "serve", "--listen", f"127.0.0.1:{https}",
                             "--admin-listen", f"127.0.0.1:{admin}"], env=env, stdout=log, stderr=log,
                            stdin=subprocess.DEVNULL)
    try:
        text = ""
        deadline = time.monotonic() + 30
        sent = False
        while time.monotonic() < deadline:
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=2).read().decode()
            except OSError:
                time.sleep(0.2)
                continue
            if not sent:
                review = json.dumps(t.PROBE_REVIEW).encode()
                post(f"https://127.0.0.1:{https}/mutate", review)
                post(f"https://127.0.0.1:{https}/validate", review)
                post(f"https://127.0.0.1:{https}/validate", b"{not json")
                sent = True
                continue
            if "storage_policy_webhook_cluster_watch_errors_total" in text and "_request_duration_seconds_bucket" in text:
                return text
            time.sleep(0.3)
        log.flush()
        raise AssertionError(f"/metrics never showed requests and watch errors; log:\n"
                             f"{(tmp / 'serve.log').read_text()[-2000:]}\n/metrics:\n{text[-2000:]}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


def check_metrics_exported(rule_render: Any, dashboard_render: Any) -> None:
    def names_are_parsed() -> None:
        got = metric_names('sum by (le) (rate(storage_policy_webhook_x_bucket{job="a",b=~"c|d"}[5m])) '
                           '/ on(pod) up > 0.5 unless absent(kube_pod_info{x="y"}) - time()')
        t.expect_eq(got, {"storage_policy_webhook_x_bucket", "up", "kube_pod_info"}, "metric_names")

    t.R.check("PromQL metric-name extraction finds every selected name", names_are_parsed)
    used: dict[str, set[str]] = {}
    if rule_render is not None:
        for e in rule_exprs(rule_render):
            for n in metric_names(e):
                used.setdefault(n, set()).add("alerts")
    if dashboard_render is not None:
        for e in dashboard_exprs(dashboard(dashboard_render)):
            for n in metric_names(e):
                used.setdefault(n, set()).add("dashboard")

    def only_webhook_metrics() -> None:
        foreign = sorted(n for n in used if not n.startswith("storage_policy_webhook_"))
        t.expect(not foreign, f"alerts/dashboard query metrics the webhook does not export: {foreign}")

    t.R.check("alerts and dashboard query only storage_policy_webhook_* metrics", only_webhook_metrics)
    binary = t.find_binary()
    if binary is None:
        if os.environ.get("CI"):
            t.R.check("a built webhook binary for the live /metrics check",
                      lambda: t.expect(False, "no target/*/storage-policy-webhook (or SPW_BIN)"))
        else:
            t.R.note("no webhook binary built: live /metrics check of alert and dashboard metrics skipped")
        return
    text = t.R.check(f"live /metrics of {binary.name} serve (cluster unreachable, reviews sent)",
                     lambda: scrape_live_metrics(binary))
    if text is None:
        return
    exported = exported_samples(text)

    def every_used_metric_is_exported() -> None:
        missing = {n: sorted(w) for n, w in used.items() if n not in exported}
        t.expect(not missing, f"not in the webhook's /metrics: {missing}\nexported: {sorted(exported)}")
        t.expect("storage_policy_webhook_requests" not in exported, "sanity: a counter's family name is no sample")

    t.R.check(f"every metric the alerts and dashboard use ({len(used)}) is in the live /metrics", every_used_metric_is_exported)


def run(test_chart: ModuleType) -> None:
    global t
    t = test_chart
    t.R.check("PrometheusRule and dashboard ConfigMap are off by default", off_by_default)
    rules = t.check_render("prometheusRule", {
        "serviceMonitor": {"enabled": True},
        "webhook": {"timeoutSeconds": 2},
        "prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}, "additionalRules": [
            {"alert": "MyExtraAlert", "expr": "vector(1)", "labels": {"severity": "info"}}]},
    }, extra_rule_with_service_monitor)
    plain = t.check_render("prometheusRule defaults", {"prometheusRule": {"enabled": True}},
                           extra_rule_without_service_monitor)
    dash = t.check_render("grafanaDashboard", {"grafanaDashboard": {
        "enabled": True, "labels": {"team": "storage"}, "annotations": {"grafana_folder": "Storage"}}},
        extra_grafana_dashboard)
    t.check_render("grafanaDashboard namespace", {"grafanaDashboard": {"enabled": True, "namespace": "monitoring"}},
                   extra_dashboard_namespace)
    if plain is not None:
        check_promtool(plain)
    check_metrics_exported(plain, dash)
    t.must_refuse("prometheusRule.enabled not a boolean", {"prometheusRule": {"enabled": "yes"}},
                  "/prometheusRule/enabled")
    t.must_refuse("prometheusRule.additionalRules without expr",
                  {"prometheusRule": {"additionalRules": [{"alert": "X"}]}}, "/prometheusRule/additionalRules/0")
    t.must_refuse("grafanaDashboard unknown key", {"grafanaDashboard": {"folder": "x"}}, "folder")
