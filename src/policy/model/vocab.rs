//! The storage vocabulary the policy speaks, shared by the policy file, the catalog and the
//! rules: access modes, binding modes, kinds of storage. A leaf module: it imports nothing.

use serde::Deserialize;

/// The legacy annotation that gives a PVC its class.
pub const BETA_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";

/// Access modes a PersistentVolumeClaim may request (`core/v1.PersistentVolumeAccessMode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
pub enum AccessMode {
    ReadWriteOnce,
    ReadOnlyMany,
    ReadWriteMany,
    ReadWriteOncePod,
}

impl AccessMode {
    pub const ALL: [AccessMode; 4] = [
        AccessMode::ReadWriteOnce,
        AccessMode::ReadOnlyMany,
        AccessMode::ReadWriteMany,
        AccessMode::ReadWriteOncePod,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AccessMode::ReadWriteOnce => "ReadWriteOnce",
            AccessMode::ReadOnlyMany => "ReadOnlyMany",
            AccessMode::ReadWriteMany => "ReadWriteMany",
            AccessMode::ReadWriteOncePod => "ReadWriteOncePod",
        }
    }

    pub fn parse(s: &str) -> Option<AccessMode> {
        AccessMode::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

/// `storage.k8s.io/v1.VolumeBindingMode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum VolumeBindingMode {
    Immediate,
    WaitForFirstConsumer,
}

/// What kind of storage a class or volume is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    /// An attachable disk: one node writes at a time.
    Block,
    /// Bound to one node's disk.
    Local,
    /// A network file system: many nodes write.
    Shared,
}

impl StorageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StorageKind::Block => "block",
            StorageKind::Local => "local",
            StorageKind::Shared => "shared",
        }
    }

    /// Whether storage of this kind can hand out a raw block device (`volumeMode: Block`): file
    /// systems cannot (`block volume capability not supported`); disks and local volumes can.
    pub fn serves_raw_block(self) -> bool {
        self != StorageKind::Shared
    }

    pub fn parse(s: &str) -> Option<StorageKind> {
        match s {
            "block" => Some(StorageKind::Block),
            "local" => Some(StorageKind::Local),
            "shared" => Some(StorageKind::Shared),
            _ => None,
        }
    }
}
