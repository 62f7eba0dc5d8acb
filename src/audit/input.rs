//! Reading the inputs: files and folders (recursively: `*.yaml`, `*.yml`, `*.json`), `-` for
//! stdin, multi-document YAML, JSON streams, and `List` documents (`kind: List` or any `*List`
//! kind with `items`) flattened into their items. A document that does not parse is an
//! [`InputError`] with its file, document number and line; the other documents of the file and
//! the other files are still read.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{Document, InputError, Location};

/// How stdin is named in reports.
pub const STDIN: &str = "-";

/// What was read: documents in input order, and what could not be read.
#[derive(Debug, Default)]
pub struct Inputs {
    pub documents: Vec<Document>,
    pub errors: Vec<InputError>,
}

/// Reads every path; `-` reads `stdin` (once). Files in `skip` (the policy file) are not read.
pub fn read_paths(paths: &[PathBuf], skip: &[PathBuf], stdin: &mut dyn Read) -> Inputs {
    let mut inputs = Inputs::default();
    let mut seen: BTreeSet<PathBuf> = skip.iter().filter_map(|p| p.canonicalize().ok()).collect();
    let mut stdin_read = false;
    for path in paths {
        if path.as_os_str() == STDIN {
            if !stdin_read {
                stdin_read = true;
                let mut bytes = Vec::new();
                match stdin.read_to_end(&mut bytes) {
                    Ok(_) => parse_bytes(STDIN, &bytes, Format::Sniff, &mut inputs),
                    Err(e) => inputs.errors.push(InputError {
                        source: Location::file(STDIN),
                        message: format!("failed to read stdin: {e}"),
                    }),
                }
            }
            continue;
        }
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => {
                let mut files = Vec::new();
                let mut dirs = BTreeSet::new();
                walk(path, &mut files, &mut dirs, &mut inputs.errors);
                for f in files {
                    read_file(&f, &mut seen, &mut inputs);
                }
            }
            Ok(_) => read_file(path, &mut seen, &mut inputs),
            Err(e) => inputs.errors.push(InputError {
                source: Location::file(path.display().to_string()),
                message: format!("failed to read: {e}"),
            }),
        }
    }
    inputs
}

fn is_manifest(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        ["yaml", "yml", "json"]
            .iter()
            .any(|x| e.eq_ignore_ascii_case(x))
    })
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

/// The manifest files under `dir`, sorted by path; hidden entries (`.git`) skipped, symlinked
/// folders followed once.
fn walk(
    dir: &Path,
    files: &mut Vec<PathBuf>,
    visited: &mut BTreeSet<PathBuf>,
    errors: &mut Vec<InputError>,
) {
    if let Ok(canonical) = dir.canonicalize()
        && !visited.insert(canonical)
    {
        return;
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            errors.push(InputError {
                source: Location::file(dir.display().to_string()),
                message: format!("failed to read folder: {e}"),
            });
            return;
        }
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths {
        if is_hidden(&p) {
            continue;
        }
        match std::fs::metadata(&p) {
            Ok(m) if m.is_dir() => walk(&p, files, visited, errors),
            Ok(_) if is_manifest(&p) => files.push(p),
            Ok(_) => {}
            Err(e) => errors.push(InputError {
                source: Location::file(p.display().to_string()),
                message: format!("failed to read: {e}"),
            }),
        }
    }
}

fn read_file(path: &Path, seen: &mut BTreeSet<PathBuf>, inputs: &mut Inputs) {
    if let Ok(c) = path.canonicalize()
        && !seen.insert(c)
    {
        return;
    }
    let name = path.display().to_string();
    match std::fs::read(path) {
        Ok(bytes) => {
            let json = path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| e.eq_ignore_ascii_case("json"));
            parse_bytes(
                &name,
                &bytes,
                if json { Format::Json } else { Format::Yaml },
                inputs,
            );
        }
        Err(e) => inputs.errors.push(InputError {
            source: Location::file(name),
            message: format!("failed to read: {e}"),
        }),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Yaml,
    Json,
    /// JSON when the text starts with `{` or `[`, else YAML (stdin).
    Sniff,
}

fn parse_bytes(file: &str, bytes: &[u8], format: Format, inputs: &mut Inputs) {
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t.strip_prefix('\u{feff}').unwrap_or(t),
        Err(e) => {
            inputs.errors.push(InputError {
                source: Location::file(file),
                message: format!("not UTF-8 text: {e}"),
            });
            return;
        }
    };
    let json = match format {
        Format::Json => true,
        Format::Yaml => false,
        Format::Sniff => text.trim_start().starts_with(['{', '[']),
    };
    if json {
        parse_json(file, text, inputs);
    } else {
        parse_yaml(file, text, inputs);
    }
}

/// A stream of JSON values (one object, a List, or several concatenated objects).
pub fn parse_json(file: &str, text: &str, inputs: &mut Inputs) {
    let mut document = 0;
    for value in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
        document += 1;
        let source = Location {
            file: Some(file.to_owned()),
            document: Some(document),
            item: None,
            line: None,
        };
        match value {
            Ok(v) => expand(source, v, &mut inputs.documents),
            Err(e) => {
                inputs.errors.push(InputError {
                    source: Location {
                        line: Some(e.line()),
                        ..source
                    },
                    message: format!("invalid JSON: {e}"),
                });
                // A JSON stream cannot be resynchronized after a syntax error.
                return;
            }
        }
    }
}

/// Whether a line is a YAML document marker (`---` or `...` at column 0, then space or end).
fn marker(line: &str, m: &str) -> bool {
    line.strip_prefix(m)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r']))
}

/// Whether a chunk of YAML holds anything but blank lines, comments and markers.
fn has_content(chunk: &str) -> bool {
    chunk.lines().any(|l| {
        let t = l.trim();
        !(t.is_empty() || t.starts_with('#') || marker(l, "---") || marker(l, "..."))
    })
}

/// Multi-document YAML, split at `---` lines so that one broken document does not hide the
/// others (YAML forbids `---` at column 0 inside any scalar, so the split is exact).
pub fn parse_yaml(file: &str, text: &str, inputs: &mut Inputs) {
    let mut chunks: Vec<(usize, String)> = Vec::new();
    let mut current = String::new();
    let mut start = 1;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if marker(line.trim_end_matches('\n'), "---") && !current.is_empty() {
            chunks.push((start, std::mem::take(&mut current)));
            start = i + 1;
        }
        current.push_str(line);
    }
    chunks.push((start, current));

    let mut document = 0;
    for (start, chunk) in chunks {
        if !has_content(&chunk) {
            continue;
        }
        let first_line = chunk
            .lines()
            .position(|l| {
                let t = l.trim();
                !(t.is_empty() || t.starts_with('#') || marker(l, "---"))
            })
            .map(|p| start + p);
        match serde_saphyr::from_multiple::<Value>(&chunk) {
            Ok(values) => {
                for v in values {
                    document += 1;
                    let source = Location {
                        file: Some(file.to_owned()),
                        document: Some(document),
                        item: None,
                        line: first_line,
                    };
                    expand(source, v, &mut inputs.documents);
                }
            }
            Err(e) => {
                document += 1;
                let line = e
                    .location()
                    .map(|l| l.line() as usize)
                    .filter(|l| *l > 0)
                    .map(|l| start + l - 1)
                    .or(first_line);
                inputs.errors.push(InputError {
                    source: Location {
                        file: Some(file.to_owned()),
                        document: Some(document),
                        item: None,
                        line,
                    },
                    message: format!(
                        "invalid YAML: {}",
                        one_line(&e.without_snippet().to_string())
                    ),
                });
            }
        }
    }
}

/// The parser's message on one line, without its position: that counts from the start of the
/// document, the reported line from the start of the file.
fn one_line(text: &str) -> String {
    let text = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let digits = |s: &str| s.len() - s.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    if let Some(i) = text.find(" at line ") {
        let rest = &text[i + " at line ".len()..];
        let n = digits(rest);
        if let Some(col) = rest[n..].strip_prefix(", column ")
            && n > 0
            && digits(col) > 0
        {
            return format!("{}{}", &text[..i], &col[digits(col)..]);
        }
    }
    text
}

/// Adds a document, or the items of a `List` (`kind: List`, or `FooList` with `items`; items of
/// a typed list without their own `kind` get the list's).
pub fn expand(source: Location, value: Value, out: &mut Vec<Document>) {
    let list_kind = value
        .get("kind")
        .and_then(Value::as_str)
        .filter(|k| k.ends_with("List") && value.get("items").is_some_and(Value::is_array))
        .map(str::to_owned);
    let Some(list_kind) = list_kind else {
        if value.is_object() {
            out.push(Document { source, value });
        }
        return;
    };
    let item_kind = (list_kind != "List").then(|| list_kind.trim_end_matches("List").to_owned());
    let api_version = value.get("apiVersion").cloned();
    let Value::Object(mut map) = value else {
        return;
    };
    let Some(Value::Array(items)) = map.remove("items") else {
        return;
    };
    for (i, mut item) in items.into_iter().enumerate() {
        if let (Some(kind), Some(obj)) = (&item_kind, item.as_object_mut()) {
            obj.entry("kind")
                .or_insert_with(|| Value::String(kind.clone()));
            if let Some(v) = &api_version {
                obj.entry("apiVersion").or_insert_with(|| v.clone());
            }
        }
        let s = Location {
            item: Some(i),
            ..source.clone()
        };
        if item.is_object() {
            out.push(Document {
                source: s,
                value: item,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn yaml(text: &str) -> Inputs {
        let mut i = Inputs::default();
        parse_yaml("f.yaml", text, &mut i);
        i
    }

    #[test]
    fn splits_multi_document_yaml_and_numbers_documents() {
        let i = yaml(
            "# c\n---\nkind: A\n---\n\n---\nkind: B\nx: |\n  --- not a marker\n...\n---\nkind: C\n",
        );
        let kinds: Vec<_> = i
            .documents
            .iter()
            .map(|d| d.value["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["A", "B", "C"]);
        assert_eq!(i.documents[1].source.document, Some(2));
        assert_eq!(i.documents[1].source.line, Some(7));
        assert_eq!(i.documents[1].value["x"], "--- not a marker\n");
        assert!(i.errors.is_empty());
    }

    #[test]
    fn a_broken_document_is_reported_and_the_others_read() {
        let i = yaml("kind: A\n---\nkind: B\n  bad: [\n---\nkind: C\n");
        assert_eq!(i.documents.len(), 2);
        assert_eq!(i.errors.len(), 1);
        let e = &i.errors[0];
        assert_eq!(e.source.document, Some(2));
        assert!(
            e.source.line.is_some_and(|l| (3..=5).contains(&l)),
            "{:?}",
            e.source
        );
        assert!(e.message.starts_with("invalid YAML"), "{}", e.message);
        assert!(
            !e.message.contains("line"),
            "no document-relative position: {}",
            e.message
        );
        assert_eq!(i.documents[1].source.document, Some(3));
    }

    #[test]
    fn duplicate_keys_are_broken_documents() {
        let i = yaml("kind: A\nkind: B\n");
        assert_eq!(i.errors.len(), 1, "{:?}", i.documents);
    }

    #[test]
    fn flattens_lists_and_types_their_items() {
        let mut out = Vec::new();
        expand(
            Location::file("l.json"),
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaimList", "items": [{"metadata": {"name": "a"}}]}),
            &mut out,
        );
        assert_eq!(out[0].value["kind"], "PersistentVolumeClaim");
        assert_eq!(out[0].value["apiVersion"], "v1");
        assert_eq!(out[0].source.item, Some(0));
        let mut out = Vec::new();
        expand(
            Location::file("l.yaml"),
            json!({"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "v1", "kind": "Pod"}, {"apiVersion": "apps/v1", "kind": "StatefulSet"}]}),
            &mut out,
        );
        assert_eq!(out[1].value["kind"], "StatefulSet");
        assert_eq!(out[1].source.describe(), "l.yaml items[1]");
    }

    #[test]
    fn reads_json_streams_and_stops_at_a_syntax_error() {
        let mut i = Inputs::default();
        parse_json(
            "s.json",
            "{\"kind\": \"A\"}\n{\"kind\": \"B\"}\n{\"kind\": ",
            &mut i,
        );
        assert_eq!(i.documents.len(), 2);
        assert_eq!(i.errors[0].source.document, Some(3));
    }
}
