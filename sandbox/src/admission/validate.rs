//! Validation: the subset of kube-apiserver's per-kind rules that clients of the sandbox can hit,
//! plus structural-schema validation of custom resources through `tidescale-kubeschema`.
//!
//! Failures become `422 Invalid` with one cause per field, in kube-apiserver's wording, so a
//! test asserting on the message of a real cluster passes here too.

use serde_json::Value;

use crate::error::{ApiError, Cause};
use crate::store::{ResourceInfo, meta};

/// Applies schema defaults and prunes unknown fields, returning their paths (non-strict field
/// validation drops them silently; strict validation rejects the request).
pub fn apply_schema_defaults(schema: &Value, obj: &mut Value) -> Vec<String> {
    tidescale_kubeschema::apply_defaults(schema, obj);
    tidescale_kubeschema::prune_unknown_fields(schema, obj)
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// Validates an object about to be stored; `old` is the stored object for updates.
pub fn check(info: &ResourceInfo, obj: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    let mut causes = name_causes(info, obj);
    if causes.is_empty() {
        causes.extend(kind_causes(info, obj, old));
        causes.extend(schema_causes(info, obj));
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(
            &info.kind,
            &info.group,
            meta::name(obj),
            causes,
        ))
    }
}

fn invalid(field: &str, value: &Value, detail: &str) -> Cause {
    Cause::new(
        "FieldValueInvalid",
        field,
        format!("Invalid value: {value}: {detail}"),
    )
}

fn required(field: &str, detail: &str) -> Cause {
    let message = if detail.is_empty() {
        "Required value".to_owned()
    } else {
        format!("Required value: {detail}")
    };
    Cause::new("FieldValueRequired", field, message)
}

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

/// RFC 1123 subdomain (or label when `dots` is false).
pub fn is_dns_name(name: &str, dots: bool) -> bool {
    let max = if dots { 253 } else { 63 };
    !name.is_empty()
        && name.len() <= max
        && name.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
        && (dots || !name.contains('.'))
}

fn name_causes(info: &ResourceInfo, obj: &Value) -> Vec<Cause> {
    let name = meta::name(obj);
    if name.is_empty() {
        return vec![required(
            "metadata.name",
            "name or generateName is required",
        )];
    }
    let value = Value::String(name.to_owned());
    match info.group.as_str() {
        // RBAC objects only need to be path segments (`system:controller:...`).
        "rbac.authorization.k8s.io" => {
            if name == "." || name == ".." || name.contains('/') || name.contains('%') {
                return vec![invalid(
                    "metadata.name",
                    &value,
                    "may not contain '/' or '%'",
                )];
            }
            vec![]
        }
        "" if matches!(info.plural.as_str(), "namespaces" | "services") => {
            if is_dns_name(name, false) {
                vec![]
            } else {
                vec![invalid("metadata.name", &value, LABEL_MSG)]
            }
        }
        _ if is_dns_name(name, true) => vec![],
        _ => vec![invalid("metadata.name", &value, SUBDOMAIN_MSG)],
    }
}

fn kind_causes(info: &ResourceInfo, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    match (info.group.as_str(), info.plural.as_str()) {
        ("apps", "deployments" | "replicasets" | "statefulsets") => workload(obj, old),
        ("apiextensions.k8s.io", "customresourcedefinitions") => crd(obj),
        ("apiregistration.k8s.io", "apiservices") => apiservice(obj),
        ("autoscaling", "horizontalpodautoscalers") => hpa(obj),
        ("", "secrets" | "configmaps") => immutable_data(obj, old),
        _ => vec![],
    }
}

fn workload(obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = vec![];
    if let Some(r) = obj.pointer("/spec/replicas")
        && r.as_i64().is_none_or(|r| r < 0)
    {
        causes.push(invalid(
            "spec.replicas",
            r,
            "must be greater than or equal to 0",
        ));
    }
    let Some(selector) = obj.pointer("/spec/selector") else {
        causes.push(required("spec.selector", ""));
        return causes;
    };
    if old
        .and_then(|o| o.pointer("/spec/selector"))
        .is_some_and(|old_sel| old_sel != selector)
    {
        causes.push(invalid("spec.selector", selector, "field is immutable"));
    }
    let labels = obj
        .pointer("/spec/template/metadata/labels")
        .and_then(Value::as_object);
    let matches = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .is_none_or(|want| {
            want.iter()
                .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        });
    if !matches {
        let shown = obj
            .pointer("/spec/template/metadata/labels")
            .cloned()
            .unwrap_or(Value::Null);
        causes.push(invalid(
            "spec.template.metadata.labels",
            &shown,
            "`selector` does not match template `labels`",
        ));
    }
    causes
}

fn crd(obj: &Value) -> Vec<Cause> {
    let plural = obj
        .pointer("/spec/names/plural")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let group = obj
        .pointer("/spec/group")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut causes = vec![];
    if plural.is_empty() {
        causes.push(required("spec.names.plural", ""));
    }
    if obj
        .pointer("/spec/names/kind")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        causes.push(required("spec.names.kind", ""));
    }
    if group.is_empty() {
        causes.push(required("spec.group", ""));
    }
    let versions = obj
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    if versions == 0 {
        causes.push(required(
            "spec.versions",
            "must have exactly one version marked as storage version",
        ));
    }
    let name = meta::name(obj);
    if causes.is_empty() && name != format!("{plural}.{group}") {
        causes.push(invalid(
            "metadata.name",
            &Value::String(name.into()),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    causes
}

fn apiservice(obj: &Value) -> Vec<Cause> {
    let group = obj
        .pointer("/spec/group")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let version = obj
        .pointer("/spec/version")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let name = meta::name(obj);
    // The core group's APIService is named by its version alone (`v1`).
    let expected = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{version}.{group}")
    };
    if name != expected {
        let detail = format!("must be `spec.version+\".\"+spec.group`: \"{version}.{group}\"");
        return vec![invalid(
            "metadata.name",
            &Value::String(name.into()),
            &detail,
        )];
    }
    let has_ca = obj
        .pointer("/spec/caBundle")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty());
    if has_ca && obj.pointer("/spec/insecureSkipTLSVerify") == Some(&Value::Bool(true)) {
        return vec![invalid(
            "spec.insecureSkipTLSVerify",
            &Value::Bool(true),
            "may not be true if caBundle is present",
        )];
    }
    vec![]
}

fn hpa(obj: &Value) -> Vec<Cause> {
    let mut causes = vec![];
    let max = obj.pointer("/spec/maxReplicas").and_then(Value::as_i64);
    let min = obj
        .pointer("/spec/minReplicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    match max {
        None => causes.push(required("spec.maxReplicas", "")),
        Some(m) if m < 1 => causes.push(invalid(
            "spec.maxReplicas",
            &m.into(),
            "must be greater than or equal to 1",
        )),
        Some(m) if m < min => causes.push(invalid(
            "spec.maxReplicas",
            &m.into(),
            "must be greater than or equal to `minReplicas`",
        )),
        Some(_) => {}
    }
    if obj
        .pointer("/spec/scaleTargetRef/name")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        causes.push(required("spec.scaleTargetRef.name", ""));
    }
    causes
}

fn immutable_data(obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let Some(old) = old else { return vec![] };
    if old.get("immutable") != Some(&Value::Bool(true)) {
        return vec![];
    }
    ["data", "binaryData"]
        .into_iter()
        .filter(|f| old.get(f) != obj.get(f))
        .map(|f| {
            Cause::new(
                "FieldValueForbidden",
                f,
                "Forbidden: field is immutable when `immutable` is set",
            )
        })
        .collect()
}

fn schema_causes(info: &ResourceInfo, obj: &Value) -> Vec<Cause> {
    let version = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .and_then(|v| v.rsplit('/').next())
        .unwrap_or_default();
    let Some(schema) = info.crd_version(version).and_then(|v| v.schema.as_ref()) else {
        return vec![];
    };
    tidescale_kubeschema::validate(schema, obj)
        .into_iter()
        .map(|e| Cause::new(e.reason(), &e.path.to_string(), e.message()))
        .collect()
}
