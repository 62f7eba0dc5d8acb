//! Cases findable per rule: every rule of the registry has at least one conformance case or
//! fixture, the conformance folders are named by rule key, and `tests/README.md`'s rule -> cases
//! table is what the files say (so it cannot drift).
//!
//! The table is generated: after adding a rule, cases, fixtures or e2e cases, run
//! `UPDATE_TESTS_README=1 cargo test --test cases` and review the diff of `tests/README.md`.
//! Where each column comes from:
//! - conformance: the folders of `tests/conformance/` named `<ruleKey>` or `<ruleKey>-<variant>`
//!   (`cross-rule*` for cases about several rules), with their number of cases;
//! - fixtures: the fixtures of `tests/fixtures/` whose pinned response carries the rule's audit
//!   annotation (the rule said something);
//! - e2e: the cases of `tests/e2e/` listed for the rule in [`E2E`] (the only hand-kept part;
//!   a case listed nowhere shows in the last row, and a name listed that no case has fails);
//! - unit tests: the file under `src/policy/rules/` that declares the rule's key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use storage_policy_webhook::policy::registry::REGISTRY;

/// The end-to-end cases that prove a rule's prediction with Kubernetes itself, by rule key.
const E2E: &[(&str, &[&str])] = &[
    (
        "defaultStorageClass",
        &[
            "namespace_defaults_apply_with_the_default_class_annotated",
            "admission_order_default_class_plugin_then_mutate_then_validate",
        ],
    ),
    (
        "localVolumeNodeAffinity",
        &["local_pv_on_a_raspberry_pi_gets_node_affinity_and_its_pod_lands_there"],
    ),
    (
        "accessModes",
        &[
            "rwx_on_block_storage_is_refused_with_the_api_servers_own_words",
            "the_chart_installed_configurations_answer_for_every_kind",
            "audit_mode_stores_the_object_untouched_and_warns",
            "admission_order_default_class_plugin_then_mutate_then_validate",
            "the_documented_examples_happen_as_audit_and_the_readme_say",
        ],
    ),
    (
        "volumeSize",
        &["oci_block_claim_below_50gi_is_raised_as_stored"],
    ),
    (
        "reclaimPolicy",
        &["a_hand_made_pv_left_with_delete_goes_failed_on_release_as_warned"],
    ),
    (
        "claimRefNamespace",
        &["a_claim_ref_without_namespace_is_refused_and_would_never_bind"],
    ),
    (
        "nodeNameWaitForFirstConsumer",
        &[
            "node_name_with_wait_for_first_consumer_is_refused_and_would_stay_pending",
            "oracle_binding_predictions_agree_with_the_pv_controller_and_scheduler",
        ],
    ),
    (
        "willBind",
        &[
            "a_claim_warned_pending_stays_pending_and_one_not_warned_binds",
            "a_statefulset_on_hand_made_pvs_binds_as_predicted",
            "oracle_binding_predictions_agree_with_the_pv_controller_and_scheduler",
        ],
    ),
];

/// The folder prefix of conformance cases about several rules at once.
const CROSS_RULE: &str = "cross-rule";

const START: &str = "<!-- rule-cases:start -->";
const END: &str = "<!-- rule-cases:end -->";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn sorted_dir(path: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .map(|e| e.unwrap().path())
        .collect();
    out.sort();
    out
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

fn keys() -> Vec<&'static str> {
    REGISTRY.iter().map(|e| e.meta.key).collect()
}

/// Conformance folders (`tests/conformance/<folder>/policy.yaml`) with their number of cases:
/// the YAML documents of their other files, as the harness loads them.
fn conformance() -> Vec<(String, usize)> {
    let mut out = Vec::new();
    for dir in sorted_dir(&root().join("tests/conformance")) {
        if !dir.is_dir() {
            continue;
        }
        assert!(
            dir.join("policy.yaml").exists(),
            "{}: a conformance folder holds a policy.yaml",
            dir.display()
        );
        let mut cases = 0;
        for f in sorted_dir(&dir) {
            let name = file_name(&f);
            if name == "policy.yaml" || !name.ends_with(".yaml") {
                continue;
            }
            let docs: Vec<Value> = serde_saphyr::from_multiple(&read(&f))
                .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            cases += docs.iter().filter(|d| !d.is_null()).count();
        }
        out.push((file_name(&dir), cases));
    }
    out
}

/// The rule a conformance folder is about: `<key>` and `<key>-<variant>` name a rule key,
/// `cross-rule*` none (`Some(None)`); anything else is not a name the layout allows (`None`).
fn folder_rule(folder: &str) -> Option<Option<&'static str>> {
    if folder == CROSS_RULE || folder.starts_with(&format!("{CROSS_RULE}-")) {
        return Some(None);
    }
    let key = folder.split('-').next().unwrap_or_default();
    keys().into_iter().find(|k| *k == key).map(Some)
}

/// Fixtures (`tests/fixtures/<stem>.review.json`) by the rule keys whose audit annotation their
/// pinned response carries.
fn fixtures() -> BTreeMap<&'static str, Vec<String>> {
    let by_annotation: BTreeMap<&str, &str> = REGISTRY
        .iter()
        .map(|e| (e.meta.annotation, e.meta.key))
        .collect();
    let mut out: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    for f in sorted_dir(&root().join("tests/fixtures")) {
        let name = file_name(&f);
        let Some(stem) = name.strip_suffix(".response.json") else {
            continue;
        };
        let rsp: Value = serde_json::from_str(&read(&f)).unwrap();
        if let Some(anns) = rsp["response"]["auditAnnotations"].as_object() {
            for ann in anns.keys() {
                let key = by_annotation
                    .get(ann.as_str())
                    .unwrap_or_else(|| panic!("{name}: audit annotation {ann} of no rule"));
                out.entry(key).or_default().push(stem.to_owned());
            }
        }
    }
    out
}

/// The cases of the end-to-end suite (`@case` functions of `tests/e2e/*.py`), in file order.
fn e2e_cases() -> Vec<String> {
    let mut out = Vec::new();
    for f in sorted_dir(&root().join("tests/e2e")) {
        if !file_name(&f).ends_with(".py") {
            continue;
        }
        let text = read(&f);
        let mut lines = text.lines();
        while let Some(line) = lines.next() {
            if line.trim_end() != "@case" {
                continue;
            }
            let def = lines.next().unwrap_or_default();
            let name = def
                .strip_prefix("def ")
                .and_then(|d| d.split('(').next())
                .unwrap_or_else(|| panic!("{}: @case on {def:?}", f.display()));
            out.push(name.to_owned());
        }
    }
    out
}

/// The file under `src/policy/rules/` that declares the rule's key (its unit tests are at its
/// bottom).
fn unit_module(key: &str) -> Option<String> {
    let needle = format!("key: \"{key}\",");
    let mut stack = vec![root().join("src/policy/rules")];
    let mut found = Vec::new();
    while let Some(dir) = stack.pop() {
        for p in sorted_dir(&dir) {
            if p.is_dir() {
                stack.push(p);
            } else if file_name(&p).ends_with(".rs") && read(&p).contains(&needle) {
                found.push(
                    p.strip_prefix(root())
                        .unwrap()
                        .to_string_lossy()
                        .replace('\\', "/"),
                );
            }
        }
    }
    found.sort();
    (!found.is_empty()).then(|| found.join(", "))
}

fn code_list(items: &[String]) -> String {
    if items.is_empty() {
        return "—".to_owned();
    }
    items
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The rule -> cases table of `tests/README.md`.
fn table() -> String {
    let folders = conformance();
    let fixtures = fixtures();
    let cases = e2e_cases();
    let folder_cell = |rule: Option<&str>| {
        let cells: Vec<String> = folders
            .iter()
            .filter(|(f, _)| folder_rule(f) == Some(rule))
            .map(|(f, n)| format!("`{f}/` ({n})"))
            .collect();
        if cells.is_empty() {
            "—".to_owned()
        } else {
            cells.join(", ")
        }
    };
    let mut out = String::from(
        "| rule (`rules.<key>`) | conformance folders (`tests/conformance/`, cases) | fixtures (`tests/fixtures/`) | e2e cases (`tests/e2e/`) | unit tests |\n\
         |---|---|---|---|---|\n",
    );
    for key in keys() {
        let e2e: Vec<String> = E2E
            .iter()
            .filter(|(k, _)| *k == key)
            .flat_map(|(_, c)| c.iter().map(|c| (*c).to_owned()))
            .collect();
        out.push_str(&format!(
            "| `{key}` | {} | {} | {} | {} |\n",
            folder_cell(Some(key)),
            code_list(fixtures.get(key).map(Vec::as_slice).unwrap_or_default()),
            code_list(&e2e),
            unit_module(key)
                .map(|m| format!("`{m}`"))
                .unwrap_or_else(|| "—".to_owned()),
        ));
    }
    let other: Vec<String> = cases
        .iter()
        .filter(|c| !E2E.iter().any(|(_, cs)| cs.contains(&c.as_str())))
        .cloned()
        .collect();
    out.push_str(&format!(
        "| several rules, or none | {} | — | {} | — |\n",
        folder_cell(None),
        code_list(&other)
    ));
    out
}

#[test]
fn every_rule_has_a_conformance_case_or_a_fixture() {
    let folders = conformance();
    let fixtures = fixtures();
    let mut missing = Vec::new();
    for key in keys() {
        let cases: usize = folders
            .iter()
            .filter(|(f, _)| folder_rule(f) == Some(Some(key)))
            .map(|(_, n)| n)
            .sum();
        if cases == 0 && !fixtures.contains_key(key) {
            missing.push(key);
        }
    }
    assert!(
        missing.is_empty(),
        "rules without a conformance case (tests/conformance/<ruleKey>/) or a fixture whose \
         response carries their audit annotation: {missing:?}"
    );
}

#[test]
fn conformance_folders_are_named_by_rule_key() {
    let folders = conformance();
    assert!(folders.len() >= 10, "only {} folders", folders.len());
    for (folder, cases) in &folders {
        assert!(
            folder_rule(folder).is_some(),
            "tests/conformance/{folder}/: name it <ruleKey>, <ruleKey>-<variant> or \
             {CROSS_RULE}-<variant> (rule keys: {:?})",
            keys()
        );
        assert!(*cases > 0, "tests/conformance/{folder}/ has no case");
    }
    // What `.ci/run` counted before the folders were named by rule key.
    let total: usize = folders.iter().map(|(_, n)| n).sum();
    assert!(total >= 117, "{total} conformance cases");
}

#[test]
fn e2e_cases_named_for_a_rule_exist() {
    let cases = e2e_cases();
    assert!(cases.len() >= 20, "only {} e2e cases found", cases.len());
    for (key, names) in E2E {
        assert!(keys().contains(key), "E2E names {key}, which is no rule");
        for name in *names {
            assert!(
                cases.iter().any(|c| c == name),
                "E2E names {name} for {key}, which tests/e2e has no case of"
            );
        }
    }
}

#[test]
fn every_rule_has_a_unit_test_module() {
    for key in keys() {
        assert!(
            unit_module(key).is_some(),
            "no src/policy/rules file declares {key}"
        );
    }
}

#[test]
fn tests_readme_table_is_what_the_files_say() {
    let path = root().join("tests/README.md");
    let text = read(&path);
    let a = text.find(START).expect("start marker") + START.len();
    let b = text[a..].find(END).expect("end marker") + a;
    let want = table();
    if std::env::var_os("UPDATE_TESTS_README").is_some() {
        let updated = format!("{}\n{}{}", &text[..a], want, &text[b..]);
        std::fs::write(&path, updated).unwrap();
        return;
    }
    assert_eq!(
        text[a..b].trim_start_matches('\n'),
        want,
        "tests/README.md's rule -> cases table is stale: regenerate it with \
         UPDATE_TESTS_README=1 cargo test --test cases"
    );
}
