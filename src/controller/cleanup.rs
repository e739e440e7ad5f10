//! What happens when a ScaledObject is deleted, before its finalizer is removed
//! (`reference/keda.md` §2.2): the scale loop stops, the target gets its original replicas back
//! when `restoreToOriginalReplicaCount` asks for it, and the object's series are forgotten.

use kube::runtime::controller::Action;
use tracing::{info, warn};

use super::reconcile::{Context, Error, key_of, unregister};
use crate::crd::ScaledObject;
use crate::crd::names::event;

/// The finalizer's cleanup of a deleted ScaledObject: stop its loop, restore the target when
/// asked, forget its series and sources, and record KEDA's Event.
pub(super) async fn cleanup(so: &ScaledObject, ctx: &Context) -> Result<Action, Error> {
    let key = key_of(so);
    unregister(ctx, &key).await;
    restore_original_replicas(so, ctx).await;
    ctx.handles.metrics.forget_object(&key.0, &key.1);
    ctx.handles.metrics.forget_scaler_builds(&key.0, &key.1);
    ctx.sources.forget(&key);
    ctx.handles.events.normal(
        so,
        event::SCALED_OBJECT_DELETED,
        "ScaledObject was deleted".to_owned(),
    );
    Ok(Action::await_change())
}

/// `advanced.restoreToOriginalReplicaCount`: give the target back the replicas it had before
/// tidescale first scaled it. Best effort: the deletion goes on if the target is gone.
async fn restore_original_replicas(so: &ScaledObject, ctx: &Context) {
    let restore = so
        .spec
        .advanced
        .as_ref()
        .is_some_and(|a| a.restore_to_original_replica_count);
    let original = so.status.as_ref().and_then(|s| s.original_replica_count);
    let (true, Some(original)) = (restore, original) else {
        return;
    };
    let namespace = so.metadata.namespace.as_deref().unwrap_or_default();
    let restored = match ctx.target_of(so).await {
        Ok(target) => target
            .scale_to(&ctx.handles.client, original)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match restored {
        Ok(()) => info!(
            namespace,
            scaled_object = so.metadata.name.as_deref().unwrap_or_default(),
            replicas = original,
            "restored the original replica count"
        ),
        Err(problem) => {
            warn!(namespace, scaled_object = so.metadata.name.as_deref().unwrap_or_default(), problem = %problem, "cannot restore the original replica count")
        }
    }
}
