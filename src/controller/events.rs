//! Kubernetes Events with KEDA's reasons (`reference/keda.md` §2.12), so `kubectl describe so`
//! and event-based alerting read as they do with KEDA. Events are best effort: a failure to
//! record one is logged and never fails the work it reports on.

use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tracing::warn;

use super::target::API_TIMEOUT;
use crate::crd::ScaledObject;

/// The component name on recorded Events (KEDA's, so existing filters keep matching).
pub const REPORTING_CONTROLLER: &str = "keda-operator";

/// Records Events about ScaledObjects.
#[derive(Clone)]
pub struct Events {
    recorder: Recorder,
}

impl Events {
    /// A recorder reporting as [`REPORTING_CONTROLLER`] from this pod (`POD_NAME`, when set).
    pub fn new(client: kube::Client) -> Self {
        let reporter = Reporter {
            controller: REPORTING_CONTROLLER.to_owned(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client, reporter),
        }
    }

    /// A Normal event.
    pub async fn normal(&self, so: &ScaledObject, reason: &str, note: String) {
        self.publish(so, EventType::Normal, reason, note).await;
    }

    /// A Warning event.
    pub async fn warning(&self, so: &ScaledObject, reason: &str, note: String) {
        self.publish(so, EventType::Warning, reason, note).await;
    }

    async fn publish(&self, so: &ScaledObject, type_: EventType, reason: &str, note: String) {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: reason.to_owned(),
            secondary: None,
        };
        let reference = so.object_ref(&());
        match tokio::time::timeout(API_TIMEOUT, self.recorder.publish(&event, &reference)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => warn!(reason, error = %error, "cannot record an event"),
            Err(_) => warn!(reason, timeout = ?API_TIMEOUT, "recording an event timed out"),
        }
    }
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").finish_non_exhaustive()
    }
}
