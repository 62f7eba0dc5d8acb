//! The architecture stays easy to see: inside `src/policy` and `src/audit`, the files of a folder
//! import each other without cycles (`use super::x` between siblings), so each layer can be read
//! on its own: vocabulary, policy file and catalog, the storage model, the rule metadata, the
//! rules, the registry. A module's parent may re-export it; only sibling edges count.

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
    for folder in ["policy", "audit", "audit/report"] {
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
