//! Resolving what a trigger reads besides its metadata (`spec/scalers.md` §1.3): the scale
//! target's container env (for `<key>FromEnv`) and the auth params of its
//! (Cluster)TriggerAuthentication.
//!
//! Pure functions over an [`Objects`] view of Secrets and ConfigMaps, so the operator (which
//! fetches the referenced objects first) and `tidescale check` (which reads them from the
//! manifests it was given) resolve identically. A value whose source is not available to
//! `check` is [`Resolved::Unknown`]: present, but not known offline.

mod auth;
mod config;
mod env;
mod expand;

use std::collections::{BTreeMap, BTreeSet};

pub use auth::{AuthContext, ResolvedAuth, resolve_auth};
pub use config::{TriggerSite, scaler_config};
pub use env::{ResolvedEnv, resolve_env};

/// A string map read from a Secret or ConfigMap, or why it is not there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The object exists; its data (Secret values already decoded).
    Found(BTreeMap<String, String>),
    /// The object does not exist.
    Missing,
    /// Whether it exists is not known (offline check of a partial bundle).
    Unknown,
}

/// Where Secrets and ConfigMaps are read from.
pub trait Objects {
    /// The data of Secret `namespace/name`.
    fn secret(&self, namespace: &str, name: &str) -> Lookup;
    /// The data of ConfigMap `namespace/name`.
    fn config_map(&self, namespace: &str, name: &str) -> Lookup;
}

/// One resolved value.
#[derive(Clone, PartialEq, Eq)]
pub enum Resolved {
    /// The value (may be a secret: never printed by `Debug`).
    Known(String),
    /// Present, but not known offline.
    Unknown,
}

impl std::fmt::Debug for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Resolved::Known(_) => f.write_str("Known(<redacted>)"),
            Resolved::Unknown => f.write_str("Unknown"),
        }
    }
}

/// Resolved values by name, split into the known map a scaler reads and the unknown names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValueMap {
    values: BTreeMap<String, Resolved>,
}

impl ValueMap {
    /// Set `name`, replacing an earlier value.
    pub fn insert(&mut self, name: impl Into<String>, value: Resolved) {
        self.values.insert(name.into(), value);
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&Resolved> {
        self.values.get(name)
    }

    /// The known values, as a scaler reads them.
    pub fn known(&self) -> BTreeMap<String, String> {
        self.values
            .iter()
            .filter_map(|(k, v)| match v {
                Resolved::Known(text) => Some((k.clone(), text.clone())),
                Resolved::Unknown => None,
            })
            .collect()
    }

    /// The names whose values are unknown.
    pub fn unknown(&self) -> BTreeSet<String> {
        self.values
            .iter()
            .filter(|(_, v)| matches!(v, Resolved::Unknown))
            .map(|(k, _)| k.clone())
            .collect()
    }
}

/// Why resolution failed. Names objects and keys, never values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// `envSourceContainerName` (or an auth `env[].containerName`) names no container.
    #[error("container {0:?} not found in the scale target's pod template")]
    ContainerNotFound(String),
    /// The pod template has no containers.
    #[error("the scale target's pod template has no containers")]
    NoContainers,
    /// A non-optional `envFrom`/`valueFrom` source does not exist.
    #[error("{kind} {name:?} not found (referenced by {by})")]
    MissingObject {
        /// `Secret` or `ConfigMap`.
        kind: &'static str,
        /// Its name.
        name: String,
        /// What referenced it.
        by: String,
    },
    /// A non-optional key is absent from an existing object.
    #[error("key {key:?} not found in {kind} {name:?} (referenced by {by})")]
    MissingKey {
        /// `Secret` or `ConfigMap`.
        kind: &'static str,
        /// Its name.
        name: String,
        /// The key.
        key: String,
        /// What referenced it.
        by: String,
    },
    /// `filePath` on a namespaced TriggerAuthentication.
    #[error("filePath is only supported by ClusterTriggerAuthentication")]
    FilePathNotSupported,
}

/// An [`Objects`] over Secrets and ConfigMaps held in memory, keyed by `(namespace, name)`.
/// `absent` decides what a name not held means: [`Lookup::Missing`] for the operator's
/// snapshot, [`Lookup::Unknown`] for `check` on a partial bundle.
#[derive(Debug, Clone)]
pub struct ObjectMaps {
    /// Secret data (decoded) by namespace and name.
    pub secrets: BTreeMap<(String, String), BTreeMap<String, String>>,
    /// ConfigMap data by namespace and name.
    pub config_maps: BTreeMap<(String, String), BTreeMap<String, String>>,
    /// What a name not held resolves to.
    pub absent: Lookup,
}

impl ObjectMaps {
    /// Empty maps where anything not held is `absent`.
    pub fn new(absent: Lookup) -> Self {
        Self {
            secrets: BTreeMap::new(),
            config_maps: BTreeMap::new(),
            absent,
        }
    }

    fn lookup(
        &self,
        map: &BTreeMap<(String, String), BTreeMap<String, String>>,
        ns: &str,
        name: &str,
    ) -> Lookup {
        match map.get(&(ns.to_owned(), name.to_owned())) {
            Some(data) => Lookup::Found(data.clone()),
            None => self.absent.clone(),
        }
    }
}

impl Objects for ObjectMaps {
    fn secret(&self, namespace: &str, name: &str) -> Lookup {
        self.lookup(&self.secrets, namespace, name)
    }

    fn config_map(&self, namespace: &str, name: &str) -> Lookup {
        self.lookup(&self.config_maps, namespace, name)
    }
}
