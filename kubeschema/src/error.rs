//! Field errors worded as kube-apiserver words them (`k8s.io/apimachinery` field errors and
//! kube-openapi validation messages), so users see what `kubectl apply` would show.

use std::fmt;

use serde_json::Value;

use crate::FieldPath;

/// What is wrong with a field.
#[derive(Debug, Clone, PartialEq)]
pub enum ErrorKind {
    /// A required field is missing (`Required value`).
    Required,
    /// The value is malformed or out of bounds (`Invalid value: <v>: <detail>`).
    Invalid {
        /// The offending value.
        value: Value,
        /// What was expected.
        detail: String,
    },
    /// The value is not one of an enumeration (`Unsupported value: <v>: supported values: …`).
    NotSupported {
        /// The offending value.
        value: Value,
        /// The allowed values.
        allowed: Vec<Value>,
    },
    /// The field is not declared in the schema (strict field validation).
    UnknownField,
}

/// One problem at one path.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// Where the problem is.
    pub path: FieldPath,
    /// What the problem is.
    pub kind: ErrorKind,
}

impl FieldError {
    /// A missing required field.
    pub fn required(path: FieldPath) -> Self {
        Self {
            path,
            kind: ErrorKind::Required,
        }
    }

    /// A value that is present but wrong.
    pub fn invalid(path: FieldPath, value: &Value, detail: impl Into<String>) -> Self {
        let kind = ErrorKind::Invalid {
            value: value.clone(),
            detail: detail.into(),
        };
        Self { path, kind }
    }

    /// A value outside an enumeration.
    pub fn not_supported(path: FieldPath, value: &Value, allowed: &[Value]) -> Self {
        let kind = ErrorKind::NotSupported {
            value: value.clone(),
            allowed: allowed.to_vec(),
        };
        Self { path, kind }
    }

    /// A field the schema does not declare.
    pub fn unknown_field(path: FieldPath) -> Self {
        Self {
            path,
            kind: ErrorKind::UnknownField,
        }
    }

    /// The message without the path, e.g. `Required value`.
    pub fn message(&self) -> String {
        match &self.kind {
            ErrorKind::Required => "Required value".to_owned(),
            ErrorKind::Invalid { value, detail } => {
                format!("Invalid value: {}: {detail}", short_value(value))
            }
            ErrorKind::NotSupported { value, allowed } => {
                let allowed: Vec<String> = allowed.iter().map(short_value).collect();
                format!(
                    "Unsupported value: {}: supported values: {}",
                    short_value(value),
                    allowed.join(", ")
                )
            }
            ErrorKind::UnknownField => "field not declared in schema".to_owned(),
        }
    }

    /// The Status `reason` of a cause (`FieldValueRequired`, `FieldValueInvalid`, …).
    pub fn reason(&self) -> &'static str {
        match self.kind {
            ErrorKind::Required => "FieldValueRequired",
            ErrorKind::Invalid { .. } => "FieldValueInvalid",
            ErrorKind::NotSupported { .. } => "FieldValueNotSupported",
            ErrorKind::UnknownField => "FieldValueInvalid",
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ErrorKind::UnknownField => write!(f, "unknown field \"{}\"", self.path),
            _ => write!(f, "{}: {}", self.path, self.message()),
        }
    }
}

/// A value as it appears in a message: strings quoted, containers abbreviated so a message
/// never carries a whole sub-document.
pub(crate) fn short_value(value: &Value) -> String {
    match value {
        Value::Object(map) => format!("object with {} field(s)", map.len()),
        Value::Array(items) => format!("array with {} item(s)", items.len()),
        Value::String(s) if s.chars().count() > 64 => {
            let head: String = s.chars().take(61).collect();
            format!("\"{head}...\"")
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn messages_read_like_kube_apiserver() {
        let path = FieldPath::root().key("spec").key("minReplicaCount");
        let err = FieldError::invalid(
            path.clone(),
            &json!(-1),
            "spec.minReplicaCount in body should be greater than or equal to 0",
        );
        assert_eq!(
            err.to_string(),
            "spec.minReplicaCount: Invalid value: -1: spec.minReplicaCount in body should be \
             greater than or equal to 0"
        );
        assert_eq!(
            FieldError::required(path.clone()).to_string(),
            "spec.minReplicaCount: Required value"
        );
        let err = FieldError::not_supported(path, &json!("x"), &[json!("a"), json!("b")]);
        assert_eq!(
            err.message(),
            "Unsupported value: \"x\": supported values: \"a\", \"b\""
        );
        let unknown = FieldError::unknown_field(FieldPath::root().key("spec").key("foo"));
        assert_eq!(unknown.to_string(), "unknown field \"spec.foo\"");
    }
}
