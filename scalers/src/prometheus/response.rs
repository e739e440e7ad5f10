//! Decoding of an instant-query response (spec/scalers.md §5.3).
//!
//! Only an instant vector with exactly one sample yields a value; a `scalar` result is accepted
//! as a safe extension. `status` and `resultType` are otherwise not checked, as in KEDA.

use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
struct Body {
    data: Data,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType", default)]
    result_type: String,
    #[serde(default)]
    result: Value,
}

#[derive(Deserialize)]
struct Sample {
    // A matrix element carries `values` instead: `value` is then absent, i.e. empty.
    #[serde(default)]
    value: Vec<Value>,
}

/// The value of an instant-query response body, or why there is none.
///
/// With `ignore_null_values`, an empty result, an empty value list and NaN/±Inf all give 0.
/// A JSON `null` sample gives -1 (reported as 0, inactive), as KEDA does.
pub fn parse_response(body: &str, ignore_null_values: bool) -> Result<f64, String> {
    let body: Body = serde_json::from_str(body)
        .map_err(|e| format!("cannot decode prometheus query response: {e}"))?;
    let pair = if body.data.result_type == "scalar" {
        // `[<ts>, "<value>"]` directly.
        decode_pair(&body.data.result)?
    } else {
        let samples: Vec<Sample> = serde_json::from_value(body.data.result)
            .map_err(|e| format!("cannot decode prometheus query result: {e}"))?;
        match samples.as_slice() {
            [] if ignore_null_values => return Ok(0.0),
            [] => {
                return Err(
                    "prometheus metrics 'prometheus' target may be lost, the result is \
                            empty"
                        .to_owned(),
                );
            }
            [sample] => sample.value.clone(),
            _ => return Err("prometheus query returned multiple elements".to_owned()),
        }
    };
    let value = match pair.as_slice() {
        [] if ignore_null_values => return Ok(0.0),
        [] => return Err("prometheus metrics 'prometheus' the value list is empty".to_owned()),
        [_] => return Err("prometheus query didn't return enough values".to_owned()),
        [_, value, ..] => sample_value(value)?,
    };
    if value.is_finite() {
        Ok(value)
    } else if ignore_null_values {
        Ok(0.0)
    } else {
        Err(format!("prometheus query returns {value}"))
    }
}

fn decode_pair(result: &Value) -> Result<Vec<Value>, String> {
    serde_json::from_value(result.clone())
        .map_err(|e| format!("cannot decode prometheus scalar result: {e}"))
}

/// `"<float>"` as Go's `strconv.ParseFloat` reads it (`NaN`, `+Inf`, `1e3`…); null is -1.
fn sample_value(value: &Value) -> Result<f64, String> {
    match value {
        Value::Null => Ok(-1.0),
        Value::String(s) => s
            .parse::<f64>()
            .map_err(|_| format!("prometheus sample value {s:?} is not a number")),
        other => Err(format!("prometheus sample value {other} is not a string")),
    }
}
