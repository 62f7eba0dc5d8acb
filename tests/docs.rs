//! The README is an on-ramp and the documentation stays inside the repository: the README is at
//! most a third of its former 655 lines, it shows the Helm install in audit mode and the first
//! report before anything else, and every link in it and in `docs/` points at a file of this
//! repository that exists.

use std::path::{Component, Path, PathBuf};

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
    let mut files = vec![PathBuf::from("README.md")];
    for e in std::fs::read_dir(root().join("docs")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            files.push(Path::new("docs").join(p.file_name().unwrap()));
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
