#!/usr/bin/env python3
"""Validates `storage-policy-webhook audit --output openreports` against the OpenReports CRDs.

The CRDs (openreports.io/v1alpha1 Report and ClusterReport) are vendored beside this file from the
openreports/reports-api repository. Each audited scenario's documents are checked against their
CRD's openAPIV3Schema, strictly: the API server prunes fields a structural schema does not
declare, so an undeclared field is an error here (the data would be lost), and int32/int64
formats are range-checked. Beyond the schema: one Report per namespace, a ClusterReport for
cluster-scoped objects and unreadable inputs, the summary adds up to the results, one result per
finding of the json report, and the documents' names are valid.

Run: python3 tests/openreports/test_openreports.py  (bash tests/chart/run.sh runs it in the chart
venv, which has jsonschema and PyYAML). Needs a built binary: target/{release,debug}, or SPW_BIN.
Prints one line per check and ends with "N passed, M failed"; exits 1 on any failure.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any, Callable

import jsonschema
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CRDS = {"Report": HERE / "openreports.io_reports.yaml", "ClusterReport": HERE / "openreports.io_clusterreports.yaml"}
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


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
        except Exception as e:  # a crash in a check fails that check only
            self.failed += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}")
            traceback.print_exc(limit=3, file=sys.stdout)
            return None
        self.passed += 1
        print(f"ok   {name}")
        return result


R = Report()


def expect(cond: Any, msg: str) -> None:
    if not cond:
        raise AssertionError(msg)


def strict(schema: Any) -> Any:
    """The schema as the API server applies it: object fields it does not declare are pruned,
    so they are refused here."""
    s = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(s)
    return s


FORMATS = jsonschema.FormatChecker()


@FORMATS.checks("int32")
def _int32(v: Any) -> bool:
    return not isinstance(v, int) or -(2**31) <= v < 2**31


@FORMATS.checks("int64")
def _int64(v: Any) -> bool:
    return not isinstance(v, int) or -(2**63) <= v < 2**63


def crd(kind: str) -> tuple[dict[str, Any], str, jsonschema.Validator]:
    doc = next(d for d in yaml.safe_load_all(CRDS[kind].read_text()) if d)
    spec = doc["spec"]
    expect(spec["names"]["kind"] == kind, f"{CRDS[kind].name} is not the {kind} CRD")
    version = next(v for v in spec["versions"] if v["served"] and v["storage"])
    schema = strict(version["schema"]["openAPIV3Schema"])
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    return spec, f"{spec['group']}/{version['name']}", cls(schema, format_checker=FORMATS)


def find_binary() -> Path | None:
    explicit = os.environ.get("SPW_BIN")
    if explicit:
        return Path(explicit)
    built = [p for p in (ROOT / "target" / "release" / "storage-policy-webhook",
                         ROOT / "target" / "debug" / "storage-policy-webhook") if p.is_file()]
    return max(built, key=lambda p: p.stat().st_mtime) if built else None


def audit(binary: Path, fmt: str, args: list[str]) -> tuple[int, str]:
    p = subprocess.run([str(binary), "audit", "-o", fmt, *args], cwd=ROOT, capture_output=True, text=True,
                       env={k: v for k, v in os.environ.items() if not k.startswith("SPW_")})
    return p.returncode, p.stdout


def errors_of(validator: jsonschema.Validator, doc: Any) -> list[str]:
    return [f"{'/'.join(str(p) for p in e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]


def check_scenario(binary: Path, label: str, args: list[str], validators: dict[str, Any]) -> None:
    code, out = audit(binary, "openreports", args)
    docs = R.check(f"[{label}] audit -o openreports writes multi-document YAML (exit {code})",
                   lambda: [d for d in yaml.safe_load_all(out) if d])
    if not docs:
        return
    _, js = audit(binary, "json", args)
    report = json.loads(js)

    for i, doc in enumerate(docs):
        kind = doc.get("kind")
        name = f"[{label}] document {i + 1} ({kind} {doc.get('metadata', {}).get('namespace', '')})"

        def valid(doc: dict[str, Any] = doc, kind: str = kind) -> None:
            expect(kind in validators, f"kind {kind!r} is not Report or ClusterReport")
            spec, api_version, validator = validators[kind]
            expect(doc["apiVersion"] == api_version, f"apiVersion {doc['apiVersion']}, want {api_version}")
            errs = errors_of(validator, doc)
            expect(not errs, f"not valid against the {kind} CRD: {errs[:5]}")
            meta = doc["metadata"]
            expect(DNS_SUBDOMAIN.match(meta["name"]) and len(meta["name"]) <= 253, f"name {meta['name']!r}")
            if spec["scope"] == "Namespaced":
                expect(DNS_SUBDOMAIN.match(meta.get("namespace", "")), f"namespace {meta.get('namespace')!r}")
            else:
                expect("namespace" not in meta, "a ClusterReport has no namespace")
            expect(doc["source"] == "storage-policy-webhook", f"source {doc.get('source')!r}")

        R.check(f"{name} valid against its CRD (strict: no field the API server would prune)", valid)

        def adds_up(doc: dict[str, Any] = doc) -> None:
            counts = {k: 0 for k in ("pass", "fail", "warn", "error", "skip")}
            for r in doc["results"]:
                counts[r["result"]] += 1
            expect(doc["summary"] == counts, f"summary {doc['summary']} != counted {counts}")

        R.check(f"{name} summary adds up to its results", adds_up)

    def layout() -> None:
        namespaces = [d["metadata"]["namespace"] for d in docs if d["kind"] == "Report"]
        expect(namespaces == sorted(set(namespaces)), f"one Report per namespace, in order: {namespaces}")
        for d in docs:
            for r in d["results"]:
                for res in r.get("resources", []):
                    expect(res.get("namespace") == d["metadata"].get("namespace"),
                           f"{res} in the report of namespace {d['metadata'].get('namespace')}")
        clusters = [d for d in docs if d["kind"] == "ClusterReport"]
        expect(len(clusters) <= 1 and (clusters or namespaces), "at most one ClusterReport, and some report")
        results = [r for d in docs for r in d["results"]]
        findings = [r for r in results if r["result"] != "error"]
        errors = [r for r in results if r["result"] == "error"]
        expect(len(findings) == len(report["findings"]),
               f"{len(findings)} results for {len(report['findings'])} findings")
        expect(len(errors) == len(report["errors"]), f"{len(errors)} error results for {len(report['errors'])} errors")
        by_rule: dict[str, int] = {}
        for f in report["findings"]:
            by_rule[f["rule"] or "storage-policy"] = by_rule.get(f["rule"] or "storage-policy", 0) + 1
        got: dict[str, int] = {}
        for r in findings:
            got[r["policy"]] = got.get(r["policy"], 0) + 1
        expect(got == by_rule, f"results by policy {got} != findings by rule {by_rule}")

    R.check(f"[{label}] one Report per namespace, one result per finding, the rule as policy", layout)


def main() -> int:
    validators = R.check("the vendored CRDs load (Report, ClusterReport)",
                         lambda: {k: crd(k) for k in CRDS})
    if validators is None:
        print(f"{R.passed} passed, {R.failed} failed")
        return 1

    def rejects_bad_documents() -> None:
        _, _, v = validators["Report"]
        good = {"apiVersion": "openreports.io/v1alpha1", "kind": "Report",
                "metadata": {"name": "x", "namespace": "a"}, "source": "s",
                "summary": {"pass": 1, "fail": 0, "warn": 0, "error": 0, "skip": 0},
                "results": [{"policy": "p", "result": "pass", "timestamp": {"seconds": 1, "nanos": 0},
                             "properties": {"k": "v"}}]}
        expect(not errors_of(v, good), f"a good document is refused: {errors_of(v, good)}")
        for what, mutate in [
            ("result ok", lambda d: d["results"][0].update(result="ok")),
            ("a numeric property", lambda d: d["results"][0]["properties"].update(k=1)),
            ("an undeclared field", lambda d: d["results"][0].update(outcome="denied")),
            ("nanos over int32", lambda d: d["results"][0]["timestamp"].update(nanos=2**31)),
            ("no policy", lambda d: d["results"][0].pop("policy")),
            ("severity urgent", lambda d: d["results"][0].update(severity="urgent")),
        ]:
            bad = copy.deepcopy(good)
            mutate(bad)
            expect(errors_of(v, bad), f"a document with {what} passes")

    R.check("the strict schema refuses bad documents (the check can fail)", rejects_bad_documents)

    binary = find_binary()
    if binary is None:
        R.check("a built webhook binary (target/*/storage-policy-webhook or SPW_BIN)",
                lambda: expect(not os.environ.get("CI"), "no binary in CI"))
        print("note no binary built: the audit output was not validated")
        print(f"{R.passed} passed, {R.failed} failed")
        return 1 if R.failed else 0
    print(f"note auditing with {binary}")
    with tempfile.TemporaryDirectory() as tmp:
        broken = Path(tmp) / "broken.yaml"
        broken.write_text("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: x\n")
        check_scenario(binary, "examples", ["--config", "examples/policy.yaml", "examples/"], validators)
        check_scenario(binary, "examples, audit only", ["--audit-only", "--config", "examples/policy.yaml", "examples/"],
                       validators)
        check_scenario(binary, "examples and a broken file, default policy", ["examples/", str(broken)], validators)
        check_scenario(binary, "only a broken file", [str(broken)], validators)
    print(f"{R.passed} passed, {R.failed} failed")
    return 1 if R.failed else 0


if __name__ == "__main__":
    sys.exit(main())
