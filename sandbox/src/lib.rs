//! The sandbox control plane: a faithful subset of the Kubernetes API server with simulated
//! Deployment, Job and HPA controllers, used by tidescale's tests, benchmarks and `tidescale dev`.
//!
//! It is a test double and a local playground, not a Kubernetes distribution: no kubelet, no
//! scheduler, no etcd. Within its scope (`shared/spec/kubernetes.md` §2–§6) it behaves like
//! kube-apiserver so that kube-rs and kubectl cannot tell the difference.
//!
//! Layout: [`store`] holds objects and watch history (the in-process API controllers use),
//! [`admission`] defaults and validates writes, [`patch`] implements the patch types, [`api`]
//! is the HTTP front end, [`gc`] the garbage collector.

pub mod admission;
pub mod aggregator;
pub mod api;
pub mod auth;
pub mod clock;
pub mod controllers;
pub mod error;
pub mod gc;
pub mod patch;
pub mod pki;
mod sandbox;
mod server;
pub mod store;

pub use auth::UserInfo;
pub use error::{ApiError, Cause};
pub use sandbox::{Credentials, Sandbox, SandboxConfig, SandboxError, SandboxHandle};
pub use store::{DeleteOptions, GroupResource, Propagation, Store, Subresource, WriteOptions};
