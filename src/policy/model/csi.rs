//! CSI drivers as Kubernetes finds them: which driver serves a provisioner name (CSI migration),
//! which drivers the cluster has (CSINode registrations, CSIDriver objects), and which
//! provisioner names are CSI drivers at all.
//!
//! A claim of a dynamic class is provisioned by the PV controller's "external provisioner"
//! path whenever the class names no in-tree plugin (`findProvisionablePlugin` in
//! `pkg/controller/volume/persistentvolume/pv_controller.go`): the controller only annotates the
//! claim and records the `ExternalProvisioning` event ([`external_provisioning_event`]), then
//! waits for someone to make the volume. Nothing fails: if nobody runs the provisioner the claim
//! stays Pending forever. A running CSI driver registers on the nodes where its node plugin runs
//! (kubelet's plugin watcher writes it into that node's CSINode `spec.drivers`) and usually
//! ships a CSIDriver object; a provisioner that is no CSI driver registers nowhere, so its
//! absence cannot be seen.
//!
//! Owns: the migration table, the built-in lists, [`CsiDrivers`]. Knows no rule.

use std::collections::HashSet;
use std::sync::Arc;

use super::field::go_quote;

/// `kubernetes.io/no-provisioner` (as `catalog::NO_PROVISIONER`; the catalog imports this module).
const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";

/// In-tree provisioner names the PV controller hands to a CSI driver: `IsMigrationEnabledForPlugin`
/// (`pkg/volume/csimigration/plugin_manager.go`, every entry GA and always on) and
/// `GetCSINameFromInTreeName` (`staging/src/k8s.io/csi-translation-lib/translate.go`), with the
/// names of `staging/src/k8s.io/csi-translation-lib/plugins/{aws_ebs,gce_pd,azure_disk,
/// azure_file,openstack_cinder,vsphere_volume,portworx}.go`. `provisionClaimOperationExternal`
/// then waits for the CSI name, and since the in-tree plugins were removed nothing else serves.
pub const MIGRATED: &[(&str, &str)] = &[
    ("kubernetes.io/aws-ebs", "ebs.csi.aws.com"),
    ("kubernetes.io/gce-pd", "pd.csi.storage.gke.io"),
    ("kubernetes.io/azure-disk", "disk.csi.azure.com"),
    ("kubernetes.io/azure-file", "file.csi.azure.com"),
    ("kubernetes.io/cinder", "cinder.csi.openstack.org"),
    ("kubernetes.io/vsphere-volume", "csi.vsphere.vmware.com"),
    ("kubernetes.io/portworx-volume", "pxd.portworx.com"),
];

/// Common external provisioners that are no CSI driver and so register nowhere: whether they
/// run cannot be seen, and they are never judged.
/// - `rancher.io/local-path`: k3s and Rancher's local-path-provisioner
///   (`rancher/local-path-provisioner`, `deploy/local-path-storage.yaml`);
/// - `k8s-sigs.io/nfs-subdir-external-provisioner` and its Helm chart's default
///   `cluster.local/nfs-subdir-external-provisioner`
///   (`kubernetes-sigs/nfs-subdir-external-provisioner`, `deploy/class.yaml`,
///   `charts/.../values.yaml`);
/// - `microk8s.io/hostpath` (MicroK8s' hostpath-storage add-on);
/// - `k8s.io/minikube-hostpath` (minikube's storage-provisioner add-on);
/// - `docker.io/hostpath` (Docker Desktop's storage-provisioner);
/// - `openebs.io/local` (OpenEBS Local PV hostpath, a plain provisioner).
pub const NOT_CSI: &[&str] = &[
    "rancher.io/local-path",
    "k8s-sigs.io/nfs-subdir-external-provisioner",
    "cluster.local/nfs-subdir-external-provisioner",
    "microk8s.io/hostpath",
    "k8s.io/minikube-hostpath",
    "docker.io/hostpath",
    "openebs.io/local",
];

/// CSI drivers whose names do not say so ([`looks_like_csi`]): TopoLVM, Longhorn, Portworx.
const KNOWN_CSI: &[&str] = &["topolvm.io", "driver.longhorn.io", "pxd.portworx.com"];

/// The driver that serves `provisioner`: its CSI name when CSI migration hands it over, else
/// the name itself.
pub fn driver_of(provisioner: &str) -> &str {
    MIGRATED
        .iter()
        .find(|(in_tree, _)| *in_tree == provisioner)
        .map_or(provisioner, |(_, csi)| csi)
}

/// Whether the in-tree name is handed to a CSI driver.
pub fn is_migrated(provisioner: &str) -> bool {
    MIGRATED.iter().any(|(in_tree, _)| *in_tree == provisioner)
}

/// Whether a driver name says it is a CSI driver: one of its dot-separated labels is `csi`
/// (`ebs.csi.aws.com`, `csi.vsphere.vmware.com`, `rook-ceph.rbd.csi.ceph.com`), as the CSI
/// drivers' own naming convention has it; or a known CSI driver of another name. A name with a
/// `/` is never a CSI driver name (`csi.Driver` names are DNS subdomains).
pub fn looks_like_csi(driver: &str) -> bool {
    !driver.contains('/')
        && (KNOWN_CSI.contains(&driver) || driver.split('.').any(|label| label == "csi"))
}

/// The `ExternalProvisioning` event the PV controller records on a claim it leaves to an
/// external provisioner, word for word (`provisionClaimOperationExternal` in
/// `pkg/controller/volume/persistentvolume/pv_controller.go`, v1.37.2: the name in single
/// quotes, `'%s'`).
pub fn external_provisioning_event(driver: &str) -> String {
    format!(
        "Waiting for a volume to be created either by the external provisioner '{driver}' or \
         manually by the system administrator. If volume creation is delayed, please verify \
         that the provisioner is running and correctly registered."
    )
}

/// The CSI drivers a cluster has, as its watches saw them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CsiDrivers {
    /// Names of the CSIDriver objects.
    pub objects: Arc<HashSet<Arc<str>>>,
    /// Driver names registered on at least one node (CSINode `spec.drivers[].name`).
    pub registered: Arc<HashSet<Arc<str>>>,
}

impl CsiDrivers {
    /// Whether a node runs the driver or a CSIDriver object names it: two set look-ups.
    pub fn has(&self, driver: &str) -> bool {
        self.registered.contains(driver) || self.objects.contains(driver)
    }
}

/// Which provisioners the check may judge: a name the policy calls no CSI driver never is; a
/// name it calls one always is; otherwise a migrated in-tree name or a name that
/// [`looks_like_csi`]. `kubernetes.io/no-provisioner` provisions nothing and is never judged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Judged {
    pub csi: HashSet<String>,
    pub not_csi: HashSet<String>,
}

impl Judged {
    /// The driver to look for when `provisioner` is judged, `None` when it is not.
    pub fn driver<'a>(&self, provisioner: &'a str) -> Option<&'a str> {
        if provisioner == NO_PROVISIONER
            || provisioner.is_empty()
            || NOT_CSI.contains(&provisioner)
            || self.not_csi.contains(provisioner)
        {
            return None;
        }
        let driver = driver_of(provisioner);
        (self.csi.contains(provisioner)
            || self.csi.contains(driver)
            || is_migrated(provisioner)
            || looks_like_csi(driver))
        .then_some(driver)
    }
}

/// A provisioner whose driver the cluster does not have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Absent<'a> {
    pub provisioner: &'a str,
    /// The CSI driver that would serve it (the migrated name for an in-tree one).
    pub driver: &'a str,
}

impl Absent<'_> {
    /// Why nobody provisions: which driver, and how the cluster shows it is not there.
    pub fn why(&self) -> String {
        let migrated = if self.driver == self.provisioner {
            String::new()
        } else {
            format!(" (migrated from {})", self.provisioner)
        };
        format!(
            "needs CSI driver {}{migrated}, which no node registers (CSINode) and no CSIDriver names",
            go_quote(self.driver)
        )
    }
}

/// The driver `provisioner` needs when it is judged and the cluster has neither a node running
/// it nor a CSIDriver object naming it; `None` otherwise, and when CSI drivers are not known.
pub fn absent<'a>(
    drivers: Option<&CsiDrivers>,
    judged: &Judged,
    provisioner: &'a str,
) -> Option<Absent<'a>> {
    let drivers = drivers?;
    let driver = judged.driver(provisioner)?;
    (!drivers.has(driver)).then_some(Absent {
        provisioner,
        driver,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_tree_names_migrate_to_their_csi_driver() {
        assert_eq!(driver_of("kubernetes.io/aws-ebs"), "ebs.csi.aws.com");
        assert_eq!(driver_of("kubernetes.io/gce-pd"), "pd.csi.storage.gke.io");
        assert_eq!(driver_of("kubernetes.io/azure-disk"), "disk.csi.azure.com");
        assert_eq!(driver_of("kubernetes.io/azure-file"), "file.csi.azure.com");
        assert_eq!(
            driver_of("kubernetes.io/cinder"),
            "cinder.csi.openstack.org"
        );
        assert_eq!(
            driver_of("kubernetes.io/vsphere-volume"),
            "csi.vsphere.vmware.com"
        );
        assert_eq!(driver_of("ebs.csi.aws.com"), "ebs.csi.aws.com");
        assert_eq!(driver_of("kubernetes.io/rbd"), "kubernetes.io/rbd");
    }

    #[test]
    fn judges_csi_names_and_never_plain_provisioners() {
        let j = Judged::default();
        assert_eq!(j.driver("kubernetes.io/aws-ebs"), Some("ebs.csi.aws.com"));
        assert_eq!(j.driver("ebs.csi.aws.com"), Some("ebs.csi.aws.com"));
        assert_eq!(
            j.driver("rook-ceph.rbd.csi.ceph.com"),
            Some("rook-ceph.rbd.csi.ceph.com")
        );
        assert_eq!(j.driver("topolvm.io"), Some("topolvm.io"));
        for silent in [
            "rancher.io/local-path",
            "k8s-sigs.io/nfs-subdir-external-provisioner",
            "microk8s.io/hostpath",
            "kubernetes.io/no-provisioner",
            "kubernetes.io/rbd",
            "example.com/nas",
            "csiexample.com",
            "",
        ] {
            assert_eq!(j.driver(silent), None, "{silent}");
        }
        let j = Judged {
            csi: ["example.com".to_owned()].into(),
            not_csi: [
                "ebs.csi.aws.com".to_owned(),
                "kubernetes.io/gce-pd".to_owned(),
            ]
            .into(),
        };
        assert_eq!(j.driver("example.com"), Some("example.com"));
        assert_eq!(j.driver("ebs.csi.aws.com"), None);
        assert_eq!(j.driver("kubernetes.io/gce-pd"), None);
    }

    #[test]
    fn a_driver_is_there_when_a_node_runs_it_or_an_object_names_it() {
        let set = |n: &[&str]| Arc::new(n.iter().map(|s| Arc::from(*s)).collect());
        let d = CsiDrivers {
            objects: set(&["efs.csi.aws.com"]),
            registered: set(&["ebs.csi.aws.com"]),
        };
        assert!(d.has("ebs.csi.aws.com") && d.has("efs.csi.aws.com"));
        assert!(!d.has("pd.csi.storage.gke.io"));
    }

    #[test]
    fn the_event_is_word_for_word() {
        assert_eq!(
            external_provisioning_event("ebs.csi.aws.com"),
            "Waiting for a volume to be created either by the external provisioner \
             'ebs.csi.aws.com' or manually by the system administrator. If volume creation is \
             delayed, please verify that the provisioner is running and correctly registered."
        );
    }
}
