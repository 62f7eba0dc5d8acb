//! `audit`: what the webhook would do on CREATE of these manifests, or of the live objects of a
//! cluster (`--cluster`). Parsing and printing only; the work is in [`crate::audit`].
//!
//! Exit status: 0 when nothing would be denied, 1 when a CREATE would be denied, 2 when an input
//! could not be read or parsed (after auditing everything else), the policy file is bad, or the
//! cluster cannot be read.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::builder::BoolishValueParser;
use clap::{Args, ValueEnum};

use crate::audit::report::{self, ReportMeta, Style, Timestamp};
use crate::audit::{self, Inventory, Origin, cluster, input};
use crate::policy::Policy;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// A table for people, with a summary line.
    Text,
    /// A versioned machine-readable document (storage-policy.io/v1alpha2 AuditReport).
    Json,
    /// The json document as YAML.
    Yaml,
    /// wgpolicyk8s.io/v1alpha2 PolicyReport / ClusterPolicyReport documents (multi-document YAML).
    PolicyReport,
    /// openreports.io/v1alpha1 Report / ClusterReport documents (multi-document YAML), as Kyverno
    /// 1.15+ and Kubewarden write them.
    #[value(name = "openreports")]
    Openreports,
}

/// Every flag of `audit` is also read from a variable named `SPW_AUDIT_<FLAG>`, and from no
/// other: a variable exported for `serve` (`SPW_CONFIG`, `SPW_AUDIT_ONLY`, `SPW_KUBECONFIG`, ...)
/// never changes what `audit` reports.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Policy file (YAML); the embedded default policy when absent.
    #[arg(long, env = "SPW_AUDIT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Report format.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Text, env = "SPW_AUDIT_OUTPUT")]
    pub output: OutputFormat,
    /// Every rule in audit mode, whatever the policy says (what `serve --audit-only` would do;
    /// `--dry-run` is its former name).
    #[arg(long = "audit-only", alias = "dry-run", env = "SPW_AUDIT_AUDIT_ONLY", value_parser = BoolishValueParser::new())]
    pub dry_run: bool,
    /// Audit the live PersistentVolumeClaims, PersistentVolumes and StatefulSets of a cluster
    /// instead of files (found like `serve` finds it: --kubeconfig, KUBECONFIG, the in-cluster
    /// service account, ~/.kube/config).
    #[arg(long, env = "SPW_AUDIT_CLUSTER", conflicts_with_all = ["paths", "filename"], value_parser = BoolishValueParser::new())]
    pub cluster: bool,
    /// Only this namespace: with --cluster, its objects and the PersistentVolumes bound to its
    /// claims; on files, the objects in it (no namespace is `default`) and the
    /// PersistentVolumes whose claimRef names it.
    #[arg(long, short, env = "SPW_AUDIT_NAMESPACE", value_name = "NS")]
    pub namespace: Option<String>,
    /// Every namespace (the default; as kubectl's -A).
    #[arg(long, short = 'A', env = "SPW_AUDIT_ALL_NAMESPACES", conflicts_with = "namespace",
          value_parser = BoolishValueParser::new())]
    pub all_namespaces: bool,
    /// With --cluster: kubeconfig file of the cluster to read, instead of KUBECONFIG, the
    /// in-cluster service account or ~/.kube/config.
    #[arg(long, env = "SPW_AUDIT_KUBECONFIG", value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// With --cluster: kubeconfig context to use instead of the current one.
    #[arg(long, env = "SPW_AUDIT_CONTEXT", value_name = "NAME")]
    pub context: Option<String>,
    /// On files: the class the cluster's DefaultStorageClass admission plugin sets on claims
    /// created without one (the class annotated default there), when the files do not show it.
    /// Claims without a class are then audited on it, as the cluster's admission chain would.
    #[arg(
        long,
        env = "SPW_AUDIT_DEFAULT_CLASS",
        value_name = "NAME",
        conflicts_with = "cluster"
    )]
    pub default_class: Option<String>,
    /// YAML or JSON files and folders to audit, as kubectl's -f (repeatable, or comma-separated;
    /// folders are read recursively: *.yaml, *.yml, *.json); `-` reads stdin.
    #[arg(
        long,
        short = 'f',
        env = "SPW_AUDIT_FILENAME",
        value_name = "PATH",
        value_delimiter = ','
    )]
    pub filename: Vec<PathBuf>,
    /// Files and folders, as with -f.
    #[arg(value_name = "PATH", required_unless_present_any = ["cluster", "filename"])]
    pub paths: Vec<PathBuf>,
}

impl AuditArgs {
    fn cluster_args(&self) -> super::ClusterArgs {
        super::ClusterArgs {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
        }
    }

    /// `-f` and positional paths, in the order given by kind: `-f` first.
    pub(crate) fn inputs(&self) -> Vec<PathBuf> {
        self.filename.iter().chain(&self.paths).cloned().collect()
    }
}

fn progress_reporter(enabled: bool) -> impl FnMut(&str, usize) {
    move |what: &str, n: usize| {
        if enabled {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2Klisting {what}: {n}");
            let _ = err.flush();
        }
    }
}

fn read_cluster(
    namespace: Option<&str>,
    selection: &crate::cluster::Selection,
) -> anyhow::Result<Inventory> {
    // One provider for the whole process; a second install (by `serve`) is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    let show = std::io::stderr().is_terminal();
    let mut progress = progress_reporter(show);
    let inventory = runtime.block_on(async {
        let client = cluster::connect(selection).await?;
        cluster::collect(client, namespace, &mut progress).await
    });
    if show {
        eprint!("\r\x1b[2K");
    }
    Ok(inventory?)
}

/// The results' timestamp: now, as `{seconds, nanos}` since the epoch.
fn now() -> Timestamp {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| Timestamp {
            nanos: i32::try_from(d.subsec_nanos()).unwrap_or_default(),
            seconds: i64::try_from(d.as_secs()).unwrap_or_default(),
        })
        .unwrap_or_default()
}

pub fn run(args: AuditArgs) -> anyhow::Result<i32> {
    let cluster_args = args.cluster_args();
    if let (false, Some(flag)) = (args.cluster, cluster_args.given()) {
        anyhow::bail!("{flag} only applies with --cluster");
    }
    let policy = Policy::load(args.config.as_deref(), args.dry_run)?;
    let (inventory, origin) = if args.cluster {
        let inv = read_cluster(args.namespace.as_deref(), &cluster_args.selection())?;
        (
            inv,
            Origin::Cluster {
                namespace: args.namespace.clone(),
            },
        )
    } else {
        // The policy file may sit in an audited folder: it is not a manifest.
        let skip: Vec<PathBuf> = args.config.iter().cloned().collect();
        let inputs = input::read_paths(&args.inputs(), &skip, &mut std::io::stdin().lock());
        let mut inv = Inventory {
            errors: inputs.errors,
            ..Inventory::default()
        };
        for doc in inputs.documents {
            inv.add(doc);
        }
        if let Some(name) = &args.default_class {
            inv.set_default_class(name);
        }
        if let Some(ns) = &args.namespace {
            inv.keep_namespace(ns);
        }
        (inv, Origin::Files)
    };
    let result = audit::audit(&policy, &inventory);

    for e in &result.errors {
        eprintln!("storage-policy-webhook: {e}");
    }
    let meta = ReportMeta {
        policy: args
            .config
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "(embedded default)".to_owned()),
        dry_run: args.dry_run,
        origin,
    };
    let text = match args.output {
        OutputFormat::Text => {
            let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            report::to_text(&result, Style { color })
        }
        OutputFormat::Json => {
            let mut s = serde_json::to_string_pretty(&report::to_json(&result, &meta))?;
            s.push('\n');
            s
        }
        OutputFormat::Yaml => serde_saphyr::to_string(&report::to_json(&result, &meta))
            .context("failed to encode the report as YAML")?,
        OutputFormat::PolicyReport => report::to_policy_report_yaml(&result, now().seconds)
            .context("failed to encode the PolicyReports")?,
        OutputFormat::Openreports => report::to_openreports_yaml(&result, now())
            .context("failed to encode the OpenReports")?,
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(result.exit_code())
}
