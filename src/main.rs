#![forbid(unsafe_code)]

use clap::Parser;
use mimalloc::MiMalloc;
use storage_policy_webhook::cli::{self, Cli};

/// Decoding a review allocates many small strings; mimalloc does that markedly faster than the
/// system allocator under concurrent load (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

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
