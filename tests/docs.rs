//! The README is an on-ramp and the documentation stays inside the repository: the README is at
//! most a third of its former 655 lines, it shows the Helm install in audit mode and the first
//! report before anything else, and every link in it, in `docs/`, in the chart's README and in
//! `tests/README.md` points at a file of this repository that exists.
//!
//! Where a document lists every rule, it is checked against the registry (so a new rule that
//! misses one fails here): the README's failure-mode table, the policy examples of
//! `docs/policy.md` and the chart README, the audit annotations, the numbered rules of
//! `docs/rules.md`; the module docs name every rule or none; the RBAC the docs describe is the
//! chart's ClusterRole.

use std::path::{Component, Path, PathBuf};

use serde_json::Value;
use storage_policy_webhook::policy::Policy;
use storage_policy_webhook::policy::registry::REGISTRY;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Markdown link targets `[text](target)`, outside code blocks and code spans.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        // Code spans may hold `](`: drop them first.
        let mut plain = String::new();
        for (i, part) in line.split('`').enumerate() {
            if i % 2 == 0 {
                plain.push_str(part);
            }
        }
        let mut rest = plain.as_str();
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(end) = after.find(')') else { break };
            out.push(after[..end].to_owned());
            rest = &after[end..];
        }
    }
    out
}

/// `a/../b` without touching the file system; `None` when it climbs above the start.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out: Vec<&std::ffi::OsStr> = Vec::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop()?;
            }
            Component::Normal(s) => out.push(s),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out.iter().collect())
}

fn markdown_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = [
        "README.md",
        "CHANGELOG.md",
        "BENCHMARKS.md",
        "RELIABILITY.md",
        "certs/README.md",
        "tests/README.md",
        "tests/e2e/README.md",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    for e in std::fs::read_dir(root().join("docs")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            files.push(Path::new("docs").join(p.file_name().unwrap()));
        }
    }
    for e in std::fs::read_dir(root().join("charts")).unwrap() {
        let readme = e.unwrap().path().join("README.md");
        if readme.exists() {
            files.push(readme.strip_prefix(root()).unwrap().to_path_buf());
        }
    }
    files.sort();
    files
}

/// Written by another part of the same change (issue 30: the rollout guide); checked once it
/// exists.
const WRITTEN_ELSEWHERE: &[&str] = &["docs/rollout.md"];

#[test]
fn readme_is_at_most_a_third_of_its_former_length() {
    let readme = read(&root().join("README.md"));
    let lines = readme.lines().count();
    assert!(
        lines <= 655 / 3,
        "README.md has {lines} lines; move detail to docs/"
    );
}

#[test]
fn readme_starts_with_install_in_audit_mode_then_the_report_then_enforce() {
    let readme = read(&root().join("README.md"));
    let at = |needle: &str| {
        readme
            .find(needle)
            .unwrap_or_else(|| panic!("README.md lacks {needle:?}"))
    };
    let install = at("helm install");
    let report = at("audit --cluster");
    let enforce = at("helm upgrade");
    assert!(
        install < report && report < enforce,
        "install, then the report, then enforce"
    );
    assert!(
        readme[..install].lines().count() < 60,
        "the install is on the first screens"
    );
    assert!(readme.contains("-f examples/pvc-rwx-block.yaml\n"));
    // The newcomer's two commands (.ci/run runs the second).
    assert!(readme.contains("\ncargo run --release -- serve --no-cluster\n"));
    assert!(readme.contains("\ncargo test\n"));
}

#[test]
fn links_stay_in_the_repository_and_resolve() {
    let mut problems = Vec::new();
    for file in markdown_files() {
        let text = read(&root().join(&file));
        let dir = file.parent().unwrap_or(Path::new(""));
        for link in links(&text) {
            let target = link.split('#').next().unwrap_or_default();
            if target.is_empty() {
                continue;
            }
            if target.contains("://") || target.starts_with("mailto:") {
                problems.push(format!("{}: {link} leaves the repository", file.display()));
                continue;
            }
            let Some(path) = normalize(&dir.join(target)) else {
                problems.push(format!("{}: {link} leaves the repository", file.display()));
                continue;
            };
            let shown = path.to_string_lossy().replace('\\', "/");
            if !root().join(&path).exists() && !WRITTEN_ELSEWHERE.contains(&shown.as_str()) {
                problems.push(format!("{}: {link} does not exist", file.display()));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A stray code fence turns prose into code: docs/development.md had one after the two
/// commands, which swallowed the text up to the next block. Every block is closed, and no fence
/// with a language opens inside another block (the sign of a stray fence above it).
#[test]
fn code_fences_pair_up() {
    let mut problems = Vec::new();
    for file in markdown_files() {
        let text = read(&root().join(&file));
        let mut open: Option<usize> = None;
        for (n, line) in text.lines().enumerate() {
            let t = line.trim();
            if !t.starts_with("```") {
                continue;
            }
            open = match open {
                Some(_) if t == "```" => None,
                Some(at) => {
                    problems.push(format!(
                        "{}:{}: {t:?} inside the code block opened at line {at}",
                        file.display(),
                        n + 1
                    ));
                    Some(at)
                }
                None => Some(n + 1),
            };
        }
        if let Some(at) = open {
            problems.push(format!(
                "{}: the code fence at line {at} is never closed",
                file.display()
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_link_check_covers_the_readmes_docs_chart_and_tests() {
    let files = markdown_files();
    for must in [
        "README.md",
        "docs/rules.md",
        "charts/storage-policy-webhook/README.md",
        "tests/README.md",
    ] {
        assert!(
            files.contains(&PathBuf::from(must)),
            "{must} not link-checked"
        );
    }
    // The checker sees what it must: an outside link in a code span is no link, one in text is.
    assert_eq!(
        links("see [a](https://x.io/a) and `[b](https://y.io)`"),
        ["https://x.io/a"]
    );
}

fn keys() -> Vec<&'static str> {
    REGISTRY.iter().map(|e| e.meta.key).collect()
}

/// The first fenced block of `lang` after `after` in `text`.
fn fenced<'a>(text: &'a str, after: &str, lang: &str) -> &'a str {
    let from = text.find(after).unwrap_or_else(|| panic!("no {after:?}"));
    let open = format!("```{lang}\n");
    let a = text[from..].find(&open).expect("a fenced block") + from + open.len();
    let b = text[a..].find("\n```").expect("its end") + a;
    &text[a..=b]
}

/// The keys of a YAML mapping.
fn mapping_keys(v: &Value) -> Vec<String> {
    v.as_object().expect("a mapping").keys().cloned().collect()
}

#[test]
fn readme_failure_table_rows_are_rules_in_registry_order() {
    let readme = read(&root().join("README.md"));
    let table: Vec<&str> = readme
        .lines()
        .skip_while(|l| !l.starts_with("| what goes wrong without it |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .collect();
    let named: Vec<&str> = table
        .iter()
        .map(|row| {
            let cell = row.trim_end_matches('|').rsplit('|').next().unwrap().trim();
            cell.trim_matches('`')
        })
        .collect();
    assert_eq!(
        named,
        keys(),
        "README.md opens with one failure mode per rule, each row ending with its key, in the \
         registry's order"
    );
}

#[test]
fn policy_examples_name_every_rule_and_load() {
    let policy_md = read(&root().join("docs/policy.md"));
    let chart = read(&root().join("charts/storage-policy-webhook/README.md"));
    let examples = [
        (
            "docs/policy.md",
            fenced(&policy_md, "# The policy file", "yaml").to_owned(),
        ),
        (
            "charts/storage-policy-webhook/README.md",
            fenced(&chart, "## Policy", "yaml").to_owned(),
        ),
    ];
    for (file, text) in examples {
        let doc: Value = serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        // The chart's example is the `policy` value.
        let policy = doc.get("policy").cloned().unwrap_or(doc);
        let mut rules = mapping_keys(&policy["rules"]);
        rules.sort();
        let mut want = keys();
        want.sort();
        assert_eq!(rules, want, "{file}: the policy example names every rule");
        let yaml = serde_saphyr::to_string(&policy).unwrap();
        if let Err(e) = Policy::parse(&yaml, None, false) {
            panic!("{file}: the policy example does not load: {e}");
        }
    }
}

#[test]
fn the_audit_annotation_list_is_the_registry() {
    let doc = read(&root().join("docs/policy.md"));
    let at = doc
        .find("Audit annotations the webhook returns")
        .expect("the audit annotation list");
    let paragraph = doc[at..].split("\n\n").next().unwrap();
    let listed: Vec<&str> = paragraph.split('`').skip(1).step_by(2).collect();
    let want: Vec<&str> = REGISTRY.iter().map(|e| e.meta.annotation).collect();
    assert_eq!(
        listed, want,
        "docs/policy.md's audit annotations, one per rule"
    );
}

#[test]
fn rules_in_detail_are_numbered_in_registry_order_and_named_by_key() {
    let doc = read(&root().join("docs/rules.md"));
    let a = doc.find("## In detail").expect("## In detail");
    let b = doc[a..].find("\n## ").map_or(doc.len(), |b| a + b);
    let mut items = Vec::new();
    for line in doc[a..b].lines() {
        let Some((n, rest)) = line.split_once(". **") else {
            continue;
        };
        let Ok(n) = n.parse::<usize>() else { continue };
        let key = rest
            .split_once("** (`")
            .and_then(|(_, k)| k.split('`').next())
            .unwrap_or_else(|| panic!("docs/rules.md item {n} names no key: {line}"));
        items.push((n, key));
    }
    let want: Vec<(usize, &str)> = keys()
        .into_iter()
        .enumerate()
        .map(|(i, k)| (i + 1, k))
        .collect();
    assert_eq!(
        items, want,
        "docs/rules.md numbers the rules 1.. in the registry's order, each `N. **Title** (`key`; ...`"
    );
    // Rules are referred to by key, never by a number that moves when a rule is added.
    for file in markdown_files() {
        let text = read(&root().join(&file));
        for (i, line) in text.lines().enumerate() {
            let words: Vec<&str> = line.split_whitespace().collect();
            for w in words.windows(2) {
                let rule = matches!(w[0], "rule" | "Rule" | "rules" | "Rules");
                let number = w[1].trim_end_matches([',', '.', ':', ')']);
                assert!(
                    !(rule && !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit())),
                    "{}:{}: names a rule by number: {line}",
                    file.display(),
                    i + 1
                );
            }
        }
    }
}

#[test]
fn module_docs_name_every_rule_or_none() {
    for file in [
        "src/lib.rs",
        "src/policy/mod.rs",
        "src/policy/rules/mod.rs",
        "src/policy/registry.rs",
    ] {
        let docs: String = read(&root().join(file))
            .lines()
            .filter_map(|l| l.trim_start().strip_prefix("//!"))
            .collect::<Vec<_>>()
            .join("\n");
        let named: Vec<&str> = keys()
            .into_iter()
            .filter(|k| {
                docs.split(|c: char| !c.is_ascii_alphanumeric())
                    .any(|w| w == *k)
            })
            .collect();
        assert!(
            named.is_empty() || named.len() == REGISTRY.len(),
            "{file}: its module docs name some rules ({named:?}), not all or none"
        );
    }
}

/// The resources the chart's ClusterRole lets the webhook list and watch.
fn watched_resources() -> Vec<String> {
    let rbac = read(&root().join("charts/storage-policy-webhook/templates/rbac.yaml"));
    let mut out = Vec::new();
    let mut resources: Vec<String> = Vec::new();
    for line in rbac.lines() {
        let line = line.trim();
        let list = |l: &str| -> Vec<String> {
            l.split_once('[')
                .and_then(|(_, r)| r.split_once(']'))
                .map(|(r, _)| {
                    r.split(',')
                        .map(|s| s.trim().trim_matches('"').to_owned())
                        .collect()
                })
                .unwrap_or_default()
        };
        if line.starts_with("resources:") {
            resources = list(line);
        } else if line.starts_with("verbs:") && list(line).iter().any(|v| v == "watch") {
            out.append(&mut resources);
        }
    }
    out
}

#[test]
fn rbac_docs_name_what_the_cluster_role_watches() {
    let watched = watched_resources();
    assert!(
        watched.iter().any(|r| r == "persistentvolumeclaims"),
        "{watched:?}"
    );
    // Words the docs use for a resource besides its plural.
    let aliases = |r: &str| -> &'static [&'static str] {
        match r {
            "persistentvolumes" => &["pvs"],
            "persistentvolumeclaims" => &["pvcs", "claims"],
            _ => &[],
        }
    };
    let chart = read(&root().join("charts/storage-policy-webhook/README.md"));
    let bullet = chart
        .lines()
        .skip_while(|l| !l.starts_with("- RBAC:"))
        .take_while(|l| !l.starts_with("- ") || l.starts_with("- RBAC:"))
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
        .replace(' ', "");
    let cluster = read(&root().join("docs/cluster.md"));
    let block = fenced(&cluster, "## RBAC", "yaml");
    for r in &watched {
        assert!(
            bullet.contains(r.as_str()) || aliases(r).iter().any(|a| bullet.contains(a)),
            "the chart README's RBAC bullet does not name {r}"
        );
        assert!(
            block.contains(&format!("\"{r}\"")),
            "docs/cluster.md's RBAC ClusterRole does not list {r}"
        );
    }
}
