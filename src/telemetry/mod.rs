//! Telemetry: the Prometheus registry, the HTTP endpoints that expose it next to the health
//! probes, and the tracing subscriber.
//!
//! It lives apart from the controller and the scaling loop so those only call typed methods
//! (`Metrics::record_poll`, `Readiness::set_ready`) and never touch label names: KEDA's family
//! and label names are a contract with existing dashboards and alerts, and keeping them in one
//! file is what keeps them exact.

pub mod api_requests;
pub mod logging;
pub mod metrics;
mod object_series;
mod object_text;
pub mod server;

pub use logging::{DEFAULT_LOG_FILTER, LogFormat, init_logging};
pub use metrics::{CONTENT_TYPE, Metrics, PollLabels, RegisteredResource, ResourceType};
pub use server::{Readiness, TelemetryServer, router, serve};
