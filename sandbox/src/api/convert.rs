//! Version conversion for the one built-in kind served in two shapes: HorizontalPodAutoscaler.
//!
//! Objects are stored as `autoscaling/v2` (what the HPA controller reads). `kubectl autoscale`
//! still writes `autoscaling/v1`, whose single `targetCPUUtilizationPercentage` is a v2 CPU
//! utilization metric; requests and responses on the v1 path are converted, keeping the
//! v2-only parts (other metrics, behavior, conditions) of the stored object, much as
//! kube-apiserver round-trips them through annotations. Custom resources need no conversion
//! (CRD conversion strategy `None`: only `apiVersion` changes).

use serde_json::{Map, Value, json};

use crate::store::ResourceInfo;

/// Whether requests on this version need converting.
pub fn needed(info: &ResourceInfo, version: &str) -> bool {
    info.group == "autoscaling" && info.plural == "horizontalpodautoscalers" && version == "v1"
}

fn copy(from: &Value, to: &mut Map<String, Value>, keys: &[&str]) {
    for key in keys {
        if let Some(v) = from.get(*key).filter(|v| !v.is_null()) {
            to.insert((*key).to_owned(), v.clone());
        }
    }
}

fn cpu_metric(metrics: Option<&Value>, side: &str) -> Option<Value> {
    metrics?.as_array()?.iter().find_map(|m| {
        let cpu = m["type"] == "Resource" && m.pointer("/resource/name") == Some(&json!("cpu"));
        cpu.then(|| {
            m.pointer(&format!("/resource/{side}/averageUtilization"))
                .cloned()
        })
        .flatten()
    })
}

/// The stored (v2) object as an `autoscaling/v1` client sees it.
pub fn to_v1(v2: &Value) -> Value {
    let mut out = v2.as_object().cloned().unwrap_or_default();
    let mut spec = Map::new();
    copy(
        &v2["spec"],
        &mut spec,
        &["scaleTargetRef", "minReplicas", "maxReplicas"],
    );
    if let Some(target) = cpu_metric(v2.pointer("/spec/metrics"), "target") {
        spec.insert("targetCPUUtilizationPercentage".into(), target);
    }
    out.insert("spec".into(), Value::Object(spec));
    if let Some(status) = v2.get("status") {
        let mut s = Map::new();
        copy(
            status,
            &mut s,
            &[
                "observedGeneration",
                "lastScaleTime",
                "currentReplicas",
                "desiredReplicas",
            ],
        );
        if let Some(current) = cpu_metric(status.get("currentMetrics"), "current") {
            s.insert("currentCPUUtilizationPercentage".into(), current);
        }
        out.insert("status".into(), Value::Object(s));
    }
    out.insert("apiVersion".into(), json!("autoscaling/v1"));
    Value::Object(out)
}

/// A v1 object from a client, in storage (v2) form; v2-only fields come from `stored`.
pub fn to_v2(v1: &Value, stored: Option<&Value>) -> Value {
    let mut out = v1.as_object().cloned().unwrap_or_default();
    let old = stored.cloned().unwrap_or(Value::Null);
    let mut spec = old
        .get("spec")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    copy(
        &v1["spec"],
        &mut spec,
        &["scaleTargetRef", "minReplicas", "maxReplicas"],
    );
    if let Some(target) = v1
        .pointer("/spec/targetCPUUtilizationPercentage")
        .filter(|v| !v.is_null())
    {
        let cpu = json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": target}}});
        let others: Vec<Value> = spec
            .get("metrics")
            .and_then(Value::as_array)
            .map(|ms| {
                ms.iter()
                    .filter(|m| cpu_metric(Some(&json!([m])), "target").is_none())
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        spec.insert("metrics".into(), Value::Array([vec![cpu], others].concat()));
    }
    out.insert("spec".into(), Value::Object(spec));
    if let Some(status) = v1.get("status").filter(|s| s.is_object()) {
        let mut s = old
            .get("status")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        copy(
            status,
            &mut s,
            &[
                "observedGeneration",
                "lastScaleTime",
                "currentReplicas",
                "desiredReplicas",
            ],
        );
        if let Some(current) = status
            .get("currentCPUUtilizationPercentage")
            .filter(|v| !v.is_null())
        {
            s.insert("currentMetrics".into(), json!([{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": current}}}]));
        }
        out.insert("status".into(), Value::Object(s));
    }
    out.insert("apiVersion".into(), json!("autoscaling/v2"));
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_cpu_target_round_trips_through_v2_keeping_other_metrics() {
        let stored = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "h"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 5,
                     "metrics": [{"type": "External", "external": {"metric": {"name": "q"}, "target": {"type": "Value", "value": "1"}}}],
                     "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}});
        let v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "h"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 7, "targetCPUUtilizationPercentage": 50}});
        let v2 = to_v2(&v1, Some(&stored));
        assert_eq!(v2["spec"]["maxReplicas"], 7);
        assert_eq!(
            v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            50
        );
        assert_eq!(v2["spec"]["metrics"][1]["type"], "External");
        assert_eq!(
            v2["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"],
            60
        );
        let back = to_v1(&v2);
        assert_eq!(
            back["spec"],
            json!({"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 7, "targetCPUUtilizationPercentage": 50})
        );
        assert_eq!(back["apiVersion"], "autoscaling/v1");
    }
}
