//! A cluster's PersistentVolumes and claims for the benchmarks (issue 24), as in the memory test
//! of `tests/cluster.rs`: `n` local PVs of class `local-storage` (100Gi, ReadWriteOnce, two
//! labels), the even ones Bound to a claim (`claimRef`), the odd ones Available; and `2 n` Bound
//! claims in 200 namespaces `team-000`... A claim of that class asking for more than 100Gi finds
//! nothing free (willBind warns); one asking for less finds `n / 2` free volumes.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    LocalVolumeSource, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, ObjectReference,
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimStatus, PersistentVolumeSpec, PersistentVolumeStatus, VolumeNodeAffinity,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use storage_policy_webhook::policy::LiveState;
use storage_policy_webhook::policy::volumes::{Source, VolumeIndex};

/// The namespace of claim `i`.
pub fn namespace(i: usize) -> String {
    format!("team-{:03}", i % 200)
}

/// `live` with `n` PVs and `2 n` claims cached, as the cluster cache publishes them.
pub fn with_volumes(live: LiveState, n: usize) -> LiveState {
    with_volumes_on(live, n, None)
}

/// The same PVs pinned to `nodes` nodes (`spec.nodeAffinity` on `kubernetes.io/hostname`, as
/// local-static-provisioner writes it: PV `i` on `node-<i mod nodes>`), and those nodes known:
/// what a cluster cache holds, where a WaitForFirstConsumer class's free volumes count only when
/// their node exists.
#[allow(dead_code)] // the load suite uses `with_volumes` only
pub fn with_pinned_volumes(live: LiveState, n: usize, nodes: usize) -> LiveState {
    with_volumes_on(live, n, Some(nodes))
}

fn with_volumes_on(mut live: LiveState, n: usize, nodes: Option<usize>) -> LiveState {
    let host = |i: usize| format!("node-{:04}", i % nodes.unwrap_or(1).max(1));
    let pvs: Vec<PersistentVolume> = (0..n)
        .map(|i| {
            let bound = i % 2 == 0;
            PersistentVolume {
                metadata: ObjectMeta {
                    name: Some(format!("pv-{i:06}")),
                    labels: Some(BTreeMap::from([
                        ("disk".to_owned(), "nvme".to_owned()),
                        ("rack".to_owned(), format!("r{}", i % 40)),
                    ])),
                    ..Default::default()
                },
                spec: Some(PersistentVolumeSpec {
                    storage_class_name: Some("local-storage".to_owned()),
                    capacity: Some(BTreeMap::from([(
                        "storage".to_owned(),
                        Quantity("100Gi".to_owned()),
                    )])),
                    access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
                    local: Some(LocalVolumeSource {
                        path: format!("/mnt/disks/{i}"),
                        ..Default::default()
                    }),
                    node_affinity: nodes.map(|_| VolumeNodeAffinity {
                        required: Some(NodeSelector {
                            node_selector_terms: vec![NodeSelectorTerm {
                                match_expressions: Some(vec![NodeSelectorRequirement {
                                    key: "kubernetes.io/hostname".to_owned(),
                                    operator: "In".to_owned(),
                                    values: Some(vec![host(i)]),
                                }]),
                                match_fields: None,
                            }],
                        }),
                    }),
                    claim_ref: bound.then(|| ObjectReference {
                        namespace: Some(namespace(i)),
                        name: Some(format!("data-{i:06}")),
                        uid: Some(format!("00000000-0000-0000-0000-{i:012}")),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                status: Some(PersistentVolumeStatus {
                    phase: Some(if bound { "Bound" } else { "Available" }.to_owned()),
                    ..Default::default()
                }),
            }
        })
        .collect();
    let claims: Vec<(String, PersistentVolumeClaim)> = (0..2 * n)
        .map(|i| {
            let c = PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(format!("data-{i:06}")),
                    namespace: Some(namespace(i)),
                    ..Default::default()
                },
                spec: Some(PersistentVolumeClaimSpec {
                    storage_class_name: Some("local-storage".to_owned()),
                    volume_name: Some(format!("pv-{:06}", i % n.max(1))),
                    ..Default::default()
                }),
                status: Some(PersistentVolumeClaimStatus {
                    phase: Some("Bound".to_owned()),
                    ..Default::default()
                }),
            };
            (namespace(i), c)
        })
        .collect();
    let index = VolumeIndex::from_objects(
        &pvs,
        claims.iter().map(|(ns, c)| (ns.as_str(), c)),
        Source::Cluster,
    );
    live.pvs = Some(index.pvs);
    live.claims = Some(index.claims);
    if let Some(nodes) = nodes {
        live.nodes = Some(std::sync::Arc::new(
            (0..nodes)
                .map(|i| {
                    let name = host(i);
                    let labels =
                        BTreeMap::from([("kubernetes.io/hostname".to_owned(), name.clone())]);
                    (name, labels)
                })
                .collect(),
        ));
    }
    live
}
