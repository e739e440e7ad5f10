//! The env of the scale target's container (`spec/scalers.md` §1.3, "Env map"): `envFrom`
//! first, then `env` (overriding, with `$(VAR)` expansion), secret and ConfigMap references
//! resolved, `fieldRef`/`resourceFieldRef` skipped.

use k8s_openapi::api::core::v1::{Container, EnvFromSource, EnvVar, PodSpec};

use super::expand::expand;
use super::{Lookup, Objects, ResolveError, Resolved, ValueMap};

/// A container's env as a scaler sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvedEnv {
    /// Env vars by name.
    pub values: ValueMap,
    /// An `envFrom` source could not be read offline, so names beyond `values` may exist.
    pub open: bool,
}

/// Resolve the env of `container_name` (or the first container) in `pod`.
pub fn resolve_env(
    namespace: &str,
    pod: &PodSpec,
    container_name: Option<&str>,
    objects: &dyn Objects,
) -> Result<ResolvedEnv, ResolveError> {
    let container = pick_container(pod, container_name)?;
    let by = format!("container {:?}", container.name);
    let mut env = ResolvedEnv::default();
    for source in container.env_from.iter().flatten() {
        add_env_from(namespace, source, objects, &by, &mut env)?;
    }
    for var in container.env.iter().flatten() {
        if let Some(value) = env_var_value(namespace, var, objects, &env.values, &by)? {
            env.values.insert(var.name.clone(), value);
        }
    }
    Ok(env)
}

/// The named container, or the first one.
pub fn pick_container<'a>(
    pod: &'a PodSpec,
    name: Option<&str>,
) -> Result<&'a Container, ResolveError> {
    match name.filter(|n| !n.is_empty()) {
        Some(name) => pod
            .containers
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| ResolveError::ContainerNotFound(name.to_owned())),
        None => pod.containers.first().ok_or(ResolveError::NoContainers),
    }
}

fn add_env_from(
    namespace: &str,
    source: &EnvFromSource,
    objects: &dyn Objects,
    by: &str,
    env: &mut ResolvedEnv,
) -> Result<(), ResolveError> {
    let prefix = source.prefix.as_deref().unwrap_or_default();
    let (kind, name, optional, lookup) = if let Some(cm) = &source.config_map_ref {
        (
            "ConfigMap",
            &cm.name,
            cm.optional,
            objects.config_map(namespace, &cm.name),
        )
    } else if let Some(secret) = &source.secret_ref {
        (
            "Secret",
            &secret.name,
            secret.optional,
            objects.secret(namespace, &secret.name),
        )
    } else {
        return Ok(());
    };
    match lookup {
        Lookup::Found(data) => {
            for (key, value) in data {
                env.values
                    .insert(format!("{prefix}{key}"), Resolved::Known(value));
            }
        }
        Lookup::Unknown => env.open = true,
        Lookup::Missing if optional == Some(true) => {}
        Lookup::Missing => {
            let by = format!("envFrom of {by}");
            return Err(ResolveError::MissingObject {
                kind,
                name: name.clone(),
                by,
            });
        }
    }
    Ok(())
}

/// The value of one `env` entry; `None` for entries a scaler cannot see (fieldRef, optional
/// references to missing objects).
fn env_var_value(
    namespace: &str,
    var: &EnvVar,
    objects: &dyn Objects,
    defined: &ValueMap,
    by: &str,
) -> Result<Option<Resolved>, ResolveError> {
    let Some(source) = &var.value_from else {
        return Ok(Some(expand(
            var.value.as_deref().unwrap_or_default(),
            defined,
        )));
    };
    let by = format!("env {:?} of {by}", var.name);
    if let Some(key_ref) = &source.secret_key_ref {
        let lookup = objects.secret(namespace, &key_ref.name);
        return key_value(
            "Secret",
            &key_ref.name,
            &key_ref.key,
            key_ref.optional,
            lookup,
            by,
        );
    }
    if let Some(key_ref) = &source.config_map_key_ref {
        let lookup = objects.config_map(namespace, &key_ref.name);
        return key_value(
            "ConfigMap",
            &key_ref.name,
            &key_ref.key,
            key_ref.optional,
            lookup,
            by,
        );
    }
    Ok(None)
}

fn key_value(
    kind: &'static str,
    name: &str,
    key: &str,
    optional: Option<bool>,
    lookup: Lookup,
    by: String,
) -> Result<Option<Resolved>, ResolveError> {
    let optional = optional == Some(true);
    match lookup {
        Lookup::Unknown => Ok(Some(Resolved::Unknown)),
        Lookup::Found(data) => match data.get(key) {
            Some(value) => Ok(Some(Resolved::Known(value.clone()))),
            None if optional => Ok(None),
            None => Err(ResolveError::MissingKey {
                kind,
                name: name.to_owned(),
                key: key.to_owned(),
                by,
            }),
        },
        Lookup::Missing if optional => Ok(None),
        Lookup::Missing => Err(ResolveError::MissingObject {
            kind,
            name: name.to_owned(),
            by,
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::super::ObjectMaps;
    use super::*;

    fn pod(containers: serde_json::Value) -> PodSpec {
        serde_json::from_value(json!({"containers": containers})).unwrap()
    }

    fn objects(absent: Lookup) -> ObjectMaps {
        let mut objects = ObjectMaps::new(absent);
        let secret = BTreeMap::from([("url".to_owned(), "amqp://secret".to_owned())]);
        objects
            .secrets
            .insert(("shop".into(), "rabbit".into()), secret);
        let cm = BTreeMap::from([
            ("QUEUE".to_owned(), "orders".to_owned()),
            ("HOST".to_owned(), "cm-host".to_owned()),
        ]);
        objects
            .config_maps
            .insert(("shop".into(), "settings".into()), cm);
        objects
    }

    fn known(env: &ResolvedEnv, name: &str) -> Option<String> {
        env.values.known().get(name).cloned()
    }

    #[test]
    fn env_from_then_env_with_expansion_and_references() {
        let pod = pod(
            json!([{"name": "worker", "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "APP_"}],
            "env": [
                {"name": "APP_HOST", "value": "override"},
                {"name": "URL", "valueFrom": {"secretKeyRef": {"name": "rabbit", "key": "url"}}},
                {"name": "FULL", "value": "$(URL)/$(APP_QUEUE)"},
                {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]}]),
        );
        let env = resolve_env("shop", &pod, None, &objects(Lookup::Missing)).unwrap();
        assert_eq!(known(&env, "APP_QUEUE").as_deref(), Some("orders"));
        assert_eq!(known(&env, "APP_HOST").as_deref(), Some("override"));
        assert_eq!(known(&env, "FULL").as_deref(), Some("amqp://secret/orders"));
        assert_eq!(known(&env, "NODE"), None, "fieldRef is skipped");
        assert!(!env.open);
    }

    #[test]
    fn the_named_container_is_used() {
        let pod = pod(
            json!([{"name": "a", "env": [{"name": "X", "value": "a"}]}, {"name": "b", "env": [{"name": "X", "value": "b"}]}]),
        );
        let objects = objects(Lookup::Missing);
        assert_eq!(
            known(
                &resolve_env("shop", &pod, Some("b"), &objects).unwrap(),
                "X"
            )
            .as_deref(),
            Some("b")
        );
        assert_eq!(
            known(&resolve_env("shop", &pod, None, &objects).unwrap(), "X").as_deref(),
            Some("a")
        );
        assert_eq!(
            resolve_env("shop", &pod, Some("c"), &objects).unwrap_err(),
            ResolveError::ContainerNotFound("c".into())
        );
    }

    #[test]
    fn missing_references_fail_unless_optional() {
        let objects = objects(Lookup::Missing);
        let missing = pod(
            json!([{"name": "w", "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}}]}]),
        );
        let err = resolve_env("shop", &missing, None, &objects).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Secret \"nope\" not found (referenced by env \"X\" of container \"w\")"
        );
        let optional = pod(
            json!([{"name": "w", "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": true}}}]}]),
        );
        assert_eq!(
            known(
                &resolve_env("shop", &optional, None, &objects).unwrap(),
                "X"
            ),
            None
        );
        let no_key = pod(
            json!([{"name": "w", "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "k"}}}]}]),
        );
        assert!(matches!(
            resolve_env("shop", &no_key, None, &objects),
            Err(ResolveError::MissingKey { .. })
        ));
        let env_from = pod(json!([{"name": "w", "envFrom": [{"secretRef": {"name": "nope"}}]}]));
        assert!(matches!(
            resolve_env("shop", &env_from, None, &objects),
            Err(ResolveError::MissingObject { .. })
        ));
    }

    #[test]
    fn unavailable_objects_are_unknown_offline() {
        let objects = objects(Lookup::Unknown);
        let pod = pod(
            json!([{"name": "w", "envFrom": [{"secretRef": {"name": "elsewhere"}}],
            "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "elsewhere", "key": "k"}}}]}]),
        );
        let env = resolve_env("shop", &pod, None, &objects).unwrap();
        assert!(env.open);
        assert_eq!(env.values.get("X"), Some(&Resolved::Unknown));
    }

    #[test]
    fn resolved_values_never_print() {
        assert_eq!(
            format!("{:?}", Resolved::Known("hunter2".into())),
            "Known(<redacted>)"
        );
    }
}
