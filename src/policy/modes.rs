//! Enforcement modes and how the mode of a rule is resolved for one request.

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

    /// The `--dry-run` switch: enforce becomes audit, off stays off.
    pub fn capped_at_audit(self) -> Mode {
        match self {
            Mode::Enforce => Mode::Audit,
            m => m,
        }
    }
}

/// The three rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RuleId {
    DefaultStorageClass,
    LocalVolumeNodeAffinity,
    AccessModes,
}

impl RuleId {
    pub const ALL: [RuleId; 3] = [
        RuleId::DefaultStorageClass,
        RuleId::LocalVolumeNodeAffinity,
        RuleId::AccessModes,
    ];

    /// The rule's name as in the policy file and in metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleId::DefaultStorageClass => "defaultStorageClass",
            RuleId::LocalVolumeNodeAffinity => "localVolumeNodeAffinity",
            RuleId::AccessModes => "accessModes",
        }
    }

    /// The audit-annotation key (no `/`, at most 63 characters, as the API server requires).
    pub fn annotation_key(self) -> &'static str {
        match self {
            RuleId::DefaultStorageClass => "default-storage-class",
            RuleId::LocalVolumeNodeAffinity => "local-volume-node-affinity",
            RuleId::AccessModes => "access-modes",
        }
    }
}
