//! Kubernetes field errors, printed exactly as `k8s.io/apimachinery/pkg/util/validation/field`
//! prints them, and aggregated as `NewInvalid` aggregates them.
//!
//! Pure data and formatting: this module knows nothing of HTTP or of admission reviews. The
//! admission layer turns an [`Invalid`] into a `metav1.Status`.

use std::collections::HashSet;
use std::fmt::{self, Write as _};

use super::limits::{MAX_CAUSES, MAX_MESSAGE_CHARS};

/// The error types the API server uses (`field.ErrorType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorType {
    Required,
    Forbidden,
    Invalid,
    NotSupported,
    Duplicate,
}

impl ErrorType {
    /// The text printed after the field path (`field.ErrorType.String()`).
    pub fn text(self) -> &'static str {
        match self {
            ErrorType::Required => "Required value",
            ErrorType::Forbidden => "Forbidden",
            ErrorType::Invalid => "Invalid value",
            ErrorType::NotSupported => "Unsupported value",
            ErrorType::Duplicate => "Duplicate value",
        }
    }

    /// The `StatusCause.reason` (`metav1.CauseType`).
    pub fn cause_reason(self) -> &'static str {
        match self {
            ErrorType::Required => "FieldValueRequired",
            ErrorType::Forbidden => "FieldValueForbidden",
            ErrorType::Invalid => "FieldValueInvalid",
            ErrorType::NotSupported => "FieldValueNotSupported",
            ErrorType::Duplicate => "FieldValueDuplicate",
        }
    }
}

/// A field path such as `spec.volumeClaimTemplates[0].spec.accessModes`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Path(String);

impl Path {
    pub fn new(root: &str) -> Self {
        Path(root.to_owned())
    }

    /// `child("spec")`: joins with `.`.
    pub fn child(&self, name: &str) -> Self {
        if self.0.is_empty() {
            return Path(name.to_owned());
        }
        Path(format!("{}.{name}", self.0))
    }

    /// `index(0)`: `[0]`.
    pub fn index(&self, i: usize) -> Self {
        Path(format!("{}[{i}]", self.0))
    }

    /// `key("storage")`: `[storage]`, unquoted as the API prints it.
    pub fn key(&self, k: &str) -> Self {
        Path(format!("{}[{k}]", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One field error (`field.Error`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub error_type: ErrorType,
    pub field: Path,
    /// The bad value, already printed the way Go prints it (`"ReadWriteMany"`, JSON for lists).
    pub value: Option<String>,
    pub detail: String,
}

impl FieldError {
    /// `field.NotSupported(path, value, supported)`: the supported values are quoted and sorted.
    pub fn not_supported(field: Path, value: &str, supported: &[&str]) -> Self {
        let mut sorted: Vec<&str> = supported.to_vec();
        sorted.sort_unstable();
        let mut detail = String::new();
        if !sorted.is_empty() {
            detail.push_str("supported values: ");
            for (i, s) in sorted.iter().enumerate() {
                if i > 0 {
                    detail.push_str(", ");
                }
                detail.push_str(&go_quote(s));
            }
        }
        FieldError {
            error_type: ErrorType::NotSupported,
            field,
            value: Some(go_quote(value)),
            detail,
        }
    }

    /// `field.Required(path, detail)`: the value is never printed.
    pub fn required(field: Path, detail: &str) -> Self {
        FieldError {
            error_type: ErrorType::Required,
            field,
            value: None,
            detail: detail.to_owned(),
        }
    }

    /// `field.Forbidden(path, detail)`: the value is never printed.
    pub fn forbidden(field: Path, detail: &str) -> Self {
        FieldError {
            error_type: ErrorType::Forbidden,
            field,
            value: None,
            detail: detail.to_owned(),
        }
    }

    /// `field.Invalid(path, value, detail)` for a string value.
    pub fn invalid(field: Path, value: &str, detail: &str) -> Self {
        FieldError {
            error_type: ErrorType::Invalid,
            field,
            value: Some(go_quote(value)),
            detail: detail.to_owned(),
        }
    }

    /// `field.Duplicate(path, value)` for a string value.
    pub fn duplicate(field: Path, value: &str) -> Self {
        FieldError {
            error_type: ErrorType::Duplicate,
            field,
            value: Some(go_quote(value)),
            detail: String::new(),
        }
    }

    /// The error without its field prefix (`field.Error.ErrorBody()`), as in `causes[].message`.
    pub fn body(&self) -> String {
        let mut s = String::from(self.error_type.text());
        if let Some(v) = &self.value {
            // Required and Forbidden never print the value.
            if !matches!(self.error_type, ErrorType::Required | ErrorType::Forbidden) {
                let _ = write!(s, ": {v}");
            }
        }
        if !self.detail.is_empty() {
            let _ = write!(s, ": {}", self.detail);
        }
        s
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

/// `field.ErrorList.ToAggregate().Error()`: one error bare, several as `[e1, e2]`, duplicate
/// texts dropped (first occurrence kept). At most [`MAX_CAUSES`] errors and about
/// [`MAX_MESSAGE_CHARS`] characters are written; the rest are counted ("and 37 more errors").
pub fn aggregate(errors: &[FieldError]) -> String {
    let mut seen: HashSet<String> = HashSet::with_capacity(errors.len().min(4 * MAX_CAUSES));
    let mut shown: Vec<String> = Vec::new();
    let mut chars = 0;
    let mut more = 0usize;
    for e in errors {
        let text = e.to_string();
        if seen.contains(&text) {
            continue;
        }
        if more == 0 && shown.len() < MAX_CAUSES && chars + text.len() <= MAX_MESSAGE_CHARS {
            chars += text.len() + 2;
            shown.push(text.clone());
        } else {
            more += 1;
        }
        seen.insert(text);
    }
    if more > 0 {
        shown.push(format!(
            "and {more} more error{}",
            if more == 1 { "" } else { "s" }
        ));
    }
    match shown.len() {
        1 => shown.pop().unwrap_or_default(),
        _ => format!("[{}]", shown.join(", ")),
    }
}

/// An object-level validation failure (`apierrors.NewInvalid`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// API group, empty for the core group.
    pub group: String,
    pub kind: String,
    pub name: String,
    pub errors: Vec<FieldError>,
}

impl Invalid {
    /// `Kind` for the core group, `Kind.group` otherwise, as `schema.GroupKind.String()` prints.
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// `<Kind> "<name>" is invalid: <errors>`.
    pub fn message(&self) -> String {
        format!(
            "{} {} is invalid: {}",
            self.qualified_kind(),
            go_quote(&self.name),
            aggregate(&self.errors)
        )
    }
}

/// Go's `%q` for a string: double quotes, backslash escapes for quotes, backslashes and
/// control characters, printable Unicode kept as is.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\u{0b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL_MODES: [&str; 4] = [
        "ReadWriteOnce",
        "ReadOnlyMany",
        "ReadWriteMany",
        "ReadWriteOncePod",
    ];

    #[test]
    fn prints_not_supported_with_sorted_quoted_values() {
        let e =
            FieldError::not_supported(Path::new("spec").child("accessModes"), "Foo", &ALL_MODES);
        assert_eq!(
            e.to_string(),
            r#"spec.accessModes: Unsupported value: "Foo": supported values: "ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod""#
        );
        assert_eq!(e.error_type.cause_reason(), "FieldValueNotSupported");
    }

    #[test]
    fn prints_the_api_messages_for_pvs_and_pvcs() {
        let spec = Path::new("spec");
        let cases = [
            (
                FieldError::required(
                    spec.child("nodeAffinity"),
                    "Local volume requires node affinity",
                ),
                "spec.nodeAffinity: Required value: Local volume requires node affinity",
            ),
            (
                FieldError::required(
                    spec.child("nodeAffinity").child("required"),
                    "must specify required node constraints",
                ),
                "spec.nodeAffinity.required: Required value: must specify required node constraints",
            ),
            (
                FieldError::required(
                    spec.child("nodeAffinity")
                        .child("required")
                        .child("nodeSelectorTerms"),
                    "must have at least one node selector term",
                ),
                "spec.nodeAffinity.required.nodeSelectorTerms: Required value: must have at least one node selector term",
            ),
            (
                FieldError::required(spec.child("local").child("path"), ""),
                "spec.local.path: Required value",
            ),
            (
                FieldError::invalid(
                    spec.child("local").child("path"),
                    "/mnt/../x",
                    "must not contain '..'",
                ),
                r#"spec.local.path: Invalid value: "/mnt/../x": must not contain '..'"#,
            ),
            (
                FieldError::required(
                    spec.child("accessModes"),
                    "at least 1 access mode is required",
                ),
                "spec.accessModes: Required value: at least 1 access mode is required",
            ),
            (
                FieldError::required(spec.child("accessModes"), ""),
                "spec.accessModes: Required value",
            ),
            (
                FieldError::forbidden(
                    spec.child("accessModes"),
                    "may not use ReadWriteOncePod with other access modes",
                ),
                "spec.accessModes: Forbidden: may not use ReadWriteOncePod with other access modes",
            ),
            (
                FieldError::required(spec.child("resources").key("storage"), ""),
                "spec.resources[storage]: Required value",
            ),
            (
                FieldError::duplicate(spec.child("accessModes").index(1), "ReadWriteOnce"),
                r#"spec.accessModes[1]: Duplicate value: "ReadWriteOnce""#,
            ),
        ];
        for (err, want) in cases {
            assert_eq!(err.to_string(), want);
        }
    }

    #[test]
    fn body_drops_the_field_prefix() {
        let e = FieldError::not_supported(
            Path::new("spec.accessModes"),
            "ReadWriteMany",
            &["ReadWriteOnce"],
        );
        assert_eq!(
            e.body(),
            r#"Unsupported value: "ReadWriteMany": supported values: "ReadWriteOnce""#
        );
    }

    #[test]
    fn aggregates_like_the_api_and_drops_duplicate_texts() {
        let a = FieldError::required(Path::new("spec.accessModes"), "");
        let b = FieldError::required(Path::new("spec.resources").key("storage"), "");
        assert_eq!(
            aggregate(std::slice::from_ref(&a)),
            "spec.accessModes: Required value"
        );
        assert_eq!(
            aggregate(&[a.clone(), b.clone(), a.clone()]),
            "[spec.accessModes: Required value, spec.resources[storage]: Required value]"
        );
    }

    #[test]
    fn invalid_message_qualifies_non_core_kinds() {
        let err = FieldError::not_supported(
            Path::new("spec.volumeClaimTemplates")
                .index(0)
                .child("spec")
                .child("accessModes"),
            "ReadWriteMany",
            &["ReadWriteOnce"],
        );
        let core = Invalid {
            group: String::new(),
            kind: "PersistentVolumeClaim".into(),
            name: "data".into(),
            errors: vec![err.clone()],
        };
        assert!(
            core.message()
                .starts_with("PersistentVolumeClaim \"data\" is invalid: spec.")
        );
        let apps = Invalid {
            group: "apps".into(),
            kind: "StatefulSet".into(),
            name: "web".into(),
            errors: vec![err],
        };
        assert_eq!(
            apps.message(),
            r#"StatefulSet.apps "web" is invalid: spec.volumeClaimTemplates[0].spec.accessModes: Unsupported value: "ReadWriteMany": supported values: "ReadWriteOnce""#
        );
    }

    #[test]
    fn quotes_like_go() {
        assert_eq!(go_quote("a\"b\\c\nd\u{1}"), r#""a\"b\\c\nd\x01""#);
        assert_eq!(go_quote("héllo"), "\"héllo\"");
    }

    /// Ten thousand field errors make a message of at most MAX_CAUSES errors, the rest counted,
    /// duplicates dropped.
    #[test]
    fn aggregate_is_bounded_and_counts_the_rest() {
        let errors: Vec<FieldError> = (0..10_000)
            .flat_map(|i| {
                let e = FieldError::required(Path::new(&format!("spec.f{i}")), "");
                [e.clone(), e]
            })
            .collect();
        let text = aggregate(&errors);
        assert!(text.len() <= MAX_MESSAGE_CHARS + 64, "{}", text.len());
        let shown = text.matches("Required value").count();
        assert!(shown <= MAX_CAUSES);
        assert!(
            text.ends_with(&format!(", and {} more errors]", 10_000 - shown)),
            "{}",
            &text[text.len() - 60..]
        );
    }
}
