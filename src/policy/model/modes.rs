//! Enforcement modes.

use serde::Deserialize;

/// What a rule does when it finds something.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Patch or deny.
    Enforce,
    /// Allow without patching; report through warnings, audit annotations, metrics and logs.
    Audit,
    /// Do nothing.
    Off,
}

/// The mode of a rule that is called: `off` rules never are, so a check cannot see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Acting {
    /// Patch or deny.
    Enforce,
    /// Allow without patching; report through warnings, audit annotations, metrics and logs.
    Audit,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Audit => "audit",
            Mode::Off => "off",
        }
    }

    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "enforce" => Some(Mode::Enforce),
            "audit" => Some(Mode::Audit),
            "off" => Some(Mode::Off),
            _ => None,
        }
    }

    /// The mode a rule acts in, or `None` for `off` (the rule is not called).
    pub fn acting(self) -> Option<Acting> {
        match self {
            Mode::Enforce => Some(Acting::Enforce),
            Mode::Audit => Some(Acting::Audit),
            Mode::Off => None,
        }
    }

    /// The `--dry-run` switch: enforce becomes audit, off stays off.
    pub fn capped_at_audit(self) -> Mode {
        match self {
            Mode::Enforce => Mode::Audit,
            m => m,
        }
    }
}
