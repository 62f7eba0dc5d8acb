//! Termination signals: the first SIGTERM or SIGINT starts the graceful shutdown; a second one
//! ends it at once (an operator pressing Ctrl-C twice means it). Nothing here exits the process:
//! the second signal completes [`Signals::forced`], `serve` drops the server and returns
//! [`Forced`] up to `main`, which exits with [`FORCED_EXIT_CODE`] once every destructor has run
//! (the self-signed certificate directory among them).

use std::future::Future;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::oneshot;

/// Exit status after a second signal.
pub const FORCED_EXIT_CODE: i32 = 1;

/// A second signal arrived before the graceful shutdown finished.
#[derive(Debug, thiserror::Error)]
#[error("second signal ({signal}): stopped without finishing in-flight requests")]
pub struct Forced {
    pub signal: &'static str,
}

/// The installed handlers: [`Signals::first`] starts the graceful shutdown, [`Signals::forced`]
/// cuts it short.
#[derive(Debug)]
pub struct Signals {
    first: oneshot::Receiver<()>,
    second: oneshot::Receiver<&'static str>,
}

/// Installs the handlers now, so no signal is lost during start-up.
pub fn signals() -> std::io::Result<Signals> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (first_tx, first) = oneshot::channel();
    let (second_tx, second) = oneshot::channel();
    tokio::spawn(async move {
        let first = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = first, "shutdown requested");
        let _ = first_tx.send(());
        let second = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::warn!(signal = second, "second signal: exiting at once");
        let _ = second_tx.send(second);
    });
    Ok(Signals { first, second })
}

impl Signals {
    /// The first signal, and the second one.
    pub fn split(
        self,
    ) -> (
        impl Future<Output = ()> + Send + 'static,
        impl Future<Output = Forced> + Send + 'static,
    ) {
        let Signals { first, second } = self;
        let first = async move {
            // A closed channel means the runtime is going away: nothing to wait for.
            let _ = first.await;
        };
        let forced = async move {
            match second.await {
                Ok(signal) => Forced { signal },
                Err(_) => std::future::pending().await,
            }
        };
        (first, forced)
    }
}
