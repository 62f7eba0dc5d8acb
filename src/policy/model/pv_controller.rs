//! What the PV controller does with a PersistentVolume made by hand: which reclaim policies it
//! can carry out when the claim goes (`reclaimVolume` in `pv_controller.go`), and whether a
//! `claimRef` can ever bind. The rules `reclaimPolicy` and `claimRef` and the `audit` command's
//! inventory of live volumes judge with these functions.

use k8s_openapi::api::core::v1::PersistentVolume;

/// The annotation a provisioner sets on the volumes it makes.
pub const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// Set on volumes of an in-tree plugin migrated to CSI: the CSI driver deletes them.
pub const MIGRATED_TO: &str = "pv.kubernetes.io/migrated-to";

/// The controller's words when a hostPath volume outside `/tmp/` is deleted (`%s` = the path).
pub fn host_path_refusal(path: &str) -> String {
    format!("host_path deleter only supports /tmp/.+ but received provided {path}")
}
/// No loaded plugin supports the volume's source.
pub const NO_PLUGIN: &str = "no volume plugin matched";
/// A loaded plugin supports the source but cannot delete (nfs).
pub const NO_DELETABLE_PLUGIN: &str = "no deletable volume plugin matched";
/// `Recycle` on a source other than nfs and hostPath.
pub const NO_RECYCLER: &str = "No recycler plugin found for the volume!";

/// Whether the host-path deleter's unanchored regexp `/tmp/.+` matches: `/tmp/` somewhere in
/// the path, followed by at least one character (`.` matches anything but a newline in Go).
pub fn deletable_host_path(path: &str) -> bool {
    path.match_indices("/tmp/").any(|(i, m)| {
        path[i + m.len()..]
            .chars()
            .next()
            .is_some_and(|c| c != '\n')
    })
}

/// A reclaim policy the PV controller will fail on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unhonoured {
    /// `Delete` or `Recycle`.
    pub policy: &'static str,
    /// Why, in the controller's words.
    pub reason: String,
}

/// Whether the PV's reclaim policy will fail when its claim is released, and why. `None` for
/// `Retain` (the API's default), for volumes a provisioner deletes and for sources the in-tree
/// deleter or recycler takes.
pub fn unhonoured(pv: &PersistentVolume) -> Option<Unhonoured> {
    let spec = pv.spec.as_ref()?;
    let policy = match spec.persistent_volume_reclaim_policy.as_deref()? {
        "Delete" => "Delete",
        "Recycle" => "Recycle",
        _ => return None,
    };
    let annotations = pv.metadata.annotations.as_ref();
    let external = annotations
        .and_then(|a| a.get(PROVISIONED_BY))
        .is_some_and(|p| !p.is_empty() && !p.starts_with("kubernetes.io/"));
    if external || annotations.is_some_and(|a| a.contains_key(MIGRATED_TO)) {
        return None;
    }
    let reason = match policy {
        // The driver's external provisioner deletes it (1.31+): see [`csi_deleter`].
        "Delete" if spec.csi.is_some() => return None,
        "Delete" => match (&spec.host_path, &spec.portworx_volume, &spec.nfs) {
            (Some(h), _, _) if deletable_host_path(&h.path) => return None,
            (Some(h), _, _) => host_path_refusal(&h.path),
            (None, Some(_), _) => return None,
            (None, None, Some(_)) => NO_DELETABLE_PLUGIN.to_owned(),
            (None, None, None) => NO_PLUGIN.to_owned(),
        },
        _ if spec.nfs.is_some() || spec.host_path.is_some() => return None,
        _ => NO_RECYCLER.to_owned(),
    };
    Some(Unhonoured { policy, reason })
}

/// The CSI driver that deletes a hand-made `Delete` PV when its claim is released (Kubernetes
/// 1.31+, `HonorPVReclaimPolicy`): `None` for other sources, other policies and volumes a
/// provisioner made or that were migrated (those are their provisioner's business anyway).
pub fn csi_deleter(pv: &PersistentVolume) -> Option<&str> {
    let spec = pv.spec.as_ref()?;
    if spec.persistent_volume_reclaim_policy.as_deref() != Some("Delete") {
        return None;
    }
    let annotations = pv.metadata.annotations.as_ref();
    let provisioned = annotations
        .and_then(|a| a.get(PROVISIONED_BY))
        .is_some_and(|p| !p.is_empty() && !p.starts_with("kubernetes.io/"));
    if provisioned || annotations.is_some_and(|a| a.contains_key(MIGRATED_TO)) {
        return None;
    }
    spec.csi.as_ref().map(|c| c.driver.as_str())
}

/// The name of the claim a PV is reserved for when its `claimRef` names no namespace.
pub fn missing_namespace(pv: &PersistentVolume) -> Option<&str> {
    let r = pv.spec.as_ref()?.claim_ref.as_ref()?;
    if r.namespace.as_deref().is_some_and(|ns| !ns.is_empty()) {
        return None;
    }
    Some(r.name.as_deref().unwrap_or_default())
}
