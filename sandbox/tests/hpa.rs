//! The HPA controller end to end on the in-process store, in virtual time, with an injected
//! external-metrics source: scale-up, the legacy 5-minute downscale stabilization, behavior
//! policies, metric failures, and scaling disabled at zero replicas.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use serde_json::{Value, json};
use tidescale_sandbox::clock::{ClockHandle, VirtualClock};
use tidescale_sandbox::controllers::{
    ControllerConfig, Controllers, FetchError, MetricsApi, PodTimings,
};
use tidescale_sandbox::{GroupResource, Store, WriteOptions};
use tokio_util::sync::CancellationToken;

/// An external metrics backend whose value the test sets; records the paths it was asked for.
#[derive(Debug, Default)]
struct FakeMetrics {
    value: Mutex<Option<String>>,
    paths: Mutex<Vec<String>>,
}

impl FakeMetrics {
    fn set(&self, value: Option<&str>) {
        *self.value.lock().unwrap() = value.map(str::to_owned);
    }
}

#[async_trait]
impl MetricsApi for FakeMetrics {
    async fn get(&self, path_and_query: &str) -> Result<Value, FetchError> {
        self.paths.lock().unwrap().push(path_and_query.to_owned());
        match self.value.lock().unwrap().clone() {
            Some(v) => Ok(
                json!({"kind": "ExternalMetricValueList", "apiVersion": "external.metrics.k8s.io/v1beta1",
                "metadata": {}, "items": [{"metricName": "queue_depth", "metricLabels": {}, "timestamp": null, "value": v}]}),
            ),
            None => Err(FetchError {
                code: 404,
                message: "the server could not find the metric queue_depth for external metric"
                    .to_owned(),
            }),
        }
    }
}

struct World {
    store: Arc<Store>,
    clock: VirtualClock,
    metrics: Arc<FakeMetrics>,
    shutdown: CancellationToken,
}

impl Drop for World {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Starts the controllers and lets their first (empty) pass finish, so objects created by the
/// test are first seen at the next tick, deterministically.
async fn world() -> World {
    let start: Timestamp = "2024-05-01T12:00:00Z".parse().unwrap();
    let (handle, clock) = ClockHandle::manual(start);
    let store = Store::new(handle.clone(), 10_000);
    let pods = PodTimings {
        start_delay: Duration::from_secs(1),
        ready_delay: Duration::from_secs(1),
        ..PodTimings::default()
    };
    let config = ControllerConfig {
        pods,
        ..ControllerConfig::default()
    };
    let metrics = Arc::new(FakeMetrics::default());
    let shutdown = CancellationToken::new();
    Controllers::new(store.clone(), config, Some(metrics.clone())).spawn(&handle, shutdown.clone());
    clock.settle().await;
    World {
        store,
        clock,
        metrics,
        shutdown,
    }
}

fn gr(group: &str, resource: &str) -> GroupResource {
    GroupResource::new(group, resource)
}

fn create_workload(w: &World, replicas: i64, behavior: Option<Value>) {
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "worker", "namespace": "default"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "worker"}},
                 "template": {"metadata": {"labels": {"app": "worker"}}, "spec": {"containers": [{"name": "app", "image": "x"}]}}}});
    w.store
        .create(&gr("apps", "deployments"), d, &WriteOptions::default())
        .unwrap();
    let mut hpa = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "worker", "namespace": "default"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "worker"},
                 "minReplicas": 1, "maxReplicas": 20,
                 "metrics": [{"type": "External", "external": {
                     "metric": {"name": "queue_depth", "selector": {"matchLabels": {"queue": "orders"}}},
                     "target": {"type": "AverageValue", "averageValue": "10"}}}]}});
    if let Some(b) = behavior {
        hpa["spec"]["behavior"] = b;
    }
    w.store
        .create(
            &gr("autoscaling", "horizontalpodautoscalers"),
            hpa,
            &WriteOptions::default(),
        )
        .unwrap();
}

fn spec_replicas(w: &World) -> i64 {
    w.store
        .get(&gr("apps", "deployments"), Some("default"), "worker")
        .unwrap()["spec"]["replicas"]
        .as_i64()
        .unwrap()
}

fn hpa_status(w: &World) -> Value {
    w.store
        .get(
            &gr("autoscaling", "horizontalpodautoscalers"),
            Some("default"),
            "worker",
        )
        .unwrap()["status"]
        .clone()
}

fn condition(status: &Value, kind: &str) -> (String, String, String) {
    let c = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == kind)
        .unwrap();
    let s = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
    (s("status"), s("reason"), s("message"))
}

fn events(w: &World) -> Vec<(String, String, String)> {
    w.store
        .list(&gr("", "events"), Some("default"))
        .0
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
            (s("type"), s("reason"), s("message"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpa_scales_up_from_external_metric_and_reports_status() {
    let w = world().await;
    w.metrics.set(Some("35"));
    create_workload(&w, 1, None);
    w.clock.advance(Duration::from_secs(1)).await;
    // ceil(35 / 10) = 4; the legacy limit max(2×1, 4) = 4 allows it.
    assert_eq!(spec_replicas(&w), 4);
    let status = hpa_status(&w);
    assert_eq!(
        (
            status["currentReplicas"].as_i64(),
            status["desiredReplicas"].as_i64()
        ),
        (Some(1), Some(4))
    );
    assert_eq!(status["lastScaleTime"], "2024-05-01T12:00:01Z");
    assert_eq!(
        status["currentMetrics"][0]["external"]["current"]["averageValue"],
        "35"
    );
    assert_eq!(condition(&status, "AbleToScale").1, "SucceededRescale");
    assert_eq!(condition(&status, "ScalingActive").1, "ValidMetricFound");
    let rescale = events(&w)
        .into_iter()
        .find(|e| e.1 == "SuccessfulRescale")
        .unwrap();
    assert!(
        rescale
            .2
            .starts_with("New size: 4; reason: external metric queue_depth(&LabelSelector{"),
        "{rescale:?}"
    );
    let paths = w.metrics.paths.lock().unwrap().clone();
    assert_eq!(
        paths[0],
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/default/queue_depth?labelSelector=queue%3Dorders"
    );
    // Next sync (15 s later) sees 4 pods: 35 / (10 × 4) = 0.875 → ceil(3.5) = 4, no change.
    w.clock.advance(Duration::from_secs(15)).await;
    assert_eq!(spec_replicas(&w), 4);
    assert_eq!(hpa_status(&w)["currentReplicas"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpa_legacy_scale_down_waits_five_minutes() {
    let w = world().await;
    w.metrics.set(Some("40"));
    create_workload(&w, 4, None);
    w.clock.advance(Duration::from_secs(30)).await;
    assert_eq!(spec_replicas(&w), 4);
    w.metrics.set(Some("5"));
    w.clock.advance(Duration::from_secs(285)).await;
    assert_eq!(spec_replicas(&w), 4, "held by the 300 s window");
    assert_eq!(
        condition(&hpa_status(&w), "AbleToScale").1,
        "ScaleDownStabilized"
    );
    w.clock.advance(Duration::from_secs(60)).await;
    assert_eq!(spec_replicas(&w), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpa_behavior_limits_scale_up_per_period() {
    let w = world().await;
    w.metrics.set(Some("200"));
    let behavior =
        json!({"scaleUp": {"policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}]}});
    create_workload(&w, 1, Some(behavior));
    w.clock.advance(Duration::from_secs(1)).await;
    assert_eq!(spec_replicas(&w), 3);
    assert_eq!(
        condition(&hpa_status(&w), "ScalingLimited").1,
        "ScaleUpLimit"
    );
    w.clock.advance(Duration::from_secs(45)).await;
    assert_eq!(spec_replicas(&w), 3, "no more within the 60 s period");
    w.clock.advance(Duration::from_secs(15)).await;
    assert_eq!(spec_replicas(&w), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpa_metric_failure_sets_condition_and_events() {
    let w = world().await;
    w.metrics.set(None);
    create_workload(&w, 2, None);
    w.clock.advance(Duration::from_secs(1)).await;
    assert_eq!(spec_replicas(&w), 2);
    let (status, reason, message) = condition(&hpa_status(&w), "ScalingActive");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "FailedGetExternalMetric")
    );
    assert!(message.ends_with("unable to fetch metrics from external metrics API: the server could not find the metric queue_depth for external metric"), "{message}");
    let reasons: Vec<_> = events(&w).into_iter().map(|e| e.1).collect();
    assert!(reasons.contains(&"FailedGetExternalMetric".to_owned()));
    assert!(reasons.contains(&"FailedComputeMetricsReplicas".to_owned()));
    // A repeat of the same failure bumps the count instead of adding events.
    w.clock.advance(Duration::from_secs(15)).await;
    let failed: Vec<_> = w
        .store
        .list(&gr("", "events"), Some("default"))
        .0
        .into_iter()
        .filter(|e| e["reason"] == "FailedGetExternalMetric")
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["count"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpa_does_not_scale_a_target_at_zero() {
    let w = world().await;
    w.metrics.set(Some("100"));
    create_workload(&w, 0, None);
    w.clock.advance(Duration::from_secs(20)).await;
    assert_eq!(spec_replicas(&w), 0);
    let status = hpa_status(&w);
    assert_eq!(
        condition(&status, "ScalingActive"),
        (
            "False".to_owned(),
            "ScalingDisabled".to_owned(),
            "scaling is disabled since the replica count of the target is zero".to_owned()
        )
    );
    assert!(status["currentMetrics"].is_null());
    assert!(
        w.metrics.paths.lock().unwrap().is_empty(),
        "no metrics read at zero"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpa_missing_target_reports_failed_get_scale() {
    let w = world().await;
    let hpa = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "ghost", "namespace": "default"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ghost"}, "maxReplicas": 3,
                 "metrics": [{"type": "External", "external": {"metric": {"name": "m"}, "target": {"type": "Value", "value": "1"}}}]}});
    w.store
        .create(
            &gr("autoscaling", "horizontalpodautoscalers"),
            hpa,
            &WriteOptions::default(),
        )
        .unwrap();
    w.clock.advance(Duration::from_secs(1)).await;
    let status = w
        .store
        .get(
            &gr("autoscaling", "horizontalpodautoscalers"),
            Some("default"),
            "ghost",
        )
        .unwrap()["status"]
        .clone();
    let (s, reason, message) = condition(&status, "AbleToScale");
    assert_eq!((s.as_str(), reason.as_str()), ("False", "FailedGetScale"));
    assert!(
        message.starts_with("the HPA controller was unable to get the target's current scale: "),
        "{message}"
    );
}

fn create_crd_target(w: &World) {
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "workers.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
                 "names": {"plural": "workers", "singular": "worker", "kind": "Worker", "listKind": "WorkerList"},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                     "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                     "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas",
                         "statusReplicasPath": ".status.replicas", "labelSelectorPath": ".status.selector"}}}]}});
    w.store
        .create(
            &gr("apiextensions.k8s.io", "customresourcedefinitions"),
            crd,
            &WriteOptions::default(),
        )
        .unwrap();
    let cr = json!({"apiVersion": "example.com/v1", "kind": "Worker", "metadata": {"name": "w1", "namespace": "default"},
        "spec": {"replicas": 2}});
    w.store
        .create(&gr("example.com", "workers"), cr, &WriteOptions::default())
        .unwrap();
    let mut cr = w
        .store
        .get(&gr("example.com", "workers"), Some("default"), "w1")
        .unwrap();
    cr["status"] = json!({"replicas": 2, "selector": "app=w1"});
    w.store
        .update(&gr("example.com", "workers"), cr, &WriteOptions::status())
        .unwrap();
    let hpa = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "w1", "namespace": "default"},
        "spec": {"scaleTargetRef": {"apiVersion": "example.com/v1", "kind": "Worker", "name": "w1"},
                 "minReplicas": 1, "maxReplicas": 10,
                 "metrics": [{"type": "External", "external": {"metric": {"name": "queue_depth"},
                              "target": {"type": "AverageValue", "averageValue": "10"}}}]}});
    w.store
        .create(
            &gr("autoscaling", "horizontalpodautoscalers"),
            hpa,
            &WriteOptions::default(),
        )
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpa_scales_a_custom_resource_through_its_scale_subresource() {
    let w = world().await;
    w.metrics.set(Some("60"));
    create_crd_target(&w);
    w.clock.advance(Duration::from_secs(1)).await;
    // ceil(60 / 10) = 6, legacy limit max(2×2, 4) = 4.
    let cr = w
        .store
        .get(&gr("example.com", "workers"), Some("default"), "w1")
        .unwrap();
    assert_eq!(cr["spec"]["replicas"], 4);
    let status = w
        .store
        .get(
            &gr("autoscaling", "horizontalpodautoscalers"),
            Some("default"),
            "w1",
        )
        .unwrap()["status"]
        .clone();
    assert_eq!(condition(&status, "ScalingLimited").1, "ScaleUpLimit");
    let paths = w.metrics.paths.lock().unwrap().clone();
    assert_eq!(
        paths[0],
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/default/queue_depth"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpa_value_target_multiplies_by_ready_pods_only() {
    let w = world().await;
    w.metrics.set(Some("30"));
    create_workload(&w, 2, None);
    let mut hpa = w
        .store
        .get(
            &gr("autoscaling", "horizontalpodautoscalers"),
            Some("default"),
            "worker",
        )
        .unwrap();
    hpa["spec"]["metrics"][0]["external"]["target"] = json!({"type": "Value", "value": "10"});
    w.store
        .update(
            &gr("autoscaling", "horizontalpodautoscalers"),
            hpa,
            &WriteOptions::default(),
        )
        .unwrap();
    // First cycle at t=1 s: the two pods were just created and are not Ready → ceil(3 × 0) = 0,
    // clamped to minReplicas 1, held at 2 by the downscale window.
    w.clock.advance(Duration::from_secs(1)).await;
    assert_eq!(spec_replicas(&w), 2);
    assert_eq!(
        condition(&hpa_status(&w), "AbleToScale").1,
        "ScaleDownStabilized"
    );
    // 15 s later both pods are Ready: ratio 3 × 2 ready = 6, legacy limit max(4, 4) = 4.
    w.clock.advance(Duration::from_secs(15)).await;
    assert_eq!(spec_replicas(&w), 4);
    assert_eq!(
        hpa_status(&w)["currentMetrics"][0]["external"]["current"]["value"],
        "30"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpa_object_metric_reads_the_custom_metrics_api() {
    let w = world().await;
    w.metrics.set(Some("40"));
    create_workload(&w, 2, None);
    let mut hpa = w
        .store
        .get(
            &gr("autoscaling", "horizontalpodautoscalers"),
            Some("default"),
            "worker",
        )
        .unwrap();
    hpa["spec"]["metrics"] = json!([{"type": "Object", "object": {
        "describedObject": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "worker"},
        "metric": {"name": "queue_depth"}, "target": {"type": "Value", "value": "10"}}}]);
    w.store
        .update(
            &gr("autoscaling", "horizontalpodautoscalers"),
            hpa,
            &WriteOptions::default(),
        )
        .unwrap();
    // Let both pods become Ready before the HPA's second sync: 40 / 10 × 2 ready = 8 → limit 4.
    w.clock.advance(Duration::from_secs(16)).await;
    assert_eq!(spec_replicas(&w), 4);
    let status = hpa_status(&w);
    assert_eq!(
        status["currentMetrics"][0]["object"]["current"]["value"],
        "40"
    );
    assert_eq!(
        status["currentMetrics"][0]["object"]["describedObject"]["kind"],
        "Deployment"
    );
    let (_, reason, message) = condition(&status, "ScalingActive");
    assert_eq!(reason, "ValidMetricFound");
    assert!(
        message.ends_with("from Deployment metric queue_depth"),
        "{message}"
    );
    let paths = w.metrics.paths.lock().unwrap().clone();
    assert_eq!(
        paths[0],
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/deployments.apps/worker/queue_depth"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpa_garbage_metric_value_is_a_metric_failure() {
    let w = world().await;
    w.metrics.set(Some("NaN"));
    create_workload(&w, 2, None);
    w.clock.advance(Duration::from_secs(1)).await;
    assert_eq!(spec_replicas(&w), 2);
    let (status, reason, message) = condition(&hpa_status(&w), "ScalingActive");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "FailedGetExternalMetric")
    );
    assert!(
        message.contains("unable to fetch metrics from external metrics API: quantity \"NaN\""),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpa_target_without_selector_reports_invalid_selector() {
    let w = world().await;
    w.metrics.set(Some("60"));
    create_crd_target(&w);
    let mut cr = w
        .store
        .get(&gr("example.com", "workers"), Some("default"), "w1")
        .unwrap();
    cr["status"] = json!({"replicas": 2});
    w.store
        .update(&gr("example.com", "workers"), cr, &WriteOptions::status())
        .unwrap();
    w.clock.advance(Duration::from_secs(1)).await;
    let status = w
        .store
        .get(
            &gr("autoscaling", "horizontalpodautoscalers"),
            Some("default"),
            "w1",
        )
        .unwrap()["status"]
        .clone();
    assert_eq!(
        condition(&status, "ScalingActive"),
        (
            "False".to_owned(),
            "InvalidSelector".to_owned(),
            "the HPA target's scale is missing a selector".to_owned()
        )
    );
    let reasons: Vec<_> = events(&w).into_iter().map(|e| e.1).collect();
    assert!(
        reasons.contains(&"SelectorRequired".to_owned()),
        "{reasons:?}"
    );
    let cr = w
        .store
        .get(&gr("example.com", "workers"), Some("default"), "w1")
        .unwrap();
    assert_eq!(cr["spec"]["replicas"], 2, "no scaling without a selector");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpa_unreadable_spec_does_not_stop_the_controller() {
    let w = world().await;
    w.metrics.set(Some("35"));
    let broken = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "broken", "namespace": "default"},
        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "worker"}, "maxReplicas": 3,
                 "metrics": "not a list"}});
    // The sandbox may reject it at admission; either way the controller must keep working.
    let _ = w.store.create(
        &gr("autoscaling", "horizontalpodautoscalers"),
        broken,
        &WriteOptions::default(),
    );
    create_workload(&w, 1, None);
    w.clock.advance(Duration::from_secs(1)).await;
    assert_eq!(spec_replicas(&w), 4);
}
