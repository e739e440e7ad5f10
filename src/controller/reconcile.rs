//! Reconciling a ScaledObject (`reference/keda.md` §2.2): finalizer, the
//! `scaledobject.keda.sh/name` label, validation, the scale target, the scalers, the owned
//! HPA, status, and (re)registration with the scheduler when the spec changed.
//!
//! A reconcile that succeeds waits for the next change (`Action::await_change`) instead of
//! a periodic resync: everything it reads is watched — the object, its HPA (owned), the
//! Secrets, ConfigMaps and (Cluster)TriggerAuthentications it uses (`secrets`), the target's
//! replicas (`scaling::replicas`) — and KEDA's controller resyncs only every 10 hours
//! (controller-runtime's default). A timer per object would also keep 10,000 entries in
//! kube-runtime's scheduler for nothing. Failures and invalid objects still retry on a timer.
//! Not watched: the target's pod-template env that `…FromEnv` keys read; as in KEDA, which
//! reads it when it builds scalers, a change there is taken at the object's next change.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event, finalizer};
use tracing::{info, warn};

use super::hpa as owned_hpa;
use super::marks::{self, Contact};
use super::pause::{self, Pause};
use super::secrets::SourceIndex;
use super::status::{current_status, set_condition, set_condition_to, write_if_changed};
use super::target::{Target, TargetError, within_api_timeout};
use super::triggers::{build_resolved, resolve_triggers};
use crate::check::{NoTriggerValidation, rules};
use crate::crd::ScaledObject;
use crate::crd::names::{FINALIZER, LABEL_SCALED_OBJECT_NAME, condition, event, reason};
use crate::scaling::decision::ConditionChange;
use crate::scaling::modifiers::CompositeMetric;
use crate::scaling::poll::{Handles, PolledObject};
use crate::scaling::scheduler::{ObjectKey, Scheduler};
use crate::telemetry::RegisteredResource;

/// What every reconcile shares.
pub struct Context {
    /// The client, caches and sinks polls share too.
    pub handles: Arc<Handles>,
    /// The one scheduler of all polls.
    pub scheduler: Scheduler<PolledObject>,
    /// Namespace of the Secrets ClusterTriggerAuthentications name.
    pub cluster_object_namespace: String,
    /// The revision ([`revision`]) each object is polled with.
    pub registered: Mutex<HashMap<ObjectKey, (String, Arc<PolledObject>)>>,
    /// Which Secrets and TriggerAuthentications each object's triggers were resolved from.
    pub sources: Arc<SourceIndex>,
    /// Discovery answers by kind.
    pub kinds: super::target::Kinds,
    /// The owned HPAs' `ScalingActive` conditions, from the controller's watch of them.
    pub hpas: super::hpa_index::HpaIndex,
}

impl Context {
    /// A status was written over `so`: its poll loop, if any, must not write over that version.
    pub(super) fn status_written(&self, so: &ScaledObject) {
        let registered = self.registered.lock().ok();
        if let Some((_, polled)) = registered.as_ref().and_then(|r| r.get(&key_of(so))) {
            polled.superseded.mark(so);
        }
    }

    /// `so`'s scale target, resolved through discovery.
    pub(super) async fn target_of(&self, so: &ScaledObject) -> Result<Target, TargetError> {
        let namespace = so.metadata.namespace.as_deref().unwrap_or_default();
        let reference = &so.spec.scale_target_ref;
        Target::resolve(&self.handles.client, &self.kinds, namespace, reference).await
    }

    /// Whether this process wrote over `so` already (so a newer version is on its way).
    fn is_superseded(&self, so: &ScaledObject) -> bool {
        let registered = self.registered.lock().ok();
        registered
            .as_ref()
            .and_then(|r| r.get(&key_of(so)))
            .is_some_and(|(_, polled)| polled.superseded.is(so))
    }
}

/// A reconcile that failed; retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("{action}: {source}")]
    Api {
        /// What was attempted.
        action: &'static str,
        /// Why it failed.
        #[source]
        source: kube::Error,
    },
    /// The finalizer machinery failed.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

/// Reconcile one ScaledObject.
pub async fn reconcile(so: Arc<ScaledObject>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = so.metadata.namespace.clone().unwrap_or_default();
    if ctx.is_superseded(&so) {
        // The cache lags this process's own writes (a cold start of thousands of objects):
        // every write from this version would be refused or redone. Look again shortly.
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let api: Api<ScaledObject> = Api::namespaced(ctx.handles.client.clone(), &namespace);
    let (so, marked_over) = match marks::first_contact(&so, &api).await? {
        Contact::Known => (so, None),
        Contact::Marked(marked) => (Arc::new(*marked), Some(so)),
        Contact::Later(action) => return Ok(action),
    };
    finalizer(&api, FINALIZER, so, |event| async {
        match event {
            Event::Apply(so) => apply(&so, &ctx, marked_over.as_deref()).await,
            Event::Cleanup(so) => super::cleanup::cleanup(&so, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// Retry failed reconciles after a few seconds.
pub fn error_policy(so: Arc<ScaledObject>, error: &Error, _ctx: Arc<Context>) -> Action {
    warn!(namespace = so.metadata.namespace.as_deref().unwrap_or_default(), scaled_object = so.metadata.name.as_deref().unwrap_or_default(), error = %error, "reconcile failed");
    Action::requeue(Duration::from_secs(5))
}

pub(super) fn key_of(so: &ScaledObject) -> ObjectKey {
    (
        so.metadata.namespace.clone().unwrap_or_default(),
        so.metadata.name.clone().unwrap_or_default(),
    )
}

/// `marked_over`: the version the marks were just written over, which the cache may still show.
async fn apply(
    so: &ScaledObject,
    ctx: &Context,
    marked_over: Option<&ScaledObject>,
) -> Result<Action, Error> {
    marks::ensure_label(so, ctx).await?;
    if let Some(pause) = Pause::of(so) {
        return pause_object(so, ctx, pause).await;
    }
    let base = revision(so);
    let key = key_of(so);
    let registered = ctx
        .registered
        .lock()
        .map(|r| {
            r.get(&key)
                .map(|(rev, polled)| (rev.clone(), Arc::clone(polled)))
        })
        .unwrap_or(None);
    // A Secret or TriggerAuthentication it reads changed: resolve again, rebuild if needed.
    let stale = ctx.sources.take_stale(&key);
    let same_spec = registered
        .as_ref()
        .and_then(|(rev, _)| rev.rsplit_once('#'))
        .is_some_and(|(spec, _)| spec == base);
    // Status writes (and HPA status changes) re-trigger reconciles: mirror the HPA's health and
    // stop there, unless the HPA went missing — and only once the status names the HPA (a new
    // object's second pass comes here with an HPA it has not ensured yet).
    let hpa_name = so.hpa_name();
    let ensured = so.status.as_ref().and_then(|s| s.hpa_name.as_deref()) == Some(&hpa_name);
    if same_spec && !stale && ensured {
        let known = ctx.hpas.get(&key.0, &hpa_name);
        let hpa = match known {
            Some(hpa) => Some(hpa),
            None if ctx.hpas.seems_absent(&key.0, &hpa_name) => None,
            None => owned_hpa::read(so, ctx, &hpa_name).await?,
        };
        if let Some(hpa) = hpa {
            return owned_hpa::observe(so, ctx, &hpa).await;
        }
    }
    let mut problems = crate::check::Problems::default();
    rules::scaled_object(so, &NoTriggerValidation, &mut problems);
    if let Some(problem) = problems.into_vec().into_iter().next() {
        return not_ready(so, ctx, format!("{problem}")).await;
    }
    let (namespace, name) = key.clone();
    let target = match ctx.target_of(so).await {
        Ok(target) => target,
        Err(e) => return not_ready(so, ctx, e.to_string()).await,
    };
    let replicas = match ctx.handles.targets.replicas(&target).await {
        Ok(replicas) => replicas,
        Err(e) => return not_ready(so, ctx, e.to_string()).await,
    };
    let resolved = match resolve_triggers(
        &ctx.handles.client,
        so,
        &target,
        &ctx.cluster_object_namespace,
        ctx.handles.timeout,
    )
    .await
    {
        Ok(resolved) => resolved,
        Err(e) => {
            if stale {
                ctx.sources.mark_stale(&key);
            }
            return not_ready(so, ctx, e.to_string()).await;
        }
    };
    ctx.sources.record(&key, resolved.sources.clone());
    let revision = format!("{base}#{:016x}", resolved.digest);
    if let Some((current, polled)) = &registered
        && *current == revision
    {
        // Re-resolved to the same values (a Secret rewritten unchanged, or the HPA gone):
        // keep the scalers, make sure the HPA and status are as they should be.
        let specs: Vec<_> = polled
            .triggers
            .iter()
            .flat_map(|t| t.specs.clone())
            .collect();
        if let Some(conflict) = owned_hpa::ensure(so, ctx, &target, &specs).await? {
            return not_ready(so, ctx, conflict).await;
        }
        write_ready_status(so, ctx, &target, replicas, &specs).await?;
        return Ok(Action::await_change());
    }
    let composite = match CompositeMetric::of(so).transpose() {
        Ok(composite) => composite,
        Err(e) => {
            return not_ready(
                so,
                ctx,
                format!(".spec.advanced.scalingModifiers.formula: {e}"),
            )
            .await;
        }
    };
    // Same spec, new auth or env: a trigger whose new credentials fail keeps polling (and
    // failing) instead of taking the object down.
    let previous = registered
        .as_ref()
        .filter(|_| same_spec)
        .map(|(_, polled)| Arc::clone(polled));
    let previous = previous.as_ref().map_or(&[][..], |p| &p.triggers[..]);
    let triggers = match build_resolved(resolved.triggers, previous).await {
        Ok(triggers) => triggers,
        Err(e) => return not_ready(so, ctx, e.to_string()).await,
    };
    ctx.handles.metrics.record_scaler_build(&namespace, &name);
    let specs: Vec<_> = triggers.iter().flat_map(|t| t.specs.clone()).collect();
    let interval = Duration::from_secs(so.spec.polling_interval.max(1) as u64);
    let polled = Arc::new(PolledObject {
        handles: Arc::clone(&ctx.handles),
        namespace,
        name,
        interval,
        target: target.clone(),
        triggers,
        composite,
        last_active: Default::default(),
        superseded: Default::default(),
    });
    if let Some(earlier) = marked_over {
        polled.superseded.mark(earlier);
    }
    crate::scaling::live::register(&polled, so);
    // Polling starts before the HPA and status writes: on a cold start those queue behind
    // thousands of others, and the first poll need not wait for them (KEDA's loop scales
    // 0 ↔ 1 itself). A conflicting HPA unregisters the object again.
    register(ctx, key, revision, polled);
    record_started(so, ctx);
    if marked_over.is_some() && ctx.hpas.seems_absent(&target.namespace, &hpa_name) {
        // A new object without an HPA of that name: the HPA and status come in a second
        // pass, which the marks' watch event starts behind every object still waiting for a
        // first reconcile. On a cold start all of them are polled after one write each, not
        // after four. (With an HPA of that name, someone else's maybe, it is checked now.)
        // No requeue: that event is certain (the marks changed the finalizers and labels the
        // controller's filter hashes), and a timer per object would stay in kube-runtime's
        // scheduler, whose tables keep the size of the largest burst.
        return Ok(Action::await_change());
    }
    if let Some(conflict) = owned_hpa::ensure(so, ctx, &target, &specs).await? {
        return not_ready(so, ctx, conflict).await;
    }
    write_ready_status(so, ctx, &target, replicas, &specs).await?;
    Ok(Action::await_change())
}

/// KEDA's Events of a (re)started scale loop.
fn record_started(so: &ScaledObject, ctx: &Context) {
    let types = so
        .spec
        .triggers
        .iter()
        .map(|t| t.type_.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    ctx.handles.events.normal(
        so,
        event::SCALERS_STARTED,
        format!("Started scalers watch: {types}"),
    );
    ctx.handles.events.normal(
        so,
        event::SCALED_OBJECT_READY,
        "ScaledObject is ready for scaling".to_owned(),
    );
}

/// What a registration is built from: the spec (generation) and the labels and annotations the
/// HPA copies or that shape it (pauses of one direction), less the label tidescale sets itself.
/// Registrations store it followed by `#` and the digest of the resolved trigger inputs.
fn revision(so: &ScaledObject) -> String {
    let generation = so.metadata.generation.unwrap_or_default();
    let mut labels = so.metadata.labels.clone().unwrap_or_default();
    labels.remove(LABEL_SCALED_OBJECT_NAME);
    let meta = serde_json::json!([labels, so.metadata.annotations]);
    format!("{generation}:{meta}")
}

fn register(ctx: &Context, key: ObjectKey, revision: String, polled: Arc<PolledObject>) {
    ctx.scheduler.upsert(key.clone(), Arc::clone(&polled));
    ctx.handles.metrics.set_paused(&key.0, &key.1, false);
    let previous = ctx
        .registered
        .lock()
        .ok()
        .and_then(|mut r| r.insert(key.clone(), (revision, polled)));
    info!(namespace = %key.0, scaled_object = %key.1, "scale loop started");
    match previous {
        Some((_, old)) => {
            tokio::spawn(close_scalers(old));
        }
        None => ctx
            .handles
            .metrics
            .resource_registered(RegisteredResource::ScaledObject, &key.0),
    }
}

async fn close_scalers(polled: Arc<PolledObject>) {
    for trigger in &polled.triggers {
        let _ = trigger.scaler.close().await;
    }
}

/// Stop polling `key` (once this returns, no poll of it writes anymore) and close its scalers.
pub(super) async fn unregister(ctx: &Context, key: &ObjectKey) {
    ctx.scheduler.remove(key.clone()).await;
    let removed = ctx.registered.lock().ok().and_then(|mut r| r.remove(key));
    if let Some((_, old)) = removed {
        close_scalers(old).await;
        ctx.handles
            .metrics
            .resource_unregistered(RegisteredResource::ScaledObject, &key.0);
        info!(namespace = %key.0, scaled_object = %key.1, "scale loop stopped");
    }
}

/// A paused object: no loop, no HPA, the target held at `paused-replicas` when given.
async fn pause_object(so: &ScaledObject, ctx: &Context, pause: Pause) -> Result<Action, Error> {
    let key = key_of(so);
    unregister(ctx, &key).await;
    ctx.sources.forget(&key);
    ctx.handles.metrics.set_paused(&key.0, &key.1, true);
    pause::delete_hpa(&ctx.handles.client, so)
        .await
        .map_err(|source| Error::Api {
            action: "delete the HPA of a paused ScaledObject",
            source,
        })?;
    if let Some(replicas) = pause.replicas() {
        let held = match ctx.target_of(so).await {
            Ok(target) => pause::hold(&ctx.handles.client, &target, replicas)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(problem) = held {
            warn!(namespace = so.metadata.namespace.as_deref().unwrap_or_default(), scaled_object = so.metadata.name.as_deref().unwrap_or_default(), problem = %problem, "cannot hold the paused replicas");
        }
    }
    let mut status = current_status(so);
    let changed = set_condition_to(
        &mut status.conditions,
        condition::PAUSED,
        "True",
        reason::SCALED_OBJECT_PAUSED,
        "ScaledObject is paused",
    );
    status.paused_replica_count = pause.replicas();
    bounded_write(so, ctx, &status).await?;
    if changed {
        ctx.handles.events.normal(
            so,
            event::SCALED_OBJECT_PAUSED,
            "ScaledObject was paused".to_owned(),
        );
    }
    Ok(Action::await_change())
}

async fn write_ready_status(
    so: &ScaledObject,
    ctx: &Context,
    target: &Target,
    replicas: i32,
    specs: &[tidescale_scalers::MetricSpec],
) -> Result<(), Error> {
    let mut status = current_status(so);
    status.scale_target_kind = Some(target.kind_label());
    status.scale_target_gvkr = Some(target.gvkr());
    status.original_replica_count.get_or_insert(replicas);
    status.hpa_name = Some(so.hpa_name());
    status.external_metric_names = specs.iter().map(|s| s.metric_name.clone()).collect();
    status.triggers_types = Some(
        so.spec
            .triggers
            .iter()
            .map(|t| t.type_.as_str())
            .collect::<Vec<_>>()
            .join(","),
    );
    let auths: Vec<&str> = so
        .spec
        .triggers
        .iter()
        .filter_map(|t| t.authentication_ref.as_ref())
        .map(|a| a.name.as_str())
        .collect();
    status.authentications_types = (!auths.is_empty()).then(|| auths.join(","));
    let ready = ConditionChange {
        status: "True",
        reason: reason::SCALED_OBJECT_READY,
        message: "ScaledObject is defined correctly and is ready for scaling",
    };
    set_condition(&mut status.conditions, condition::READY, &ready);
    let was_paused = so.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == condition::PAUSED && c.status == "True")
    });
    // One direction paused: the loop and the HPA keep running, but Paused is True (KEDA).
    let (paused, reason, message) = match one_way_pause(so) {
        Some(message) => ("True", reason::SCALED_OBJECT_PAUSED, message),
        None => (
            "False",
            reason::SCALED_OBJECT_UNPAUSED,
            "ScaledObject is not paused",
        ),
    };
    let changed = set_condition_to(
        &mut status.conditions,
        condition::PAUSED,
        paused,
        reason,
        message,
    );
    status.paused_replica_count = None;
    bounded_write(so, ctx, &status).await?;
    match (changed, was_paused, paused == "True") {
        (true, true, false) => ctx.handles.events.normal(
            so,
            event::SCALED_OBJECT_UNPAUSED,
            "ScaledObject was unpaused".to_owned(),
        ),
        (true, false, true) => {
            ctx.handles
                .events
                .normal(so, event::SCALED_OBJECT_PAUSED, message.to_owned())
        }
        _ => {}
    }
    Ok(())
}

/// The Paused message when `paused-scale-in` or `paused-scale-out` is set (any value but
/// `false`, as for the HPA's select policies).
fn one_way_pause(so: &ScaledObject) -> Option<&'static str> {
    let set = |key: &str| {
        so.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(key))
            .is_some_and(|v| v != "false")
    };
    match (
        set(crate::crd::names::ANNOTATION_PAUSED_SCALE_IN),
        set(crate::crd::names::ANNOTATION_PAUSED_SCALE_OUT),
    ) {
        (true, true) => Some("ScaledObject is paused for scale in and scale out"),
        (true, false) => Some("ScaledObject is paused for scale in"),
        (false, true) => Some("ScaledObject is paused for scale out"),
        (false, false) => None,
    }
}

/// Ready=False with the problem, Active=Unknown; nothing is scaled (a loop registered for an
/// earlier, valid spec is stopped). Retried periodically and on every spec change.
async fn not_ready(so: &ScaledObject, ctx: &Context, message: String) -> Result<Action, Error> {
    unregister(ctx, &key_of(so)).await;
    warn!(namespace = so.metadata.namespace.as_deref().unwrap_or_default(), scaled_object = so.metadata.name.as_deref().unwrap_or_default(), problem = %message, "ScaledObject is not ready");
    let mut status = current_status(so);
    let changed = set_condition_to(
        &mut status.conditions,
        condition::READY,
        "False",
        reason::SCALED_OBJECT_CHECK_FAILED,
        &message,
    );
    set_condition_to(
        &mut status.conditions,
        condition::ACTIVE,
        "Unknown",
        reason::UNKNOWN_STATE,
        "ScaledObject check failed",
    );
    bounded_write(so, ctx, &status).await?;
    if changed {
        ctx.handles
            .events
            .warning(so, event::SCALED_OBJECT_CHECK_FAILED, message);
    }
    Ok(Action::requeue(Duration::from_secs(30)))
}

async fn bounded_write(
    so: &ScaledObject,
    ctx: &Context,
    status: &crate::crd::ScaledObjectStatus,
) -> Result<(), Error> {
    let written = write_if_changed(&ctx.handles.client, so, status)
        .await
        .map_err(|source| Error::Api {
            action: "write the status",
            source,
        })?;
    if written {
        ctx.status_written(so);
    }
    Ok(())
}

pub(super) async fn bounded<T>(
    action: &'static str,
    call: impl Future<Output = kube::Result<T>>,
) -> Result<T, Error> {
    within_api_timeout(call)
        .await
        .map_err(|source| Error::Api { action, source })
}
