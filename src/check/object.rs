//! Checking one document: route it by `apiVersion`/`kind`, validate `metadata`, apply the CRD
//! schema (defaults, unknown fields, bounds), read it into the typed API, then run the
//! cross-field rules of KEDA's admission webhook.

use std::sync::LazyLock;

use regex::Regex;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::report::{Problem, Problems, Verdict};
use super::rules::{self, MetricReport, TriggerValidator};
use crate::crd::{
    ClusterTriggerAuthentication, CrdKind, ScaledJob, ScaledObject, TriggerAuthentication,
    crd_for_kind, names,
};

/// Check one parsed document. `None` for an empty document.
pub fn check_document(doc: Value, triggers: &dyn TriggerValidator) -> Option<Verdict> {
    let object = match doc {
        Value::Null => return None,
        Value::Object(map) => map,
        other => {
            let problem = Problem::new(
                ".",
                format!("expected a Kubernetes object, found {}", kind_of(&other)),
            );
            return Some(Verdict::Invalid {
                kind: None,
                name: None,
                problems: vec![problem],
            });
        }
    };
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let name = object
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let (Some(api_version), Some(kind)) = (api_version, kind) else {
        let mut problems = Problems::default();
        for field in ["apiVersion", "kind"] {
            if !object.get(field).is_some_and(Value::is_string) {
                problems.add(
                    format!(".{field}"),
                    "Required value: every Kubernetes object needs one",
                );
            }
        }
        let kind = object
            .get("kind")
            .and_then(Value::as_str)
            .map(str::to_owned);
        return Some(Verdict::Invalid {
            kind,
            name,
            problems: problems.into_vec(),
        });
    };
    if api_version.split_once('/').map(|(group, _)| group) != Some(names::GROUP) {
        return Some(Verdict::Skipped { api_version, kind });
    }
    let (problems, metrics) =
        check_keda_object(Value::Object(object), &api_version, &kind, triggers);
    Some(if problems.is_empty() {
        Verdict::Valid {
            kind,
            name,
            metrics,
        }
    } else {
        Verdict::Invalid {
            kind: Some(kind),
            name,
            problems: problems.into_vec(),
        }
    })
}

fn check_keda_object(
    mut doc: Value,
    api_version: &str,
    kind: &str,
    triggers: &dyn TriggerValidator,
) -> (Problems, Vec<MetricReport>) {
    let mut problems = Problems::default();
    if api_version != names::API_VERSION {
        let message = format!(
            "Unsupported value: {api_version:?}: supported values: {:?}",
            names::API_VERSION
        );
        problems.add(".apiVersion", message);
        return (problems, Vec::new());
    }
    let Some(crd_kind) = CrdKind::from_kind(kind) else {
        let supported: Vec<String> = CrdKind::ALL
            .iter()
            .map(|k| format!("{:?}", k.as_str()))
            .collect();
        problems.add(
            ".kind",
            format!(
                "Unsupported value: {kind:?}: supported values: {}",
                supported.join(", ")
            ),
        );
        return (problems, Vec::new());
    };
    check_metadata(&doc, crd_kind, &mut problems);
    check_schema(&mut doc, crd_kind, &mut problems);
    // Unknown fields are pruned by now; the rules still run when the rest reads into the
    // typed API, so one pass reports schema and cross-field problems together. When it does
    // not read, the schema problems already say why.
    let schema_valid = problems.is_empty();
    let read =
        match crd_kind {
            CrdKind::ScaledObject => typed::<ScaledObject>(doc)
                .map(|so| rules::scaled_object(&so, triggers, &mut problems)),
            CrdKind::ScaledJob => {
                typed::<ScaledJob>(doc).map(|sj| rules::scaled_job(&sj, triggers, &mut problems))
            }
            CrdKind::TriggerAuthentication => typed::<TriggerAuthentication>(doc).map(|ta| {
                rules::trigger_authentication(&ta.spec, false, &mut problems);
                Vec::new()
            }),
            CrdKind::ClusterTriggerAuthentication => typed::<ClusterTriggerAuthentication>(doc)
                .map(|cta| {
                    rules::trigger_authentication(&cta.spec.0, true, &mut problems);
                    Vec::new()
                }),
        };
    match read {
        Ok(metrics) => (problems, metrics),
        Err(problem) => {
            if schema_valid {
                problems.extend([problem]);
            }
            (problems, Vec::new())
        }
    }
}

/// DNS-1123 subdomain, the rule for object names.
static DNS_SUBDOMAIN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
        .expect("valid regex")
});

fn check_metadata(doc: &Value, kind: CrdKind, problems: &mut Problems) {
    let Some(metadata) = doc.get("metadata").and_then(Value::as_object) else {
        problems.add(
            ".metadata",
            "Required value: an object needs metadata with a name",
        );
        return;
    };
    let name = metadata.get("name").and_then(Value::as_str);
    let generate_name = metadata.get("generateName").and_then(Value::as_str);
    match name {
        None if generate_name.is_some() => {}
        None | Some("") => problems.add(".metadata.name", "Required value: name or generateName is required"),
        Some(name) if name.len() > 253 || !DNS_SUBDOMAIN.is_match(name) => problems.add(
            ".metadata.name",
            format!("Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case \
                     alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"),
        ),
        Some(_) => {}
    }
    if kind == CrdKind::ClusterTriggerAuthentication && metadata.contains_key("namespace") {
        problems.add(
            ".metadata.namespace",
            "ClusterTriggerAuthentication is cluster-scoped: remove the namespace",
        );
    }
}

/// Each kind's `openAPIV3Schema` as JSON, generated once: building the ScaledJob schema
/// (the whole batch/v1 JobSpec) costs far more than checking a document against it.
static SCHEMAS: LazyLock<Vec<(CrdKind, Value)>> = LazyLock::new(|| {
    CrdKind::ALL
        .into_iter()
        .filter_map(|kind| {
            let crd = crd_for_kind(kind);
            let schema = crd
                .spec
                .versions
                .first()?
                .schema
                .as_ref()?
                .open_api_v3_schema
                .as_ref()?;
            Some((kind, serde_json::to_value(schema).ok()?))
        })
        .collect()
});

/// The schema of `kind`; every kind has one (a test in `tests/crds.rs` pins it).
fn schema_of(kind: CrdKind) -> Option<&'static Value> {
    SCHEMAS
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, schema)| schema)
}

fn check_schema(doc: &mut Value, kind: CrdKind, problems: &mut Problems) {
    let Some(schema) = schema_of(kind) else {
        return;
    };
    for error in tidescale_kubeschema::default_prune_validate(schema, doc) {
        let message = match error.kind {
            tidescale_kubeschema::ErrorKind::UnknownField => {
                format!(
                    "unknown field, not declared in the {} schema",
                    kind.as_str()
                )
            }
            _ => error.message(),
        };
        problems.add(format!(".{}", error.path), message);
    }
}

fn typed<T: DeserializeOwned>(doc: Value) -> Result<T, Problem> {
    serde_path_to_error::deserialize::<_, T>(doc)
        .map_err(|e| Problem::new(format!(".{}", e.path()), e.inner().to_string()))
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}
