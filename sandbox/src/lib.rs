//! The sandbox control plane: a faithful subset of the Kubernetes API server with simulated
//! Deployment, Job and HPA controllers, used by tidescale's tests, benchmarks and `tidescale dev`.
//!
//! It is a test double and a local playground, not a Kubernetes distribution: no kubelet, no
//! scheduler, no etcd. Within its scope (`shared/spec/kubernetes.md` §2–§6) it behaves like
//! kube-apiserver so that kube-rs and kubectl cannot tell the difference.
//!
//! Layout: [`store`] holds objects and watch history (the in-process API controllers use),
//! [`admission`] defaults and validates writes, [`patch`] implements the patch types, [`api`]
//! is the HTTP front end, [`auth`] authentication, RBAC and review endpoints, [`aggregator`]
//! the APIService proxy, [`gc`] the garbage collector, [`pki`] the certificates, and
//! [`controllers`] the simulated kube-controller-manager.
//!
//! # Quick start (tests)
//!
//! ```text
//! let sandbox = Sandbox::start(SandboxConfig::default()).await?;      // HTTPS on 127.0.0.1:0
//! let yaml = sandbox.admin_kubeconfig();                              // system:masters token
//! let client = kube::Client::try_from(kube::Config::from_custom_kubeconfig(
//!     kube::config::Kubeconfig::from_yaml(&yaml)?, &Default::default()).await?)?;
//! sandbox.write_kubeconfig(&path, &Credentials::Token(sandbox.service_account_token("ns", "sa")))?;
//! sandbox.store().compact();                                          // force 410 on old watches
//! sandbox.restart().await?;                                           // same port and data; old watches 410
//! ```
//!
//! Limits, on purpose: no kubelet (no logs/exec/port-forward); OpenAPI schemas only for custom
//! resources (`kubectl explain` works for CRDs, not for built-in kinds; validation happens
//! server-side either way); list `continue` tokens page through current data rather than a
//! historical snapshot; protobuf is accepted in requests (kubectl sends it) but answers are
//! always JSON.

pub mod admission;
pub mod aggregator;
pub mod api;
pub mod auth;
mod bootstrap;
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
