//! `audit --cluster`: the live objects (every kind of the kinds table) and the catalog read with
//! one-shot, paginated `list` calls. StorageClasses, Namespaces and Nodes go through [`Inventory::add`], the same
//! `LiveClass::from_storage_class` / `NamespaceInfo::from_namespace` conversions the webhook's
//! watches use, so the catalog is built identically. It does not use the long-running watch
//! caches of `serve`: an audit is one snapshot.

use std::fmt::Debug;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Node};
use k8s_openapi::api::storage::v1::{CSIDriver, CSINode, StorageClass};
use kube::api::{ApiResource, DynamicObject, ListParams, TypeMeta};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Document, Inventory, Location};
use crate::kinds::{self, Kind};
use crate::policy::ClassesKnown;
use crate::policy::interner::Interner;

/// Items per list page: large clusters are read in pages, never in one response.
pub const PAGE_SIZE: u32 = 500;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Connect(#[from] crate::cluster::ConnectError),
    #[error("failed to list {what}: {cause}")]
    List {
        what: &'static str,
        cause: kube::Error,
    },
    #[error("failed to encode a {what} object: {cause}")]
    Encode {
        what: &'static str,
        cause: serde_json::Error,
    },
}

/// Reports list progress: the resource and how many items have been read so far.
pub type Progress<'a> = &'a mut dyn FnMut(&str, usize);

async fn list_all<K>(
    api: Api<K>,
    what: &'static str,
    progress: Progress<'_>,
) -> Result<Vec<K>, ClusterError>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let mut items = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut lp = ListParams::default().limit(PAGE_SIZE);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = api
            .list(&lp)
            .await
            .map_err(|cause| ClusterError::List { what, cause })?;
        items.extend(page.items);
        progress(what, items.len());
        match page.metadata.continue_ {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => break,
        }
    }
    Ok(items)
}

fn add_all<K: Serialize>(
    inventory: &mut Inventory,
    what: &'static str,
    items: Vec<K>,
) -> Result<(), ClusterError> {
    for item in items {
        let value =
            serde_json::to_value(&item).map_err(|cause| ClusterError::Encode { what, cause })?;
        inventory.add(Document {
            source: Location::default(),
            value,
        });
    }
    Ok(())
}

/// VolumeSnapshots and their contents, when the API serves them (the CRDs are optional): the
/// restores of claims still Pending are judged against them (rule `dataSources`). A failed
/// discovery is taken as "not served": restores are then not judged, as in `serve`.
async fn snapshots(
    client: &Client,
    inv: &mut Inventory,
    progress: Progress<'_>,
) -> Result<(), ClusterError> {
    use crate::cluster::snapshots::{VolumeSnapshot, VolumeSnapshotContent, discover};
    if !discover(client).await.unwrap_or(false) {
        return Ok(());
    }
    let snaps = list_all(
        Api::<VolumeSnapshot>::all(client.clone()),
        "volumesnapshots",
        progress,
    )
    .await?;
    let contents = list_all(
        Api::<VolumeSnapshotContent>::all(client.clone()),
        "volumesnapshotcontents",
        progress,
    )
    .await?;
    let mut strings = Interner::default();
    inv.live.snapshots = Some(Arc::new(
        snaps
            .iter()
            .map(|s| (Arc::from(s.key()), s.info(&mut strings)))
            .collect(),
    ));
    inv.live.snapshot_contents = Some(Arc::new(
        contents
            .iter()
            .map(|c| (Arc::from(c.name_any()), strings.intern(&c.spec.driver)))
            .collect(),
    ));
    Ok(())
}

/// Connects the way `serve` does ([`crate::cluster::connect`]); no configuration is an error.
pub async fn connect(selection: &crate::cluster::Selection) -> Result<Client, ClusterError> {
    Ok(crate::cluster::connect_required(selection).await?)
}

/// Reads the catalog (StorageClasses, Namespaces, Nodes, CSIDrivers, CSINodes) and the objects
/// to audit: every other kind of the kinds table, all namespaces or one. With a namespace, only the PersistentVolumes bound
/// to claims of that namespace are audited. PersistentVolumes come first, then the table's order.
pub async fn collect(
    client: Client,
    namespace: Option<&str>,
    progress: Progress<'_>,
) -> Result<Inventory, ClusterError> {
    let mut inv = Inventory::default();
    let classes = list_all(
        Api::<StorageClass>::all(client.clone()),
        "storageclasses",
        progress,
    )
    .await?;
    add_all(&mut inv, "storageclasses", classes)?;
    // Listed, so known: a class named nowhere in the list does not exist.
    inv.live.classes_known = ClassesKnown::Cluster;
    let namespaces = list_all(
        Api::<Namespace>::all(client.clone()),
        "namespaces",
        progress,
    )
    .await?;
    add_all(&mut inv, "namespaces", namespaces)?;
    let nodes = list_all(Api::<Node>::all(client.clone()), "nodes", progress).await?;
    add_all(&mut inv, "nodes", nodes)?;
    // Listed, so known: an empty node list means every node is gone.
    inv.live.nodes.get_or_insert_with(Default::default);
    snapshots(&client, &mut inv, progress).await?;
    let drivers = list_all(
        Api::<CSIDriver>::all(client.clone()),
        "csidrivers",
        progress,
    )
    .await?;
    add_all(&mut inv, "csidrivers", drivers)?;
    let csi_nodes = list_all(Api::<CSINode>::all(client.clone()), "csinodes", progress).await?;
    add_all(&mut inv, "csinodes", csi_nodes)?;
    // Listed, so known: no driver anywhere means none runs.
    inv.csi_known();

    // StorageClasses are the catalog, listed above.
    let mut order: Vec<&'static Kind> = kinds::KINDS
        .iter()
        .filter(|k| k.part != kinds::Part::Class)
        .collect();
    order.sort_by_key(|k| k.namespaced);
    for kind in order {
        let ar = ApiResource {
            group: kind.group.to_owned(),
            version: kind.version.to_owned(),
            api_version: kind.api_version(),
            kind: kind.kind.to_owned(),
            plural: kind.plural.to_owned(),
        };
        let api = match namespace {
            Some(ns) if kind.namespaced => {
                Api::<DynamicObject>::namespaced_with(client.clone(), ns, &ar)
            }
            _ => Api::<DynamicObject>::all_with(client.clone(), &ar),
        };
        let mut items = list_all(api, kind.plural, progress).await?;
        if let (Some(ns), false) = (namespace, kind.namespaced) {
            // Cluster-scoped volumes: those bound to a claim of the namespace. The others are
            // still what the namespace's claims could bind to (the binding rules read them).
            let (mine, others): (Vec<_>, Vec<_>) = items.into_iter().partition(|pv| {
                pv.data
                    .pointer("/spec/claimRef/namespace")
                    .and_then(serde_json::Value::as_str)
                    == Some(ns)
            });
            items = mine;
            inv.other_volumes.extend(
                others
                    .iter()
                    .filter_map(|pv| serde_json::from_value(serde_json::to_value(pv).ok()?).ok()),
            );
        }
        for item in &mut items {
            // List items carry no type; the review needs it.
            item.types = Some(TypeMeta {
                api_version: ar.api_version.clone(),
                kind: ar.kind.clone(),
            });
        }
        add_all(&mut inv, kind.plural, items)?;
    }
    Ok(inv)
}
