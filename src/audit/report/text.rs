//! The `text` format: a table for people, one row per finding (object, rule, outcome, message),
//! the object's changed fields and the warnings no row already says under each object, each
//! once, files as group headings, and the summary line. Colour only when [`Style::color`] says so (a terminal, no `NO_COLOR`).

use std::fmt::Write as _;

use super::{Outcome, Report, changes, echoes};

/// ANSI styling, on only when writing to a terminal.
#[derive(Clone, Copy, Debug)]
pub struct Style {
    pub color: bool,
}

impl Style {
    fn paint(self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    fn outcome(self, o: Outcome, padded: &str) -> String {
        let code = match o {
            Outcome::Denied => "1;31",
            Outcome::Audited | Outcome::Warned => "33",
            Outcome::Mutated => "36",
            Outcome::Allowed => "32",
        };
        self.paint(code, padded)
    }
}

fn pad(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n >= width {
        s.to_owned()
    } else {
        format!("{s}{}", " ".repeat(width - n))
    }
}

/// The table: one row per finding (object, rule, outcome, message), the changed fields and the
/// warnings under each object, files as group headings, and the summary line.
pub fn to_text(report: &Report, style: Style) -> String {
    let mut out = String::new();
    let object_w = report
        .objects
        .iter()
        .map(|o| o.object.label().chars().count())
        .max()
        .unwrap_or(0)
        .clamp("OBJECT".len(), 64);
    let rule_w = report
        .objects
        .iter()
        .flat_map(|o| o.findings.iter().map(|f| f.rule.len().max(1)))
        .max()
        .unwrap_or(0)
        .max("RULE".len());
    let outcome_w = "OUTCOME".len() + 1;
    if !report.objects.is_empty() {
        let header = format!(
            "{}  {}  {}  MESSAGE",
            pad("OBJECT", object_w),
            pad("RULE", rule_w),
            pad("OUTCOME", outcome_w - 1)
        );
        let _ = writeln!(out, "{}", style.paint("1", &header));
    }
    let mut last_file: Option<&str> = None;
    for o in &report.objects {
        if let Some(file) = o.source.file.as_deref()
            && last_file != Some(file)
        {
            let heading = if file == crate::audit::input::STDIN {
                "(stdin)"
            } else {
                file
            };
            let _ = writeln!(out, "{}", style.paint("2", &format!("{heading}:")));
            last_file = Some(file);
        }
        let label = o.object.label();
        for (i, f) in o.findings.iter().enumerate() {
            let object = if i == 0 { label.as_str() } else { "" };
            let rule = if f.rule.is_empty() {
                "-"
            } else {
                f.rule.as_str()
            };
            let _ = writeln!(
                out,
                "{}  {}  {}  {}",
                pad(object, object_w),
                pad(rule, rule_w),
                style.outcome(f.outcome, &pad(f.outcome.as_str(), outcome_w - 1)),
                f.message
            );
        }
        // The patch is the object's (one mutating response), printed once whichever rules made it.
        for (path, value) in changes(&o.patch) {
            let _ = writeln!(
                out,
                "    {}",
                style.paint("36", &format!("+ {path}: {value}"))
            );
        }
        // A warning that repeats a finding's row (a warned finding, or an audited one's
        // `[audit] ...` warning) is not printed twice.
        for w in o
            .warnings
            .iter()
            .filter(|w| !o.findings.iter().any(|f| echoes(w, &f.message)))
        {
            let _ = writeln!(out, "    {}", style.paint("33", &format!("warning: {w}")));
        }
    }
    let s = report.summary();
    let n = |count: usize, one: &str, many: &str| {
        format!("{count} {}", if count == 1 { one } else { many })
    };
    // Objects are counted once each (their counts add up); rule findings are the rows.
    let mut line = format!(
        "{}: {} denied, {} mutated",
        n(s.objects, "object", "objects"),
        s.denied,
        s.mutated
    );
    if s.audited > 0 {
        let _ = write!(line, ", {} audited", s.audited);
    }
    let _ = write!(
        line,
        ", {} warned, {} allowed; {}, {}",
        s.warned,
        s.allowed,
        n(s.findings, "rule finding", "rule findings"),
        n(s.warnings, "warning", "warnings")
    );
    if s.errors > 0 {
        let _ = write!(
            line,
            "; {} could not be read",
            n(s.errors, "input", "inputs")
        );
    }
    if s.ignored > 0 {
        let _ = write!(
            line,
            "; {} of other kinds ignored",
            n(s.ignored, "document", "documents")
        );
    }
    if !report.objects.is_empty() {
        out.push('\n');
    }
    let _ = writeln!(out, "{}", style.paint("1", &line));
    out
}
