//! The one place that installs the tracing subscriber. Logs go to stderr; `RUST_LOG` filters.
//! Resident text is never logged by this crate at info or above (lengths and counts only).

pub fn init(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter))
        // whisper.cpp's own log lines are kept at warnings even when debugging: its debug
        // output can describe what was decoded from a caller's audio.
        .add_directive("whisper_rs=warn".parse().expect("static directive"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
