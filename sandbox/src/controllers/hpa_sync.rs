//! The HPA controller's I/O half: every sync period per HPA it reads the target's scale,
//! fetches metrics through [`MetricsApi`], runs the pure algorithm ([`super::hpa`]), writes
//! `/scale` and `status`, and records Events (`spec/kubernetes.md` §3.1, §3.2, §3.12).
//!
//! Like kube-controller-manager, each HPA is processed on first sight and then every sync
//! period; its recommendation and scale-event history lives only in memory and is dropped with
//! the HPA (a recreated HPA with a new uid starts afresh).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use serde_json::Value;

use super::events::EventRecorder;
use super::hpa::replicas::PodView;
use super::hpa::spec::{MetricSpec, TargetRef};
use super::hpa::{
    self, Conditions, Cycle, History, HpaSpec, MetricContext, MetricInput, MetricsPhase, Plan,
    Settings,
};
use super::metrics_api::{self, MetricsApi};
use super::pods;
use super::quantity::milli_value_json;
use super::selector::{LabelSelector, Selector};
use crate::api::scale::{apply_scale, to_scale};
use crate::clock::{add, parse_time};
use crate::store::{GroupResource, Store, WriteOptions, meta};

/// `source.component` of HPA events.
pub const COMPONENT: &str = "horizontal-pod-autoscaler";

fn hpas() -> GroupResource {
    GroupResource::new("autoscaling", "horizontalpodautoscalers")
}

/// In-memory state of one HPA.
#[derive(Debug, Default)]
struct Memory {
    uid: String,
    history: History,
    next_due: Option<Timestamp>,
}

/// The HPA controller.
#[derive(Debug)]
pub struct HpaController {
    store: Arc<Store>,
    metrics: Arc<dyn MetricsApi>,
    settings: Settings,
    recorder: EventRecorder,
    memory: Mutex<HashMap<(String, String), Memory>>,
}

/// The request that reads one metric.
enum MetricRead {
    /// External metrics API.
    External(String),
    /// Custom metrics API, one object.
    Object(String),
    /// Custom metrics API, the target's pods.
    Pods(String),
    /// Resource metrics API (metrics-server).
    Resource {
        /// Path and query.
        path: String,
        /// `cpu`, `memory`, ….
        resource: String,
        /// ContainerResource: only this container.
        container: Option<String>,
    },
}

/// The scale subresource as read in §3.2 step 1.
struct ScaleRead {
    gr: GroupResource,
    object: Value,
    scale: Value,
}

impl HpaController {
    /// A controller reading metrics through `metrics`.
    pub fn new(store: Arc<Store>, metrics: Arc<dyn MetricsApi>, settings: Settings) -> Self {
        Self {
            store,
            metrics,
            settings,
            recorder: EventRecorder::new(COMPONENT),
            memory: Mutex::new(HashMap::new()),
        }
    }

    /// Processes every HPA that is due; forgets deleted ones.
    pub async fn sync_due(&self) {
        let now = self.store.clock().now();
        let (all, _) = self.store.list(&hpas(), None);
        let live: Vec<(String, String)> = all
            .iter()
            .map(|h| {
                (
                    meta::namespace(h).unwrap_or_default().to_owned(),
                    meta::name(h).to_owned(),
                )
            })
            .collect();
        let alive: HashSet<&(String, String)> = live.iter().collect();
        self.lock().retain(|k, _| alive.contains(k));
        for (hpa, key) in all.iter().zip(live) {
            let uid = meta::uid(hpa).unwrap_or_default().to_owned();
            let mut memory = self
                .lock()
                .remove(&key)
                .filter(|m| m.uid == uid)
                .unwrap_or_default();
            if meta::is_deleting(hpa) || memory.next_due.is_some_and(|due| due > now) {
                self.lock().insert(key, memory);
                continue;
            }
            memory.uid = uid;
            memory.next_due = Some(add(now, self.settings.sync_period));
            self.reconcile(hpa, &mut memory.history, now).await;
            self.lock().insert(key, memory);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Memory>> {
        self.memory.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One reconcile (§3.2).
    async fn reconcile(&self, hpa: &Value, history: &mut History, now: Timestamp) {
        let spec: HpaSpec = match serde_json::from_value(hpa["spec"].clone()) {
            Ok(spec) => spec,
            Err(error) => {
                tracing::warn!(hpa = meta::name(hpa), %error, "unreadable HPA spec skipped");
                return;
            }
        };
        let ns = meta::namespace(hpa).unwrap_or("default");
        let previous = hpa.get("status").cloned().unwrap_or(Value::Null);
        let mut conditions = Conditions::from_json(previous.get("conditions"));
        let read = match self.read_scale(ns, &spec.scale_target_ref) {
            Ok(read) => read,
            Err(error) => {
                let events = hpa::scale_failed(&mut conditions, &error, now);
                let status = hpa::status_json(&previous, None, None, &conditions, None);
                self.finish(hpa, status, &events);
                return;
            }
        };
        let current = int(&read.scale, "/spec/replicas");
        let cycle = Cycle {
            now,
            spec: &spec,
            settings: &self.settings,
            current,
        };
        let phase = match hpa::plan(&spec, current) {
            Plan::Metrics => self.metrics_phase(&spec, ns, &read.scale, now).await,
            _ => MetricsPhase::NotComputed,
        };
        let mut decision = hpa::decide(history, &mut conditions, cycle, phase);
        let mut scaled_at = None;
        if decision.rescale
            && let Some(desired) = decision.desired
        {
            let result = self.write_scale(&read, desired);
            if hpa::finish_rescale(history, &mut conditions, cycle, &mut decision, result) {
                scaled_at = Some(now);
            }
        }
        let status = hpa::status_json(
            &previous,
            Some(current),
            Some(&decision),
            &conditions,
            scaled_at,
        );
        self.finish(hpa, status, &decision.events);
    }

    /// Writes the status if it changed and records the events.
    fn finish(&self, hpa: &Value, status: Value, events: &[hpa::EventRecord]) {
        for e in events {
            self.recorder
                .record(&self.store, hpa, e.warning, &e.reason, &e.message);
        }
        if hpa.get("status") == Some(&status) {
            return;
        }
        // Write on top of the latest object: status writes only need a fresh resourceVersion.
        let Ok(mut latest) = self
            .store
            .get(&hpas(), meta::namespace(hpa), meta::name(hpa))
        else {
            return;
        };
        latest["status"] = status;
        if let Err(error) = self.store.update(&hpas(), latest, &WriteOptions::status()) {
            self.recorder
                .record(&self.store, hpa, true, "FailedUpdateStatus", &error.message);
        }
    }

    /// `GET …/scale` of the target: group from `apiVersion`, any kind with a scale subresource.
    fn read_scale(&self, ns: &str, target: &TargetRef) -> Result<ScaleRead, String> {
        let info = self
            .store
            .registry()
            .by_kind(target.group(), &target.kind)
            .filter(|i| i.scale.is_some())
            .ok_or_else(|| {
                format!(
                    "no matches for kind \"{}\" in group \"{}\"",
                    target.kind,
                    target.group()
                )
            })?;
        let gr = info.group_resource();
        let object = self
            .store
            .get(&gr, Some(ns), &target.name)
            .map_err(|e| e.message)?;
        let scale = to_scale(&info, &object).map_err(|e| e.message)?;
        Ok(ScaleRead { gr, object, scale })
    }

    /// `PUT …/scale` with the resourceVersion of the read (a conflict fails this cycle).
    fn write_scale(&self, read: &ScaleRead, desired: i32) -> Result<(), String> {
        let info = self.store.info(&read.gr).map_err(|e| e.message)?;
        let mut scale = read.scale.clone();
        scale["spec"]["replicas"] = desired.into();
        let updated = apply_scale(&info, &read.object, &scale).map_err(|e| e.message)?;
        self.store
            .update(&read.gr, updated, &WriteOptions::default())
            .map(|_| ())
            .map_err(|e| e.message)
    }

    async fn metrics_phase(
        &self,
        spec: &HpaSpec,
        ns: &str,
        scale: &Value,
        now: Timestamp,
    ) -> MetricsPhase {
        let selector = scale
            .pointer("/status/selector")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if selector.is_empty() {
            return MetricsPhase::MissingSelector;
        }
        let parsed = match Selector::parse(selector) {
            Ok(s) => s,
            Err(e) => return MetricsPhase::BadSelector(e.to_string()),
        };
        let pods = self.pod_views(ns, &parsed);
        let ctx = MetricContext {
            namespace: ns,
            current_replicas: int(scale, "/spec/replicas"),
            status_replicas: int(scale, "/status/replicas"),
            pods: &pods,
            tolerance: self.settings.tolerance_for(spec),
            cpu: self.settings.cpu(now),
        };
        let mut outcomes = Vec::new();
        for metric in spec.effective_metrics() {
            let input = self.fetch(&metric, ns, selector).await;
            outcomes.push(hpa::evaluate(&metric, input, &ctx));
        }
        MetricsPhase::Evaluated(outcomes)
    }

    /// Fetches the raw data of one metric.
    async fn fetch(&self, metric: &MetricSpec, ns: &str, pod_selector: &str) -> MetricInput {
        match self.read_for(metric, ns, pod_selector) {
            Some(MetricRead::External(path)) => {
                metrics_api::external_input(self.metrics.get(&path).await)
            }
            Some(MetricRead::Object(path)) => {
                metrics_api::object_input(self.metrics.get(&path).await)
            }
            Some(MetricRead::Pods(path)) => metrics_api::pods_input(self.metrics.get(&path).await),
            Some(MetricRead::Resource {
                path,
                resource,
                container,
            }) => {
                let body = self.metrics.get(&path).await;
                metrics_api::resource_input(body, &resource, container.as_deref())
            }
            None => MetricInput::Unsupported,
        }
    }

    /// Which request serves a metric (§1.9), `None` for an unknown or incomplete source.
    fn read_for(&self, metric: &MetricSpec, ns: &str, pod_selector: &str) -> Option<MetricRead> {
        let query =
            |s: &Option<LabelSelector>| s.as_ref().map(LabelSelector::to_query).unwrap_or_default();
        let read = match metric.kind.as_str() {
            "External" => {
                let src = metric.external.as_ref()?;
                MetricRead::External(metrics_api::external_path(
                    ns,
                    &src.metric.name,
                    &query(&src.metric.selector),
                ))
            }
            "Object" => {
                let src = metric.object.as_ref()?;
                let d = &src.described_object;
                let info = self.store.registry().by_kind(d.group(), &d.kind);
                // Unknown kinds still get a request; the adapter answers for them or 404s.
                let resource = info.map_or_else(
                    || format!("{}s", d.kind.to_lowercase()),
                    |i| i.group_resource().to_string(),
                );
                let selector = query(&src.metric.selector);
                MetricRead::Object(metrics_api::object_path(
                    ns,
                    &resource,
                    &d.name,
                    &src.metric.name,
                    &selector,
                ))
            }
            "Pods" => {
                let src = metric.pods.as_ref()?;
                let selector = query(&src.metric.selector);
                MetricRead::Pods(metrics_api::pods_path(
                    ns,
                    &src.metric.name,
                    pod_selector,
                    &selector,
                ))
            }
            "Resource" | "ContainerResource" => {
                let container = metric.kind == "ContainerResource";
                let src = if container {
                    metric.container_resource.as_ref()?
                } else {
                    metric.resource.as_ref()?
                };
                MetricRead::Resource {
                    path: metrics_api::resource_path(ns, pod_selector),
                    resource: src.name.clone(),
                    container: src.container.clone().filter(|_| container),
                }
            }
            _ => return None,
        };
        Some(read)
    }

    /// The pods the scale selector matches, as the replica calculator sees them (§5.11).
    fn pod_views(&self, ns: &str, selector: &Selector) -> Vec<PodView> {
        let (all, _) = self.store.list(&pods::pods(), Some(ns));
        all.iter()
            .filter(|p| selector.matches(&labels(p)))
            .map(|p| pod_view(p))
            .collect()
    }
}

fn int(v: &Value, pointer: &str) -> i32 {
    v.pointer(pointer)
        .and_then(Value::as_i64)
        .and_then(|n| i32::try_from(n).ok())
        .unwrap_or(0)
}

fn labels(obj: &Value) -> BTreeMap<String, String> {
    meta::labels(obj)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

fn pod_view(pod: &Value) -> PodView {
    let ready = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|l| l.iter().find(|c| c["type"] == "Ready"))
        .map(|c| {
            (
                c["status"] == "True",
                c["lastTransitionTime"].as_str().and_then(parse_time),
            )
        });
    let containers = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .map(|c| {
            let requests = c.pointer("/resources/requests").and_then(Value::as_object);
            let parsed = requests
                .map(|r| {
                    r.iter()
                        .filter_map(|(k, v)| Some((k.clone(), milli_value_json(v).ok()?)))
                        .collect()
                })
                .unwrap_or_default();
            (c["name"].as_str().unwrap_or_default().to_owned(), parsed)
        })
        .collect();
    PodView {
        name: meta::name(pod).to_owned(),
        phase: pod
            .pointer("/status/phase")
            .and_then(Value::as_str)
            .unwrap_or("Pending")
            .to_owned(),
        deleting: meta::is_deleting(pod),
        ready,
        start_time: pod
            .pointer("/status/startTime")
            .and_then(Value::as_str)
            .and_then(parse_time),
        containers,
    }
}
