//! One poll of one ScaledObject: read the target's replicas, query every trigger in parallel
//! (each bounded by its timeout), decide (`decision`), write `/scale` when a transition is due,
//! and patch status only when it changed.
//!
//! In steady state a poll makes no Kubernetes API call at all (design.md §4.3): the replicas
//! come from the watch-fed [`TargetCache`], the object from the controller's cache, and
//! `lastActiveTime` is kept in memory and persisted on transitions and at most once every
//! `cooldownPeriod / 4` ([`super::last_active`]).
//!
//! The status is written from the cached snapshot with the snapshot's resourceVersion as a
//! precondition ([`write_if_current`]): the reconciler writes status too (`hpaName` after a
//! rename) and is not run again for it, so a poll must never write over a newer object; a poll
//! that lost the race is simply redone from the fresh object a polling interval later. Nothing
//! is written once the poll's token fired (leadership lost, or the object replaced or
//! removed): a poll checks it before its writes, and the scheduler drops polls in flight.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::{BoxFuture, join_all};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::reflector::{ObjectRef, Store};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::decision::{
    ConditionChange, Decision, ObjectState, PollOutcome, ScaleChange, ScaleReason, decide,
};
use super::fallback::{AfterPoll, after_poll, synthesized_value};
use super::last_active::{LastActive, to_write, write_interval};
use super::modifiers::{CompositeMetric, CompositeValue};
use super::replicas::TargetCache;
use super::scheduler::Pollable;
use super::store::{MetricRecord, MetricStore};
use crate::controller::events::Events;
use crate::controller::status::{
    StatusWrite, SupersededVersion, has_condition, set_condition, set_condition_to,
    write_if_current,
};
use crate::controller::target::Target;
use crate::controller::triggers::BuiltTrigger;
use crate::crd::names::{
    ANNOTATION_FORCE_ACTIVATION, ANNOTATION_PAUSED_SCALE_IN, ANNOTATION_PAUSED_SCALE_OUT,
    COMPOSITE_METRIC_NAME, condition, event, reason,
};
use crate::crd::{ScaledObject, ScaledObjectStatus, TriggerActivityStatus};
use crate::modifiers::FormulaError;
use crate::telemetry::{Metrics, PollLabels, ResourceType};

/// The process's client, caches and sinks, shared by every reconcile and poll: one `Arc`
/// per polled object instead of seven handles (~200 bytes each of 10,000 objects).
pub struct Handles {
    /// API client.
    pub client: kube::Client,
    /// The controller's cache of ScaledObjects (latest status).
    pub objects: Store<ScaledObject>,
    /// Upper bound of one scaler query.
    pub timeout: Duration,
    /// Where Events are recorded.
    pub events: Events,
    /// KEDA's metric families.
    pub metrics: Arc<Metrics>,
    /// Where the adapter reads the values this loop finds.
    pub store: MetricStore,
    /// Where the targets' replicas are read from (a watch, not a GET per poll).
    pub targets: TargetCache,
}

/// A ScaledObject as the scheduler polls it: the spec it was registered with, its resolved
/// target and built scalers, and where to find its latest status.
pub struct PolledObject {
    /// What every poll shares.
    pub handles: Arc<Handles>,
    /// Namespace and name.
    pub namespace: String,
    /// Object name.
    pub name: String,
    /// Time between polls (`spec.pollingInterval`).
    pub interval: Duration,
    /// The resolved scale target.
    pub target: Target,
    /// Built scalers, in trigger order.
    pub triggers: Vec<BuiltTrigger>,
    /// The scaling-modifiers formula, when the object has one.
    pub composite: Option<CompositeMetric>,
    /// `lastActiveTime` as this process saw it.
    pub last_active: LastActive,
    /// The cached version a status write would be refused over (see [`SupersededVersion`]).
    pub superseded: SupersededVersion,
}

impl Pollable for PolledObject {
    fn interval(&self) -> Duration {
        self.interval
    }

    fn poll(self: Arc<Self>, stop: CancellationToken) -> BoxFuture<'static, ()> {
        Box::pin(async move { self.poll_once(&stop).await })
    }

    fn started_late(&self, lateness: Duration) {
        self.handles.metrics.record_poll_lateness(lateness);
        self.handles
            .metrics
            .record_scale_loop_latency(&self.namespace, &self.name, lateness);
    }
}

/// What the triggers said in one poll.
struct TriggerResults {
    outcome: PollOutcome,
    activity: BTreeMap<String, TriggerActivityStatus>,
    /// Metric name → read successfully.
    succeeded: BTreeMap<String, bool>,
    /// Metric name → the value read (the first, for multi-value scalers).
    values: BTreeMap<String, f64>,
    /// Metric name → why the read failed.
    errors: BTreeMap<String, String>,
    /// Trigger name → its value, `None` when it failed: the formula's inputs.
    named: BTreeMap<String, Option<f64>>,
}

impl PolledObject {
    /// One poll; writes nothing once `stop` fired (leadership lost, the object replaced or
    /// removed, or shutting down).
    async fn poll_once(&self, stop: &CancellationToken) {
        let reference = ObjectRef::new(&self.name).within(&self.namespace);
        let Some(latest) = self.handles.objects.get(&reference) else {
            return;
        };
        let current = match self.handles.targets.replicas(&self.target).await {
            Ok(replicas) => replicas,
            Err(error) => {
                warn!(namespace = %self.namespace, scaled_object = %self.name, error = %error, "cannot read the scale target");
                return;
            }
        };
        let results = self.query_triggers().await;
        let now = Timestamp::now();
        let previous = latest
            .status
            .as_ref()
            .map(|s| s.health.clone())
            .unwrap_or_default();
        let fallback = after_poll(
            latest.spec.fallback.as_ref(),
            &previous,
            &results.succeeded,
            current,
        );
        let mut state = object_state(&latest, current);
        state.fallback_replicas = fallback.as_ref().and_then(|f| f.replicas);
        let interval = write_interval(state.cooldown);
        let persisted_active = latest.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == condition::ACTIVE && c.status == "True")
        });
        state.last_active =
            self.last_active
                .effective(state.last_active, persisted_active, interval, now);
        let mut outcome = results.outcome;
        let composite = self.composite.as_ref().map(|c| c.evaluate(&results.named));
        match &composite {
            Some(Ok(value)) => outcome.active = value.active,
            Some(Err(error)) => {
                outcome.error = true;
                warn!(namespace = %self.namespace, scaled_object = %self.name, error = %error, "scaling modifiers formula failed");
            }
            None => {}
        }
        let fallback_replicas = state.fallback_replicas;
        let decision = decide(&state, outcome, now);
        if decision.touch_last_active {
            self.last_active.touch(now);
        }
        self.handles.store.record_poll(
            &self.namespace,
            &self.name,
            self.records(&results, composite, fallback_replicas, current, now),
        );
        debug!(namespace = %self.namespace, scaled_object = %self.name, current, active = results.outcome.active, "polled");
        // Leadership (or the registration) may have ended while the triggers answered.
        if stop.is_cancelled() {
            return;
        }
        if let Some(change) = decision.scale {
            self.scale(&latest, current, change).await;
        }
        // Almost every poll: nothing to write, known without building the status.
        let remembered = self.last_active.remembered();
        if fallback.is_none()
            && status_unchanged(&latest, &decision, &results.activity, remembered, interval)
        {
            return;
        }
        let mut status = next_status(&latest, &decision, results.activity);
        if let Some(fallback) = fallback {
            self.record_fallback(&latest, &mut status, fallback).await;
        }
        let persisted = status.last_active_time.as_ref().map(|t| t.0);
        let transition = latest.status.as_ref() != Some(&status);
        status.last_active_time = to_write(persisted, remembered, transition, interval).map(Time);
        if !stop.is_cancelled() {
            self.write_status(&latest, &status).await;
        }
    }

    /// Write `status` over `latest` unless the object changed since (see
    /// [`write_if_current`]): a stale write is dropped, and the next poll computes the status
    /// again from the fresh object.
    async fn write_status(&self, latest: &ScaledObject, status: &ScaledObjectStatus) {
        if self.superseded.is(latest) {
            debug!(namespace = %self.namespace, scaled_object = %self.name, "the cache has not seen the last write yet; status left to the next poll");
            return;
        }
        match write_if_current(&self.handles.client, latest, status).await {
            Ok(StatusWrite::Stale) => {
                self.superseded.mark(latest);
                debug!(namespace = %self.namespace, scaled_object = %self.name, "the object changed since this poll read it; not writing the status");
            }
            Ok(StatusWrite::Written) => self.superseded.mark(latest),
            Ok(StatusWrite::Unchanged) => {}
            Err(error) => {
                warn!(namespace = %self.namespace, scaled_object = %self.name, error = %error, "cannot write the status");
            }
        }
    }

    /// Write `/scale` and record the transition as KEDA does: `KEDAScaleTargetActivated` /
    /// `Deactivated`, or their `…Failed` warnings.
    async fn scale(&self, so: &ScaledObject, current: i32, change: ScaleChange) {
        let target = format!(
            "{} {}/{}",
            self.target.kind_label(),
            self.namespace,
            self.target.name
        );
        match self
            .target
            .scale_to_version(&self.handles.client, change.to)
            .await
        {
            Ok(version) => {
                self.handles
                    .targets
                    .wrote(&self.target, change.to, version)
                    .await;
                info!(namespace = %self.namespace, scaled_object = %self.name, from = current, to = change.to, reason = ?change.reason, "scaled the target");
                if let Some(reason) = change.reason.event_reason() {
                    let note = format!("Scaled {target} from {current} to {}", change.to);
                    self.handles.events.normal(so, reason, note);
                }
            }
            Err(error) => {
                warn!(namespace = %self.namespace, scaled_object = %self.name, error = %error, "cannot scale the target");
                let reason = match change.reason {
                    ScaleReason::Deactivated => event::SCALE_TARGET_DEACTIVATION_FAILED,
                    _ => event::SCALE_TARGET_ACTIVATION_FAILED,
                };
                let note = format!("Failed to scale {target} from {current} to {}", change.to);
                self.handles.events.warning(so, reason, note);
            }
        }
    }

    /// What the adapter will serve: each metric's value, fallback's synthesized value for a
    /// failing metric while fallback applies (`replicas × target`, divided by the current
    /// replicas for Value targets), and the composite metric.
    fn records(
        &self,
        results: &TriggerResults,
        composite: Option<Result<CompositeValue, FormulaError>>,
        fallback_replicas: Option<i32>,
        current: i32,
        now: Timestamp,
    ) -> BTreeMap<String, MetricRecord> {
        let mut records = BTreeMap::new();
        for spec in self.triggers.iter().flat_map(|t| &t.specs) {
            let name = spec.metric_name.clone();
            let active = results.activity.get(&name).is_some_and(|a| a.is_active);
            let record = match (results.values.get(&name), fallback_replicas) {
                (Some(value), _) => MetricRecord {
                    value: *value,
                    active,
                    timestamp: now,
                    error: None,
                },
                (None, Some(replicas)) => {
                    let average = spec.metric_type != tidescale_scalers::MetricType::Value;
                    let value = synthesized_value(average, spec.target, replicas, current);
                    MetricRecord {
                        value,
                        active: false,
                        timestamp: now,
                        error: None,
                    }
                }
                (None, None) => {
                    let error = results
                        .errors
                        .get(&name)
                        .cloned()
                        .unwrap_or_else(|| "not read".to_owned());
                    MetricRecord {
                        value: 0.0,
                        active: false,
                        timestamp: now,
                        error: Some(error),
                    }
                }
            };
            records.insert(name, record);
        }
        if let Some(composite) = composite {
            let record = match composite {
                Ok(CompositeValue {
                    value: Some(value),
                    active,
                }) => MetricRecord {
                    value,
                    active,
                    timestamp: now,
                    error: None,
                },
                Ok(CompositeValue { value: None, .. }) => MetricRecord {
                    value: 0.0,
                    active: false,
                    timestamp: now,
                    error: Some("the formula yielded nil".to_owned()),
                },
                Err(error) => MetricRecord {
                    value: 0.0,
                    active: false,
                    timestamp: now,
                    error: Some(error.to_string()),
                },
            };
            records.insert(COMPOSITE_METRIC_NAME.to_owned(), record);
        }
        records
    }

    /// KEDA's per-trigger series for one query.
    fn record_metrics(
        &self,
        trigger: &BuiltTrigger,
        metric: &str,
        result: &Result<
            Result<tidescale_scalers::MetricsAndActivity, tidescale_scalers::ScalerError>,
            tokio::time::error::Elapsed,
        >,
        latency: Duration,
    ) {
        let labels = PollLabels {
            namespace: &self.namespace,
            scaled_object: &self.name,
            scaler: trigger
                .name
                .as_deref()
                .unwrap_or(trigger.trigger_type.as_str()),
            trigger_index: trigger.index,
            metric,
            resource_type: ResourceType::ScaledObject,
        };
        match result {
            Ok(Ok(values)) => {
                let value = values.values.first().copied().unwrap_or(0.0);
                self.handles
                    .metrics
                    .record_poll(&labels, value, values.active, latency);
            }
            _ => self.handles.metrics.record_scaler_error(&labels),
        }
    }

    /// Health per metric and the Fallback condition, with KEDA's Events on a change.
    async fn record_fallback(
        &self,
        so: &ScaledObject,
        status: &mut ScaledObjectStatus,
        fallback: AfterPoll,
    ) {
        status.health = fallback.health;
        let (state, reason, message) = if fallback.active {
            (
                "True",
                reason::FALLBACK_EXISTS,
                "At least one trigger is falling back on this scaled object",
            )
        } else {
            (
                "False",
                reason::NO_FALLBACK_FOUND,
                "No fallbacks are active on this scaled object",
            )
        };
        let was_active = so.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == condition::FALLBACK && c.status == "True")
        });
        set_condition_to(
            &mut status.conditions,
            condition::FALLBACK,
            state,
            reason,
            message,
        );
        match (was_active, fallback.active) {
            (false, true) => self.handles.events.warning(
                so,
                event::SCALED_OBJECT_FALLBACK_ACTIVATED,
                "Using fallback replicas because metrics keep failing".to_owned(),
            ),
            (true, false) => self.handles.events.normal(
                so,
                event::SCALED_OBJECT_FALLBACK_DEACTIVATED,
                "Metrics are back: fallback no longer applies".to_owned(),
            ),
            _ => {}
        }
    }

    /// Query every metric of every trigger at once, each bounded by the timeout.
    async fn query_triggers(&self) -> TriggerResults {
        let queries = self.triggers.iter().flat_map(|trigger| {
            trigger.specs.iter().map(move |spec| async move {
                let started = std::time::Instant::now();
                let call = trigger.scaler.metrics_and_activity(&spec.metric_name);
                let result = tokio::time::timeout(self.handles.timeout, call).await;
                self.record_metrics(trigger, &spec.metric_name, &result, started.elapsed());
                (trigger, spec.metric_name.clone(), result)
            })
        });
        let mut results = TriggerResults {
            outcome: PollOutcome {
                active: false,
                error: false,
            },
            activity: BTreeMap::new(),
            succeeded: BTreeMap::new(),
            values: BTreeMap::new(),
            errors: BTreeMap::new(),
            named: BTreeMap::new(),
        };
        for (trigger, metric, result) in join_all(queries).await {
            match result {
                Ok(Ok(values)) => {
                    let value = values.values.first().copied().unwrap_or(0.0);
                    if let Some(name) = &trigger.name {
                        results.named.insert(name.clone(), Some(value));
                    }
                    results.values.insert(metric.clone(), value);
                    results.succeeded.insert(metric.clone(), true);
                    results.outcome.active |= values.active;
                    results.activity.insert(
                        metric,
                        TriggerActivityStatus {
                            is_active: values.active,
                        },
                    );
                }
                Ok(Err(error)) => {
                    if let Some(name) = &trigger.name {
                        results.named.insert(name.clone(), None);
                    }
                    results.errors.insert(metric.clone(), error.to_string());
                    results.succeeded.insert(metric.clone(), false);
                    results.outcome.error = true;
                    warn!(namespace = %self.namespace, scaled_object = %self.name, trigger_index = trigger.index, scaler = trigger.trigger_type, error = %error, "trigger failed");
                }
                Err(_) => {
                    if let Some(name) = &trigger.name {
                        results.named.insert(name.clone(), None);
                    }
                    let message = format!("no answer within {:?}", self.handles.timeout);
                    results.errors.insert(metric.clone(), message);
                    results.succeeded.insert(metric.clone(), false);
                    results.outcome.error = true;
                    warn!(namespace = %self.namespace, scaled_object = %self.name, trigger_index = trigger.index, scaler = trigger.trigger_type, timeout = ?self.handles.timeout, "trigger timed out");
                }
            }
        }
        results
    }
}

fn annotation(so: &ScaledObject, key: &str) -> Option<String> {
    so.metadata.annotations.as_ref()?.get(key).cloned()
}

/// The decision's inputs from the object's spec, status and annotations.
fn object_state(so: &ScaledObject, current_replicas: i32) -> ObjectState {
    let spec = &so.spec;
    let set = |key: &str| annotation(so, key).is_some_and(|v| v != "false");
    ObjectState {
        current_replicas,
        min_replicas: spec.min_replica_count,
        idle_replicas: spec.idle_replica_count,
        cooldown: Duration::from_secs(spec.cooldown_period.max(0) as u64),
        initial_cooldown: Duration::from_secs(spec.initial_cooldown_period.max(0) as u64),
        created: so
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(Timestamp::UNIX_EPOCH, |t| t.0),
        last_active: so
            .status
            .as_ref()
            .and_then(|s| s.last_active_time.as_ref())
            .map(|t| t.0),
        paused_scale_in: set(ANNOTATION_PAUSED_SCALE_IN),
        paused_scale_out: set(ANNOTATION_PAUSED_SCALE_OUT),
        force_activation: annotation(so, ANNOTATION_FORCE_ACTIVATION).as_deref() == Some("true"),
        fallback_replicas: None,
        has_fallback: spec.fallback.is_some(),
    }
}

/// Whether [`next_status`] (without fallback) and `lastActiveTime` would leave `so`'s status as
/// it is: the same test as comparing the built status, without cloning the status each poll.
fn status_unchanged(
    so: &ScaledObject,
    decision: &Decision,
    activity: &BTreeMap<String, TriggerActivityStatus>,
    remembered: Option<Timestamp>,
    interval: Duration,
) -> bool {
    let Some(status) = so.status.as_ref() else {
        return false;
    };
    let kept = |change: &Option<ConditionChange>, type_: &str| {
        change
            .as_ref()
            .is_none_or(|change| has_condition(&status.conditions, type_, change))
    };
    let persisted = status.last_active_time.as_ref().map(|t| t.0);
    kept(&decision.active, condition::ACTIVE)
        && kept(&decision.ready, condition::READY)
        && (activity.is_empty() || activity.iter().eq(status.triggers_activity.iter()))
        && to_write(persisted, remembered, false, interval) == persisted
}

/// The status after this poll: conditions and activity (`lastActiveTime` is the caller's).
fn next_status(
    so: &ScaledObject,
    decision: &Decision,
    activity: BTreeMap<String, TriggerActivityStatus>,
) -> ScaledObjectStatus {
    let mut status = so.status.clone().unwrap_or_default();
    if let Some(active) = &decision.active {
        set_condition(&mut status.conditions, condition::ACTIVE, active);
    }
    if let Some(ready) = &decision.ready {
        set_condition(&mut status.conditions, condition::READY, ready);
    }
    if !activity.is_empty() {
        status.triggers_activity = activity.into_iter().collect();
    }
    status
}

#[cfg(test)]
#[path = "poll_tests.rs"]
mod tests;
