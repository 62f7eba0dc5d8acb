use serde_json::{Value, json};

use super::*;

const POLICY: &str = r#"
exemptions: {namespaces: [kube-system], usernames: [system:serviceaccount:kube-system:pv-admin]}
storageClasses:
  - {name: standard, provisioner: ebs.csi.aws.com, default: true}
  - {name: oci-bv, provisioner: blockvolume.csi.oraclecloud.com}
  - {name: nfs, provisioner: nfs.csi.k8s.io}
rules:
  defaultStorageClass:
    byAccessMode: {ReadWriteMany: nfs}
"#;

fn policy() -> Policy {
    Policy::parse(POLICY, None, false).unwrap()
}

fn review_body(
    kind: (&str, &str, &str),
    op: &str,
    ns: Option<&str>,
    object: Value,
    old: Value,
) -> Vec<u8> {
    let (group, version, k) = kind;
    let mut req = json!({
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "kind": {"group": group, "version": version, "kind": k},
        "resource": {"group": group, "version": version, "resource": "things"},
        "name": object.pointer("/metadata/name").cloned().unwrap_or(json!("")),
        "operation": op,
        "userInfo": {"username": "alice"},
        "object": object,
        "oldObject": old,
        "dryRun": false,
    });
    if let Some(ns) = ns {
        req["namespace"] = json!(ns);
    }
    serde_json::to_vec(
        &json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req}),
    )
    .unwrap()
}

fn answer(endpoint: Endpoint, body: &[u8]) -> Value {
    let p = policy();
    let out = review(endpoint, &p, &p.static_catalog(), body).expect("review decided");
    serde_json::from_slice(&out.to_json().unwrap()).unwrap()
}

fn pvc(class: Option<&str>, modes: &[&str]) -> Value {
    let mut v = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data", "namespace": "team"},
                       "spec": {"accessModes": modes, "resources": {"requests": {"storage": "1Gi"}}}});
    if let Some(c) = class {
        v["spec"]["storageClassName"] = json!(c);
    }
    v
}

const PVC: (&str, &str, &str) = ("", "v1", "PersistentVolumeClaim");

#[test]
fn denial_is_a_kubernetes_invalid_status() {
    let body = review_body(
        PVC,
        "CREATE",
        Some("team"),
        pvc(Some("oci-bv"), &["ReadWriteMany"]),
        Value::Null,
    );
    let out = answer(Endpoint::Validate, &body);
    assert_eq!(out["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(out["kind"], "AdmissionReview");
    let r = &out["response"];
    assert_eq!(r["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
    assert_eq!(r["allowed"], false);
    let msg = r#"Unsupported value: "ReadWriteMany": supported values: "ReadOnlyMany", "ReadWriteOnce", "ReadWriteOncePod""#;
    assert_eq!(
        r["status"],
        json!({
            "status": "Failure",
            "metadata": {},
            "message": format!("PersistentVolumeClaim \"data\" is invalid: spec.accessModes: {msg}"),
            "reason": "Invalid",
            "details": {"name": "data", "kind": "PersistentVolumeClaim",
                        "causes": [{"reason": "FieldValueNotSupported", "message": msg, "field": "spec.accessModes"}]},
            "code": 422
        })
    );
    assert!(r.get("patch").is_none() && r.get("patchType").is_none());
    assert!(r["warnings"][0].as_str().unwrap().contains("nfs"));
    assert!(
        r["auditAnnotations"]["access-modes"]
            .as_str()
            .unwrap()
            .starts_with("denied")
    );
}

#[test]
fn patch_is_base64_json_patch() {
    let body = review_body(
        PVC,
        "CREATE",
        Some("team"),
        pvc(None, &["ReadWriteOnce"]),
        Value::Null,
    );
    let out = answer(Endpoint::Mutate, &body);
    let r = &out["response"];
    assert_eq!(r["allowed"], true);
    assert_eq!(r["patchType"], "JSONPatch");
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(r["patch"].as_str().expect("patch is a string"))
        .unwrap();
    let ops: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(
        ops,
        json!([{"op": "add", "path": "/spec/storageClassName", "value": "standard"}])
    );
}

#[test]
fn allowed_response_has_no_patch_or_warnings() {
    let body = review_body(
        PVC,
        "CREATE",
        Some("team"),
        pvc(Some("nfs"), &["ReadWriteMany"]),
        Value::Null,
    );
    for ep in [Endpoint::Mutate, Endpoint::Validate] {
        let r = answer(ep, &body)["response"].clone();
        assert_eq!(r["allowed"], true);
        assert!(
            r.get("patch").is_none()
                && r.get("warnings").is_none()
                && r.get("auditAnnotations").is_none(),
            "{r}"
        );
    }
}

#[test]
fn statefulset_denial_uses_the_group_qualified_kind() {
    let sts = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web"},
        "spec": {"selector": {}, "serviceName": "web", "template": {},
                 "volumeClaimTemplates": [{"metadata": {"name": "www"}, "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "oci-bv"}}]}});
    let r = answer(
        Endpoint::Validate,
        &review_body(
            ("apps", "v1", "StatefulSet"),
            "CREATE",
            Some("team"),
            sts,
            Value::Null,
        ),
    )["response"]
        .clone();
    assert_eq!(r["status"]["details"]["group"], "apps");
    assert!(r["status"]["message"].as_str().unwrap().starts_with(
        "StatefulSet.apps \"web\" is invalid: spec.volumeClaimTemplates[0].spec.accessModes"
    ));
}

#[test]
fn delete_is_never_blocked() {
    let body = review_body(
        PVC,
        "DELETE",
        Some("team"),
        Value::Null,
        pvc(Some("oci-bv"), &["ReadWriteMany"]),
    );
    assert_eq!(
        answer(Endpoint::Validate, &body)["response"]["allowed"],
        true
    );
}

#[test]
fn exempt_user_and_namespace_are_left_alone() {
    let body = review_body(
        PVC,
        "CREATE",
        Some("kube-system"),
        pvc(Some("oci-bv"), &["ReadWriteMany"]),
        Value::Null,
    );
    assert_eq!(
        answer(Endpoint::Validate, &body)["response"]["allowed"],
        true
    );
    let mut v: Value = serde_json::from_slice(&review_body(
        PVC,
        "CREATE",
        Some("team"),
        pvc(Some("oci-bv"), &["ReadWriteMany"]),
        Value::Null,
    ))
    .unwrap();
    v["request"]["userInfo"]["username"] = json!("system:serviceaccount:kube-system:pv-admin");
    assert_eq!(
        answer(Endpoint::Validate, &serde_json::to_vec(&v).unwrap())["response"]["allowed"],
        true
    );
}

#[test]
fn subresources_and_unknown_kinds_are_allowed_untouched() {
    let mut v: Value = serde_json::from_slice(&review_body(
        PVC,
        "UPDATE",
        Some("team"),
        pvc(Some("oci-bv"), &["ReadWriteMany"]),
        pvc(None, &["ReadWriteMany"]),
    ))
    .unwrap();
    v["request"]["subResource"] = json!("status");
    assert_eq!(
        answer(Endpoint::Validate, &serde_json::to_vec(&v).unwrap())["response"]["allowed"],
        true
    );
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}});
    let r = answer(
        Endpoint::Mutate,
        &review_body(
            ("", "v1", "ConfigMap"),
            "CREATE",
            Some("team"),
            cm,
            Value::Null,
        ),
    );
    assert_eq!(r["response"]["allowed"], true);
}

#[test]
fn generate_name_is_used_when_there_is_no_name() {
    let mut obj = pvc(Some("oci-bv"), &["ReadWriteMany"]);
    obj["metadata"] = json!({"generateName": "data-"});
    let r = answer(
        Endpoint::Validate,
        &review_body(PVC, "CREATE", Some("team"), obj, Value::Null),
    );
    assert!(
        r["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .starts_with("PersistentVolumeClaim \"data-\" is invalid")
    );
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let p = policy();
    let cat = p.static_catalog();
    let cases: Vec<(&[u8], &str)> = vec![
        (b"{\"apiVersion\": \"admission.k8s.io/v1\", \"kind\": \"Adm", "malformed AdmissionReview"),
        (b"{\"apiVersion\": \"admission.k8s.io/v1\", \"kind\": \"AdmissionReview\"}", "no request"),
        (b"{\"apiVersion\": \"admission.k8s.io/v1beta1\", \"kind\": \"AdmissionReview\", \"request\": {}}", "expected an admission.k8s.io/v1 AdmissionReview"),
        (b"[]", "malformed"),
        (b"", "malformed"),
        (b"\xff\xfe", "malformed"),
    ];
    for (body, want) in cases {
        let err = review(Endpoint::Validate, &p, &cat, body)
            .expect_err("refused")
            .to_string();
        assert!(err.contains(want), "{err} should contain {want}");
    }
    // A PVC whose accessModes has the wrong type names the problem.
    let mut obj = pvc(Some("oci-bv"), &[]);
    obj["spec"]["accessModes"] = json!("ReadWriteMany");
    let err = review(
        Endpoint::Validate,
        &p,
        &cat,
        &review_body(PVC, "CREATE", Some("team"), obj, Value::Null),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("PersistentVolumeClaim"), "{err}");
}

#[test]
fn every_kind_of_the_table_has_a_typed_decoding() {
    let table: Vec<&str> = kinds::KINDS.iter().map(|k| k.kind).collect();
    assert_eq!(
        table, TYPED_KINDS,
        "the kinds table and `typed_kinds!` disagree"
    );
}

/// The answer as kube-core's `AdmissionResponse` serializes it (the encoding the webhook used
/// before it wrote its own): the reference the direct encoding must equal.
fn kube_core_answer(endpoint: Endpoint, body: &[u8]) -> Value {
    use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
    use kube::core::response::{StatusCause, StatusDetails, StatusSummary};
    use kube::core::{DynamicObject, Status};
    let p = policy();
    let out = review(endpoint, &p, &p.static_catalog(), body).unwrap();
    let typed: AdmissionReview<DynamicObject> = serde_json::from_slice(body).unwrap();
    let req: AdmissionRequest<DynamicObject> = typed.try_into().unwrap();
    let mut resp = AdmissionResponse::from(&req);
    if let Some(inv) = &out.decision.denial {
        resp.allowed = false;
        resp.result = Status {
            status: Some(StatusSummary::Failure),
            code: 422,
            message: inv.message(),
            metadata: Some(Default::default()),
            reason: "Invalid".to_owned(),
            details: Some(StatusDetails {
                name: inv.name.clone(),
                group: inv.group.clone(),
                kind: inv.kind.clone(),
                uid: String::new(),
                causes: inv
                    .errors
                    .iter()
                    .map(|e| StatusCause {
                        reason: e.error_type.cause_reason().to_owned(),
                        message: e.body(),
                        field: e.field.to_string(),
                    })
                    .collect(),
                retry_after_seconds: 0,
            }),
        };
    }
    if endpoint == Endpoint::Mutate && !out.decision.patch.is_empty() {
        resp = resp
            .with_patch(json_patch::Patch(out.decision.patch.clone()))
            .unwrap();
    }
    if !out.decision.warnings.is_empty() {
        resp.warnings = Some(out.decision.warnings.clone());
    }
    resp.audit_annotations = out.decision.audit_annotations.clone().into_iter().collect();
    let mut v = serde_json::to_value(resp.into_review()).unwrap();
    // kube-core writes `patch` as an array of numbers; the API server wants base64 (the one
    // difference the direct encoding makes on purpose).
    if let Some(bytes) = v["response"]["patch"].as_array().cloned() {
        use base64::Engine as _;
        let raw: Vec<u8> = bytes.iter().map(|b| b.as_u64().unwrap() as u8).collect();
        v["response"]["patch"] = json!(base64::engine::general_purpose::STANDARD.encode(raw));
    }
    v
}

#[test]
fn direct_encoding_equals_kube_cores_response() {
    let cases = [
        // Denied, with warnings and audit annotations.
        (
            Endpoint::Validate,
            review_body(
                PVC,
                "CREATE",
                Some("team"),
                pvc(Some("oci-bv"), &["ReadWriteMany"]),
                Value::Null,
            ),
        ),
        // Mutated: the default class set.
        (
            Endpoint::Mutate,
            review_body(
                PVC,
                "CREATE",
                Some("team"),
                pvc(None, &["ReadWriteOnce"]),
                Value::Null,
            ),
        ),
        // Allowed untouched.
        (
            Endpoint::Validate,
            review_body(
                PVC,
                "CREATE",
                Some("team"),
                pvc(Some("nfs"), &["ReadWriteMany"]),
                Value::Null,
            ),
        ),
        // A kind without rules.
        (
            Endpoint::Mutate,
            review_body(
                ("", "v1", "ConfigMap"),
                "CREATE",
                Some("team"),
                json!({"metadata": {"name": "c"}}),
                Value::Null,
            ),
        ),
    ];
    let mut seen = (false, false, false);
    for (endpoint, body) in cases {
        let got = answer(endpoint, &body);
        seen.0 |= got["response"]["allowed"] == json!(false);
        seen.1 |= got["response"]["patch"].is_string();
        seen.2 |= got["response"]["allowed"] == json!(true) && got["response"]["patch"].is_null();
        assert_eq!(
            got,
            kube_core_answer(endpoint, &body),
            "{}",
            String::from_utf8_lossy(&body)
        );
    }
    assert_eq!(
        seen,
        (true, true, true),
        "a denial, a mutation and a plain allow"
    );
}

/// The review with `object` written before the request's `kind` (not how the API server writes
/// it): decided the same, from the kept value.
#[test]
fn object_before_kind_is_decided_the_same() {
    let object = pvc(Some("oci-bv"), &["ReadWriteMany"]);
    let usual = review_body(PVC, "CREATE", Some("team"), object.clone(), Value::Null);
    let reordered = format!(
        r#"{{"request": {{"object": {}, "oldObject": null, "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {{"group": "", "version": "v1", "kind": "PersistentVolumeClaim"}},
            "name": "data", "namespace": "team", "operation": "CREATE",
            "userInfo": {{"username": "alice"}}, "dryRun": false}},
           "kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1"}}"#,
        object
    );
    let a = answer(Endpoint::Validate, &usual);
    assert_eq!(a["response"]["allowed"], json!(false));
    assert_eq!(a, answer(Endpoint::Validate, reordered.as_bytes()));
    // A malformed object is named either way.
    let mut bad = object;
    bad["spec"]["accessModes"] = json!(7);
    let late = reordered.replace(r#""accessModes":["ReadWriteMany"]"#, r#""accessModes":7"#);
    assert!(late.contains(r#""accessModes":7"#));
    for body in [
        review_body(PVC, "CREATE", Some("team"), bad, Value::Null),
        late.into_bytes(),
    ] {
        let p = policy();
        let err = review(Endpoint::Validate, &p, &p.static_catalog(), &body).unwrap_err();
        assert!(
            matches!(&err, ReviewError::Object { kind, .. } if kind == "PersistentVolumeClaim"),
            "{err}"
        );
    }
}

#[test]
fn a_request_without_uid_operation_or_kind_is_refused() {
    let body = review_body(PVC, "CREATE", Some("team"), pvc(None, &[]), Value::Null);
    let full: Value = serde_json::from_slice(&body).unwrap();
    for field in ["uid", "operation", "kind"] {
        let mut v = full.clone();
        v["request"].as_object_mut().unwrap().remove(field);
        let p = policy();
        let err = review(
            Endpoint::Mutate,
            &p,
            &p.static_catalog(),
            &serde_json::to_vec(&v).unwrap(),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            format!("malformed AdmissionReview: request.{field} is missing")
        );
    }
    // A subresource is answered without reading the object.
    let mut v = full;
    v["request"]["subResource"] = json!("status");
    v["request"]["object"] = pvc(Some("oci-bv"), &["ReadWriteMany"]);
    let a = answer(Endpoint::Validate, &serde_json::to_vec(&v).unwrap());
    assert_eq!(a["response"]["allowed"], json!(true));
    // Trailing garbage after the review is malformed JSON.
    let mut trailing = body.clone();
    trailing.extend_from_slice(b" x");
    let p = policy();
    let err = review(Endpoint::Mutate, &p, &p.static_catalog(), &trailing).unwrap_err();
    assert!(matches!(err, ReviewError::Json(_)), "{err}");
}

#[test]
fn the_lean_decoding_refuses_what_k8s_openapi_refuses() {
    let p = policy();
    let cat = p.static_catalog();
    let good = pvc(Some("oci-bv"), &["ReadWriteMany"]);
    let cases = [
        (
            json!(["v1", "PersistentVolumeClaim", {"name": "data"}]),
            "expected an object",
        ),
        (
            {
                let mut o = good.clone();
                o["metadata"] = json!(["data", "", "team"]);
                o
            },
            "expected an object",
        ),
        (
            {
                let mut o = good.clone();
                o["kind"] = json!("ConfigMap");
                o
            },
            "invalid value: string \"ConfigMap\", expected PersistentVolumeClaim",
        ),
        (
            {
                let mut o = good.clone();
                o["apiVersion"] = json!("v2");
                o
            },
            "invalid value: string \"v2\", expected v1",
        ),
        (
            {
                let mut o = good.clone();
                o["metadata"]["annotations"] = json!({"a": 1});
                o
            },
            "invalid type: integer `1`, expected a string",
        ),
    ];
    for (object, want) in cases {
        let body = review_body(PVC, "CREATE", Some("team"), object.clone(), Value::Null);
        let err = review(Endpoint::Validate, &p, &cat, &body)
            .expect_err("refused")
            .to_string();
        assert!(err.contains(want), "{object}: {err} should contain {want}");
        // k8s-openapi refuses it too.
        assert!(
            serde_json::from_value::<k8s_openapi::api::core::v1::PersistentVolumeClaim>(object)
                .is_err()
        );
    }
    // What the rules read of metadata is kept; managedFields and timestamps are skipped unread.
    let mut o = good;
    o["metadata"]["uid"] = json!("u-1");
    o["metadata"]["labels"] = json!({"app": "db"});
    o["metadata"]["annotations"] = json!({"volume.beta.kubernetes.io/storage-class": "nfs"});
    o["metadata"]["creationTimestamp"] = json!("2026-12-02T00:00:00Z");
    o["metadata"]["managedFields"] = json!([{"manager": "kubectl", "fieldsType": "FieldsV1",
        "fieldsV1": {"f:spec": {"f:accessModes": {}}}}]);
    let typed = Typed::decode(Some("PersistentVolumeClaim"), &o).unwrap();
    let Typed::Pvc(got) = typed else {
        panic!("a PVC")
    };
    let full: k8s_openapi::api::core::v1::PersistentVolumeClaim =
        serde_json::from_value(o).unwrap();
    assert_eq!(got.spec, full.spec);
    assert_eq!(got.metadata.uid.as_deref(), Some("u-1"));
    assert_eq!(got.metadata.labels, full.metadata.labels);
    assert_eq!(got.metadata.annotations, full.metadata.annotations);
    assert_eq!(got.metadata.name, full.metadata.name);
    assert_eq!(got.metadata.namespace, full.metadata.namespace);
    // Of managedFields, only whether each entry owns spec.storageClassName is kept.
    let lean = got
        .metadata
        .managed_fields
        .expect("managedFields kept as ownership");
    assert_eq!(lean.len(), 1);
    assert!(lean[0].fields_v1.is_none() && full.metadata.managed_fields.is_some());
}

#[test]
fn the_lean_decoding_keeps_who_owns_the_storage_class_as_the_typed_one_says() {
    use crate::policy::storage::{ClassOwner, class_owner};
    use crate::policy::{LiveClass, LiveState, Policy};
    let policy = Policy::parse("{}", None, false).unwrap();
    let catalog = policy.catalog(&LiveState {
        classes: vec![LiveClass {
            name: "gp3".into(),
            provisioner: "ebs.csi.aws.com".into(),
            is_default: true,
            ..Default::default()
        }],
        ..Default::default()
    });
    let cases = [
        (json!(null), ClassOwner::Unknown),
        (json!([]), ClassOwner::Unknown),
        (
            json!([{"manager": "kubectl-create", "fieldsV1": {"f:spec": {"f:accessModes": {}}}}]),
            ClassOwner::DefaultPlugin,
        ),
        (
            json!([{"manager": "a", "fieldsV1": {"f:spec": {"f:accessModes": {}}}},
                   {"manager": "b", "fieldsV1": {"f:spec": {"f:storageClassName": {}}}}]),
            ClassOwner::Request,
        ),
        // fieldsV1 is free-form to k8s-openapi: odd shapes own nothing.
        (
            json!([{"manager": "x", "fieldsV1": 5}, {"fieldsV1": {"f:spec": []}}]),
            ClassOwner::DefaultPlugin,
        ),
    ];
    for (managed, want) in cases {
        let mut o = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "d", "namespace": "web"},
            "spec": {"storageClassName": "gp3", "accessModes": ["ReadWriteOnce"]}});
        if !managed.is_null() {
            o["metadata"]["managedFields"] = managed.clone();
        }
        let Typed::Pvc(lean) = Typed::decode(Some("PersistentVolumeClaim"), &o).unwrap() else {
            panic!("a PVC")
        };
        let full: k8s_openapi::api::core::v1::PersistentVolumeClaim =
            serde_json::from_value(o).unwrap();
        let owner = |p: &k8s_openapi::api::core::v1::PersistentVolumeClaim| {
            class_owner(&catalog, Some(&p.metadata), p.spec.as_ref())
        };
        assert_eq!(owner(&full), want, "typed, {managed}");
        assert_eq!(owner(&lean), want, "lean, {managed}");
    }
}
