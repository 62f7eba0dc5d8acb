//! The command line: `review` (decide one AdmissionReview from stdin), and the commands later
//! modules add. Parsing only; each command lives in its own file.

pub mod audit;
pub mod review;

use clap::{Parser, Subcommand};

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
    /// Decide one AdmissionReview read on stdin; write the answer to stdout.
    Review(review::ReviewArgs),
    /// Report what the webhook would do on CREATE of manifests (files, folders, stdin) or of a
    /// cluster's live objects; exit 1 if something would be denied, 2 on unreadable input.
    Audit(audit::AuditArgs),
}

/// Runs the parsed command; returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Review(args) => review::run(args),
        Command::Audit(args) => audit::run(args),
    }
}
