//! `meta.k8s.io/v1` Table rendering for `kubectl get` (`Accept: …;as=Table;…`).
//!
//! Custom resources print their `additionalPrinterColumns`, evaluated with the JSONPath subset
//! CRDs use in practice (`.a.b`, `.a[0]`, `.a[*].b`, `.a[?(@.type=="Ready")].status`); resources
//! without columns print Name and Age, as kube-apiserver's default table convertor does. Date
//! columns are rendered as ages with kubectl's `HumanDuration` rules.

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::store::ResourceInfo;

/// Renders objects as a Table.
pub fn render(
    info: &ResourceInfo,
    version: &str,
    items: &[Value],
    rv: &str,
    include_object: Option<&str>,
    now: Timestamp,
) -> Value {
    let columns = columns(info, version);
    let definitions: Vec<Value> = columns
        .iter()
        .map(|c| json!({"name": c["name"], "type": c["type"], "format": c.get("format").cloned().unwrap_or(json!("")),
                        "description": c.get("description").cloned().unwrap_or(json!("")), "priority": c.get("priority").cloned().unwrap_or(json!(0))}))
        .collect();
    let rows: Vec<Value> = items
        .iter()
        .map(|item| {
            let cells: Vec<Value> = columns.iter().map(|c| cell(c, item, now)).collect();
            json!({"cells": cells, "object": row_object(item, include_object)})
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": rv},
           "columnDefinitions": definitions, "rows": rows})
}

fn row_object(item: &Value, include_object: Option<&str>) -> Value {
    match include_object {
        Some("None") => Value::Null,
        Some("Object") => item.clone(),
        _ => {
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": item.get("metadata").cloned().unwrap_or(json!({}))})
        }
    }
}

fn column(name: &str, kind: &str, path: &str) -> Value {
    json!({"name": name, "type": kind, "jsonPath": path})
}

fn columns(info: &ResourceInfo, version: &str) -> Vec<Value> {
    let mut out = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "jsonPath": ".metadata.name"}),
    ];
    let age = column("Age", "date", ".metadata.creationTimestamp");
    if let Some(v) = info.crd_version(version) {
        if v.printer_columns.is_empty() {
            out.push(age);
        } else {
            out.extend(v.printer_columns.iter().cloned());
        }
        return out;
    }
    out.extend(builtin_columns(&info.group, &info.plural));
    out.push(age);
    out
}

/// kubectl's usual columns for the built-in kinds people look at (Name and Age come around them).
fn builtin_columns(group: &str, plural: &str) -> Vec<Value> {
    let c = column;
    match (group, plural) {
        ("apps", "deployments") => vec![
            c(
                "Ready",
                "string",
                "{.status.readyReplicas}/{.spec.replicas}",
            ),
            c("Up-to-date", "integer", ".status.updatedReplicas"),
            c("Available", "integer", ".status.availableReplicas"),
        ],
        ("apps", "replicasets") => vec![
            c("Desired", "integer", ".spec.replicas"),
            c("Current", "integer", ".status.replicas"),
            c("Ready", "integer", ".status.readyReplicas"),
        ],
        ("apps", "statefulsets") => vec![c(
            "Ready",
            "string",
            "{.status.readyReplicas}/{.spec.replicas}",
        )],
        ("batch", "jobs") => vec![c(
            "Completions",
            "string",
            "{.status.succeeded}/{.spec.completions}",
        )],
        ("", "pods") => vec![
            c("Ready", "string", READY_CONTAINERS),
            c("Status", "string", ".status.phase"),
        ],
        ("", "services") => vec![
            c("Type", "string", ".spec.type"),
            c("Cluster-IP", "string", ".spec.clusterIP"),
        ],
        ("", "events") => vec![
            c("Type", "string", ".type"),
            c("Reason", "string", ".reason"),
            c(
                "Object",
                "string",
                "{.involvedObject.kind}/{.involvedObject.name}",
            ),
            c("Message", "string", ".message"),
        ],
        ("", "namespaces") => vec![c("Status", "string", ".status.phase")],
        ("autoscaling", "horizontalpodautoscalers") => vec![
            c(
                "Reference",
                "string",
                "{.spec.scaleTargetRef.kind}/{.spec.scaleTargetRef.name}",
            ),
            c("MinPods", "integer", ".spec.minReplicas"),
            c("MaxPods", "integer", ".spec.maxReplicas"),
            c("Replicas", "integer", ".status.currentReplicas"),
        ],
        ("apiregistration.k8s.io", "apiservices") => vec![
            c(
                "Service",
                "string",
                "{.spec.service.namespace}/{.spec.service.name}",
            ),
            c(
                "Available",
                "string",
                ".status.conditions[?(@.type==\"Available\")].status",
            ),
        ],
        _ => vec![],
    }
}

/// Pseudo-path of the pods' READY column: ready containers / all containers.
const READY_CONTAINERS: &str = "#ready-containers";

fn ready_containers(pod: &Value) -> String {
    let total = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let statuses = pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array);
    let ready = statuses.map_or(0, |s| {
        s.iter().filter(|c| c["ready"] == json!(true)).count()
    });
    format!("{ready}/{total}")
}

fn cell(col: &Value, item: &Value, now: Timestamp) -> Value {
    let path = col["jsonPath"].as_str().unwrap_or_default();
    let kind = col["type"].as_str().unwrap_or("string");
    if path == READY_CONTAINERS {
        return json!(ready_containers(item));
    }
    if path.starts_with('{') {
        // A template of several `{path}` parts (built-in columns only).
        let text: String = path
            .split('{')
            .filter(|p| !p.is_empty())
            .map(|part| {
                let (p, literal) = part.split_once('}').unwrap_or((part, ""));
                let v = jsonpath(item, p)
                    .into_iter()
                    .next()
                    .map(|v| scalar_text(&v))
                    .unwrap_or_else(|| "0".into());
                format!("{v}{literal}")
            })
            .collect();
        return json!(text);
    }
    let values = jsonpath(item, path);
    match (kind, values.as_slice()) {
        (_, []) => Value::Null,
        ("date", [Value::String(s), ..]) => s
            .parse::<Timestamp>()
            .map_or_else(|_| json!(s), |t| json!(human_duration(now, t))),
        ("integer" | "number" | "boolean", [v]) => v.clone(),
        (_, [v]) => json!(scalar_text(v)),
        (_, many) => json!(many.iter().map(scalar_text).collect::<Vec<_>>().join(",")),
    }
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Evaluates the JSONPath subset CRD printer columns use; returns every match.
pub fn jsonpath(root: &Value, path: &str) -> Vec<Value> {
    let mut current = vec![root.clone()];
    let mut rest = path.trim().trim_start_matches('$');
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let key = &r[..end];
            current = current.iter().filter_map(|v| v.get(key).cloned()).collect();
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let Some(end) = r.find(']') else {
                return vec![];
            };
            let inner = &r[..end];
            current = current.iter().flat_map(|v| index(v, inner)).collect();
            rest = &r[end + 1..];
        } else {
            return vec![];
        }
    }
    current
}

fn index(v: &Value, inner: &str) -> Vec<Value> {
    let items = v.as_array().cloned().unwrap_or_default();
    if inner == "*" {
        return items;
    }
    if let Ok(i) = inner.parse::<usize>() {
        return items.get(i).cloned().into_iter().collect();
    }
    // `?(@.field=="value")` or `?(@.field=='value')`.
    let Some(cond) = inner.strip_prefix("?(@.").and_then(|c| c.strip_suffix(')')) else {
        return vec![];
    };
    let Some((field, want)) = cond.split_once("==") else {
        return vec![];
    };
    let want = want.trim().trim_matches(|c| c == '"' || c == '\'');
    items
        .into_iter()
        .filter(|i| i.get(field.trim()).map(scalar_text).as_deref() == Some(want))
        .collect()
}

/// kubectl's `duration.HumanDuration` of `now - t`.
pub fn human_duration(now: Timestamp, t: Timestamp) -> String {
    let secs = now.as_second() - t.as_second();
    if secs < -1 {
        return "<invalid>".into();
    }
    let s = secs.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86_400);
    let y = d / 365;
    match () {
        () if s < 120 => format!("{s}s"),
        () if m < 10 && s % 60 == 0 => format!("{m}m"),
        () if m < 10 => format!("{m}m{}s", s % 60),
        () if m < 180 => format!("{m}m"),
        () if h < 8 && m % 60 == 0 => format!("{h}h"),
        () if h < 8 => format!("{h}h{}m", m % 60),
        () if h < 48 => format!("{h}h"),
        () if h < 192 && h % 24 == 0 => format!("{d}d"),
        () if h < 192 => format!("{d}d{}h", h % 24),
        () if y < 2 => format!("{d}d"),
        () if y < 8 && d % 365 == 0 => format!("{y}y"),
        () if y < 8 => format!("{y}y{}d", d % 365),
        () => format!("{y}y"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonpath_supports_filters_wildcards_and_indices() {
        let obj = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Active", "status": "False"}]}});
        assert_eq!(
            jsonpath(&obj, ".status.conditions[?(@.type==\"Ready\")].status"),
            vec![json!("True")]
        );
        assert_eq!(jsonpath(&obj, ".status.conditions[*].type").len(), 2);
        assert_eq!(
            jsonpath(&obj, ".status.conditions[1].status"),
            vec![json!("False")]
        );
        assert!(jsonpath(&obj, ".spec.missing").is_empty());
    }

    #[test]
    fn pods_show_ready_containers_and_phase() {
        let registry = crate::store::Registry::default();
        let info = registry
            .get(&crate::store::GroupResource::new("", "pods"))
            .unwrap();
        let pod = json!({"metadata": {"name": "p", "creationTimestamp": "2024-05-01T12:00:00Z"},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Running", "containerStatuses": [{"name": "a", "ready": true}, {"name": "b", "ready": false}]}});
        let now: Timestamp = "2024-05-01T12:00:30Z".parse().unwrap();
        let t = render(&info, "v1", &[pod], "1", None, now);
        let names: Vec<&str> = t["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["Name", "Ready", "Status", "Age"]);
        assert_eq!(t["rows"][0]["cells"], json!(["p", "1/2", "Running", "30s"]));
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    }

    #[test]
    fn ages_follow_kubectl_rounding() {
        let t: Timestamp = "2024-05-01T12:00:00Z".parse().unwrap();
        let at = |secs: i64| Timestamp::from_second(t.as_second() + secs).unwrap();
        assert_eq!(human_duration(at(59), t), "59s");
        assert_eq!(human_duration(at(150), t), "2m30s");
        assert_eq!(human_duration(at(3600 * 5 + 60), t), "5h1m");
        assert_eq!(human_duration(at(86_400 * 3), t), "3d");
    }
}
