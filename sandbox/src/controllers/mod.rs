//! Simulated kube-controller-manager controllers for the sandbox: Deployment → ReplicaSet →
//! Pods, Jobs, and the HorizontalPodAutoscaler (`spec/kubernetes.md` §3, §5.9, §5.11).
//!
//! There is no kubelet or scheduler in the sandbox, so these controllers also play the node:
//! pods go Pending → Running → Ready after configurable delays and Job pods succeed after a
//! configurable run time. All of them read time from the injectable [`crate::clock`], so tests
//! drive whole scaling stories in virtual time.
//!
//! The HPA's decision logic is pure ([`hpa`]); the loops that read and write the store are the
//! other modules here.

pub mod deployment;
pub mod events;
pub mod hpa;
pub mod hpa_sync;
pub mod job;
pub mod manager;
pub mod metrics_api;
pub mod pods;
pub mod quantity;
pub mod replicaset;
pub mod selector;
pub mod statefulset;

pub use manager::{ControllerConfig, Controllers};
pub use metrics_api::{FetchError, MetricsApi, RouterMetrics};
pub use pods::PodTimings;
