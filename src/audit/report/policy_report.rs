//! The `policy-report` format: `wgpolicyk8s.io/v1alpha2` documents for Policy Reporter and
//! similar tools. One PolicyReport per namespace for namespaced objects, one ClusterPolicyReport
//! for cluster-scoped objects and for inputs that could not be read (`result: error`); every
//! result names `policy: storage-policy` and the rule as `rule`.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::POLICY_REPORT_NAME;
use super::Report;
use super::results::{self, Bucket, Naming, ReportResult, ResultCounts, Timestamp};

/// apiVersion of the documents.
pub const API_VERSION: &str = "wgpolicyk8s.io/v1alpha2";

#[derive(Serialize)]
struct Metadata<'a> {
    labels: BTreeMap<&'static str, &'static str>,
    name: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a str>,
}

/// A PolicyReport or ClusterPolicyReport. Fields in key order, as written.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PolicyReport<'a> {
    api_version: &'static str,
    kind: &'static str,
    metadata: Metadata<'a>,
    results: &'a [ReportResult],
    summary: ResultCounts,
}

fn document(kind: &'static str, namespace: Option<&str>, bucket: &Bucket) -> Value {
    let doc = PolicyReport {
        api_version: API_VERSION,
        kind,
        metadata: Metadata {
            labels: results::labels(),
            name: POLICY_REPORT_NAME,
            namespace,
        },
        results: &bucket.results,
        summary: bucket.summary,
    };
    serde_json::to_value(doc).unwrap_or(Value::Null)
}

/// `wgpolicyk8s.io/v1alpha2` reports: one PolicyReport per namespace for namespaced objects, one
/// ClusterPolicyReport for cluster-scoped objects and for inputs that could not be read
/// (`result: error`). `now` is the results' timestamp (seconds since the epoch).
pub fn to_policy_reports(report: &Report, now: i64) -> Vec<Value> {
    let g = results::group(report, Timestamp::seconds(now), Naming::PolicyAndRule);
    let mut docs: Vec<Value> = g
        .namespaced
        .iter()
        .map(|(ns, bucket)| document("PolicyReport", Some(ns), bucket))
        .collect();
    if !g.cluster.results.is_empty() || docs.is_empty() {
        docs.push(document("ClusterPolicyReport", None, &g.cluster));
    }
    docs
}

/// The reports as multi-document YAML.
pub fn to_policy_report_yaml(
    report: &Report,
    now: i64,
) -> Result<String, serde_saphyr::SerializeError> {
    serde_saphyr::to_string_multiple(&to_policy_reports(report, now))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::audit::report::test_support::{f, object};
    use crate::audit::report::{Outcome, Stage};
    use crate::audit::{InputError, Location};

    #[test]
    fn policy_report_maps_outcomes_and_counts() {
        let r = Report {
            objects: vec![object(vec![
                f(Outcome::Denied, Stage::Validate),
                f(Outcome::Audited, Stage::Mutate),
            ])],
            errors: vec![InputError {
                source: Location::file("x.yaml"),
                message: "bad".into(),
            }],
            ignored: 0,
        };
        let docs = to_policy_reports(&r, 7);
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0]["kind"], "PolicyReport");
        assert_eq!(docs[0]["metadata"]["namespace"], "a");
        assert_eq!(
            docs[0]["summary"],
            json!({"pass": 0, "fail": 1, "warn": 1, "error": 0, "skip": 0})
        );
        assert_eq!(docs[0]["results"][0]["severity"], "high");
        assert_eq!(docs[0]["results"][0]["policy"], "storage-policy");
        assert_eq!(docs[0]["results"][0]["rule"], "accessModes");
        assert_eq!(docs[1]["kind"], "ClusterPolicyReport");
        assert_eq!(docs[1]["results"][0]["result"], "error");
    }
}
