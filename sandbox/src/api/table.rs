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
    match (info.group.as_str(), info.plural.as_str()) {
        ("apps", "deployments") => out.extend([
            column(
                "Ready",
                "string",
                "{.status.readyReplicas}/{.spec.replicas}",
            ),
            column("Up-to-date", "integer", ".status.updatedReplicas"),
            column("Available", "integer", ".status.availableReplicas"),
        ]),
        ("", "pods") => out.push(column("Status", "string", ".status.phase")),
        ("", "events") => out.extend([
            column("Type", "string", ".type"),
            column("Reason", "string", ".reason"),
            column(
                "Object",
                "string",
                "{.involvedObject.kind}/{.involvedObject.name}",
            ),
            column("Message", "string", ".message"),
        ]),
        ("", "namespaces") => out.push(column("Status", "string", ".status.phase")),
        ("autoscaling", "horizontalpodautoscalers") => out.extend([
            column(
                "Reference",
                "string",
                "{.spec.scaleTargetRef.kind}/{.spec.scaleTargetRef.name}",
            ),
            column("MinPods", "integer", ".spec.minReplicas"),
            column("MaxPods", "integer", ".spec.maxReplicas"),
            column("Replicas", "integer", ".status.currentReplicas"),
        ]),
        _ => {}
    }
    out.push(age);
    out
}

fn cell(col: &Value, item: &Value, now: Timestamp) -> Value {
    let path = col["jsonPath"].as_str().unwrap_or_default();
    let kind = col["type"].as_str().unwrap_or("string");
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
    fn ages_follow_kubectl_rounding() {
        let t: Timestamp = "2024-05-01T12:00:00Z".parse().unwrap();
        let at = |secs: i64| Timestamp::from_second(t.as_second() + secs).unwrap();
        assert_eq!(human_duration(at(59), t), "59s");
        assert_eq!(human_duration(at(150), t), "2m30s");
        assert_eq!(human_duration(at(3600 * 5 + 60), t), "5h1m");
        assert_eq!(human_duration(at(86_400 * 3), t), "3d");
    }
}
