//! Live reads for triggers with `useCachedMetrics: false` (design.md §4.1): the adapter asks
//! the object's scaler at once instead of serving the last poll's value; concurrent reads of
//! one metric share the call (`adapter::live`). Also what the adapter needs to describe an
//! object on the custom metrics API.
//!
//! The querier holds the polled object weakly: the store keeps queriers, the object keeps the
//! store, and a strong reference would keep a replaced object (and its connections) alive.

use std::sync::{Arc, Weak};

use futures::future::BoxFuture;
use k8s_openapi::jiff::Timestamp;

use super::poll::PolledObject;
use super::store::{Described, DescribedTarget, LiveMetrics, MetricRecord};
use crate::crd::ScaledObject;
use crate::crd::names::LABEL_SCALED_OBJECT_NAME;

/// Queries one metric of a polled object when the adapter asks.
pub struct LiveTrigger(Weak<PolledObject>);

impl LiveMetrics for LiveTrigger {
    fn query(&self, metric: &str) -> BoxFuture<'static, Result<MetricRecord, String>> {
        let object = self.0.upgrade();
        let metric = metric.to_owned();
        Box::pin(async move {
            let object = object.ok_or("the ScaledObject is being re-registered")?;
            let trigger = object
                .triggers
                .iter()
                .find(|t| {
                    t.specs
                        .iter()
                        .any(|s| s.metric_name.eq_ignore_ascii_case(&metric))
                })
                .ok_or_else(|| format!("no trigger serves metric {metric}"))?;
            let call = trigger.scaler.metrics_and_activity(&metric);
            match tokio::time::timeout(object.handles.timeout, call).await {
                Ok(Ok(values)) => Ok(MetricRecord {
                    value: values.values.first().copied().unwrap_or(0.0),
                    active: values.active,
                    timestamp: Timestamp::now(),
                    error: None,
                }),
                Ok(Err(error)) => Err(error.to_string()),
                Err(_) => Err(format!("no answer within {:?}", object.handles.timeout)),
            }
        })
    }
}

/// Register `polled` with its store: its description for the custom metrics API, and a live
/// querier for each metric of a trigger that opts out of cached values (the others are
/// cleared, in case an earlier spec opted out).
pub fn register(polled: &Arc<PolledObject>, so: &ScaledObject) {
    let (namespace, name) = (&polled.namespace, &polled.name);
    polled
        .handles
        .store
        .describe(namespace, name, described(polled, so));
    for trigger in &polled.triggers {
        let live = so
            .spec
            .triggers
            .get(trigger.index)
            .is_some_and(|t| t.use_cached_metrics == Some(false));
        for spec in &trigger.specs {
            if live {
                let querier = Arc::new(LiveTrigger(Arc::downgrade(polled)));
                polled
                    .handles
                    .store
                    .set_live(namespace, name, &spec.metric_name, querier);
            } else {
                polled
                    .handles
                    .store
                    .clear_live(namespace, name, &spec.metric_name);
            }
        }
    }
}

fn described(polled: &PolledObject, so: &ScaledObject) -> Described {
    let resource = &polled.target.resource;
    let qualified = if resource.group.is_empty() {
        resource.plural.clone()
    } else {
        format!("{}.{}", resource.plural, resource.group)
    };
    Described {
        target: DescribedTarget {
            api_version: resource.api_version.clone(),
            kind: resource.kind.clone(),
            resource: qualified,
            name: polled.target.name.clone(),
        },
        labels: so
            .metadata
            .labels
            .iter()
            .flatten()
            .filter(|(key, _)| *key != LABEL_SCALED_OBJECT_NAME)
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect(),
    }
}
