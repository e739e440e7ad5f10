//! Watch events and subscriptions.
//!
//! Every committed write becomes one [`WatchEvent`] with the global resourceVersion it was
//! committed at. Events go to a bounded history (for watches that resume from an older
//! resourceVersion) and to a broadcast channel (for live watchers). A [`Subscription`] first
//! replays its backlog, then follows the channel; falling behind the channel or a forced
//! compaction ends it with `410 Expired`, which is exactly what client-go and kube-rs expect
//! from a real server whose etcd history was compacted.

use std::collections::VecDeque;
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::broadcast;

use super::GroupResource;
use crate::error::ApiError;

/// The type of a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Object created (or first seen by this watch).
    Added,
    /// Object changed.
    Modified,
    /// Object removed; the event carries its last state.
    Deleted,
}

impl EventType {
    /// The wire name (`ADDED`, `MODIFIED`, `DELETED`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One committed change.
#[derive(Debug, Clone)]
pub struct WatchEvent {
    /// What happened.
    pub event_type: EventType,
    /// The resource the object belongs to.
    pub resource: GroupResource,
    /// The global resourceVersion of this change.
    pub rv: u64,
    /// The object after the change (its last state for `Deleted`).
    pub object: Value,
    /// The object before the change, if any (label-selector watches need it).
    pub old: Option<Value>,
}

impl WatchEvent {
    /// `metadata.namespace` of the object.
    pub fn namespace(&self) -> Option<&str> {
        super::meta::namespace(&self.object)
    }
}

/// What the broadcast channel carries.
#[derive(Debug, Clone)]
pub(crate) enum Notice {
    Event(Arc<WatchEvent>),
    /// History was compacted up to this resourceVersion: open watches must end with 410.
    Compacted(u64),
}

/// A watch on one resource (optionally one namespace): backlog first, then live events.
#[derive(Debug)]
pub struct Subscription {
    backlog: VecDeque<Arc<WatchEvent>>,
    rx: broadcast::Receiver<Notice>,
    resource: Option<GroupResource>,
    namespace: Option<String>,
    /// The resourceVersion the watch started from (the snapshot RV for a watch without one).
    pub start_rv: u64,
    finished: bool,
}

impl Subscription {
    pub(crate) fn new(
        backlog: VecDeque<Arc<WatchEvent>>,
        rx: broadcast::Receiver<Notice>,
        resource: Option<GroupResource>,
        namespace: Option<String>,
        start_rv: u64,
    ) -> Self {
        Self {
            backlog,
            rx,
            resource,
            namespace,
            start_rv,
            finished: false,
        }
    }

    fn wanted(&self, event: &WatchEvent) -> bool {
        self.resource.as_ref().is_none_or(|r| *r == event.resource)
            && self
                .namespace
                .as_deref()
                .is_none_or(|ns| event.namespace() == Some(ns))
    }

    /// The next event of the backlog (snapshot or replayed history), without waiting.
    pub fn next_backlog(&mut self) -> Option<Arc<WatchEvent>> {
        self.backlog.pop_front()
    }

    /// The next event; `Some(Err(410))` once if history was lost, then `None` forever.
    pub async fn next(&mut self) -> Option<Result<Arc<WatchEvent>, ApiError>> {
        if self.finished {
            return None;
        }
        if let Some(event) = self.backlog.pop_front() {
            return Some(Ok(event));
        }
        loop {
            match self.rx.recv().await {
                Ok(Notice::Event(event)) if self.wanted(&event) => return Some(Ok(event)),
                Ok(Notice::Event(_)) => {}
                Ok(Notice::Compacted(rv)) => {
                    self.finished = true;
                    return Some(Err(too_old(self.start_rv, rv)));
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    self.finished = true;
                    return Some(Err(ApiError::expired(
                        "watch fell behind the event history",
                    )));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// The Status kube-apiserver sends for a compacted resourceVersion.
pub fn too_old(requested: u64, oldest: u64) -> ApiError {
    ApiError::expired(format!("too old resource version: {requested} ({oldest})"))
}
