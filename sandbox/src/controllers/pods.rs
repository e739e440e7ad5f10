//! Pods without nodes: creating them from a template, and the simulated kubelet that moves
//! them through their life (`spec/kubernetes.md` §5.11).
//!
//! Lifecycle, all on the injectable clock:
//! - created `Pending` with `PodScheduled=True`;
//! - `Running` with `startTime` after [`PodTimings::start_delay`];
//! - `Ready=True` (with `lastTransitionTime`) after [`PodTimings::ready_delay`] more;
//! - Job pods (restartPolicy `Never`/`OnFailure`) end `Succeeded` after their run time;
//! - deleted pods keep existing while terminating: the sandbox puts [`KUBELET_FINALIZER`] on
//!   every pod it creates, so a delete only sets `deletionTimestamp`; the kubelet then flips
//!   `Ready` to False at once (as a real kubelet does on termination) and lifts the finalizer
//!   after the grace period, when the store removes the pod.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Map, Value, json};

use super::json::object_or_empty;
use crate::clock::{add, format_time, parse_time};
use crate::store::{GroupResource, Store, WriteOptions, meta};

/// Finalizer that lets the simulated kubelet keep terminating pods for their grace period.
pub const KUBELET_FINALIZER: &str = "sandbox.tidescale.io/kubelet";
/// Annotation (on a Job or a pod template) overriding how long Job pods run, in seconds.
pub const RUN_SECONDS_ANNOTATION: &str = "sandbox.tidescale.io/run-seconds";
/// Characters Kubernetes uses for generated name suffixes (no vowels, no confusables).
const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// How fast simulated pods move through their life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodTimings {
    /// Pending → Running.
    pub start_delay: Duration,
    /// Running → Ready.
    pub ready_delay: Duration,
    /// Running → Succeeded for Job pods (overridable per Job with [`RUN_SECONDS_ANNOTATION`]).
    pub job_run: Duration,
    /// Grace period of a deleted pod when `terminationGracePeriodSeconds` is absent.
    pub termination_grace: Duration,
}

impl Default for PodTimings {
    fn default() -> Self {
        Self {
            start_delay: Duration::from_secs(1),
            ready_delay: Duration::from_secs(2),
            job_run: Duration::from_secs(5),
            termination_grace: Duration::from_secs(30),
        }
    }
}

/// The core `pods` resource.
pub fn pods() -> GroupResource {
    GroupResource::new("", "pods")
}

/// A 5-character name suffix, deterministic per process (tests replay identically).
pub fn name_suffix(seed: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // FNV-1a over the seed, mixed with the counter: short, stable and collision-poor.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed.bytes().chain(n.to_le_bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    (0..5)
        .map(|i| ALPHABET[((h >> (i * 8)) % ALPHABET.len() as u64) as usize] as char)
        .collect()
}

/// A stable hash of a JSON value in the name alphabet (`pod-template-hash`).
pub fn stable_hash(value: &Value) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in value.to_string().bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    (0..10)
        .map(|i| ALPHABET[((h >> (i * 6)) % ALPHABET.len() as u64) as usize] as char)
        .collect()
}

/// An owner reference with `controller: true`.
pub fn controller_ref(owner: &Value) -> Value {
    json!({
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta::name(owner),
        "uid": meta::uid(owner).unwrap_or_default(),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// Whether `obj` is controlled by the object with `uid`.
pub fn is_controlled_by(obj: &Value, uid: &str) -> bool {
    meta::owner_references(obj)
        .iter()
        .any(|r| r["uid"] == uid && r["controller"] == true)
}

/// How a new pod is named.
#[derive(Debug, Clone, Copy)]
pub enum PodName<'a> {
    /// `<prefix>-<5 random chars>` (ReplicaSets, Jobs).
    Generate(&'a str),
    /// Exactly this name (StatefulSets).
    Fixed(&'a str),
}

/// Creates a pod from `template` owned by `owner`, with extra labels.
pub fn create_from_template(
    store: &Store,
    owner: &Value,
    name: PodName<'_>,
    template: &Value,
    extra_labels: &Map<String, Value>,
) -> Result<Value, crate::ApiError> {
    let ns = meta::namespace(owner).unwrap_or("default");
    let mut labels = template
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    labels.extend(extra_labels.clone());
    let annotations = template
        .pointer("/metadata/annotations")
        .cloned()
        .unwrap_or(json!({}));
    let spec = template
        .get("spec")
        .cloned()
        .unwrap_or_else(|| json!({"containers": []}));
    let mut last_err = None;
    // A generated name may collide with a live pod; retry a few fresh suffixes like
    // generateName clients do.
    for _ in 0..5 {
        let pod_name = match name {
            PodName::Generate(prefix) => format!("{prefix}-{}", name_suffix(prefix)),
            PodName::Fixed(fixed) => fixed.to_owned(),
        };
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod_name, "namespace": ns,
                         "labels": labels, "annotations": annotations,
                         "ownerReferences": [controller_ref(owner)],
                         "finalizers": [KUBELET_FINALIZER]},
            "spec": spec,
            "status": {"phase": "Pending"},
        });
        match store.create(&pods(), pod, &WriteOptions::default()) {
            Ok(created) => return set_pending_status(store, created),
            Err(e) if e.code == 409 && matches!(name, PodName::Generate(_)) => last_err = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_err.unwrap_or_else(|| crate::ApiError::internal("pod name generation failed")))
}

fn set_pending_status(store: &Store, mut pod: Value) -> Result<Value, crate::ApiError> {
    let now = store.now_string();
    pod["status"] = json!({"phase": "Pending", "qosClass": "BestEffort", "conditions": [
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": now}]});
    store.update(&pods(), pod, &WriteOptions::status())
}

/// Pod lifecycle classes, ordered as the ReplicaSet controller deletes them (§5.11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// Created, not yet started.
    Pending,
    /// Running, not Ready.
    NotReady,
    /// Running and Ready.
    Ready,
}

/// Where a pod is in its life.
pub fn stage(pod: &Value) -> Stage {
    match pod.pointer("/status/phase").and_then(Value::as_str) {
        Some("Running") if is_ready(pod) => Stage::Ready,
        Some("Running") => Stage::NotReady,
        _ => Stage::Pending,
    }
}

/// `Ready` condition is True.
pub fn is_ready(pod: &Value) -> bool {
    condition(pod, "Ready").is_some_and(|c| c["status"] == "True")
}

/// Phase is `Succeeded` or `Failed`.
pub fn is_terminal(pod: &Value) -> bool {
    matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    )
}

/// Not terminating and not terminal: counts towards `status.replicas`.
pub fn is_active(pod: &Value) -> bool {
    !meta::is_deleting(pod) && !is_terminal(pod)
}

fn condition<'a>(pod: &'a Value, kind: &str) -> Option<&'a Value> {
    pod.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

/// When the pod became Ready, if it is.
pub fn ready_since(pod: &Value) -> Option<Timestamp> {
    condition(pod, "Ready")
        .filter(|c| c["status"] == "True")
        .and_then(|c| c["lastTransitionTime"].as_str())
        .and_then(parse_time)
}

fn time_at(pod: &Value, pointer: &str) -> Option<Timestamp> {
    pod.pointer(pointer)
        .and_then(Value::as_str)
        .and_then(parse_time)
}

fn set_condition(status: &mut Value, kind: &str, value: bool, at: Timestamp) {
    let text = if value { "True" } else { "False" };
    if !status["conditions"].is_array() {
        status["conditions"] = json!([]);
    }
    let Some(list) = status["conditions"].as_array_mut() else {
        return;
    };
    match list.iter_mut().find(|c| c["type"] == kind) {
        Some(c) if c["status"] == text => {}
        Some(c) => {
            c["status"] = json!(text);
            c["lastTransitionTime"] = json!(format_time(at));
        }
        None => {
            list.push(json!({"type": kind, "status": text, "lastTransitionTime": format_time(at)}))
        }
    }
}

/// How long a Job pod runs, `None` for long-running pods.
fn run_time(pod: &Value, timings: &PodTimings) -> Option<Duration> {
    let policy = pod.pointer("/spec/restartPolicy").and_then(Value::as_str);
    if !matches!(policy, Some("Never" | "OnFailure")) {
        return None;
    }
    let annotated = pod
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(RUN_SECONDS_ANNOTATION))
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<f64>().ok())
        .and_then(|s| Duration::try_from_secs_f64(s).ok());
    Some(annotated.unwrap_or(timings.job_run))
}

/// The status this pod should have at `now`, or `None` if nothing changes.
fn next_status(pod: &Value, timings: &PodTimings, now: Timestamp) -> Option<Value> {
    let mut status = object_or_empty(pod.get("status"));
    let created = time_at(pod, "/metadata/creationTimestamp").unwrap_or(now);
    let phase = status["phase"].as_str().unwrap_or("Pending").to_owned();
    if meta::is_deleting(pod) {
        set_condition(&mut status, "Ready", false, now);
        set_condition(&mut status, "ContainersReady", false, now);
    } else if phase == "Pending" && now >= add(created, timings.start_delay) {
        let start = add(created, timings.start_delay);
        status["phase"] = json!("Running");
        status["startTime"] = json!(format_time(start));
        status["hostIP"] = json!(HOST_IP);
        status["podIP"] = json!(pod_ip(pod));
        status["podIPs"] = json!([{"ip": pod_ip(pod)}]);
        set_condition(&mut status, "Initialized", true, start);
        set_condition(&mut status, "Ready", false, start);
        set_condition(&mut status, "ContainersReady", false, start);
    } else if phase == "Running" {
        let started = time_at(pod, "/status/startTime").unwrap_or(created);
        if let Some(run) = run_time(pod, timings).filter(|r| now >= add(started, *r)) {
            status["phase"] = json!("Succeeded");
            set_condition(&mut status, "Ready", false, add(started, run));
            set_condition(&mut status, "ContainersReady", false, add(started, run));
        } else {
            let ready_at = add(started, timings.ready_delay);
            if now >= ready_at {
                set_condition(&mut status, "Ready", true, ready_at);
                set_condition(&mut status, "ContainersReady", true, ready_at);
            }
        }
    }
    status["containerStatuses"] = container_statuses(pod, &status);
    if status["containerStatuses"] == json!([])
        && let Some(map) = status.as_object_mut()
    {
        map.remove("containerStatuses");
    }
    (pod.get("status") != Some(&status)).then_some(status)
}

/// The node every simulated pod runs on.
const HOST_IP: &str = "127.0.0.1";

/// A stable pod IP in 10.244.0.0/16 derived from the pod's name.
fn pod_ip(pod: &Value) -> String {
    let h = meta::name(pod).bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    format!("10.244.{}.{}", (h >> 8) & 0xff, (h & 0xfd) + 2)
}

/// `containerStatuses` matching the pod's phase and readiness (what `kubectl describe` shows).
fn container_statuses(pod: &Value, status: &Value) -> Value {
    let ready = !meta::is_deleting(pod)
        && status["conditions"].as_array().is_some_and(|l| {
            l.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        });
    let started_at = status["startTime"].clone();
    let finished_at = status["conditions"]
        .as_array()
        .and_then(|l| l.iter().find(|c| c["type"] == "Ready"))
        .map_or(Value::Null, |c| c["lastTransitionTime"].clone());
    let (state, running) = match status["phase"].as_str() {
        Some("Running") => (json!({"running": {"startedAt": started_at}}), true),
        Some("Succeeded") => (
            json!({"terminated": {"exitCode": 0, "reason": "Completed",
                                  "startedAt": started_at, "finishedAt": finished_at}}),
            false,
        ),
        _ => (json!({"waiting": {"reason": "ContainerCreating"}}), false),
    };
    let containers = pod.pointer("/spec/containers").and_then(Value::as_array);
    Value::Array(
        containers
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .map(|c| {
                json!({"name": c["name"], "image": c["image"], "imageID": "", "ready": ready && running,
                       "started": running, "restartCount": 0, "state": state})
            })
            .collect(),
    )
}

/// One kubelet pass over every pod: advance lifecycles, finish terminations. Returns whether
/// some pod is still mid-life: a later pass would change it even if nothing else changes.
pub fn kubelet_sync(store: &Store, timings: &PodTimings) -> bool {
    let now = store.clock().now();
    let (all, _) = store.list(&pods(), None);
    let mut waiting = false;
    for pod in all {
        let ours = meta::finalizers(&pod)
            .iter()
            .any(|f| f == KUBELET_FINALIZER);
        if meta::is_deleting(&pod) && ours {
            waiting = true;
            if finish_termination(store, &pod, timings, now) {
                continue;
            }
        }
        let Some(status) = next_status(&pod, timings, now) else {
            // Each lifecycle step fires once the clock passes some instant, so a step still
            // ahead shows in the status the pod would get at the end of time.
            waiting = waiting || next_status(&pod, timings, Timestamp::MAX).is_some();
            continue;
        };
        waiting = true;
        let mut updated = Value::clone(&pod);
        updated["status"] = status;
        if let Err(error) = store.update(&pods(), updated, &WriteOptions::status()) {
            tracing::debug!(pod = meta::name(&pod), %error, "pod status update skipped");
        }
    }
    waiting
}

/// Lifts the kubelet finalizer once the grace period is over; true if it did.
fn finish_termination(store: &Store, pod: &Value, timings: &PodTimings, now: Timestamp) -> bool {
    let grace = pod
        .pointer("/spec/terminationGracePeriodSeconds")
        .and_then(Value::as_u64)
        .map_or(timings.termination_grace, Duration::from_secs);
    let since = time_at(pod, "/metadata/deletionTimestamp").unwrap_or(now);
    // Terminal pods have no process left to stop.
    if now < add(since, grace) && !is_terminal(pod) {
        return false;
    }
    let mut latest = pod.clone();
    meta::remove_finalizer(&mut latest, KUBELET_FINALIZER);
    match store.update(&pods(), latest, &WriteOptions::default()) {
        Ok(_) => true,
        Err(error) => {
            tracing::debug!(pod = meta::name(pod), %error, "pod finalizer removal skipped");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn t(s: u64) -> Timestamp {
        add(
            "2024-05-01T12:00:00Z".parse().unwrap(),
            Duration::from_secs(s),
        )
    }

    fn pod(phase: &str, ready: Option<bool>, restart: Option<&str>, deleting: bool) -> Value {
        let mut p = json!({"metadata": {"name": "p", "creationTimestamp": format_time(t(0))},
                           "spec": {"containers": []}, "status": {"phase": phase}});
        if phase != "Pending" {
            p["status"]["startTime"] = json!(format_time(t(1)));
        }
        if let Some(r) = ready {
            let status = if r { "True" } else { "False" };
            let at = format_time(t(1));
            p["status"]["conditions"] = json!([
                {"type": "Ready", "status": status, "lastTransitionTime": at},
                {"type": "ContainersReady", "status": status, "lastTransitionTime": at},
            ]);
        }
        if let Some(r) = restart {
            p["spec"]["restartPolicy"] = json!(r);
        }
        if deleting {
            p["metadata"]["deletionTimestamp"] = json!(format_time(t(5)));
        }
        p
    }

    fn ready_of(status: &Value) -> Option<&str> {
        status["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "Ready")?["status"]
            .as_str()
    }

    #[rstest]
    #[case::pending_waits_for_start(pod("Pending", None, None, false), 0, None)]
    #[case::pending_starts_not_ready(pod("Pending", None, None, false), 1, Some(("Running", "False")))]
    #[case::running_waits_for_ready(pod("Running", Some(false), None, false), 2, None)]
    #[case::running_becomes_ready(pod("Running", Some(false), None, false), 3, Some(("Running", "True")))]
    #[case::job_pod_succeeds(pod("Running", Some(true), Some("Never"), false), 6, Some(("Succeeded", "False")))]
    #[case::service_pod_keeps_running(pod("Running", Some(true), Some("Always"), false), 600, None)]
    #[case::terminating_pod_turns_unready(pod("Running", Some(true), None, true), 6, Some(("Running", "False")))]
    fn pod_lifecycle_steps(
        #[case] pod: Value,
        #[case] at: u64,
        #[case] expect: Option<(&str, &str)>,
    ) {
        let timings = PodTimings {
            start_delay: Duration::from_secs(1),
            ready_delay: Duration::from_secs(2),
            job_run: Duration::from_secs(5),
            termination_grace: Duration::from_secs(30),
        };
        let next = next_status(&pod, &timings, t(at));
        let got = next.as_ref().map(|s| {
            (
                s["phase"].as_str().unwrap_or_default(),
                ready_of(s).unwrap_or_default(),
            )
        });
        assert_eq!(got, expect);
    }

    #[test]
    fn pod_run_time_annotation_overrides_the_default_and_ignores_garbage() {
        let timings = PodTimings::default();
        let mut p = pod("Running", Some(true), Some("OnFailure"), false);
        p["metadata"]["annotations"] = json!({RUN_SECONDS_ANNOTATION: "0.5"});
        assert_eq!(run_time(&p, &timings), Some(Duration::from_millis(500)));
        p["metadata"]["annotations"] = json!({RUN_SECONDS_ANNOTATION: "-3"});
        assert_eq!(run_time(&p, &timings), Some(timings.job_run));
    }

    #[test]
    fn pod_stages_order_scale_down_victims() {
        assert!(Stage::Pending < Stage::NotReady && Stage::NotReady < Stage::Ready);
        assert_eq!(
            stage(&pod("Running", Some(true), None, false)),
            Stage::Ready
        );
        assert_eq!(
            stage(&pod("Running", Some(false), None, false)),
            Stage::NotReady
        );
        assert!(!is_active(&pod("Succeeded", None, None, false)));
        assert!(!is_active(&pod("Running", Some(true), None, true)));
    }

    #[test]
    fn pod_generated_names_are_well_formed() {
        let a = name_suffix("web");
        assert_eq!(a.len(), 5);
        assert!(a.bytes().all(|b| ALPHABET.contains(&b)));
        assert_ne!(a, name_suffix("web"));
        assert_eq!(stable_hash(&json!({"a": 1})), stable_hash(&json!({"a": 1})));
        assert_ne!(stable_hash(&json!({"a": 1})), stable_hash(&json!({"a": 2})));
    }
}
