//! The simulated workload controllers against the in-process store, in virtual time:
//! Deployments scale pods that become Ready after the configured delays, scale-down removes
//! the cheapest pods through a graceful termination, Jobs complete, StatefulSets scale in order.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Value, json};
use tidescale_sandbox::clock::{ClockHandle, VirtualClock};
use tidescale_sandbox::controllers::{ControllerConfig, Controllers, PodTimings};
use tidescale_sandbox::{GroupResource, Store, WriteOptions};
use tokio_util::sync::CancellationToken;

struct World {
    store: Arc<Store>,
    clock: VirtualClock,
    shutdown: CancellationToken,
}

impl Drop for World {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn timings() -> PodTimings {
    PodTimings {
        start_delay: Duration::from_secs(2),
        ready_delay: Duration::from_secs(3),
        job_run: Duration::from_secs(5),
        termination_grace: Duration::from_secs(30),
    }
}

/// Starts the controllers and lets their first (empty) pass finish, so objects created by the
/// test are first seen at the next tick, deterministically.
async fn world() -> World {
    let start: Timestamp = "2024-05-01T12:00:00Z".parse().unwrap();
    let (handle, clock) = ClockHandle::manual(start);
    let store = Store::new(handle.clone(), 10_000);
    let config = ControllerConfig {
        pods: timings(),
        ..ControllerConfig::default()
    };
    let shutdown = CancellationToken::new();
    Controllers::new(store.clone(), config, None).spawn(&handle, shutdown.clone());
    clock.settle().await;
    World {
        store,
        clock,
        shutdown,
    }
}

fn gr(group: &str, resource: &str) -> GroupResource {
    GroupResource::new(group, resource)
}

fn deployment(name: &str, replicas: i64) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "app", "image": "busybox",
                                       "resources": {"requests": {"cpu": "250m"}}}]}}}})
}

fn pods(store: &Store) -> Vec<Arc<Value>> {
    store.list(&gr("", "pods"), Some("default")).0
}

fn phases(store: &Store) -> Vec<(String, bool, bool)> {
    let mut v: Vec<_> = pods(store)
        .iter()
        .map(|p| {
            let ready = p["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            });
            (
                p["status"]["phase"].as_str().unwrap_or("").to_owned(),
                ready,
                !p["metadata"]["deletionTimestamp"].is_null(),
            )
        })
        .collect();
    v.sort();
    v
}

fn get(store: &Store, group: &str, resource: &str, name: &str) -> Value {
    store
        .get(&gr(group, resource), Some("default"), name)
        .unwrap()
}

fn scale_deployment(store: &Store, name: &str, replicas: i64) {
    let mut d = get(store, "apps", "deployments", name);
    d["spec"]["replicas"] = json!(replicas);
    store
        .update(&gr("apps", "deployments"), d, &WriteOptions::default())
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_deployment_pods_become_ready_after_the_delays() {
    let w = world().await;
    w.store
        .create(
            &gr("apps", "deployments"),
            deployment("web", 3),
            &WriteOptions::default(),
        )
        .unwrap();
    w.clock.advance(Duration::from_secs(1)).await;
    assert_eq!(
        phases(&w.store),
        vec![("Pending".to_owned(), false, false); 3]
    );
    let pod = &pods(&w.store)[0];
    assert_eq!(pod["metadata"]["labels"]["app"], "web");
    let hash = pod["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .unwrap()
        .to_owned();
    let rs_name = format!("web-{hash}");
    assert_eq!(
        pod["metadata"]["ownerReferences"][0]["name"],
        rs_name.as_str()
    );
    assert_eq!(
        pod["spec"]["containers"][0]["resources"]["requests"]["cpu"],
        "250m"
    );

    w.clock.advance(Duration::from_secs(2)).await;
    assert_eq!(
        phases(&w.store),
        vec![("Running".to_owned(), false, false); 3]
    );
    assert!(pods(&w.store)[0]["status"]["startTime"].is_string());

    w.clock.advance(Duration::from_secs(3)).await;
    assert_eq!(
        phases(&w.store),
        vec![("Running".to_owned(), true, false); 3]
    );
    let status = &pods(&w.store)[0]["status"];
    assert_eq!(status["containerStatuses"][0]["ready"], true);
    assert!(status["containerStatuses"][0]["state"]["running"]["startedAt"].is_string());
    assert!(
        status["podIP"]
            .as_str()
            .is_some_and(|ip| ip.starts_with("10.244."))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_deployment_status_and_events_follow_the_pods() {
    let w = world().await;
    let created = w.store.create(
        &gr("apps", "deployments"),
        deployment("web", 3),
        &WriteOptions::default(),
    );
    created.unwrap();
    w.clock.advance(Duration::from_secs(6)).await;
    let hash = pods(&w.store)[0]["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .unwrap()
        .to_owned();
    let rs_name = format!("web-{hash}");
    let d = get(&w.store, "apps", "deployments", "web");
    let s = &d["status"];
    assert_eq!(
        (
            s["replicas"].as_i64(),
            s["readyReplicas"].as_i64(),
            s["availableReplicas"].as_i64()
        ),
        (Some(3), Some(3), Some(3))
    );
    assert_eq!(s["updatedReplicas"], 3);
    assert_eq!(s["observedGeneration"], d["metadata"]["generation"]);
    let available = s["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Available")
        .unwrap();
    assert_eq!(available["status"], "True");
    let rs = get(&w.store, "apps", "replicasets", &rs_name);
    assert_eq!(rs["status"]["readyReplicas"], 3);
    let reasons = events(&w.store);
    let scaled = format!("Scaled up replica set {rs_name} from 0 to 3");
    assert!(
        reasons.contains(&("ScalingReplicaSet".to_owned(), scaled)),
        "{reasons:?}"
    );
    assert_eq!(
        reasons
            .iter()
            .filter(|(r, _)| r == "SuccessfulCreate")
            .count(),
        3
    );
}

/// Nothing in the store changes between a pod turning Ready and `minReadySeconds` later, yet
/// availability must follow the clock: idle passes may only be skipped when nothing waits on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_availability_follows_min_ready_seconds_in_a_quiet_store() {
    let w = world().await;
    let mut d = deployment("web", 2);
    d["spec"]["minReadySeconds"] = json!(10);
    w.store
        .create(&gr("apps", "deployments"), d, &WriteOptions::default())
        .unwrap();
    let counts = |store: &Store| {
        let s = &get(store, "apps", "deployments", "web")["status"];
        (s["readyReplicas"].as_i64(), s["availableReplicas"].as_i64())
    };
    // Created at 1 s, Running at 3 s, Ready at 6 s, available at 16 s.
    w.clock.advance(Duration::from_secs(6)).await;
    assert_eq!(counts(&w.store), (Some(2), Some(0)));
    w.clock.advance(Duration::from_secs(9)).await;
    assert_eq!(counts(&w.store), (Some(2), Some(0)));
    w.clock.advance(Duration::from_secs(1)).await;
    assert_eq!(counts(&w.store), (Some(2), Some(2)));
}

/// (reason, message) of every Event in `default`.
fn events(store: &Store) -> Vec<(String, String)> {
    store
        .list(&gr("", "events"), Some("default"))
        .0
        .iter()
        .map(|e| {
            (
                e["reason"].as_str().unwrap_or_default().to_owned(),
                e["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_scale_down_terminates_pods_gracefully() {
    let w = world().await;
    w.store
        .create(
            &gr("apps", "deployments"),
            deployment("web", 3),
            &WriteOptions::default(),
        )
        .unwrap();
    w.clock.advance(Duration::from_secs(10)).await;
    scale_deployment(&w.store, "web", 1);
    w.clock.advance(Duration::from_secs(1)).await;
    let p = phases(&w.store);
    assert_eq!(
        p.iter().filter(|(_, _, deleting)| *deleting).count(),
        2,
        "{p:?}"
    );
    assert!(
        p.iter()
            .filter(|(_, _, deleting)| *deleting)
            .all(|(_, ready, _)| !ready),
        "{p:?}"
    );
    let status = &get(&w.store, "apps", "deployments", "web")["status"];
    assert_eq!(
        (
            status["replicas"].as_i64(),
            status["readyReplicas"].as_i64()
        ),
        (Some(1), Some(1))
    );
    w.clock.advance(Duration::from_secs(31)).await;
    assert_eq!(phases(&w.store), vec![("Running".to_owned(), true, false)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_scale_down_prefers_pending_pods() {
    let w = world().await;
    w.store
        .create(
            &gr("apps", "deployments"),
            deployment("web", 1),
            &WriteOptions::default(),
        )
        .unwrap();
    w.clock.advance(Duration::from_secs(10)).await;
    scale_deployment(&w.store, "web", 3);
    w.clock.advance(Duration::from_secs(1)).await;
    scale_deployment(&w.store, "web", 1);
    w.clock.advance(Duration::from_secs(1)).await;
    let live: Vec<_> = phases(&w.store)
        .into_iter()
        .filter(|(_, _, deleting)| !deleting)
        .collect();
    assert_eq!(live, vec![("Running".to_owned(), true, false)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_job_completes_after_its_pods_succeed() {
    let w = world().await;
    let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "batch", "namespace": "default"},
        "spec": {"completions": 2, "parallelism": 1,
                 "template": {"metadata": {"labels": {"app": "batch"}},
                              "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}});
    w.store
        .create(&gr("batch", "jobs"), job, &WriteOptions::default())
        .unwrap();
    w.clock.advance(Duration::from_secs(1)).await;
    assert_eq!(
        get(&w.store, "batch", "jobs", "batch")["status"]["active"],
        1
    );
    w.clock.advance(Duration::from_secs(20)).await;
    let status = get(&w.store, "batch", "jobs", "batch")["status"].clone();
    assert_eq!(
        (status["succeeded"].as_i64(), status["active"].as_i64()),
        (Some(2), Some(0))
    );
    assert!(status["completionTime"].is_string());
    let complete = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Complete")
        .unwrap();
    assert_eq!(complete["status"], "True");
    assert!(events(&w.store).contains(&("Completed".to_owned(), "Job completed".to_owned())));
    let done = pods(&w.store)
        .iter()
        .filter(|p| p["status"]["phase"] == "Succeeded")
        .count();
    assert_eq!(done, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_statefulset_creates_ordinals_in_order() {
    let w = world().await;
    let sts = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": "default"},
        "spec": {"replicas": 2, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                 "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}});
    w.store
        .create(&gr("apps", "statefulsets"), sts, &WriteOptions::default())
        .unwrap();
    w.clock.advance(Duration::from_secs(1)).await;
    let names: Vec<_> = pods(&w.store)
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, vec!["db-0"]);
    w.clock.advance(Duration::from_secs(10)).await;
    let names: Vec<_> = pods(&w.store)
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, vec!["db-0", "db-1"]);
    w.clock.advance(Duration::from_secs(10)).await;
    assert_eq!(
        get(&w.store, "apps", "statefulsets", "db")["status"]["readyReplicas"],
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_loop_survives_oddly_shaped_objects() {
    let w = world().await;
    let odd = [
        (
            "apps",
            "replicasets",
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "odd", "namespace": "default"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"a": "b"}}, "template": []}}),
        ),
        (
            "batch",
            "jobs",
            json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "odd", "namespace": "default", "annotations": {"sandbox.tidescale.io/run-seconds": "1e300"}},
            "spec": {"template": "not an object", "parallelism": -3}}),
        ),
        (
            "",
            "pods",
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "odd", "namespace": "default"},
            "spec": {"containers": "none", "restartPolicy": "Never"}, "status": "weird"}),
        ),
    ];
    // Admission may reject some of these; whatever gets stored must not stop the loop.
    for (group, resource, obj) in odd {
        let _ = w
            .store
            .create(&gr(group, resource), obj, &WriteOptions::default());
    }
    w.store
        .create(
            &gr("apps", "deployments"),
            deployment("web", 2),
            &WriteOptions::default(),
        )
        .unwrap();
    w.clock.advance(Duration::from_secs(10)).await;
    let status = get(&w.store, "apps", "deployments", "web")["status"].clone();
    assert_eq!(status["readyReplicas"], 2);
}
