#![forbid(unsafe_code)]

use std::path::Path;

use clap::{CommandFactory, FromArgMatches, Parser};
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
    let cli = parse_args();
    let log = cli::init_tracing(&cli);
    // `cli::run` has returned, so every destructor has run: exiting skips nothing once the
    // buffered log lines are written out (on every path).
    let result = cli::run(cli);
    drop(log);
    match result {
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

/// The file name under which the binary is a kubectl plugin: `kubectl storage-policy audit ...`
/// runs `kubectl-storage_policy audit ...` from the PATH (kubectl maps `-` in a plugin's name to
/// `_` in its file name).
const KUBECTL_PLUGIN: &str = "kubectl-storage_policy";

/// The command line; as a kubectl plugin, usage and help name the command the user typed.
fn parse_args() -> Cli {
    let plugin = std::env::args_os()
        .next()
        .is_some_and(|argv0| Path::new(&argv0).file_name() == Some(KUBECTL_PLUGIN.as_ref()));
    if !plugin {
        return Cli::parse();
    }
    let matches = Cli::command()
        .bin_name("kubectl storage-policy")
        .get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
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
