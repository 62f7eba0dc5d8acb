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

#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub enum Format {
    /// One line per rule.
    #[default]
    Text,
    /// The registry, the kinds table and the webhook registrations.
    Json,
    /// The rule table of docs/rules.md.
    Markdown,
}

#[derive(Debug, Args)]
pub struct RulesArgs {
    #[arg(long, short, value_enum, default_value_t)]
    pub output: Format,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RuleJson {
    key: &'static str,
    annotation: &'static str,
    summary: &'static str,
    denies: &'static str,
    warns: &'static str,
    default_mode: &'static str,
    acts: Vec<ActsJson>,
}

#[derive(Serialize)]
struct ActsJson {
    endpoint: Endpoint,
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

fn judged_kinds(acts: &Acts) -> Vec<&'static str> {
    kinds::KINDS
        .iter()
        .filter(|k| acts.judges_kind(k))
        .map(|k| k.kind)
        .collect()
}

/// `/validate` CREATE, UPDATE: PersistentVolumeClaim, PersistentVolume; ...
fn where_it_acts(meta: &Meta, sep: &str) -> String {
    meta.acts
        .iter()
        .map(|a| {
            format!(
                "/{} {}: {}",
                a.endpoint.as_str(),
                ops(a.operations).join(", "),
                judged_kinds(a).join(", ")
            )
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
                denies: e.meta.denies,
                warns: e.meta.warns,
                default_mode: e.meta.default_mode.as_str(),
                acts: e
                    .meta
                    .acts
                    .iter()
                    .map(|a| ActsJson {
                        endpoint: a.endpoint,
                        operations: ops(a.operations),
                        kinds: judged_kinds(a),
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
        "| rule (`rules.<key>`) | where it acts | default mode | audit annotation | what it does | denies (or patches) on | only warns on |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for e in registry::REGISTRY {
        let m = e.meta;
        out.push_str(&format!(
            "| `{}` | {} | `{}` | `{}` | {} | {} | {} |\n",
            m.key,
            where_it_acts(m, "<br>"),
            m.default_mode.as_str(),
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

pub fn run(args: RulesArgs) -> anyhow::Result<i32> {
    let text = match args.output {
        Format::Json => serde_json::to_string_pretty(&everything())? + "\n",
        Format::Markdown => markdown_table(),
        Format::Text => {
            let mut s = String::new();
            for e in registry::REGISTRY {
                let m = e.meta;
                s.push_str(&format!(
                    "{:<26} {:<8} {}\n",
                    m.key,
                    m.default_mode.as_str(),
                    where_it_acts(m, "; ")
                ));
            }
            s
        }
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
            v["rules"][2]["acts"][0]["kinds"][0],
            "PersistentVolumeClaim"
        );
    }
}
