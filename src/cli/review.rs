//! `review`: the webhook's decision without a server. An AdmissionReview on stdin, the answer
//! AdmissionReview on stdout, exactly as `/mutate` or `/validate` would answer it.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use clap::builder::BoolishValueParser;

use crate::admission::{self, Endpoint};
use crate::policy::Policy;

/// Every flag of `review` is also read from `SPW_REVIEW_<FLAG>`, and from no other variable.
#[derive(Debug, Args)]
pub struct ReviewArgs {
    /// Policy file (YAML); the embedded default policy when absent.
    #[arg(long, env = "SPW_REVIEW_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Which webhook endpoint to answer as.
    #[arg(long, env = "SPW_REVIEW_ENDPOINT", value_parser = ["mutate", "validate"])]
    pub endpoint: String,
    /// Every rule in audit mode, whatever the policy says (`--dry-run` is its former name).
    #[arg(long = "audit-only", alias = "dry-run", env = "SPW_REVIEW_AUDIT_ONLY", value_parser = BoolishValueParser::new())]
    pub dry_run: bool,
}

pub fn run(args: ReviewArgs) -> anyhow::Result<i32> {
    let endpoint = Endpoint::parse(&args.endpoint).context("unknown endpoint")?;
    let policy = Policy::load(args.config.as_deref(), args.dry_run)?;
    let catalog = policy.static_catalog();
    let mut body = Vec::new();
    std::io::stdin()
        .read_to_end(&mut body)
        .context("failed to read the AdmissionReview from stdin")?;
    let outcome = admission::review(endpoint, &policy, &catalog, &body)?;
    let mut out = std::io::stdout().lock();
    out.write_all(&outcome.to_json()?)?;
    out.write_all(b"\n")?;
    Ok(0)
}
