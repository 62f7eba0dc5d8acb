//! Termination signals: the first SIGTERM or SIGINT starts the graceful shutdown; a second one
//! exits the process at once with status 1 (an operator pressing Ctrl-C twice means it).

use std::future::Future;

use tokio::signal::unix::{SignalKind, signal};

/// Exit status after a second signal.
pub const FORCED_EXIT_CODE: i32 = 1;

/// Installs the handlers now (so no signal is lost during start-up) and returns a future that
/// completes on the first signal.
pub fn signals() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let first = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = first, "shutdown requested");
        let _ = tx.send(());
        let second = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::warn!(signal = second, "second signal: exiting at once");
        std::process::exit(FORCED_EXIT_CODE);
    });
    Ok(async move {
        let _ = rx.await;
    })
}
