//! tidescale: an event-driven autoscaler and metrics service for Kubernetes, a drop-in
//! replacement for KEDA. This library holds everything the `tidescale` binary runs; `main.rs`
//! only parses the command line and dispatches.

pub mod adapter;
pub mod check;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod dev;
pub mod manifests;
pub mod modifiers;
pub mod operator;
pub mod resolve;
pub mod scaling;
pub mod telemetry;
