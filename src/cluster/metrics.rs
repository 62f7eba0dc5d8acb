//! Prometheus metrics of the cluster cache. Labels are the watched resource and the event type:
//! a handful of series, never object names.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::status::WatchedResource;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResourceLabels {
    resource: WatchedResource,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    resource: WatchedResource,
    /// `list` (an object of a full list), `apply` (added or modified), `delete`.
    event: &'static str,
}

/// The cluster cache's metrics. Cheap to clone (every field is shared).
#[derive(Clone, Debug, Default)]
pub struct ClusterMetrics {
    events: Family<EventLabels, Counter>,
    errors: Family<ResourceLabels, Counter>,
    relists: Family<ResourceLabels, Counter>,
    objects: Family<ResourceLabels, Gauge>,
    synced: Gauge,
    interplay: Gauge,
}

impl ClusterMetrics {
    /// Creates the metrics and registers them under the `cluster_` prefix of `registry` (the
    /// caller's registry carries the product prefix):
    ///
    /// - `cluster_watch_events_total{resource, event}`
    /// - `cluster_watch_errors_total{resource}`: failed lists and watches (each is retried).
    /// - `cluster_watch_relists_total{resource}`: full re-lists after the first (e.g. after 410 Gone).
    /// - `cluster_cached_objects{resource}`: objects held (namespaces: only those with a
    ///   `storage-policy.io` annotation or label).
    /// - `cluster_synced`: 1 once the first full list of all three resources has completed.
    /// - `cluster_default_class_interplay`: 1 while a StorageClass annotated default stands beside
    ///   the policy's namespace or access-mode defaults (see [`super::interplay_warning`]).
    pub fn register(registry: &mut Registry) -> ClusterMetrics {
        let m = ClusterMetrics::default();
        let r = registry.sub_registry_with_prefix("cluster");
        r.register(
            "watch_events",
            "Watch events received, by resource and event type",
            m.events.clone(),
        );
        r.register(
            "watch_errors",
            "Failed lists and watches, by resource (each is retried with backoff)",
            m.errors.clone(),
        );
        r.register(
            "watch_relists",
            "Full re-lists after the first, by resource",
            m.relists.clone(),
        );
        r.register(
            "cached_objects",
            "Objects held in the cluster cache, by resource",
            m.objects.clone(),
        );
        r.register(
            "synced",
            "1 once StorageClasses, Namespaces and Nodes have each been listed in full",
            m.synced.clone(),
        );
        r.register(
            "default_class_interplay",
            "1 while a StorageClass is annotated default beside the policy's namespace or access-mode defaults (the webhook replaces the plugin's class, read from managedFields)",
            m.interplay.clone(),
        );
        m
    }

    pub(crate) fn event(&self, resource: WatchedResource, event: &'static str) {
        self.events
            .get_or_create(&EventLabels { resource, event })
            .inc();
    }

    pub(crate) fn error(&self, resource: WatchedResource) {
        self.errors
            .get_or_create(&ResourceLabels { resource })
            .inc();
    }

    pub(crate) fn relist(&self, resource: WatchedResource) {
        self.relists
            .get_or_create(&ResourceLabels { resource })
            .inc();
    }

    pub(crate) fn set_objects(&self, resource: WatchedResource, count: usize) {
        self.objects
            .get_or_create(&ResourceLabels { resource })
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    pub(crate) fn set_synced(&self, synced: bool) {
        self.synced.set(i64::from(synced));
    }

    pub(crate) fn set_interplay(&self, active: bool) {
        self.interplay.set(i64::from(active));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_low_cardinality_series() {
        let mut registry = Registry::with_prefix("storage_policy_webhook");
        let m = ClusterMetrics::register(&mut registry);
        m.event(WatchedResource::Nodes, "apply");
        m.error(WatchedResource::StorageClasses);
        m.set_objects(WatchedResource::Namespaces, 3);
        m.set_synced(true);
        m.set_interplay(true);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for want in [
            "storage_policy_webhook_cluster_watch_events_total{resource=\"nodes\",event=\"apply\"} 1",
            "storage_policy_webhook_cluster_watch_errors_total{resource=\"storageclasses\"} 1",
            "storage_policy_webhook_cluster_cached_objects{resource=\"namespaces\"} 3",
            "storage_policy_webhook_cluster_synced 1",
            "storage_policy_webhook_cluster_default_class_interplay 1",
        ] {
            assert!(text.contains(want), "missing {want} in\n{text}");
        }
    }
}
