//! Simulated kube-controller-manager controllers for the sandbox: Deployment → ReplicaSet →
//! Pods, StatefulSets, Jobs, and the HorizontalPodAutoscaler (`spec/kubernetes.md` §3, §4,
//! §5.9, §5.11).
//!
//! There is no kubelet or scheduler in the sandbox, so these controllers also play the node:
//! pods go Pending → Running → Ready after configurable delays and Job pods succeed after a
//! configurable run time. All of them read time from the injectable [`crate::clock`], so tests
//! drive whole scaling stories in virtual time.
//!
//! The HPA's decision logic is pure ([`hpa`]); the loops that read and write the store are the
//! other modules here, run together by [`Controllers`]:
//!
//! ```text
//! let (clock, control) = ClockHandle::manual(start);          // or ClockHandle::real()
//! let store = Store::new(clock.clone(), DEFAULT_HISTORY);
//! // Metrics go through the sandbox's own router, hence through its aggregation proxy.
//! let metrics = Arc::new(RouterMetrics::new(api::router(state), Some(hpa_token)));
//! Controllers::new(store.clone(), ControllerConfig::default(), Some(metrics))
//!     .spawn(&clock, shutdown.clone());
//! control.settle().await;                                      // first (empty) pass done
//! store.create(&deployments, deployment_json, &WriteOptions::default())?;
//! control.advance(Duration::from_secs(15)).await;              // 15 passes, 1 HPA sync
//! ```
//!
//! Without a metrics source (`None`) the HPA controller is off and the workload controllers
//! still run.

pub mod deployment;
pub mod events;
pub mod hpa;
pub mod hpa_sync;
pub mod http_metrics;
pub mod index;
pub mod job;
pub mod json;
pub mod manager;
pub mod metrics_api;
pub mod pods;
pub mod quantity;
pub mod replicaset;
pub mod selector;
pub mod statefulset;
mod visited;

pub use http_metrics::HttpMetrics;
pub use manager::{ControllerConfig, Controllers};
pub use metrics_api::{FetchError, MetricsApi, RouterMetrics};
pub use pods::PodTimings;
