//! The Job controller: runs `parallelism` pods until `completions` have succeeded, then marks
//! the Job complete (`status.succeeded`, `completionTime`, `SuccessCriteriaMet` and `Complete`
//! conditions, as Kubernetes ≥ 1.31 reports them).
//!
//! Pods never fail in the sandbox; they succeed after the configured run time, or after the
//! seconds given in the Job's [`RUN_SECONDS_ANNOTATION`] — enough to exercise ScaledJob
//! scheduling and cleanup.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::events::EventRecorder;
use super::index::OwnerIndex;
use super::json::{object_or_empty, set_in};
use super::pods::{self, PodName, RUN_SECONDS_ANNOTATION};
use super::replicaset::write_status;
use crate::store::{DeleteOptions, GroupResource, Store, meta};

/// The `jobs.batch` resource.
pub fn jobs() -> GroupResource {
    GroupResource::new("batch", "jobs")
}

fn int(job: &Value, pointer: &str) -> Option<usize> {
    job.pointer(pointer)
        .and_then(Value::as_u64)
        .map(|v| usize::try_from(v).unwrap_or(usize::MAX))
}

fn is_complete(job: &Value) -> bool {
    job.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|l| {
            l.iter()
                .any(|c| c["type"] == "Complete" && c["status"] == "True")
        })
}

fn counts(pods_list: &[Arc<Value>]) -> (usize, usize, usize) {
    let active = pods_list.iter().filter(|p| pods::is_active(p)).count();
    let phase = |want: &str| {
        pods_list
            .iter()
            .filter(|p| p.pointer("/status/phase").and_then(Value::as_str) == Some(want))
            .count()
    };
    (active, phase("Succeeded"), phase("Failed"))
}

/// How many pods should be running now.
fn wanted_active(job: &Value, succeeded: usize) -> usize {
    if job.pointer("/spec/suspend") == Some(&json!(true)) || is_complete(job) {
        return 0;
    }
    let parallelism = int(job, "/spec/parallelism").unwrap_or(1);
    match int(job, "/spec/completions") {
        Some(completions) => parallelism.min(completions.saturating_sub(succeeded)),
        // Work-queue Jobs stop starting pods once one has succeeded.
        None if succeeded > 0 => 0,
        None => parallelism,
    }
}

/// The pod template with Job labels and a restart policy the kubelet treats as run-to-end.
fn job_template(job: &Value) -> (Value, Map<String, Value>) {
    let mut template = job
        .pointer("/spec/template")
        .cloned()
        .unwrap_or_else(|| json!({}));
    if template.pointer("/spec/restartPolicy").is_none() {
        set_in(&mut template, &["spec", "restartPolicy"], json!("Never"));
    }
    if let Some(run) = job
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(RUN_SECONDS_ANNOTATION))
    {
        set_in(
            &mut template,
            &["metadata", "annotations", RUN_SECONDS_ANNOTATION],
            run.clone(),
        );
    }
    let uid = meta::uid(job).unwrap_or_default();
    let name = meta::name(job);
    let mut labels = Map::new();
    for (k, v) in [
        ("batch.kubernetes.io/controller-uid", uid),
        ("batch.kubernetes.io/job-name", name),
        ("controller-uid", uid),
        ("job-name", name),
    ] {
        labels.insert(k.to_owned(), json!(v));
    }
    (template, labels)
}

/// Starts or stops pods towards the wanted parallelism.
pub fn reconcile(store: &Store, events: &EventRecorder, index: &OwnerIndex, job: &Value) {
    if meta::is_deleting(job) {
        return;
    }
    let owned = index.owned(job);
    let (active, succeeded, _) = counts(owned);
    let wanted = wanted_active(job, succeeded);
    let (template, labels) = job_template(job);
    for _ in active..wanted {
        let name = PodName::Generate(meta::name(job));
        match pods::create_from_template(store, job, name, &template, &labels) {
            Ok(pod) => {
                let message = format!("Created pod: {}", meta::name(&pod));
                events.record(store, job, false, "SuccessfulCreate", &message);
            }
            Err(error) => {
                tracing::warn!(job = meta::name(job), %error, "job pod creation failed");
                return;
            }
        }
    }
    // Suspended Jobs delete their running pods (completed Jobs have none left).
    if wanted == 0 && active > 0 {
        for pod in owned.iter().filter(|p| pods::is_active(p)) {
            let _ = store.delete(
                &pods::pods(),
                meta::namespace(pod),
                meta::name(pod),
                &DeleteOptions::default(),
            );
        }
    }
}

/// Recomputes `status`, completing the Job when enough pods succeeded.
pub fn refresh_status(store: &Store, events: &EventRecorder, index: &OwnerIndex, job: &Value) {
    let now = store.now_string();
    let owned = index.owned(job);
    let (active, succeeded, failed) = counts(owned);
    let ready = owned
        .iter()
        .filter(|p| pods::is_active(p) && pods::is_ready(p))
        .count();
    let mut status = object_or_empty(job.get("status"));
    let suspended = job.pointer("/spec/suspend") == Some(&json!(true));
    if status.get("startTime").is_none() && !suspended {
        status["startTime"] = json!(now);
    }
    status["active"] = json!(active);
    status["ready"] = json!(ready);
    status["succeeded"] = json!(succeeded);
    status["failed"] = json!(failed);
    status["terminating"] = json!(
        owned
            .iter()
            .filter(|p| meta::is_deleting(p) && !pods::is_terminal(p))
            .count()
    );
    status["uncountedTerminatedPods"] = json!({});
    let done = match int(job, "/spec/completions") {
        Some(c) => succeeded >= c,
        None => succeeded > 0 && active == 0,
    };
    if done && !is_complete(job) {
        events.record(store, job, false, "Completed", "Job completed");
        status["completionTime"] = json!(now);
        let condition = |kind: &str| {
            json!({"type": kind, "status": "True", "lastProbeTime": now, "lastTransitionTime": now,
                   "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods"})
        };
        status["conditions"] = json!([condition("SuccessCriteriaMet"), condition("Complete")]);
    }
    write_status(store, &jobs(), job, status);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::defaults_run_one(json!({}), 0, 1)]
    #[case::parallel_up_to_remaining(json!({"parallelism": 3, "completions": 5}), 3, 2)]
    #[case::parallel_capped_by_parallelism(json!({"parallelism": 3, "completions": 5}), 0, 3)]
    #[case::work_queue_stops_after_a_success(json!({"parallelism": 2}), 1, 0)]
    #[case::suspended_runs_nothing(json!({"suspend": true, "completions": 2}), 0, 0)]
    fn job_wanted_active_pods(
        #[case] spec: Value,
        #[case] succeeded: usize,
        #[case] wanted: usize,
    ) {
        let job = json!({"spec": spec});
        assert_eq!(wanted_active(&job, succeeded), wanted);
    }
}
