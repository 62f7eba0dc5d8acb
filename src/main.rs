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
    let logs = cli::init_tracing(&cli);
    let code = match cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            drop(logs);
            eprintln!("storage-policy-webhook: {e:#}");
            std::process::exit(2);
        }
    };
    // `exit` runs no destructors: flush the queued log lines first.
    drop(logs);
    std::process::exit(code);
}
