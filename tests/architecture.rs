//! The architecture stays easy to see.
//!
//! `src/policy` has three layers and one direction: the **model** (`policy/model`: what
//! Kubernetes does; it knows no rule), the **engine** (`policy/engine`: what a rule is, requests,
//! decisions; it names no rule) and the **rules** (`policy/rules`: one module each; a rule never
//! imports another rule). `policy/registry.rs` is the only file naming every rule; outside
//! `src/policy` a rule is named only by its `ID`. Inside a folder of `src/policy` and `src/audit`
//! the files import each other without cycles (`use super::x` between siblings). Only a module's
//! own code counts, not its test module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Sibling modules of `dir` and, for each, the siblings it imports with `use super::...`.
fn sibling_imports(dir: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut modules = BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("read the source folder") {
        let path = entry.unwrap().path();
        let name = match (path.is_dir(), path.extension().and_then(|e| e.to_str())) {
            (true, _) if path.join("mod.rs").is_file() => path.join("mod.rs"),
            (false, Some("rs")) => path.clone(),
            _ => continue,
        };
        let stem = path.file_stem().unwrap().to_str().unwrap().to_owned();
        if stem == "mod" || stem == "tests" {
            continue;
        }
        modules.insert(stem, std::fs::read_to_string(name).unwrap());
    }
    let names: BTreeSet<String> = modules.keys().cloned().collect();
    modules
        .iter()
        .map(|(m, text)| {
            let mut uses = BTreeSet::new();
            // Only the module's own code, not its test module.
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            for stmt in code.split("use super::").skip(1) {
                let stmt = stmt.split(';').next().unwrap_or_default();
                for word in stmt.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
                    if word != m && names.contains(word) {
                        uses.insert(word.to_owned());
                    }
                }
            }
            (m.clone(), uses)
        })
        .collect()
}

/// A cycle in the graph, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|s| s == n) {
            let mut cycle = stack[i..].to_vec();
            cycle.push(n.to_owned());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.to_owned());
        for m in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, graph, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for n in graph.keys() {
        if let Some(c) = visit(n, graph, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn policy_and_audit_modules_have_no_import_cycles() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for folder in [
        "policy/model",
        "policy/engine",
        "policy/rules",
        "audit",
        "audit/report",
    ] {
        let graph = sibling_imports(&root.join(folder));
        assert!(graph.len() > 3, "{folder}: modules found: {graph:?}");
        assert_eq!(
            find_cycle(&graph),
            None,
            "src/{folder} has an import cycle between sibling modules"
        );
    }
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec![]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
    .collect();
    assert_eq!(
        find_cycle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    let acyclic: BTreeMap<String, BTreeSet<String>> = [("a", vec!["b"]), ("b", vec![])]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
        .collect();
    assert_eq!(find_cycle(&acyclic), None);
}

/// The layers of `src/policy`, lowest first.
const LAYERS: [&str; 3] = ["model", "engine", "rules"];

/// A module's own code: before its test module, without comments.
fn own_code(text: &str) -> String {
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    code.lines()
        .map(|l| l.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path in `code` that starts with `prefix` (`crate::policy::`, `super::`), as the
/// identifiers it names (a `use` with braces names several).
fn paths_after<'a>(code: &'a str, prefix: &str) -> Vec<Vec<&'a str>> {
    let mut paths = Vec::new();
    for (i, _) in code.match_indices(prefix) {
        let before = code[..i].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let rest = &code[i + prefix.len()..];
        let mut depth = 0usize;
        let end = rest
            .char_indices()
            .find(|&(_, c)| match c {
                '{' => {
                    depth += 1;
                    false
                }
                '}' if depth > 0 => {
                    depth -= 1;
                    false
                }
                c if c.is_alphanumeric() || c == '_' || c == ':' => false,
                ',' | ' ' | '\n' if depth > 0 => false,
                _ => true,
            })
            .map_or(rest.len(), |(j, _)| j);
        paths.push(
            rest[..end]
                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .filter(|w| !w.is_empty())
                .collect(),
        );
    }
    paths
}

/// The `.rs` files under `dir`, recursively.
fn rust_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read the source folder") {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// The rules: the modules of `src/policy/rules`.
fn rule_names(policy: &Path) -> BTreeSet<String> {
    std::fs::read_dir(policy.join("rules"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() || p.extension().is_some_and(|e| e == "rs"))
        .map(|p| p.file_stem().unwrap().to_str().unwrap().to_owned())
        .filter(|n| n != "mod")
        .collect()
}

/// What a file of layer `layer` (and of rule `rule`, for the rules) imports that the layering
/// forbids: a higher layer, the registry, another rule, or `crate::policy::x` without naming the
/// layer of `x` (a re-export would hide it).
fn layer_violations(
    code: &str,
    layer: &str,
    rule: Option<&str>,
    rules: &BTreeSet<String>,
) -> Vec<String> {
    let rank = |l: &str| LAYERS.iter().position(|x| *x == l);
    let mut bad = Vec::new();
    for path in paths_after(code, "crate::policy::") {
        let Some(first) = path.first() else { continue };
        if *first == "registry" {
            bad.push("the registry".to_owned());
            continue;
        }
        match rank(first) {
            None => bad.push(format!(
                "crate::policy::{}: name the layer (model, engine, rules)",
                path.join("::")
            )),
            Some(r) if r > rank(layer).unwrap() => {
                bad.push(format!("the {first} layer ({})", path.join("::")));
            }
            Some(_) => {}
        }
        if *first == "rules" {
            for w in &path[1..] {
                if rules.contains(*w) && Some(*w) != rule {
                    bad.push(format!("rule {w}"));
                }
            }
        }
    }
    // `super::x` inside a rule's own folder is the rule itself; `super::x` beside the rules is
    // another rule.
    if layer == "rules" {
        for path in paths_after(code, "super::") {
            for w in &path {
                if rules.contains(*w) && Some(*w) != rule {
                    bad.push(format!("rule {w}"));
                }
            }
        }
    }
    bad
}

#[test]
fn policy_layers_import_downwards_and_no_rule_imports_another() {
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/policy");
    let rules = rule_names(&policy);
    assert!(rules.len() >= 10, "rules found: {rules:?}");
    let mut problems = Vec::new();
    for layer in LAYERS {
        for file in rust_files(&policy.join(layer)) {
            let rel = file.strip_prefix(&policy).unwrap();
            // The rule a file belongs to: `rules/x.rs` or `rules/x/...`.
            let rule = (layer == "rules")
                .then(|| rel.components().nth(1))
                .flatten()
                .map(|c| c.as_os_str().to_str().unwrap().trim_end_matches(".rs"))
                .filter(|r| *r != "mod");
            let code = own_code(&std::fs::read_to_string(&file).unwrap());
            for v in layer_violations(&code, layer, rule, &rules) {
                problems.push(format!("src/policy/{}: imports {v}", rel.display()));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "the policy layers go model <- engine <- rules, and a rule imports no other rule \
         (move what two rules share down a layer):\n{}",
        problems.join("\n")
    );
}

#[test]
fn outside_the_policy_a_rule_is_named_only_by_its_id() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let rules = rule_names(&src.join("policy"));
    let mut problems = Vec::new();
    for file in rust_files(&src) {
        if file.starts_with(src.join("policy")) {
            continue;
        }
        let code = own_code(&std::fs::read_to_string(&file).unwrap());
        for r in &rules {
            for (i, _) in code.match_indices(&format!("{r}::")) {
                let before = code[..i].chars().next_back();
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    continue;
                }
                let item: String = code[i + r.len() + 2..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if item != "ID" {
                    problems.push(format!(
                        "{}: {r}::{item}",
                        file.strip_prefix(&src).unwrap().display()
                    ));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "outside src/policy a rule is named by its ID only; what else is shared belongs in the \
         model or the engine:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_layer_check_finds_upward_and_sideways_imports() {
    let rules: BTreeSet<String> = ["will_bind", "volume_name"].map(str::to_owned).into();
    let check = |code: &str, layer: &str, rule: Option<&str>| {
        layer_violations(&own_code(code), layer, rule, &rules)
    };
    assert_eq!(
        check(
            "use crate::policy::engine::decision::Decision;",
            "model",
            None
        )
        .len(),
        1
    );
    assert!(
        !check(
            "use crate::policy::rules::will_bind::record;",
            "engine",
            None
        )
        .is_empty()
    );
    assert_eq!(
        check(
            "use crate::policy::rules::{volume_name, will_bind};",
            "rules",
            Some("volume_name")
        ),
        vec!["rule will_bind".to_owned()]
    );
    assert_eq!(
        check(
            "use super::will_bind::record;",
            "rules",
            Some("volume_name")
        )
        .len(),
        1
    );
    assert_eq!(
        check("use crate::policy::Decision;", "rules", None).len(),
        1
    );
    assert!(
        check(
            "use crate::policy::model::catalog::Catalog;\nuse crate::policy::engine::rule::Rule;\n\
             // use crate::policy::rules::will_bind;\n#[cfg(test)]\nuse crate::policy::rules::will_bind;",
            "rules",
            Some("volume_name")
        )
        .is_empty()
    );
}
