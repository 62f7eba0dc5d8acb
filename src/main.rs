#![forbid(unsafe_code)]

use clap::Parser;
use storage_policy_webhook::cli::{self, Cli};

fn main() {
    // The one crypto provider of the process; every rustls configuration uses ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    cli::init_tracing(&cli);
    match cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("storage-policy-webhook: {e:#}");
            std::process::exit(2);
        }
    }
}
