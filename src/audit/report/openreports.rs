//! The `openreports` format: `openreports.io/v1alpha1` documents, which Kyverno (1.15+) and
//! Kubewarden write beside the older PolicyReports and Policy Reporter reads. One Report per
//! namespace for namespaced objects, one ClusterReport for cluster-scoped objects and for inputs
//! that could not be read (`result: error`). Each result names the rule as its `policy`
//! (`storage-policy` when no rule acted); the report's `source` is `storage-policy-webhook`.
//! The documents follow the CRDs of `openreports/reports-api` (`crd/openreports.io/v1alpha1/`),
//! vendored under `tests/openreports/` and checked by `tests/openreports/test_openreports.py`.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::results::{self, Bucket, Naming, ReportResult, ResultCounts, Timestamp};
use super::{POLICY_REPORT_NAME, REPORT_SOURCE, Report};

/// apiVersion of the documents.
pub const API_VERSION: &str = "openreports.io/v1alpha1";

#[derive(Serialize)]
struct Metadata<'a> {
    labels: BTreeMap<&'static str, &'static str>,
    name: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a str>,
}

/// A Report or ClusterReport.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OpenReport<'a> {
    api_version: &'static str,
    kind: &'static str,
    metadata: Metadata<'a>,
    source: &'static str,
    summary: ResultCounts,
    results: &'a [ReportResult],
}

fn document(kind: &'static str, namespace: Option<&str>, bucket: &Bucket) -> Value {
    let doc = OpenReport {
        api_version: API_VERSION,
        kind,
        metadata: Metadata {
            labels: results::labels(),
            name: POLICY_REPORT_NAME,
            namespace,
        },
        source: REPORT_SOURCE,
        summary: bucket.summary,
        results: &bucket.results,
    };
    serde_json::to_value(doc).unwrap_or(Value::Null)
}

/// `openreports.io/v1alpha1` reports: one Report per namespace, one ClusterReport for
/// cluster-scoped objects and unreadable inputs (always written when there is no Report, so an
/// empty audit still says so). `now` is the results' timestamp.
pub fn to_openreports(report: &Report, now: Timestamp) -> Vec<Value> {
    let g = results::group(report, now, Naming::RuleAsPolicy);
    let mut docs: Vec<Value> = g
        .namespaced
        .iter()
        .map(|(ns, bucket)| document("Report", Some(ns), bucket))
        .collect();
    if !g.cluster.results.is_empty() || docs.is_empty() {
        docs.push(document("ClusterReport", None, &g.cluster));
    }
    docs
}

/// The reports as multi-document YAML.
pub fn to_openreports_yaml(
    report: &Report,
    now: Timestamp,
) -> Result<String, serde_saphyr::SerializeError> {
    serde_saphyr::to_string_multiple(&to_openreports(report, now))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::audit::report::test_support::{f, object};
    use crate::audit::report::{ObjectRef, Outcome, Stage};
    use crate::audit::{InputError, Location};

    fn sample() -> Report {
        let mut pv = object(vec![f(Outcome::Warned, Stage::Inventory)]);
        pv.object = ObjectRef {
            api_version: "v1".into(),
            kind: "PersistentVolume".into(),
            namespace: None,
            name: "pv1".into(),
        };
        let mut allowed = object(Vec::new());
        allowed.finish();
        Report {
            objects: vec![
                object(vec![
                    f(Outcome::Denied, Stage::Validate),
                    f(Outcome::Mutated, Stage::Mutate),
                ]),
                allowed,
                pv,
            ],
            errors: vec![InputError {
                source: Location::file("x.yaml"),
                message: "bad".into(),
            }],
            ignored: 0,
        }
    }

    #[test]
    fn one_report_per_namespace_and_a_cluster_report() {
        let docs = to_openreports(
            &sample(),
            Timestamp {
                nanos: 5,
                seconds: 9,
            },
        );
        assert_eq!(docs.len(), 2);
        let (ns, cluster) = (&docs[0], &docs[1]);
        assert_eq!(ns["apiVersion"], "openreports.io/v1alpha1");
        assert_eq!(ns["kind"], "Report");
        assert_eq!(ns["metadata"]["namespace"], "a");
        assert_eq!(ns["source"], "storage-policy-webhook");
        assert_eq!(
            ns["summary"],
            json!({"pass": 2, "fail": 1, "warn": 0, "error": 0, "skip": 0})
        );
        let first = &ns["results"][0];
        assert_eq!(first["policy"], "accessModes", "the rule is the policy");
        assert_eq!(first["result"], "fail");
        assert_eq!(first["severity"], "high");
        assert_eq!(first["timestamp"], json!({"seconds": 9, "nanos": 5}));
        assert_eq!(first["resources"][0]["name"], "d");
        assert_eq!(first["properties"]["outcome"], "denied");
        assert!(first.get("rule").is_none());
        assert_eq!(
            ns["results"][2]["policy"], "storage-policy",
            "no rule acted"
        );
        assert_eq!(cluster["kind"], "ClusterReport");
        assert!(cluster["metadata"].get("namespace").is_none());
        assert_eq!(
            cluster["results"][0]["resources"][0]["kind"],
            "PersistentVolume"
        );
        assert_eq!(cluster["results"][1]["result"], "error");
        assert_eq!(
            cluster["summary"],
            json!({"pass": 0, "fail": 0, "warn": 1, "error": 1, "skip": 0})
        );
    }

    #[test]
    fn an_empty_audit_is_one_empty_cluster_report() {
        let docs = to_openreports(&Report::default(), Timestamp::default());
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0]["kind"], "ClusterReport");
        assert_eq!(docs[0]["results"], json!([]));
    }
}
