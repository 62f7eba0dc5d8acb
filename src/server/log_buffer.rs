//! The log writer of `serve`: lines go to a memory buffer, written out by a flusher thread on a
//! short interval, when the buffer fills, and at exit. nginx's `access_log ... buffer= flush=` is
//! the model: a request costs a copy into memory, not a `write(2)`.
//!
//! The buffer is flushed
//! - every `flush_every` (at most one second in `serve`) by the flusher thread;
//! - by the writer itself when it holds more than `capacity` bytes (memory stays bounded; that
//!   request pays for the write);
//! - when the [`FlushGuard`] is dropped or [`FlushGuard::flush`] is called: `main` does so on every
//!   exit path (normal, error, second signal) before `process::exit`;
//! - by the panic hook [`FlushGuard::install_panic_hook`] puts in front of the default one.
//!
//! What can be lost: on SIGKILL (the kubelet after the termination grace period, the OOM killer)
//! or an abort, the lines of the last `flush_every` at most (and never more than `capacity`
//! bytes). RELIABILITY.md lists this window.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// The interval `serve` flushes on.
pub const DEFAULT_FLUSH_EVERY: Duration = Duration::from_millis(500);

/// The bytes `serve` buffers before a writer flushes inline.
pub const DEFAULT_CAPACITY: usize = 256 << 10;

struct Inner {
    buf: Mutex<Vec<u8>>,
    out: Mutex<Box<dyn Write + Send>>,
    capacity: usize,
    stop: AtomicBool,
    wake: Condvar,
    /// Paired with `wake`; holds nothing.
    sleep: Mutex<()>,
}

impl Inner {
    fn lock_buf(&self) -> MutexGuard<'_, Vec<u8>> {
        self.buf.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes what is buffered and writes it out. The buffer's lock is held only for the swap,
    /// so writers go on while the output is written.
    fn flush(&self) {
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let pending = std::mem::take(&mut *self.lock_buf());
        if !pending.is_empty() {
            // Nowhere to report a failed log write: the bytes are dropped, as stderr would.
            let _ = out.write_all(&pending);
        }
        let _ = out.flush();
    }
}

/// A `tracing_subscriber` writer appending to the shared buffer (cheap to clone).
#[derive(Clone)]
pub struct LogBuffer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for LogBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogBuffer")
            .field("capacity", &self.inner.capacity)
            .finish_non_exhaustive()
    }
}

/// Stops the flusher thread and writes out what is buffered when dropped.
pub struct FlushGuard {
    inner: Arc<Inner>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for FlushGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlushGuard").finish_non_exhaustive()
    }
}

impl LogBuffer {
    /// A buffer in front of `out`, flushed every `flush_every` by a thread of its own.
    pub fn new(
        out: impl Write + Send + 'static,
        flush_every: Duration,
        capacity: usize,
    ) -> io::Result<(LogBuffer, FlushGuard)> {
        let inner = Arc::new(Inner {
            buf: Mutex::new(Vec::with_capacity(capacity.min(64 << 10))),
            out: Mutex::new(Box::new(out)),
            capacity,
            stop: AtomicBool::new(false),
            wake: Condvar::new(),
            sleep: Mutex::new(()),
        });
        let flusher = inner.clone();
        let thread = std::thread::Builder::new()
            .name("log-flush".into())
            .spawn(move || {
                let mut guard = flusher.sleep.lock().unwrap_or_else(|p| p.into_inner());
                while !flusher.stop.load(Ordering::Acquire) {
                    guard = flusher
                        .wake
                        .wait_timeout(guard, flush_every)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                    flusher.flush();
                }
            })?;
        Ok((
            LogBuffer {
                inner: inner.clone(),
            },
            FlushGuard {
                inner,
                thread: Some(thread),
            },
        ))
    }

    /// Writes out what is buffered now.
    pub fn flush(&self) {
        self.inner.flush();
    }
}

impl FlushGuard {
    /// Writes out what is buffered now.
    pub fn flush(&self) {
        self.inner.flush();
    }

    /// Flushes the buffer before the default panic message is printed, so the lines that led to
    /// a panic are not lost with it.
    pub fn install_panic_hook(&self) {
        let inner = Arc::downgrade(&self.inner);
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Some(inner) = inner.upgrade() {
                // Never wait in a panic hook: a panic inside a log write holds the lock.
                if let (Ok(mut out), Ok(mut buf)) = (inner.out.try_lock(), inner.buf.try_lock()) {
                    let _ = out.write_all(&std::mem::take(&mut *buf));
                    let _ = out.flush();
                }
            }
            previous(info);
        }));
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        {
            let _sleeping = self.inner.sleep.lock().unwrap_or_else(|p| p.into_inner());
            self.inner.stop.store(true, Ordering::Release);
            self.inner.wake.notify_all();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.inner.flush();
    }
}

/// One write into the buffer (`tracing_subscriber` formats an event, then writes it whole).
pub struct LineWriter<'a> {
    inner: &'a Inner,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let full = {
            let mut buf = self.inner.lock_buf();
            buf.extend_from_slice(bytes);
            buf.len() >= self.inner.capacity
        };
        if full {
            self.inner.flush();
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter { inner: &self.inner }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// An output the test can read.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Sink {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn write(buf: &LogBuffer, line: &str) {
        use tracing_subscriber::fmt::MakeWriter as _;
        buf.make_writer().write_all(line.as_bytes()).unwrap();
    }

    #[test]
    fn lines_wait_in_memory_until_flushed() {
        let sink = Sink::default();
        let (buf, guard) =
            LogBuffer::new(sink.clone(), Duration::from_secs(3600), 1 << 20).unwrap();
        write(&buf, "one\n");
        write(&buf, "two\n");
        assert_eq!(sink.text(), "", "nothing written before a flush");
        guard.flush();
        assert_eq!(sink.text(), "one\ntwo\n");
        write(&buf, "three\n");
        drop(guard);
        assert_eq!(
            sink.text(),
            "one\ntwo\nthree\n",
            "dropping the guard flushes"
        );
    }

    #[test]
    fn the_flusher_writes_within_its_interval() {
        let sink = Sink::default();
        let (buf, _guard) =
            LogBuffer::new(sink.clone(), Duration::from_millis(20), 1 << 20).unwrap();
        write(&buf, "tick\n");
        let start = Instant::now();
        while sink.text().is_empty() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the flusher thread never wrote"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(sink.text(), "tick\n");
    }

    #[test]
    fn a_full_buffer_is_written_by_the_writer() {
        let sink = Sink::default();
        let (buf, guard) = LogBuffer::new(sink.clone(), Duration::from_secs(3600), 10).unwrap();
        write(&buf, "12345\n");
        assert_eq!(sink.text(), "");
        write(&buf, "67890\n");
        assert_eq!(
            sink.text(),
            "12345\n67890\n",
            "over capacity: written at once"
        );
        assert!(buf.inner.lock_buf().is_empty());
        drop(guard);
    }
}
