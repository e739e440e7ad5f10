//! The per-object families written straight into the scrape's text, in the text format the
//! `prometheus` crate's `TextEncoder` writes and in its order (families by name, series by
//! label values taken in label-name order), without building its protobuf messages.
//!
//! Why: at 10,000 objects those messages were ~80,000 series of label pairs — millions of small
//! allocations (~90 MB at once) per scrape, which the allocator kept resident among the
//! long-lived per-object data (`benches/operator_scale.rs`). Written directly, a scrape
//! allocates its text and one sorted index per family. Equality with `TextEncoder`'s output is
//! pinned by a test that renders the same series through `prometheus` vectors.

use std::fmt::Write as _;
use std::sync::Arc;

use prometheus::proto::MetricType;

use super::object_series::{Entry, FAMILIES, Family, Trigger};

/// A copy of one object's series, taken under the table's lock.
pub(super) type Snapshot = Vec<(Arc<str>, Arc<str>, Entry)>;

/// Bytes of text per series, to size the buffer once (labels and values of a typical trigger).
pub(super) const BYTES_PER_SERIES: usize = 200;

/// Write family `family` of `objects` (sorted by namespace and name); nothing when it has no
/// series (as `Registry::gather` prunes empty families).
pub(super) fn write_family(out: &mut String, family: Family, objects: &Snapshot) {
    let (name, help, type_, _) = FAMILIES[family as usize];
    let mut header = || {
        let type_ = if type_ == MetricType::COUNTER {
            "counter"
        } else {
            "gauge"
        };
        let _ = write!(
            out,
            "# HELP {name} {}\n# TYPE {name} {type_}\n",
            escape(help, false)
        );
    };
    match family {
        Family::ScalerValue
        | Family::ScalerLatency
        | Family::ScalerActive
        | Family::ScalerErrors => {
            let series = trigger_series(objects, family);
            if series.is_empty() {
                return;
            }
            header();
            for (namespace, object, t, index, value) in series {
                let _ = write!(out, "{name}{{");
                let pairs = [
                    ("metric", &*t.metric),
                    ("namespace", namespace),
                    ("scaledObject", object),
                    ("scaler", &*t.scaler),
                    ("triggerIndex", index.as_str()),
                    ("type", t.resource_type.as_str()),
                ];
                write_sample(out, &pairs, value);
            }
        }
        Family::ObjectErrors
        | Family::ObjectPaused
        | Family::LoopLatency
        | Family::ScalerBuilds => {
            let values: Vec<_> = objects
                .iter()
                .filter_map(|(namespace, object, entry)| {
                    object_value(entry, family).map(|v| (namespace, object, v))
                })
                .collect();
            if values.is_empty() {
                return;
            }
            header();
            for (namespace, object, value) in values {
                let _ = write!(out, "{name}{{");
                if let Family::LoopLatency = family {
                    let pairs = [
                        ("namespace", &**namespace),
                        ("resource", &**object),
                        ("type", super::metrics::ResourceType::ScaledObject.as_str()),
                    ];
                    write_sample(out, &pairs, value);
                } else {
                    write_sample(
                        out,
                        &[("namespace", namespace), ("scaledObject", object)],
                        value,
                    );
                }
            }
        }
    }
}

/// The object-level value of `family`, when the series exists.
fn object_value(entry: &Entry, family: Family) -> Option<f64> {
    match family {
        Family::ObjectErrors => entry.errors,
        Family::ObjectPaused => entry.paused,
        Family::LoopLatency => entry.loop_latency,
        Family::ScalerBuilds => entry.builds,
        _ => None,
    }
}

/// `(namespace, object, trigger, triggerIndex text, value)` of every trigger series of
/// `family`, sorted by label values in label-name order (metric, namespace, scaledObject,
/// scaler, triggerIndex as text, type), as `Registry::gather` sorts them.
fn trigger_series(objects: &Snapshot, family: Family) -> Vec<(&str, &str, &Trigger, String, f64)> {
    let mut series: Vec<_> = objects
        .iter()
        .flat_map(|(namespace, object, entry)| {
            entry.triggers.iter().filter_map(move |t| {
                let value = match (family, t.polled) {
                    (Family::ScalerErrors, _) => t.errors,
                    (Family::ScalerValue, Some([value, _, _])) => value,
                    (Family::ScalerLatency, Some([_, latency, _])) => latency,
                    (Family::ScalerActive, Some([_, _, active])) => active,
                    _ => return None,
                };
                Some((&**namespace, &**object, t, t.index.to_string(), value))
            })
        })
        .collect();
    series.sort_by(|a, b| sort_key(a).cmp(&sort_key(b)));
    series
}

/// The label values of a trigger series in label-name order.
fn sort_key<'a>(s: &'a (&str, &str, &Trigger, String, f64)) -> [&'a str; 6] {
    let (namespace, object, t, index, _) = s;
    [
        &t.metric,
        namespace,
        object,
        &t.scaler,
        index,
        t.resource_type.as_str(),
    ]
}

/// `label="value",…} value\n` (the name and `{` are the caller's).
fn write_sample(out: &mut String, pairs: &[(&str, &str)], value: f64) {
    for (i, (label, text)) in pairs.iter().enumerate() {
        let separator = if i == 0 { "" } else { "," };
        let _ = write!(out, "{separator}{label}=\"{}\"", escape(text, true));
    }
    let _ = writeln!(out, "}} {value}");
}

/// The text format's escapes: backslash and newline, and the double quote in label values.
fn escape(text: &str, quote: bool) -> std::borrow::Cow<'_, str> {
    let special = |c: char| c == '\\' || c == '\n' || (quote && c == '"');
    if !text.contains(special) {
        return text.into();
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if special(c) {
            escaped.extend(c.escape_default());
        } else {
            escaped.push(c);
        }
    }
    escaped.into()
}
