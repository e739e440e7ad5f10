//! Objects grouped by their controlling owner, built once per controller pass.
//!
//! Without it every ReplicaSet, Job and StatefulSet would list (and clone) all pods of its
//! namespace on every tick: quadratic in the number of workloads, which the load harnesses
//! (thousands of Deployments) would feel. One list per pass keeps a pass linear, and the index
//! shares the store's objects rather than copying them.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use crate::store::{GroupResource, Store, meta};

/// Objects of one resource by the uid of their controller owner reference.
#[derive(Debug, Default)]
pub struct OwnerIndex(HashMap<String, Vec<Arc<Value>>>);

impl OwnerIndex {
    /// Lists `gr` across namespaces and groups the objects by controller uid.
    pub fn build(store: &Store, gr: &GroupResource) -> Self {
        let mut map: HashMap<String, Vec<Arc<Value>>> = HashMap::new();
        for obj in store.list(gr, None).0 {
            let owner = meta::owner_references(&obj)
                .iter()
                .find(|r| r["controller"] == true)
                .and_then(|r| r["uid"].as_str())
                .map(str::to_owned);
            if let Some(uid) = owner {
                map.entry(uid).or_default().push(obj);
            }
        }
        Self(map)
    }

    /// The objects `owner` controls (empty if none).
    pub fn owned(&self, owner: &Value) -> &[Arc<Value>] {
        meta::uid(owner)
            .and_then(|uid| self.0.get(uid))
            .map_or(&[], Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ClockHandle;
    use crate::store::WriteOptions;
    use serde_json::json;

    #[test]
    fn controller_index_groups_by_controller_uid_only() {
        let store = Store::new(ClockHandle::real(), 100);
        let cm = GroupResource::new("", "configmaps");
        let owned = |name: &str, uid: &str, controller: bool| {
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default",
                "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "o", "uid": uid, "controller": controller}]}})
        };
        for obj in [
            owned("a", "u1", true),
            owned("b", "u1", true),
            owned("c", "u1", false),
            owned("d", "u2", true),
        ] {
            store.create(&cm, obj, &WriteOptions::default()).unwrap();
        }
        let index = OwnerIndex::build(&store, &cm);
        let names: Vec<_> = index
            .owned(&json!({"metadata": {"uid": "u1"}}))
            .iter()
            .map(|o| meta::name(o))
            .collect();
        assert_eq!(names, vec!["a", "b"]);
        assert!(
            index
                .owned(&json!({"metadata": {"uid": "none"}}))
                .is_empty()
        );
    }
}
