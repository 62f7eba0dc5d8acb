//! Pods as the claim-protection rules see them: which pods hold which claims, so that deleting a
//! claim still in use can be told before it hangs `Terminating` (`spec/kubernetes.md` section 5,
//! "Claims that are missing or going away").
//!
//! A pod is reduced at ingest to its namespace, name, the claims it mounts (by
//! `persistentVolumeClaim.claimName`, and the `<pod>-<volume>` claims of its generic ephemeral
//! volumes), its node and the two facts of its state the pvc-protection controller reads; a pod
//! that mounts no claim is not kept at all. Namespaces, claim and node names go through an
//! [`Interner`]. Besides pods by name, [`PodMap`] keeps an index from (namespace, claim) to the
//! pods naming it, updated with each write: the work of a DELETE review is bounded by the pods
//! holding that claim, never by the pods of the cluster. The maps are persistent (imbl), as the
//! PV and claim maps: a publish is a pointer copy.
//!
//! Whether pods are known at all is the catalog's business (`None` without a cluster or before
//! the first full list): a rule never guesses from an empty index.

use std::cmp::Ordering;
use std::sync::Arc;

use equivalent::{Comparable, Equivalent};
use imbl::OrdMap;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::field::go_quote;

use super::interner::Interner;

/// One claim a pod mounts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodClaim {
    /// The claim's name (interned: a Deployment's pods all name one claim).
    pub name: Arc<str>,
    /// Made for a generic ephemeral volume (`<pod>-<volume>`), rather than named by
    /// `persistentVolumeClaim.claimName`.
    pub ephemeral: bool,
}

/// One pod, reduced to what the claim-protection rules read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodInfo {
    /// Interned.
    pub namespace: Arc<str>,
    pub name: Arc<str>,
    /// The claims it mounts, in volume order, each once.
    pub claims: Box<[PodClaim]>,
    /// `spec.nodeName` (interned): scheduled. `None`: not yet.
    pub node: Option<Arc<str>>,
    /// Phase `Succeeded` or `Failed`: its containers are done (said in messages: such a pod
    /// still holds its claims until it is deleted).
    pub terminated: bool,
    /// Deleted with a zero grace period (forced, or done with by the kubelet): see
    /// [`PodInfo::holds`].
    pub shut_down: bool,
    /// Its uid, kept only when it has generic ephemeral volumes (their claims are its own only
    /// when it controls them).
    pub uid: Option<Box<str>>,
}

impl PodInfo {
    /// Reduces a pod; `None` when it mounts no claim (nothing to keep).
    pub fn from_pod(pod: &Pod, strings: &mut Interner) -> Option<PodInfo> {
        let spec = pod.spec.as_ref()?;
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let mut claims: Vec<PodClaim> = Vec::new();
        for v in spec.volumes.as_deref().unwrap_or_default() {
            let (claim, ephemeral) = if let Some(c) = &v.persistent_volume_claim {
                (c.claim_name.clone(), false)
            } else if v.ephemeral.is_some() {
                (ephemeral_claim_name(name, &v.name), true)
            } else {
                continue;
            };
            if claim.is_empty()
                || claims
                    .iter()
                    .any(|c| *c.name == *claim && c.ephemeral == ephemeral)
            {
                continue;
            }
            claims.push(PodClaim {
                name: strings.intern(&claim),
                ephemeral,
            });
        }
        if claims.is_empty() {
            return None;
        }
        let any_ephemeral = claims.iter().any(|c| c.ephemeral);
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        Some(PodInfo {
            namespace: strings.intern(pod.metadata.namespace.as_deref().unwrap_or_default()),
            name: Arc::from(name),
            claims: claims.into_boxed_slice(),
            node: spec
                .node_name
                .as_deref()
                .filter(|n| !n.is_empty())
                .map(|n| strings.intern(n)),
            terminated: matches!(phase, Some("Succeeded" | "Failed")),
            shut_down: pod.metadata.deletion_timestamp.is_some()
                && pod.metadata.deletion_grace_period_seconds == Some(0),
            uid: pod
                .metadata
                .uid
                .as_deref()
                .filter(|_| any_ephemeral)
                .map(Box::from),
        })
    }

    /// Whether the pvc-protection controller counts this pod as using the claim `claim`, whose
    /// controlling owner has uid `owner` (`podUsesPVCForDeletion` in
    /// `pkg/controller/volume/pvcprotection/pvc_protection_controller.go`, v1.37): only a
    /// scheduled pod counts (`pod.Spec.NodeName != ""`: the kubelet never starts a pod on a
    /// claim being deleted); a `persistentVolumeClaim` volume naming the claim counts whatever
    /// the pod's phase (a `Succeeded` or `Failed` pod still holds it until deleted); a generic
    /// ephemeral volume counts unless the pod is shut down (`podIsShutDown`: a deletion
    /// timestamp and a zero grace period) and only when the pod controls the claim
    /// (`ephemeral.VolumeIsForPod`).
    pub fn holds(&self, claim: &str, owner: Option<&str>) -> bool {
        self.node.is_some()
            && self.claims.iter().any(|c| {
                *c.name == *claim
                    && (!c.ephemeral
                        || (!self.shut_down && owner.is_some() && owner == self.uid.as_deref()))
            })
    }
}

/// The name of the claim the ephemeral volume controller makes for a pod's generic ephemeral
/// volume: `<pod>-<volume>` (`VolumeClaimName` in `k8s.io/component-helpers/storage/ephemeral`).
pub fn ephemeral_claim_name(pod: &str, volume: &str) -> String {
    format!("{pod}-{volume}")
}

/// The finalizers the protection controllers remove (`volumeutil.PVCProtectionFinalizer`,
/// `volumeutil.PVProtectionFinalizer` in `pkg/volume/util/finalizer.go`), set on every claim and
/// PV at creation by the admission plugin `StorageObjectInUseProtection`.
pub const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
pub const PV_PROTECTION: &str = "kubernetes.io/pv-protection";

/// Pods named in a message; the rest are counted.
const NAMED: usize = 3;

/// Whether a delete leaves the object to a protection controller: it carries `finalizer` and
/// is not already being deleted (a second delete changes nothing; `IsDeletionCandidate` in
/// `pkg/controller/volume/protectionutil/utils.go`).
pub fn protected_now(meta: &ObjectMeta, finalizer: &str) -> bool {
    meta.deletion_timestamp.is_none() && has_finalizer(meta, finalizer)
}

fn has_finalizer(meta: &ObjectMeta, finalizer: &str) -> bool {
    meta.finalizers
        .as_deref()
        .is_some_and(|f| f.iter().any(|x| x == finalizer))
}

/// The uid of the claim's controlling owner (a pod, for a generic ephemeral volume's claim).
pub fn controller_uid(meta: &ObjectMeta) -> Option<&str> {
    meta.owner_references
        .as_deref()?
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| o.uid.as_str())
}

/// `web-0 (node n1), job-1 (completed, node n2), 3 more`: the first pods, the rest counted.
pub fn describe_pods(pods: &[&PodInfo]) -> String {
    let mut out: Vec<String> = pods
        .iter()
        .take(NAMED)
        .map(|p| {
            let node = p.node.as_deref().unwrap_or_default();
            if p.terminated {
                format!("{} (completed, node {node})", p.name)
            } else {
                format!("{} (node {node})", p.name)
            }
        })
        .collect();
    if pods.len() > NAMED {
        out.push(format!("{} more", pods.len() - NAMED));
    }
    out.join(", ")
}

/// What lets a held claim go: deleting completed pods, or the workload that runs the others.
pub fn what_to_do(held: &[&PodInfo]) -> &'static str {
    if held.iter().all(|p| p.terminated) {
        "delete those completed pods"
    } else {
        "delete or scale down their workload first"
    }
}

/// A claim already `Terminating` (deletion timestamp, finalizer still there) that pods hold,
/// which is why it is still there (`audit --cluster`).
pub fn terminating_in_use(pods: &PodMap, pvc: &PersistentVolumeClaim) -> Option<String> {
    let meta = &pvc.metadata;
    if meta.deletion_timestamp.is_none() || !has_finalizer(meta, PVC_PROTECTION) {
        return None;
    }
    let name = meta.name.as_deref().unwrap_or_default();
    let namespace = meta.namespace.as_deref().unwrap_or("default");
    let held = pods.holding(namespace, name, controller_uid(meta), || true);
    if held.is_empty() {
        return None;
    }
    Some(format!(
        "PersistentVolumeClaim {} is Terminating and still used by {} pod(s): {}; \
         the finalizer {PVC_PROTECTION} keeps it until none uses it: {}",
        go_quote(name),
        held.len(),
        describe_pods(&held),
        what_to_do(&held),
    ))
}

/// A pod by namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct PodKey {
    namespace: Arc<str>,
    name: Arc<str>,
}

struct PodAt<'a> {
    namespace: &'a str,
    name: &'a str,
}

impl Equivalent<PodKey> for PodAt<'_> {
    fn equivalent(&self, key: &PodKey) -> bool {
        self.compare(key) == Ordering::Equal
    }
}

impl Comparable<PodKey> for PodAt<'_> {
    fn compare(&self, key: &PodKey) -> Ordering {
        (self.namespace, self.name).cmp(&(&*key.namespace, &*key.name))
    }
}

/// A pod in the by-claim index: the claim it names, then the pod's name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct UseKey {
    namespace: Arc<str>,
    claim: Arc<str>,
    pod: Arc<str>,
}

struct UseAt<'a> {
    namespace: &'a str,
    claim: &'a str,
    pod: &'a str,
}

impl Equivalent<UseKey> for UseAt<'_> {
    fn equivalent(&self, key: &UseKey) -> bool {
        self.compare(key) == Ordering::Equal
    }
}

impl Comparable<UseKey> for UseAt<'_> {
    fn compare(&self, key: &UseKey) -> Ordering {
        (self.namespace, self.claim, self.pod).cmp(&(&*key.namespace, &*key.claim, &*key.pod))
    }
}

/// Pods that mount claims, by namespace and name, with the index by claim (see the module
/// docs). A clone is a few pointer copies; a write to a clone copies one path per map.
#[derive(Clone, Debug, Default)]
pub struct PodMap {
    by_name: OrdMap<PodKey, Arc<PodInfo>>,
    by_claim: OrdMap<UseKey, Arc<PodInfo>>,
}

/// Two maps are equal when they hold the same pods (the index follows from them).
impl PartialEq for PodMap {
    fn eq(&self, other: &Self) -> bool {
        self.by_name == other.by_name
    }
}

impl PodMap {
    pub fn get(&self, namespace: &str, name: &str) -> Option<&PodInfo> {
        self.by_name
            .get(&PodAt { namespace, name })
            .map(Arc::as_ref)
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Every pod, by namespace and name (`audit --cluster`; never on the request path).
    pub fn iter(&self) -> impl Iterator<Item = &PodInfo> {
        self.by_name.values().map(Arc::as_ref)
    }

    /// Stores a pod and indexes it; whether anything changed (an equal pod is not written, so
    /// a map shared with a snapshot is not copied for it).
    pub fn insert(&mut self, pod: PodInfo) -> bool {
        let at = PodAt {
            namespace: &pod.namespace,
            name: &pod.name,
        };
        if self.by_name.get(&at).is_some_and(|old| **old == pod) {
            return false;
        }
        self.remove(&pod.namespace.clone(), &pod.name.clone());
        let pod = Arc::new(pod);
        for c in pod.claims.iter() {
            self.by_claim.insert(
                UseKey {
                    namespace: pod.namespace.clone(),
                    claim: c.name.clone(),
                    pod: pod.name.clone(),
                },
                pod.clone(),
            );
        }
        self.by_name.insert(
            PodKey {
                namespace: pod.namespace.clone(),
                name: pod.name.clone(),
            },
            pod,
        );
        true
    }

    /// Removes a pod and its index entries; whether it was there.
    pub fn remove(&mut self, namespace: &str, name: &str) -> bool {
        let Some(old) = self.by_name.remove(&PodAt { namespace, name }) else {
            return false;
        };
        for c in old.claims.iter() {
            self.by_claim.remove(&UseAt {
                namespace,
                claim: &c.name,
                pod: name,
            });
        }
        true
    }

    /// The pods that hold the claim `claim` of `namespace` ([`PodInfo::holds`]; `owner`: the
    /// uid of the claim's controlling owner), in name order. `more` is asked before each pod
    /// naming the claim is looked at (the review's budget); `false` stops.
    pub fn holding<'a>(
        &'a self,
        namespace: &'a str,
        claim: &'a str,
        owner: Option<&str>,
        mut more: impl FnMut() -> bool,
    ) -> Vec<&'a PodInfo> {
        let mut out = Vec::new();
        for p in self.naming(namespace, claim) {
            if !more() {
                break;
            }
            if p.holds(claim, owner) {
                out.push(p);
            }
        }
        out
    }

    /// The pods of `namespace` that name the claim `claim` in a volume, by pod name, whether
    /// or not they hold it ([`PodInfo::holds`]). A range of the index: the work is the number of
    /// such pods.
    pub fn naming<'a>(
        &'a self,
        namespace: &'a str,
        claim: &'a str,
    ) -> impl Iterator<Item = &'a PodInfo> + 'a {
        let from = UseAt {
            namespace,
            claim,
            pod: "",
        };
        self.by_claim
            .range(from..)
            .take_while(move |(k, _)| *k.namespace == *namespace && *k.claim == *claim)
            .map(|(_, p)| p.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, node: Option<&str>, volumes: serde_json::Value) -> Pod {
        let mut p = json!({"metadata": {"name": name, "namespace": "team-a", "uid": format!("uid-{name}")},
            "spec": {"containers": [{"name": "c", "image": "x"}], "volumes": volumes}});
        if let Some(n) = node {
            p["spec"]["nodeName"] = json!(n);
        }
        serde_json::from_value(p).unwrap()
    }

    fn claim_volume(claim: &str) -> serde_json::Value {
        json!({"name": format!("v-{claim}"), "persistentVolumeClaim": {"claimName": claim}})
    }

    fn ephemeral_volume(name: &str) -> serde_json::Value {
        json!({"name": name, "ephemeral": {"volumeClaimTemplate": {"spec": {
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}}})
    }

    #[test]
    fn pods_without_claims_are_not_kept() {
        let mut s = Interner::default();
        let p = pod("web", Some("n1"), json!([{"name": "tmp", "emptyDir": {}}]));
        assert!(PodInfo::from_pod(&p, &mut s).is_none());
        let p = pod("web", Some("n1"), json!([claim_volume("data")]));
        let info = PodInfo::from_pod(&p, &mut s).unwrap();
        assert_eq!(&*info.claims[0].name, "data");
        assert!(info.uid.is_none(), "no ephemeral volume: no uid kept");
    }

    #[test]
    fn ephemeral_volumes_name_their_claim_after_the_pod() {
        let mut s = Interner::default();
        let p = pod(
            "web-0",
            Some("n1"),
            json!([ephemeral_volume("scratch"), claim_volume("data")]),
        );
        let info = PodInfo::from_pod(&p, &mut s).unwrap();
        let names: Vec<(&str, bool)> = info
            .claims
            .iter()
            .map(|c| (&*c.name, c.ephemeral))
            .collect();
        assert_eq!(names, [("web-0-scratch", true), ("data", false)]);
        assert_eq!(info.uid.as_deref(), Some("uid-web-0"));
        assert!(info.holds("web-0-scratch", Some("uid-web-0")));
        assert!(
            !info.holds("web-0-scratch", Some("uid-other")),
            "a claim of that name the pod does not control is not its own"
        );
        assert!(!info.holds("web-0-scratch", None));
    }

    #[test]
    fn only_scheduled_pods_hold_claims_whatever_their_phase() {
        let mut s = Interner::default();
        let pending = PodInfo::from_pod(&pod("a", None, json!([claim_volume("data")])), &mut s);
        assert!(!pending.unwrap().holds("data", None));
        let mut done = pod("b", Some("n1"), json!([claim_volume("data")]));
        done.status = Some(k8s_openapi::api::core::v1::PodStatus {
            phase: Some("Succeeded".into()),
            ..Default::default()
        });
        let done = PodInfo::from_pod(&done, &mut s).unwrap();
        assert!(done.terminated);
        assert!(done.holds("data", None), "a completed pod still holds it");
        assert!(!done.holds("other", None));
    }

    #[test]
    fn a_shut_down_pod_releases_only_its_ephemeral_claims() {
        let mut s = Interner::default();
        let mut p = pod(
            "job-x",
            Some("n1"),
            json!([ephemeral_volume("scratch"), claim_volume("data")]),
        );
        p.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
        p.metadata.deletion_grace_period_seconds = Some(30);
        let graceful = PodInfo::from_pod(&p, &mut s).unwrap();
        assert!(graceful.holds("job-x-scratch", Some("uid-job-x")));
        p.metadata.deletion_grace_period_seconds = Some(0);
        let forced = PodInfo::from_pod(&p, &mut s).unwrap();
        assert!(!forced.holds("job-x-scratch", Some("uid-job-x")));
        assert!(forced.holds("data", None));
    }

    #[test]
    fn the_claim_index_follows_every_write() {
        let mut s = Interner::default();
        let mut m = PodMap::default();
        let info = |p: &Pod, s: &mut Interner| PodInfo::from_pod(p, s).unwrap();
        assert!(m.insert(info(
            &pod("a", Some("n1"), json!([claim_volume("data")])),
            &mut s
        )));
        assert!(m.insert(info(
            &pod(
                "b",
                Some("n2"),
                json!([claim_volume("data"), claim_volume("logs")])
            ),
            &mut s
        )));
        assert!(m.insert(info(
            &pod("c", Some("n2"), json!([claim_volume("data-2")])),
            &mut s
        )));
        let snapshot = m.clone();
        assert!(
            !m.insert(info(
                &pod("a", Some("n1"), json!([claim_volume("data")])),
                &mut s
            )),
            "unchanged"
        );
        let names = |m: &PodMap, claim: &str| -> Vec<String> {
            m.naming("team-a", claim)
                .map(|p| p.name.to_string())
                .collect()
        };
        assert_eq!(names(&m, "data"), ["a", "b"], "not data-2");
        assert_eq!(names(&m, "logs"), ["b"]);
        assert!(m.naming("team-b", "data").next().is_none());
        // b moves to another claim; a goes.
        assert!(m.insert(info(
            &pod("b", Some("n2"), json!([claim_volume("logs")])),
            &mut s
        )));
        assert!(m.remove("team-a", "a"));
        assert!(!m.remove("team-a", "a"));
        assert!(names(&m, "data").is_empty());
        assert_eq!(names(&m, "logs"), ["b"]);
        assert_eq!(m.len(), 2);
        assert_eq!(
            names(&snapshot, "data"),
            ["a", "b"],
            "the snapshot keeps its state"
        );
        assert!(m.get("team-a", "c").is_some() && m.get("team-a", "a").is_none());
    }
}
