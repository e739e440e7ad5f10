//! The process-wide tracing subscriber.
//!
//! Plain text suits a terminal; JSON suits log shippers in a cluster (the chart selects it),
//! because fields such as `namespace` and `scaled_object` stay separate keys instead of being
//! parsed back out of a line. The default filter silences kube's per-request chatter; `RUST_LOG`
//! wins over the flag so a single pod can be debugged by editing its environment.

use tracing_subscriber::EnvFilter;

/// The filter used when neither the flag nor `RUST_LOG` says otherwise.
pub const DEFAULT_LOG_FILTER: &str = "info,kube=warn";

/// The environment variable that overrides the `level` passed to [`init_logging`].
const FILTER_ENV: &str = "RUST_LOG";

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Plain,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber. `level` is an `EnvFilter` directive string such as
/// [`DEFAULT_LOG_FILTER`] or `debug,tidescale=trace`; a non-empty `RUST_LOG` replaces it.
/// Fails on an invalid filter or when a subscriber is already installed.
pub fn init_logging(level: &str, format: LogFormat) -> anyhow::Result<()> {
    let from_env = std::env::var(FILTER_ENV).ok();
    let filter = build_filter(level, from_env.as_deref())?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Plain => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("installing the log subscriber: {e}"))
}

/// The filter from `RUST_LOG` when it is set and non-empty, else from `level`, else
/// [`DEFAULT_LOG_FILTER`].
fn build_filter(level: &str, from_env: Option<&str>) -> anyhow::Result<EnvFilter> {
    let directives = [from_env.unwrap_or_default(), level]
        .into_iter()
        .map(str::trim)
        .find(|directives| !directives.is_empty())
        .unwrap_or(DEFAULT_LOG_FILTER);
    EnvFilter::try_new(directives)
        .map_err(|e| anyhow::anyhow!("invalid log filter {directives:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telemetry_log_filter_prefers_rust_log() {
        let filter = build_filter(DEFAULT_LOG_FILTER, Some("debug")).expect("valid");
        assert_eq!(filter.to_string(), "debug");
    }

    #[test]
    fn telemetry_log_filter_uses_level_when_rust_log_is_unset_or_blank() {
        for env in [None, Some(""), Some("  ")] {
            let filter = build_filter("warn,tidescale=debug", env).expect("valid");
            assert_eq!(filter.to_string(), "tidescale=debug,warn");
        }
    }

    #[test]
    fn telemetry_log_filter_falls_back_to_default() {
        let filter = build_filter("", None).expect("valid");
        assert_eq!(filter.to_string(), "kube=warn,info");
    }

    #[test]
    fn telemetry_log_filter_rejects_garbage() {
        assert!(build_filter("tidescale=loud", None).is_err());
    }

    #[test]
    fn telemetry_log_format_parses_from_cli() {
        use clap::ValueEnum;
        assert_eq!(
            LogFormat::from_str("json", true).expect("json"),
            LogFormat::Json
        );
        assert_eq!(
            LogFormat::from_str("plain", true).expect("plain"),
            LogFormat::Plain
        );
    }
}
