#![forbid(unsafe_code)]

use clap::Parser;
use storage_policy_webhook::cli::{self, Cli};

fn main() {
    let cli = Cli::parse();
    match cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("storage-policy-webhook: {e:#}");
            std::process::exit(2);
        }
    }
}
