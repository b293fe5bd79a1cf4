//! Process-wide setup shared by every subcommand: logging and waiting for a stop signal.
//!
//! Owns the tracing subscriber and the SIGTERM/SIGINT wait; nothing else. Log lines at
//! info level and below must never carry addresses, ids or keys; code that needs to
//! mention them at debug level wraps them in `blindfold_proto::redact::Redacted`.

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
