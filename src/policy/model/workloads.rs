//! How many pods of one pod template run at the same time, as far as a claim mounted by name in
//! that template goes: every such pod mounts the very same claim. Worked out from the workload's
//! spec with the API server's defaults and the controllers' arithmetic; it knows no rule.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, JobSpec};
use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// How many pods of a template may run at once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Runs {
    /// At most one pod at a time (a Pod; one replica replaced with `Recreate` or `maxSurge: 0`;
    /// a Job with parallelism 1), or none.
    #[default]
    One,
    /// One replica, but a `RollingUpdate` with surge: each rollout starts the new pod before
    /// the old one stops. `default` when the strategy is the API server's default.
    Surge { default: bool },
    /// This many replicas at once (Deployment, ReplicaSet, StatefulSet).
    Replicas(i32),
    /// One pod on every node (DaemonSet).
    EveryNode,
    /// This many pods of a Job at once.
    Parallel(i32),
    /// A CronJob whose `concurrencyPolicy` (`Allow`, the default) lets a run start while the
    /// last one still runs; each run starts this many pods at once.
    Overlapping(i32),
}

impl Runs {
    /// Whether more than one pod may mount the template's claims at once.
    pub fn is_shared(self) -> bool {
        self != Runs::One
    }

    /// A Deployment: `spec.replicas` defaults to 1, `spec.strategy` to `RollingUpdate` with
    /// `maxSurge` 25% (`SetDefaults_Deployment`, `pkg/apis/apps/v1/defaults.go`). The surge in
    /// pods is `maxSurge` scaled to the replicas, a percentage rounded up
    /// (`ResolveFenceposts`, `pkg/controller/deployment/util/deployment_util.go`), so with one
    /// replica any `maxSurge` above 0 starts a second pod during a rollout.
    pub fn of_deployment(d: &Deployment) -> Runs {
        let Some(spec) = d.spec.as_ref() else {
            return Runs::One;
        };
        let replicas = spec.replicas.unwrap_or(1);
        if replicas > 1 {
            return Runs::Replicas(replicas);
        }
        if replicas < 1 {
            return Runs::One;
        }
        let strategy = spec.strategy.as_ref();
        if strategy.and_then(|s| s.type_.as_deref()) == Some("Recreate") {
            return Runs::One;
        }
        let surge = strategy
            .and_then(|s| s.rolling_update.as_ref())
            .and_then(|r| r.max_surge.as_ref());
        match surge {
            None => Runs::Surge { default: true },
            Some(s) if scaled_up(s, replicas) > 0 => Runs::Surge { default: false },
            Some(_) => Runs::One,
        }
    }

    /// A ReplicaSet: `spec.replicas`, default 1.
    pub fn of_replica_set(r: &ReplicaSet) -> Runs {
        replicas(r.spec.as_ref().and_then(|s| s.replicas))
    }

    /// A StatefulSet's pod-level volumes: `spec.replicas`, default 1. Its updates replace one
    /// pod after another (deleted, then created), so one replica never runs twice.
    pub fn of_stateful_set(s: &StatefulSet) -> Runs {
        replicas(s.spec.as_ref().and_then(|s| s.replicas))
    }

    /// A DaemonSet: a pod on every node it selects.
    pub fn of_daemon_set(_: &DaemonSet) -> Runs {
        Runs::EveryNode
    }

    /// A Job: `spec.parallelism` (default 1) pods at once, never more than `spec.completions`
    /// when set (`manageJob`, `pkg/controller/job/job_controller.go`: it wants
    /// `min(parallelism, completions - succeeded)` active pods).
    pub fn of_job(spec: Option<&JobSpec>) -> Runs {
        let n = job_parallelism(spec);
        if n > 1 { Runs::Parallel(n) } else { Runs::One }
    }

    /// A CronJob: with `concurrencyPolicy: Allow` (the default, `SetDefaults_CronJob` in
    /// `pkg/apis/batch/v1/defaults.go`) a run that outlasts the schedule overlaps the next;
    /// `Forbid` skips the next run, `Replace` deletes the running Job first.
    pub fn of_cron_job(c: &CronJob) -> Runs {
        let Some(spec) = c.spec.as_ref() else {
            return Runs::One;
        };
        let job = spec.job_template.spec.as_ref();
        let n = job_parallelism(job);
        match spec.concurrency_policy.as_deref() {
            None | Some("Allow") if n > 0 => Runs::Overlapping(n),
            _ if n > 1 => Runs::Parallel(n),
            _ => Runs::One,
        }
    }
}

/// The claims a pod spec mounts by name, as (index in `volumes`, claim name). Generic ephemeral
/// volumes are not among them (their claim is made for each pod). Of a StatefulSet, a volume
/// named like one of its `volumeClaimTemplates` is left out: the controller replaces it with the
/// pod's own claim (`updateStorage`, `pkg/controller/statefulset/stateful_set_utils.go`).
pub fn claims_by_name<'a>(
    spec: &'a PodSpec,
    sts: Option<&'a StatefulSet>,
) -> impl Iterator<Item = (usize, &'a str)> {
    let templates = sts
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.volume_claim_templates.as_deref())
        .unwrap_or_default();
    spec.volumes
        .iter()
        .flatten()
        .enumerate()
        .filter_map(move |(i, v)| {
            let claim = v.persistent_volume_claim.as_ref()?;
            let replaced = templates
                .iter()
                .any(|t| t.metadata.name.as_deref() == Some(v.name.as_str()));
            (!replaced).then_some((i, claim.claim_name.as_str()))
        })
}

fn replicas(n: Option<i32>) -> Runs {
    match n.unwrap_or(1) {
        n if n > 1 => Runs::Replicas(n),
        _ => Runs::One,
    }
}

fn job_parallelism(spec: Option<&JobSpec>) -> i32 {
    let parallelism = spec.and_then(|s| s.parallelism).unwrap_or(1);
    match spec.and_then(|s| s.completions) {
        Some(c) => parallelism.min(c),
        None => parallelism,
    }
}

/// `intstr.GetScaledValueFromIntOrPercent(v, total, roundUp=true)`: an int as is, `"n%"` of
/// `total` rounded up; anything else (the API server refuses it) counts as 0.
fn scaled_up(v: &IntOrString, total: i32) -> i64 {
    match v {
        IntOrString::Int(n) => i64::from(*n),
        IntOrString::String(s) => match s.strip_suffix('%').map(str::parse::<i64>) {
            Some(Ok(p)) => (p * i64::from(total) + 99).div_euclid(100),
            _ => 0,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn deployment(spec: Value) -> Deployment {
        let mut spec = spec;
        spec["selector"] = json!({});
        spec["template"] = json!({});
        serde_json::from_value(json!({"spec": spec})).unwrap()
    }

    #[test]
    fn one_replica_with_the_default_strategy_surges() {
        assert_eq!(
            Runs::of_deployment(&deployment(json!({}))),
            Runs::Surge { default: true }
        );
        assert_eq!(
            Runs::of_deployment(&deployment(json!({"strategy": {"type": "RollingUpdate"}}))),
            Runs::Surge { default: true }
        );
        for surge in [json!(1), json!("1%"), json!("25%"), json!("100%")] {
            let d = deployment(json!({"replicas": 1, "strategy": {"type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": surge, "maxUnavailable": 0}}}));
            assert_eq!(
                Runs::of_deployment(&d),
                Runs::Surge { default: false },
                "{surge}"
            );
        }
    }

    #[test]
    fn recreate_or_no_surge_runs_one_pod() {
        for strategy in [
            json!({"type": "Recreate"}),
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}),
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "0%", "maxUnavailable": 1}}),
        ] {
            let d = deployment(json!({"replicas": 1, "strategy": strategy}));
            assert_eq!(Runs::of_deployment(&d), Runs::One, "{strategy}");
        }
        let scaled_down = deployment(json!({"replicas": 0}));
        assert_eq!(Runs::of_deployment(&scaled_down), Runs::One);
        assert!(!Runs::One.is_shared());
    }

    #[test]
    fn replicas_count_whatever_the_strategy() {
        let d = deployment(json!({"replicas": 3, "strategy": {"type": "Recreate"}}));
        assert_eq!(Runs::of_deployment(&d), Runs::Replicas(3));
        let rs: ReplicaSet =
            serde_json::from_value(json!({"spec": {"replicas": 2, "selector": {}}})).unwrap();
        assert_eq!(Runs::of_replica_set(&rs), Runs::Replicas(2));
        let one: StatefulSet = serde_json::from_value(
            json!({"spec": {"selector": {}, "serviceName": "s", "template": {}}}),
        )
        .unwrap();
        assert_eq!(Runs::of_stateful_set(&one), Runs::One);
    }

    #[test]
    fn jobs_run_parallelism_pods_up_to_completions() {
        let job = |spec: Value| -> JobSpec {
            let mut spec = spec;
            spec["template"] = json!({});
            serde_json::from_value(spec).unwrap()
        };
        assert_eq!(Runs::of_job(Some(&job(json!({})))), Runs::One);
        assert_eq!(
            Runs::of_job(Some(&job(json!({"parallelism": 3})))),
            Runs::Parallel(3)
        );
        assert_eq!(
            Runs::of_job(Some(&job(json!({"parallelism": 3, "completions": 1})))),
            Runs::One
        );
        assert_eq!(
            Runs::of_job(Some(&job(json!({"parallelism": 3, "completions": 2})))),
            Runs::Parallel(2)
        );
    }

    #[test]
    fn cron_jobs_overlap_unless_forbidden_or_replaced() {
        let cron = |policy: Option<&str>, parallelism: i32| -> CronJob {
            let mut spec = json!({"schedule": "* * * * *", "jobTemplate": {"spec": {
                "parallelism": parallelism, "template": {}}}});
            if let Some(p) = policy {
                spec["concurrencyPolicy"] = json!(p);
            }
            serde_json::from_value(json!({"spec": spec})).unwrap()
        };
        assert_eq!(Runs::of_cron_job(&cron(None, 1)), Runs::Overlapping(1));
        assert_eq!(
            Runs::of_cron_job(&cron(Some("Allow"), 2)),
            Runs::Overlapping(2)
        );
        assert_eq!(Runs::of_cron_job(&cron(Some("Forbid"), 1)), Runs::One);
        assert_eq!(Runs::of_cron_job(&cron(Some("Replace"), 1)), Runs::One);
        assert_eq!(
            Runs::of_cron_job(&cron(Some("Forbid"), 2)),
            Runs::Parallel(2)
        );
        assert_eq!(Runs::of_cron_job(&cron(None, 0)), Runs::One);
    }

    #[test]
    fn a_daemon_set_runs_on_every_node() {
        let ds: DaemonSet =
            serde_json::from_value(json!({"spec": {"selector": {}, "template": {}}})).unwrap();
        assert_eq!(Runs::of_daemon_set(&ds), Runs::EveryNode);
    }
}
