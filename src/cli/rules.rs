//! `rules`: the rule registry and the kinds table as the webhook sees them: which rule acts on
//! which kinds, operations and endpoint, its default mode, and the webhook registrations that
//! follow (the chart's tests compare its rendered registrations with `--output json`; the
//! rule table of docs/rules.md is `--output markdown`).

use std::io::Write;

use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::kinds::{self, Kind};
use crate::policy::registry::{self, Registration};
use crate::policy::{Acts, Endpoint, Meta};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One line per rule: its key, default mode, whether it can deny or patch, what it does.
    #[default]
    Text,
    /// The text table with where each rule acts (endpoint, operations, kinds).
    Wide,
    /// The registry, the kinds table and the webhook registrations.
    Json,
    /// The same document as json, as YAML.
    Yaml,
    /// The rule table of docs/rules.md.
    Markdown,
}

#[derive(Debug, Args)]
pub struct RulesArgs {
    /// Output format.
    #[arg(long, short, value_enum, default_value_t, env = "SPW_RULES_OUTPUT")]
    pub output: Format,
}

/// Whether a rule can refuse a request. A rule that never denies says so first in its
/// `denies` (`docs/certainty.md`); a test holds every rule to it.
pub fn can_deny(meta: &Meta) -> bool {
    !meta.denies.starts_with("never denies")
}

/// Whether a rule can patch an object: it acts on `/mutate`.
pub fn can_patch(meta: &Meta) -> bool {
    meta.acts.iter().any(|a| a.endpoint == Endpoint::Mutate)
}

/// `denies, patches`, `patches`, `warns only`: what a rule can do to a request.
fn effect(meta: &Meta) -> &'static str {
    match (can_deny(meta), can_patch(meta)) {
        (true, true) => "denies, patches",
        (true, false) => "denies",
        (false, true) => "patches",
        (false, false) => "warns only",
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RuleJson {
    key: &'static str,
    annotation: &'static str,
    summary: &'static str,
    can_deny: bool,
    can_patch: bool,
    denies: &'static str,
    warns: &'static str,
    default_mode: &'static str,
    acts: Vec<ActsJson>,
}

#[derive(Serialize)]
struct ActsJson {
    endpoint: Endpoint,
    on: Vec<OnJson>,
}

/// Kinds judged on the same operations.
#[derive(Serialize)]
struct OnJson {
    operations: Vec<&'static str>,
    kinds: Vec<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct KindJson {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    pod_spec: Option<&'static str>,
    claim_templates: Option<&'static str>,
    operations: Vec<&'static str>,
}

#[derive(Serialize)]
struct Everything {
    rules: Vec<RuleJson>,
    kinds: Vec<KindJson>,
    webhooks: Vec<Registration>,
}

/// The kinds it judges, grouped by the operations it judges them on (in the kinds table's
/// order of first appearance).
fn judged_kinds(acts: &Acts) -> Vec<OnJson> {
    let mut out: Vec<OnJson> = Vec::new();
    for k in kinds::KINDS {
        let on = ops(&acts.operations_on(k));
        if on.is_empty() {
            continue;
        }
        match out.iter_mut().find(|o| o.operations == on) {
            Some(o) => o.kinds.push(k.kind),
            None => out.push(OnJson {
                operations: on,
                kinds: vec![k.kind],
            }),
        }
    }
    out
}

/// `/validate CREATE, UPDATE: PersistentVolumeClaim, PersistentVolume; ...`, the kinds judged
/// on other operations after a `;`.
fn where_it_acts(meta: &Meta, sep: &str) -> String {
    meta.acts
        .iter()
        .map(|a| {
            let on: Vec<String> = judged_kinds(a)
                .iter()
                .map(|o| format!("{}: {}", o.operations.join(", "), o.kinds.join(", ")))
                .collect();
            format!("/{} {}", a.endpoint.as_str(), on.join("; "))
        })
        .collect::<Vec<_>>()
        .join(sep)
}

fn ops(ops: &[crate::kinds::Operation]) -> Vec<&'static str> {
    ops.iter().map(|o| o.as_str()).collect()
}

fn everything() -> Everything {
    Everything {
        rules: registry::REGISTRY
            .iter()
            .map(|e| RuleJson {
                key: e.meta.key,
                annotation: e.meta.annotation,
                summary: e.meta.summary,
                can_deny: can_deny(e.meta),
                can_patch: can_patch(e.meta),
                denies: e.meta.denies,
                warns: e.meta.warns,
                default_mode: e.meta.default_mode.as_str(),
                acts: e
                    .meta
                    .acts
                    .iter()
                    .map(|a| ActsJson {
                        endpoint: a.endpoint,
                        on: judged_kinds(a),
                    })
                    .collect(),
            })
            .collect(),
        kinds: kinds::KINDS
            .iter()
            .map(|k: &Kind| KindJson {
                group: k.group,
                version: k.version,
                kind: k.kind,
                plural: k.plural,
                namespaced: k.namespaced,
                pod_spec: k.pod_spec(),
                claim_templates: k.claim_templates(),
                operations: ops(k.operations),
            })
            .collect(),
        webhooks: Endpoint::ALL
            .into_iter()
            .flat_map(registry::registrations)
            .collect(),
    }
}

/// The rule table of docs/rules.md, generated from the registry (a test keeps the page equal to it).
/// Its last two columns are the rules' certainty (`docs/certainty.md`): a denial rests on facts,
/// an inference is only a warning.
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| rule (`rules.<key>`) | where it acts | default mode | can | audit annotation | what it does | denies (or patches) on | only warns on |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for e in registry::REGISTRY {
        let m = e.meta;
        out.push_str(&format!(
            "| `{}` | {} | `{}` | {} | `{}` | {} | {} | {} |\n",
            m.key,
            where_it_acts(m, "<br>"),
            m.default_mode.as_str(),
            effect(m),
            m.annotation,
            m.summary,
            m.denies,
            m.warns
        ));
    }
    out
}

/// The table of `docs/certainty.md`: per rule, what it denies on and what it only warns on
/// (a test keeps the document equal to it).
pub fn certainty_table() -> String {
    let mut out =
        String::from("| rule | denies (or patches) on | only warns on |\n|---|---|---|\n");
    for e in registry::REGISTRY {
        let m = e.meta;
        out.push_str(&format!("| `{}` | {} | {} |\n", m.key, m.denies, m.warns));
    }
    out
}

/// The table for people: key, default mode, what the rule can do, what it does; `wide` adds
/// where it acts.
pub fn text_table(wide: bool) -> String {
    let key_w = registry::REGISTRY
        .iter()
        .map(|e| e.meta.key.len())
        .max()
        .unwrap_or(0)
        .max("RULE".len());
    let can_w = "denies, patches".len();
    let mut rows = vec![(
        "RULE".to_owned(),
        "MODE".to_owned(),
        "CAN".to_owned(),
        "DESCRIPTION".to_owned(),
        "WHERE IT ACTS".to_owned(),
    )];
    for e in registry::REGISTRY {
        let m = e.meta;
        rows.push((
            m.key.to_owned(),
            m.default_mode.as_str().to_owned(),
            effect(m).to_owned(),
            m.summary.to_owned(),
            where_it_acts(m, "; "),
        ));
    }
    let mut s = String::new();
    for (key, mode, can, what, acts) in rows {
        let line = if wide {
            format!("{key:<key_w$}  {mode:<7}  {can:<can_w$}  {what}  [{acts}]")
        } else {
            format!("{key:<key_w$}  {mode:<7}  {can:<can_w$}  {what}")
        };
        s.push_str(line.trim_end());
        s.push('\n');
    }
    s
}

pub fn run(args: RulesArgs) -> anyhow::Result<i32> {
    let text = match args.output {
        Format::Json => serde_json::to_string_pretty(&everything())? + "\n",
        Format::Yaml => serde_saphyr::to_string(&everything())?,
        Format::Markdown => markdown_table(),
        Format::Text => text_table(false),
        Format::Wide => text_table(true),
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
        let a = text.find(start).expect("start marker") + start.len();
        let b = text[a..].find(end).expect("end marker") + a;
        text[a..b].trim_start_matches('\n')
    }

    #[test]
    fn rules_doc_table_is_the_registry() {
        let readme = include_str!("../../docs/rules.md");
        assert_eq!(
            between(
                readme,
                "<!-- rules-table:start -->",
                "<!-- rules-table:end -->"
            ),
            markdown_table(),
            "regenerate with: storage-policy-webhook rules --output markdown"
        );
    }

    #[test]
    fn readme_failure_table_names_every_rule() {
        let readme = include_str!("../../README.md");
        for e in registry::REGISTRY {
            let cell = format!("| `{}` |", e.meta.key);
            assert!(
                readme.lines().any(|l| l.ends_with(&cell)),
                "README.md's failure-mode table has no row for {}",
                e.meta.key
            );
        }
    }

    #[test]
    fn certainty_doc_table_is_the_registry() {
        let doc = include_str!("../../docs/certainty.md");
        assert_eq!(
            between(
                doc,
                "<!-- certainty-table:start -->",
                "<!-- certainty-table:end -->"
            ),
            certainty_table(),
            "regenerate from storage-policy-webhook rules --output json (denies, warns)"
        );
    }

    #[test]
    fn every_rule_says_what_it_denies_and_warns_on() {
        for e in registry::REGISTRY {
            assert!(
                !e.meta.denies.is_empty() && !e.meta.warns.is_empty(),
                "{}",
                e.meta.key
            );
            assert!(!e.meta.denies.contains('|') && !e.meta.warns.contains('|'));
        }
    }

    #[test]
    fn a_rule_that_can_deny_acts_on_validate() {
        for e in registry::REGISTRY {
            if can_deny(e.meta) {
                assert!(
                    e.meta.acts.iter().any(|a| a.endpoint == Endpoint::Validate),
                    "{} says it denies but has no /validate",
                    e.meta.key
                );
            } else {
                assert!(e.meta.denies.starts_with("never denies"), "{}", e.meta.key);
            }
        }
    }

    #[test]
    fn text_says_whether_a_rule_can_deny_and_what_it_does() {
        let text = text_table(false);
        let line = |key: &str| {
            text.lines()
                .find(|l| l.starts_with(&format!("{key} ")))
                .unwrap_or_else(|| panic!("{key}: {text}"))
                .to_owned()
        };
        assert!(text.lines().next().unwrap().contains("DESCRIPTION"));
        let will_bind = line("willBind");
        assert!(will_bind.contains("warns only"), "{will_bind}");
        assert!(
            will_bind.ends_with(
                registry::REGISTRY
                    .iter()
                    .find(|e| e.meta.key == "willBind")
                    .unwrap()
                    .meta
                    .summary
            )
        );
        assert!(line("accessModes").contains("denies, patches"));
        assert!(line("claimRefNamespace").contains(" denies "));
        assert!(line("defaultStorageClass").contains(" patches "));
        assert!(!text.contains("/validate"), "where it acts is -o wide");
        assert!(text_table(true).contains("/validate CREATE, UPDATE"));
    }

    #[test]
    fn yaml_is_the_json_document() {
        let yaml = serde_saphyr::to_string(&everything()).unwrap();
        let back: serde_json::Value = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(back, serde_json::to_value(everything()).unwrap());
        assert_eq!(back["rules"][6]["canDeny"], false);
    }

    #[test]
    fn values_schema_knows_exactly_the_registered_rules() {
        let schema: serde_json::Value = serde_json::from_str(include_str!(
            "../../charts/storage-policy-webhook/values.schema.json"
        ))
        .unwrap();
        let rules = &schema["properties"]["policy"]["properties"]["rules"];
        let mut keys: Vec<&str> = rules["properties"]
            .as_object()
            .expect("rules properties")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        let mut want: Vec<&str> = registry::REGISTRY.iter().map(|e| e.meta.key).collect();
        want.sort_unstable();
        assert_eq!(keys, want);
        assert_eq!(rules["additionalProperties"], false);
        for k in want {
            let modes = &rules["properties"][k]["properties"]["mode"]["enum"];
            assert_eq!(
                modes,
                &serde_json::json!(["enforce", "audit", "off"]),
                "{k}"
            );
        }
    }

    #[test]
    fn json_lists_every_rule_kind_and_registration() {
        let v = serde_json::to_value(everything()).unwrap();
        assert_eq!(
            v["rules"].as_array().unwrap().len(),
            registry::REGISTRY.len()
        );
        assert_eq!(v["kinds"].as_array().unwrap().len(), kinds::KINDS.len());
        assert_eq!(v["webhooks"][0]["name"], "mutate.storage-policy.io");
        assert_eq!(v["webhooks"][0]["path"], "/mutate");
        assert_eq!(
            v["rules"][2]["acts"][0]["on"][0]["kinds"][0],
            "PersistentVolumeClaim"
        );
    }
}
