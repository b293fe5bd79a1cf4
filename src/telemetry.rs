//! Process-wide setup shared by every subcommand: logging and waiting for a stop signal.
//!
//! Owns the tracing subscriber and the SIGTERM/SIGINT wait; nothing else. Log lines at info level and below must never carry
//! addresses, ids or keys; modules that need to mention them at debug level wrap them
//! in [`Redacted`].

use std::fmt;

/// Installs a `tracing` subscriber filtered by `RUST_LOG` (else `default`, e.g. `info`
/// for servers, `warn` for tools whose output is a report), writing to stderr. Safe to
/// call more than once (later calls are no-ops).
pub fn init(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Wraps a value that must not reach logs verbatim (an address, an id, a key).
///
/// `Display`/`Debug` print only a placeholder, so a stray `{}` cannot leak it.
pub struct Redacted<T>(pub T);

impl<T> fmt::Display for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<T> fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Blocks until SIGTERM or SIGINT arrives (on a small current-thread runtime of its own).
pub fn wait_for_stop_signal() -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        Ok(())
    })
}
