//! The command line: `serve` (the webhook), `review` (decide one AdmissionReview from stdin),
//! `audit` (what the policy would do to manifests or a cluster), `certs` (certificates for a
//! cluster Service), `rules` (the rule registry and kinds table). Parsing only; each command
//! lives in its own file.

pub mod audit;
pub mod certs;
pub mod review;
pub mod rules;
pub mod serve;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::cluster::Selection;

/// Kubernetes admission webhook that enforces storage policy.
#[derive(Debug, Parser)]
#[command(
    name = "storage-policy-webhook",
    version,
    about,
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the admission webhook: HTTPS POST /mutate and /validate, plain-HTTP /healthz, /readyz
    /// and /metrics.
    Serve(Box<serve::ServeArgs>),
    /// Decide one AdmissionReview read on stdin; write the answer to stdout.
    Review(review::ReviewArgs),
    /// Report what the webhook would do on CREATE of manifests (files, folders, stdin) or of a
    /// cluster's live objects; exit 1 if something would be denied, 2 on unreadable input.
    Audit(audit::AuditArgs),
    /// Write a CA and a serving certificate for the webhook's Service; print the caBundle.
    Certs(certs::CertsArgs),
    /// List the rules, the kinds they judge and the webhook registrations they need.
    Rules(rules::RulesArgs),
}

/// Which cluster to read: the same flags, and the same lookup ([`crate::cluster::connect`]), for
/// `serve` and `audit --cluster`.
#[derive(Clone, Debug, Default, Args)]
pub struct ClusterArgs {
    /// Kubeconfig file of the cluster to read, instead of KUBECONFIG, the in-cluster service
    /// account or ~/.kube/config.
    #[arg(long, env = "SPW_KUBECONFIG", value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use instead of the current one (needs a kubeconfig: --kubeconfig,
    /// KUBECONFIG or ~/.kube/config).
    #[arg(long, env = "SPW_CONTEXT", value_name = "NAME")]
    pub context: Option<String>,
}

impl ClusterArgs {
    pub fn selection(&self) -> Selection {
        Selection {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
        }
    }

    /// The first of the flags given, for "only applies with" errors.
    fn given(&self) -> Option<&'static str> {
        if self.kubeconfig.is_some() {
            Some("--kubeconfig")
        } else if self.context.is_some() {
            Some("--context")
        } else {
            None
        }
    }
}

/// Installs logging for the command: `serve` per its flags, buffered (the guard flushes when
/// dropped: hold it until exit); the others warnings only, straight to stderr.
pub fn init_tracing(cli: &Cli) -> Option<crate::server::log_buffer::FlushGuard> {
    match &cli.command {
        Command::Serve(a) => serve::init_tracing(a.log_format, &a.log_level),
        _ => {
            serve::init_unbuffered(serve::LogFormat::Plain, "warn");
            None
        }
    }
}

/// Runs the parsed command; returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Review(args) => review::run(args),
        Command::Audit(args) => audit::run(args),
        Command::Certs(args) => certs::run(args),
        Command::Rules(args) => rules::run(args),
    }
}
