#![forbid(unsafe_code)]

use clap::Parser;
use mimalloc::MiMalloc;
use storage_policy_webhook::cli::{self, Cli};
use storage_policy_webhook::server::shutdown::{FORCED_EXIT_CODE, Forced};

/// Decoding a review allocates many small strings; mimalloc does that markedly faster than the
/// system allocator under concurrent load (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() {
    // The one crypto provider of the process; every rustls configuration uses ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    cli::init_tracing(&cli);
    // `cli::run` has returned, so every destructor has run: exiting skips nothing.
    match cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) if e.is::<Forced>() => {
            eprintln!("storage-policy-webhook: {e}");
            std::process::exit(FORCED_EXIT_CODE);
        }
        Err(e) => {
            eprintln!("storage-policy-webhook: {}", error_chain(&e));
            std::process::exit(2);
        }
    }
}

/// The error and its causes on one line. Our error types print their cause in their own message
/// (`failed to read policy file /x: No such file...`) and do not chain it again as a `source`;
/// the causes chained here come from `anyhow` context and foreign errors, and one whose text is
/// already in the line is not repeated.
fn error_chain(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
    }
    msg
}
