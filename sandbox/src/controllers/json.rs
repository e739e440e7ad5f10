//! JSON helpers that never panic on unexpected shapes.
//!
//! `serde_json`'s `value["key"] = …` panics when `value` is a string, number or array. Objects
//! in the store come from users and may hold anything where a controller expects an object
//! (`status: "x"`, `template: []`), so controllers write through these helpers instead.

use serde_json::{Map, Value};

/// A clone of `v` if it is an object, else an empty object.
pub fn object_or_empty(v: Option<&Value>) -> Value {
    match v {
        Some(v @ Value::Object(_)) => v.clone(),
        _ => Value::Object(Map::new()),
    }
}

/// Sets `obj.path[0].path[1]…` to `value`, replacing anything on the way that is not an object.
pub fn set_in(obj: &mut Value, path: &[&str], value: Value) {
    let mut at = obj;
    for key in path {
        if !at.is_object() {
            *at = Value::Object(Map::new());
        }
        let Value::Object(map) = at else {
            return;
        };
        at = map.entry((*key).to_owned()).or_insert(Value::Null);
    }
    *at = value;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn controller_json_helpers_survive_garbage_shapes() {
        let mut v = json!({"spec": "garbage"});
        set_in(&mut v, &["spec", "template", "labels"], json!({"a": "b"}));
        assert_eq!(v, json!({"spec": {"template": {"labels": {"a": "b"}}}}));
        let mut s = json!("not an object");
        set_in(&mut s, &["x"], json!(1));
        assert_eq!(s, json!({"x": 1}));
        assert_eq!(object_or_empty(Some(&json!([1]))), json!({}));
        assert_eq!(object_or_empty(Some(&json!({"a": 1}))), json!({"a": 1}));
    }
}
