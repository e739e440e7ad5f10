//! The HorizontalPodAutoscaler algorithm of kube-controller-manager as pure functions
//! (`spec/kubernetes.md` §3), so the simulated HPA scales exactly like a real cluster and every
//! rule can be table-tested without I/O.
//!
//! Emulated version: Kubernetes 1.35 semantics — the interval tolerance rule of 1.33+ and the
//! per-direction `behavior.scaleUp/scaleDown.tolerance` of `HPAConfigurableTolerance` (beta,
//! on by default) (§3.4); the legacy no-behavior normalization (§3.6) and the behavior path
//! (§3.7); a single `/scale` PUT per rescale (no conflict retry, §3.2 step 5). Newest-branch
//! items (`ScaledToZero`, `observedGeneration`) are not emulated.
//!
//! Layout, in evaluation order:
//! - [`spec`]: the HPA spec as the algorithm reads it;
//! - [`replicas`]: per-metric replica calculator (§3.3, §3.4);
//! - [`metrics`]: dispatch per metric type, status entries, combination (§3.5);
//! - [`normalize`]: stabilization, rate limits, bounds (§3.6, §3.7);
//! - [`conditions`]: condition list with upstream reasons/messages (§3.8);
//! - [`mod@decide`]: one reconcile, tying it together (§3.2).
//!
//! The controller that does the I/O around these functions is [`crate::controllers::hpa_sync`].

pub mod conditions;
pub mod decide;
pub mod metrics;
pub mod normalize;
pub mod replicas;
pub mod spec;

#[cfg(test)]
mod tests;

pub use conditions::{Condition, ConditionType, Conditions, Reason};
pub use decide::{
    Cycle, Decision, EventRecord, MetricsPhase, Plan, Settings, decide, finish_rescale, plan,
    scale_failed, status_json,
};
pub use metrics::{MetricContext, MetricInput, MetricOutcome, evaluate};
pub use normalize::History;
pub use spec::HpaSpec;
