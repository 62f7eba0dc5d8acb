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

/// Which cluster `serve` reads (`audit --cluster` has the same flags under its own variables,
/// and the same lookup, [`crate::cluster::connect`]).
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
    pub(crate) fn given(&self) -> Option<&'static str> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// The variables a command reads: `SPW_<FLAG>` for `serve` (the deployment's contract),
    /// `SPW_<COMMAND>_<FLAG>` for the others.
    fn prefix(command: &str) -> String {
        match command {
            "serve" => "SPW_".to_owned(),
            other => format!("SPW_{}_", other.to_uppercase()),
        }
    }

    /// Issue 30: `certs` and `rules` read no variable while the others did, and `SPW_DRY_RUN`
    /// (now `SPW_AUDIT_ONLY`; and `SPW_CONFIG`) changed `audit` as well as `serve`.
    #[test]
    fn every_flag_of_every_command_has_its_own_variable() {
        let cli = Cli::command();
        let mut seen: std::collections::HashMap<String, String> = Default::default();
        for sub in cli.get_subcommands() {
            let name = sub.get_name().to_owned();
            let prefix = prefix(&name);
            for arg in sub.get_arguments() {
                let id = arg.get_id().as_str();
                if arg.is_positional() || matches!(id, "help" | "version") {
                    continue;
                }
                let env = arg
                    .get_env()
                    .unwrap_or_else(|| panic!("{name} --{id} reads no variable"))
                    .to_string_lossy()
                    .into_owned();
                assert!(env.starts_with(&prefix), "{name} --{id}: {env}");
                // `SPW_AUDIT_ONLY` (`serve --audit-only`) reads like an `audit` variable, but
                // `audit` has no `--only` and reads its own `SPW_AUDIT_AUDIT_ONLY`; no other
                // `serve` variable may look like another command's.
                if name == "serve" && env != "SPW_AUDIT_ONLY" {
                    for other in ["AUDIT", "REVIEW", "CERTS", "RULES"] {
                        assert!(!env.starts_with(&format!("SPW_{other}_")), "{env}");
                    }
                }
                if let Some(before) = seen.insert(env.clone(), name.clone()) {
                    panic!("{env} is read by both {before} and {name}");
                }
            }
        }
        assert_eq!(
            seen.get("SPW_AUDIT_ONLY").map(String::as_str),
            Some("serve")
        );
        assert_eq!(
            seen.get("SPW_AUDIT_AUDIT_ONLY").map(String::as_str),
            Some("audit")
        );
    }

    /// Issue 30: one word for each dry run. The webhook's own is `--audit-only`; `--dry-run`
    /// (its former name) still parses, for scripts and charts of earlier releases.
    #[test]
    fn audit_only_is_the_flag_and_dry_run_its_former_name() {
        for flag in ["--audit-only", "--dry-run"] {
            let serve = Cli::try_parse_from(["spw", "serve", flag]).unwrap();
            let Command::Serve(a) = serve.command else {
                panic!("not serve")
            };
            assert!(a.dry_run, "serve {flag}");
            let audit = Cli::try_parse_from(["spw", "audit", flag, "x.yaml"]).unwrap();
            let Command::Audit(a) = audit.command else {
                panic!("not audit")
            };
            assert!(a.dry_run, "audit {flag}");
            let review =
                Cli::try_parse_from(["spw", "review", "--endpoint", "validate", flag]).unwrap();
            let Command::Review(a) = review.command else {
                panic!("not review")
            };
            assert!(a.dry_run, "review {flag}");
        }
        let serve = Cli::try_parse_from(["spw", "serve"]).unwrap();
        let Command::Serve(a) = serve.command else {
            panic!("not serve")
        };
        assert!(!a.dry_run);
    }

    #[test]
    fn audit_takes_files_with_f_and_namespaces_as_kubectl() {
        let parse = |args: &[&str]| {
            let mut all = vec!["storage-policy-webhook", "audit"];
            all.extend_from_slice(args);
            Cli::try_parse_from(all)
        };
        let Command::Audit(a) = parse(&["-f", "a.yaml", "-f", "b,c", "d"]).unwrap().command else {
            panic!("audit")
        };
        assert_eq!(
            a.inputs(),
            ["a.yaml", "b", "c", "d"].map(PathBuf::from).to_vec()
        );
        assert!(parse(&["-f", "a.yaml"]).is_ok(), "-f alone is enough");
        assert!(parse(&["-n", "web", "a.yaml"]).is_ok(), "-n on files");
        assert!(parse(&["-A", "a.yaml"]).is_ok());
        assert!(parse(&["--cluster", "-A"]).is_ok());
        assert!(parse(&["-A", "-n", "web", "a.yaml"]).is_err());
        assert!(parse(&["--cluster", "-f", "a.yaml"]).is_err());
        assert!(parse(&[]).is_err(), "something to audit");
        let Command::Audit(a) = parse(&["-o", "yaml", "x"]).unwrap().command else {
            panic!("audit")
        };
        assert_eq!(a.output, audit::OutputFormat::Yaml);
    }
}
