//! The ScaledObject controller: what the operator writes to the API server for each object.
//! `hpa` builds the owned HorizontalPodAutoscaler as a pure function of the ScaledObject and
//! its scalers' metric specs, so every field KEDA sets is pinned by tests without a cluster.

mod cleanup;
pub mod events;
pub mod hpa;
pub mod hpa_index;
mod marks;
pub mod pause;
pub mod reconcile;
pub mod secrets;
pub mod status;
pub mod target;
pub mod triggers;
