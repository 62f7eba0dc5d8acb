//! `audit`: what the webhook would do to a set of objects (manifests on disk or a live cluster),
//! decided by the webhook's own decision path.
//!
//! Every audited object becomes a synthetic `admission.k8s.io/v1` CREATE review that goes through
//! [`crate::admission::review`] exactly as kube-apiserver would send it: `/mutate`, the returned
//! JSON Patch applied, the API server's own check for local volumes, then `/validate` on the
//! patched object. Findings are read back from those responses, so the audit can never disagree
//! with the webhook. This module owns reading inputs ([`input`]), the inventory of objects and
//! catalog sources ([`Inventory`]), the reviews ([`review`]), the checks that look across objects
//! ([`checks`]), the report formats ([`report`]) and the one-shot cluster listing ([`cluster`]).
//! It reimplements no rule: rules live in [`crate::policy`] only.

pub mod checks;
pub mod cluster;
pub mod input;
pub mod report;
pub mod review;

use k8s_openapi::api::core::v1::{Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::{CSIDriver, CSINode, StorageClass};
use serde_json::Value;

use crate::policy::interner::Interner;
use crate::policy::pods::{PodInfo, PodMap};
use crate::policy::volumes::{Source as VolumeSource, VolumeIndex};
use crate::policy::{ClassesKnown, LiveClass, LiveState, NamespaceInfo, Policy};

pub use report::{AuditFinding, ObjectRef, ObjectReport, Outcome, Report, Stage, Summary};

/// The user the synthetic reviews come from (exempt it in the policy and nothing is reported).
pub const AUDIT_USERNAME: &str = "storage-policy-webhook-audit";

/// Where a document came from. Cluster objects have no file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Location {
    /// The path as given on the command line (or found under a folder), `-` for stdin.
    pub file: Option<String>,
    /// 1-based position of the document in its file.
    pub document: Option<usize>,
    /// 0-based index in the `items` of a `List` document.
    pub item: Option<usize>,
    /// 1-based line where the document starts (YAML) or where parsing failed.
    pub line: Option<usize>,
}

impl Location {
    pub fn file(file: impl Into<String>) -> Location {
        Location {
            file: Some(file.into()),
            ..Location::default()
        }
    }

    /// `examples/broken.yaml: document 2 (line 14)`: where an input error is.
    pub fn describe(&self) -> String {
        let mut s = self.file.clone().unwrap_or_else(|| "cluster".to_owned());
        if let Some(d) = self.document {
            s.push_str(&format!(": document {d}"));
        }
        if let Some(i) = self.item {
            s.push_str(&format!(" items[{i}]"));
        }
        if let Some(l) = self.line {
            s.push_str(&format!(" (line {l})"));
        }
        s
    }
}

/// One object read from an input.
#[derive(Clone, Debug)]
pub struct Document {
    pub source: Location,
    pub value: Value,
}

/// An input that could not be read or parsed, or an object that could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputError {
    pub source: Location,
    pub message: String,
}

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.source.describe(), self.message)
    }
}

/// A StorageClass found among the inputs, kept for the checks that report on classes.
#[derive(Clone, Debug)]
pub struct ClassSource {
    pub source: Location,
    pub class: LiveClass,
}

/// Everything the audit works on: the objects to review and what joins the catalog.
#[derive(Debug, Default)]
pub struct Inventory {
    /// StorageClasses, Namespaces and Nodes found among the inputs, as the webhook's cluster
    /// watches would see them.
    pub live: LiveState,
    pub classes: Vec<ClassSource>,
    /// Objects the webhook has rules for, in input order.
    pub objects: Vec<Document>,
    /// Documents of other kinds, and documents that are not Kubernetes objects.
    pub ignored: usize,
    pub errors: Vec<InputError>,
    /// PersistentVolumes known but not audited (`--cluster --namespace`: those bound elsewhere),
    /// which the binding rules still count.
    pub other_volumes: Vec<PersistentVolume>,
}

impl Inventory {
    /// `audit --default-class NAME`: the cluster's annotated default, which the DefaultStorageClass
    /// plugin sets first in the admission chain. A class of that name among the files becomes
    /// the only default; otherwise a class of unknown provisioner joins (nothing is judged of
    /// its kind).
    pub fn set_default_class(&mut self, name: &str) {
        for c in &mut self.live.classes {
            c.is_default = c.name == name;
        }
        if !self.live.classes.iter().any(|c| c.name == name) {
            self.live.classes.push(LiveClass {
                name: name.to_owned(),
                is_default: true,
                ..LiveClass::default()
            });
        }
    }

    /// `audit -n NS` on files, as `--cluster -n NS` lists: the objects of that namespace (a
    /// manifest without one is in `default`, as the API server puts it) and the
    /// PersistentVolumes whose claimRef names it. The other PersistentVolumes are not audited
    /// but are still what the namespace's claims could bind to.
    pub fn keep_namespace(&mut self, namespace: &str) {
        let objects = std::mem::take(&mut self.objects);
        for doc in objects {
            let str_at = |p: &str| doc.value.pointer(p).and_then(Value::as_str);
            let kind = review::audited_kind(
                str_at("/apiVersion").unwrap_or_default(),
                str_at("/kind").unwrap_or_default(),
            );
            let keep = match kind {
                Some(k) if k.namespaced => {
                    str_at("/metadata/namespace")
                        .filter(|n| !n.is_empty())
                        .unwrap_or("default")
                        == namespace
                }
                _ => str_at("/spec/claimRef/namespace") == Some(namespace),
            };
            if keep {
                self.objects.push(doc);
            } else if kind.is_some_and(|k| !k.namespaced)
                && let Ok(pv) = serde_json::from_value::<PersistentVolume>(doc.value)
            {
                self.other_volumes.push(pv);
            }
        }
    }

    /// Sorts one document: catalog source, object to review, or ignored.
    pub fn add(&mut self, doc: Document) {
        let api_version = doc
            .value
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let kind = doc
            .value
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match (api_version, kind) {
            ("storage.k8s.io/v1", "StorageClass") => {
                match serde_json::from_value::<StorageClass>(doc.value) {
                    Ok(sc) => {
                        let class = LiveClass::from_storage_class(&sc);
                        self.live.classes.retain(|c| c.name != class.name);
                        self.classes.retain(|c| c.class.name != class.name);
                        self.live.classes.push(class.clone());
                        // Files that hold StorageClasses are taken to hold all of them (a
                        // cluster listing says `Cluster` instead); files without any say nothing.
                        if self.live.classes_known == ClassesKnown::Partly {
                            self.live.classes_known = ClassesKnown::Files;
                        }
                        self.classes.push(ClassSource {
                            source: doc.source,
                            class,
                        });
                    }
                    Err(e) => self.broken(doc.source, "StorageClass", &e),
                }
            }
            ("v1", "Namespace") => match serde_json::from_value::<Namespace>(doc.value) {
                Ok(ns) => {
                    let name = ns.metadata.name.clone().unwrap_or_default();
                    self.live
                        .namespaces
                        .insert(name, NamespaceInfo::from_namespace(&ns));
                }
                Err(e) => self.broken(doc.source, "Namespace", &e),
            },
            ("storage.k8s.io/v1", "CSIDriver") => {
                match serde_json::from_value::<CSIDriver>(doc.value) {
                    Ok(d) => {
                        let name = d.metadata.name.unwrap_or_default();
                        self.csi_known();
                        if let Some(set) = &mut self.live.csi_drivers {
                            std::sync::Arc::make_mut(set).insert(name.into());
                        }
                    }
                    Err(e) => self.broken(doc.source, "CSIDriver", &e),
                }
            }
            ("storage.k8s.io/v1", "CSINode") => {
                match serde_json::from_value::<CSINode>(doc.value) {
                    Ok(n) => {
                        self.csi_known();
                        if let Some(set) = &mut self.live.csi_registered {
                            let set = std::sync::Arc::make_mut(set);
                            set.extend(n.spec.drivers.into_iter().map(|d| d.name.into()));
                        }
                    }
                    Err(e) => self.broken(doc.source, "CSINode", &e),
                }
            }
            ("v1", "Node") => match serde_json::from_value::<Node>(doc.value) {
                Ok(node) => {
                    let name = node.metadata.name.clone().unwrap_or_default();
                    let labels = node.metadata.labels.clone().unwrap_or_default();
                    let nodes = std::sync::Arc::make_mut(
                        self.live.nodes.get_or_insert_with(Default::default),
                    );
                    nodes.retain(|(n, _)| *n != name);
                    nodes.push((name, labels));
                }
                Err(e) => self.broken(doc.source, "Node", &e),
            },
            (v, k) if review::audited_kind(v, k).is_some() => self.objects.push(doc),
            _ => self.ignored += 1,
        }
    }

    /// Inputs that carry CSIDrivers or CSINodes are taken to carry all of them (a cluster
    /// listing always does): the provisioner check then judges against them. Inputs without
    /// any say nothing of CSI drivers, and the check is silent.
    pub fn csi_known(&mut self) {
        self.live.csi_drivers.get_or_insert_with(Default::default);
        self.live
            .csi_registered
            .get_or_insert_with(Default::default);
    }

    fn broken(&mut self, source: Location, kind: &str, e: &serde_json::Error) {
        self.errors.push(InputError {
            source,
            message: format!("malformed {kind}: {e}"),
        });
    }
}

/// The PersistentVolumes and claims among the objects, for the binding rules: audit judges
/// against what it was given (files say so in their findings; a cluster listing is the cluster).
fn volume_index(inventory: &Inventory) -> VolumeIndex {
    let of = |kind: &'static str| {
        inventory
            .objects
            .iter()
            .filter(move |d| d.value.get("kind").and_then(Value::as_str) == Some(kind))
    };
    let pvs: Vec<PersistentVolume> = of("PersistentVolume")
        .filter_map(|d| serde_json::from_value(d.value.clone()).ok())
        .chain(inventory.other_volumes.iter().cloned())
        .collect();
    let claims: Vec<(String, PersistentVolumeClaim)> = of("PersistentVolumeClaim")
        .filter_map(|d| {
            let c: PersistentVolumeClaim = serde_json::from_value(d.value.clone()).ok()?;
            let ns = c
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".to_owned());
            Some((ns, c))
        })
        .collect();
    let from_files = inventory.objects.iter().any(|d| d.source.file.is_some());
    VolumeIndex::from_objects(
        &pvs,
        claims.iter().map(|(ns, c)| (ns.as_str(), c)),
        if from_files {
            VolumeSource::Files
        } else {
            VolumeSource::Cluster
        },
    )
}

/// The pods among the objects, reduced as the webhook's pod cache reduces them: which claims
/// each holds (`deleteInUse`).
fn pod_index(inventory: &Inventory) -> PodMap {
    let mut strings = Interner::default();
    let mut map = PodMap::default();
    for d in &inventory.objects {
        if d.value.get("kind").and_then(Value::as_str) != Some("Pod") {
            continue;
        }
        let Ok(mut pod) = serde_json::from_value::<Pod>(d.value.clone()) else {
            continue;
        };
        pod.metadata
            .namespace
            .get_or_insert_with(|| "default".to_owned());
        if let Some(info) = PodInfo::from_pod(&pod, &mut strings) {
            map.insert(info);
        }
    }
    map
}

/// Where the inventory came from, for the report's header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    Files,
    Cluster { namespace: Option<String> },
}

/// Audits an inventory: every object through the webhook's path, then the checks across objects.
pub fn audit(policy: &Policy, inventory: &Inventory) -> Report {
    let catalog = policy
        .catalog(&inventory.live)
        .with_volumes(volume_index(inventory))
        .with_pods(std::sync::Arc::new(pod_index(inventory)));
    let mut objects = Vec::with_capacity(inventory.objects.len());
    let mut errors = inventory.errors.clone();
    for (seq, doc) in inventory.objects.iter().enumerate() {
        match review::audit_object(policy, &catalog, doc, seq + 1) {
            Ok(mut report) => {
                report.findings.extend(checks::object_checks(
                    policy,
                    &catalog,
                    &inventory.live,
                    &doc.value,
                ));
                objects.push(report);
            }
            Err(e) => errors.push(InputError {
                source: doc.source.clone(),
                message: e.to_string(),
            }),
        }
    }
    objects.extend(checks::class_checks(policy, &catalog, inventory));
    // Files in path order, documents in file order; cluster objects (no file) keep list order.
    objects.sort_by(|a, b| {
        let key = |o: &ObjectReport| (o.source.file.clone(), o.source.document, o.source.item);
        key(a).cmp(&key(b))
    });
    for o in &mut objects {
        o.finish();
    }
    Report {
        objects,
        errors,
        ignored: inventory.ignored,
    }
}
