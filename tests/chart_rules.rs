//! The chart's copies of the rule-key list are generated from the registry
//! (`src/policy/registry.rs`), so a new rule reaches the chart with one command:
//!
//! ```text
//! UPDATE_CHART=1 cargo test --test chart_rules
//! ```
//!
//! then review the diff under `charts/`. Without `UPDATE_CHART` each test fails, with a line diff,
//! when the chart differs from what the registry gives. What is generated:
//! - `templates/_helpers.tpl`: the `spw.ruleKeys` define, between the `rule-keys:start` and
//!   `rule-keys:end` comments (the rules the chart resolves modes and NOTES for);
//! - `values.yaml`: the comment listing every rule above `policy.rules`, between the same markers
//!   (comments only: the keys under `policy.rules` are rendered verbatim into `policy.yaml`, so
//!   they stay hand-kept, and are checked to be every registry key in the registry's order);
//! - `values.schema.json`: the rule properties under `policy.rules` (JSON has no comments: the
//!   `$comment` of `policy.rules` says so), one per rule in the registry's order. A rule with
//!   settings of its own keeps its hand-written entry (the registry does not know a rule's settings
//!   schema); a new rule gets an entry accepting `mode` only; an entry of a rule the registry no
//!   longer has is dropped.
//!
//! `tests/chart/test_chart.py` takes its rule list from `storage-policy-webhook rules --output
//! json` and checks the rendered chart against it.

use std::path::{Path, PathBuf};

use serde_json::Value;
use storage_policy_webhook::policy::registry::REGISTRY;

const COMMAND: &str = "UPDATE_CHART=1 cargo test --test chart_rules";
const START: &str = "rule-keys:start";
const END: &str = "rule-keys:end";

fn chart(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("charts/storage-policy-webhook")
        .join(file)
}

fn keys() -> Vec<&'static str> {
    REGISTRY.iter().map(|e| e.meta.key).collect()
}

/// A line diff of `got` against `want`: `-` lines are in the file, `+` lines are what the
/// registry gives.
fn diff(got: &str, want: &str) -> String {
    similar::TextDiff::from_lines(got, want)
        .iter_all_changes()
        .filter(|c| c.tag() != similar::ChangeTag::Equal)
        .map(|c| format!("{}{}", c.tag(), c.value()))
        .collect()
}

/// Compares `file`'s text with `want`; with `UPDATE_CHART` set, writes `want` instead. `note`
/// opens the failure message.
fn check_or_update(file: &str, text: &str, want: &str, note: &str) {
    if text == want {
        return;
    }
    if std::env::var_os("UPDATE_CHART").is_some() {
        std::fs::write(chart(file), want).unwrap();
        return;
    }
    panic!(
        "charts/storage-policy-webhook/{file} does not follow the rule registry{note} \
         (- the file, + the registry):\n{}\nregenerate with: {COMMAND}",
        diff(text, want)
    );
}

/// `text` with the lines strictly between the line containing [`START`] and the one containing
/// [`END`] replaced by `block` (whole lines, each ending in a newline).
fn splice(file: &str, text: &str, block: &str) -> String {
    let start = text
        .find(START)
        .unwrap_or_else(|| panic!("{file}: no {START} marker"));
    let a = text[start..].find('\n').expect("a line after the marker") + start + 1;
    let end = text[a..]
        .find(END)
        .unwrap_or_else(|| panic!("{file}: no {END} marker after {START}"))
        + a;
    let b = text[..end]
        .rfind('\n')
        .expect("the end marker on its own line")
        + 1;
    assert!(b >= a, "{file}: {END} on the line of {START}");
    format!("{}{block}{}", &text[..a], &text[b..])
}

/// `{{- list "a" "b" ... | toJson }}`: the rules the chart knows.
fn helpers_block() -> String {
    let quoted: Vec<String> = keys().iter().map(|k| format!("{k:?}")).collect();
    format!(
        "{{{{- define \"spw.ruleKeys\" -}}}}\n{{{{- list {} | toJson }}}}\n{{{{- end }}}}\n",
        quoted.join(" ")
    )
}

#[test]
fn helpers_rule_keys_are_the_registry() {
    let file = "templates/_helpers.tpl";
    let text = std::fs::read_to_string(chart(file)).unwrap();
    check_or_update(file, &text, &splice(file, &text, &helpers_block()), "");
}

/// The comment of values.yaml naming every rule, wrapped at 100 columns.
fn values_block() -> String {
    let keys = keys();
    let mut lines = vec![format!(
        "  # The {} rules, in the registry's order (`storage-policy-webhook rules`):",
        keys.len()
    )];
    let mut line = String::from("  #");
    for (i, k) in keys.iter().enumerate() {
        let word = if i + 1 == keys.len() {
            format!(" {k}.")
        } else {
            format!(" {k},")
        };
        if line.len() + word.len() > 100 {
            lines.push(std::mem::replace(&mut line, String::from("  #")));
        }
        line += &word;
    }
    lines.push(line);
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// The keys under `policy.rules` in values.yaml, in order.
fn values_rule_keys(text: &str) -> Vec<String> {
    let mut lines = text.lines().skip_while(|l| *l != "policy:");
    assert!(lines.next().is_some(), "values.yaml: no policy:");
    let mut lines = lines.skip_while(|l| *l != "  rules:");
    assert!(lines.next().is_some(), "values.yaml: no policy.rules");
    lines
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .filter_map(|l| {
            let key = l.strip_prefix("    ")?.split(':').next()?;
            (!key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric()))
                .then(|| key.to_owned())
        })
        .collect()
}

#[test]
fn values_rule_list_is_the_registry() {
    let file = "values.yaml";
    let text = std::fs::read_to_string(chart(file)).unwrap();
    check_or_update(file, &text, &splice(file, &text, &values_block()), "");
    // The hand-kept settings: every rule of the registry, in its order (a rule left out would
    // still run, in policy.mode, but the values would not show where its settings go).
    assert_eq!(
        values_rule_keys(&text),
        keys(),
        "values.yaml: policy.rules lists every rule of the registry, in its order"
    );
}

const MODE: &str = r#""mode": {
  "type": "string",
  "enum": [
    "enforce",
    "audit",
    "off"
  ]
}"#;

/// `text` indented by `n` spaces, line by line.
fn indent(text: &str, n: usize) -> String {
    text.lines()
        .map(|l| format!("{:n$}{l}\n", ""))
        .collect::<String>()
}

/// The schema entry of a rule with no settings of its own.
fn mode_only(key: &str, at: usize) -> Vec<String> {
    let entry = format!(
        "\"{key}\": {{\n  \"type\": \"object\",\n  \"properties\": {{\n{}  }},\n  \
         \"additionalProperties\": false\n}}",
        indent(MODE, 4)
    );
    indent(&entry, at).lines().map(str::to_owned).collect()
}

#[test]
fn schema_rule_properties_are_the_registry() {
    let file = "values.schema.json";
    let text = std::fs::read_to_string(chart(file)).unwrap();
    let schema: Value = serde_json::from_str(&text).expect("values.schema.json is JSON");
    let rules = &schema["properties"]["policy"]["properties"]["rules"];
    assert_eq!(rules["additionalProperties"], false, "{file}: policy.rules");
    assert!(
        rules["$comment"].as_str().unwrap_or("").contains(COMMAND),
        "{file}: policy.rules has no $comment naming {COMMAND}"
    );
    let mode: Value = serde_json::from_str(&format!("{{{MODE}}}")).unwrap();
    assert_eq!(
        schema["properties"]["policy"]["properties"]["mode"], mode["mode"],
        "{file}: policy.mode"
    );

    // The file is pretty-printed JSON (two spaces a level), so policy.rules.properties and each
    // rule's entry are found by their indentation alone.
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.trim() == "\"rules\": {")
        .unwrap_or_else(|| panic!("{file}: no \"rules\""));
    let pad = lines[at].len() - lines[at].trim_start().len();
    let props = (at + 1..lines.len())
        .find(|&i| lines[i] == format!("{:1$}\"properties\": {{", "", pad + 2))
        .unwrap_or_else(|| panic!("{file}: no policy.rules.properties"));
    let close = (props + 1..lines.len())
        .find(|&i| {
            let l = lines[i].trim_end_matches(',');
            l.len() == pad + 3 && l.ends_with('}') && l.trim() == "}"
        })
        .expect("the end of policy.rules.properties");
    let entry_pad = pad + 4;
    let mut entries: Vec<(String, Vec<String>)> = Vec::new();
    let mut i = props + 1;
    while i < close {
        let head = lines[i];
        let key = head
            .get(entry_pad..)
            .and_then(|h| h.strip_prefix('"'))
            .and_then(|h| h.strip_suffix("\": {"))
            .unwrap_or_else(|| panic!("{file}:{}: unexpected {head:?}", i + 1));
        let last = (i + 1..close)
            .find(|&j| lines[j].trim_end_matches(',') == format!("{:1$}}}", "", entry_pad))
            .unwrap_or_else(|| panic!("{file}: no end of the entry {key}"));
        let mut body: Vec<String> = lines[i..=last].iter().map(|l| (*l).to_owned()).collect();
        let end = body.last_mut().unwrap();
        *end = end.trim_end_matches(',').to_owned();
        entries.push((key.to_owned(), body));
        i = last + 1;
    }

    let mut block: Vec<String> = Vec::new();
    for key in keys() {
        let entry = match entries.iter().find(|(k, _)| k == key) {
            Some((_, body)) => {
                // A hand-kept entry: an object of settings with the common mode.
                let rule = &rules["properties"][key];
                assert_eq!(rule["type"], "object", "{file}: policy.rules.{key}");
                assert_eq!(
                    rule["additionalProperties"], false,
                    "{file}: policy.rules.{key}"
                );
                assert_eq!(
                    rule["properties"]["mode"], mode["mode"],
                    "{file}: policy.rules.{key}.mode"
                );
                body.clone()
            }
            None => mode_only(key, entry_pad),
        };
        if let Some(prev) = block.last_mut() {
            prev.push(',');
        }
        block.extend(entry);
    }
    let mut want: Vec<String> = lines[..=props].iter().map(|l| (*l).to_owned()).collect();
    want.extend(block);
    want.extend(lines[close..].iter().map(|l| (*l).to_owned()));
    let want = want.join("\n") + "\n";
    let listed: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
    let note = format!(" (its rules: {listed:?}; the registry's: {:?})", keys());
    check_or_update(file, &text, &want, &note);
}
