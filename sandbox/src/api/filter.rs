//! List and watch filters: `labelSelector` and `fieldSelector`.
//!
//! Label selectors reuse the controllers' parser (one grammar for the whole sandbox). Field
//! selectors are `path=value`, `path==value` and `path!=value` terms joined by commas; any dotted
//! path is accepted (kube-apiserver allows a per-kind list — `metadata.name`,
//! `metadata.namespace`, `status.phase`, `involvedObject.name`, `type`, … — all of which are
//! dotted paths), and values compare as strings, as in Go.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::controllers::selector::Selector;
use crate::error::ApiError;
use crate::store::meta;

/// A parsed `labelSelector` + `fieldSelector` pair.
#[derive(Debug, Default)]
pub struct Filter {
    labels: Option<Selector>,
    fields: Vec<(String, bool, String)>,
}

impl Filter {
    /// Parses the two query parameters; 400 BadRequest on syntax errors.
    pub fn parse(
        label_selector: Option<&str>,
        field_selector: Option<&str>,
    ) -> Result<Self, ApiError> {
        let labels = match label_selector.filter(|s| !s.trim().is_empty()) {
            Some(text) => {
                Some(Selector::parse(text).map_err(|e| ApiError::bad_request(e.to_string()))?)
            }
            None => None,
        };
        let mut fields = vec![];
        for term in field_selector
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            let (path, equal, value) = if let Some((p, v)) = term.split_once("!=") {
                (p, false, v)
            } else if let Some((p, v)) = term.split_once("==") {
                (p, true, v)
            } else if let Some((p, v)) = term.split_once('=') {
                (p, true, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{term}'; can't understand '{term}'"
                )));
            };
            fields.push((path.trim().to_owned(), equal, value.trim().to_owned()));
        }
        Ok(Self { labels, fields })
    }

    /// Whether the filter selects everything.
    pub fn is_empty(&self) -> bool {
        self.labels.is_none() && self.fields.is_empty()
    }

    /// Whether an object passes the filter.
    pub fn matches(&self, obj: &Value) -> bool {
        if let Some(selector) = &self.labels {
            let labels: BTreeMap<String, String> = meta::labels(obj)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                        .collect()
                })
                .unwrap_or_default();
            if !selector.matches(&labels) {
                return false;
            }
        }
        self.fields.iter().all(|(path, equal, want)| {
            let have = match meta::dotted(obj, path) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (have == *want) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_and_field_selectors_combine() {
        let obj = json!({"metadata": {"name": "a", "namespace": "x", "labels": {"app": "web"}}, "status": {"phase": "Running"}});
        assert!(
            Filter::parse(
                Some("app=web"),
                Some("metadata.name=a,status.phase!=Pending")
            )
            .unwrap()
            .matches(&obj)
        );
        assert!(
            !Filter::parse(Some("app in (db)"), None)
                .unwrap()
                .matches(&obj)
        );
        assert!(
            !Filter::parse(None, Some("metadata.namespace==y"))
                .unwrap()
                .matches(&obj)
        );
        assert_eq!(Filter::parse(None, Some("nonsense")).unwrap_err().code, 400);
    }
}
