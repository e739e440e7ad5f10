//! Watch over HTTP: a chunked stream of newline-delimited `{"type","object"}` events
//! (`spec/kubernetes.md` §5.4).
//!
//! A background task per watch turns a store [`Subscription`] into lines: label/field selector
//! transitions become `ADDED`/`DELETED` as for a real server, bookmarks are sent periodically
//! when allowed (and once at the end of the initial snapshot for `sendInitialEvents=true`), a
//! compacted or lost history ends the stream with an `ERROR` event carrying a 410 Status, and
//! the stream ends after `timeoutSeconds` or when the sandbox shuts down.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use super::filter::Filter;
use super::request::{Query, ResourceRequest, flag};
use crate::error::ApiError;
use crate::store::{EventType, ResourceInfo, Store, Subscription, WatchEvent};

/// Server-side watch timeout when the client gives none (kube-apiserver picks 30–60 min).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

/// Everything a watch stream needs once it runs on its own.
struct Watch {
    sub: Subscription,
    filter: Filter,
    info: Arc<ResourceInfo>,
    api_version: String,
    bookmarks: bool,
    initial_events: bool,
    metadata_only: bool,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
}

/// Starts a watch and returns the streaming response.
pub fn start(
    store: &Store,
    info: Arc<ResourceInfo>,
    req: &ResourceRequest,
    query: &Query,
    accept: &str,
    (bookmark_every, shutdown): (Duration, CancellationToken),
) -> Result<Response, ApiError> {
    let filter = Filter::parse(
        query.get("labelSelector").map(String::as_str),
        query.get("fieldSelector").map(String::as_str),
    )?;
    let initial_events = flag(query, "sendInitialEvents");
    let since = start_version(query, initial_events)?;
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map_or(DEFAULT_TIMEOUT, Duration::from_secs);
    let ns = if info.namespaced {
        req.namespace.as_deref()
    } else {
        None
    };
    let (tx, rx) = mpsc::channel(256);
    let subscription = store.watch(&info.group_resource(), ns, since);
    let watch = match subscription {
        Ok(sub) => Some(Watch {
            sub,
            filter,
            info,
            api_version: req.api_version(),
            bookmarks: flag(query, "allowWatchBookmarks"),
            initial_events,
            metadata_only: super::handlers::wants_metadata(accept),
            tx: tx.clone(),
        }),
        Err(e) => {
            // kube-apiserver answers 200 and reports a too-old version as an ERROR event.
            let _ = tx.try_send(Ok(line("ERROR", e.to_status())));
            None
        }
    };
    if let Some(watch) = watch {
        tokio::spawn(async move {
            tokio::select! {
                () = watch.run(bookmark_every) => {}
                () = tokio::time::sleep(timeout) => {}
                () = shutdown.cancelled() => {}
            }
        });
    }
    drop(tx);
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from_stream(ReceiverStream::new(rx)))
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// The resourceVersion a watch resumes after; `None` = start with a snapshot.
fn start_version(query: &Query, initial_events: bool) -> Result<Option<u64>, ApiError> {
    match query.get("resourceVersion").map(String::as_str) {
        None | Some("" | "0") => Ok(None),
        Some(_) if initial_events => Ok(None),
        Some(rv) => rv
            .parse::<u64>()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv}"))),
    }
}

fn line(kind: &str, object: Value) -> Bytes {
    let mut text = json!({"type": kind, "object": object}).to_string();
    text.push('\n');
    Bytes::from(text)
}

impl Watch {
    fn typed(&self, mut obj: Value) -> Value {
        if self.metadata_only {
            return super::handlers::partial(&obj);
        }
        if self.api_version == "autoscaling/v1" && super::convert::needed(&self.info, "v1") {
            obj = super::convert::to_v1(&obj);
        }
        if let Some(map) = obj.as_object_mut() {
            map.insert("apiVersion".into(), json!(self.api_version));
            map.insert("kind".into(), json!(self.info.kind));
        }
        obj
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        line(
            "BOOKMARK",
            json!({"kind": self.info.kind, "apiVersion": self.api_version, "metadata": metadata}),
        )
    }

    /// The event as this watch's filter sees it (selector transitions included), if visible.
    fn translate(&self, ev: &WatchEvent) -> Option<Bytes> {
        let now = self.filter.matches(&ev.object);
        let before = ev.old.as_ref().is_some_and(|o| self.filter.matches(o));
        let kind = match ev.event_type {
            EventType::Modified if now && !before && !self.filter.is_empty() => EventType::Added,
            EventType::Modified if !now && before => EventType::Deleted,
            other if now => other,
            _ => return None,
        };
        Some(line(kind.as_str(), self.typed(ev.object.clone())))
    }

    async fn send(&self, bytes: Bytes) -> bool {
        self.tx.send(Ok(bytes)).await.is_ok()
    }

    async fn run(mut self, bookmark_every: Duration) {
        let mut last_rv = self.sub.start_rv;
        if self.initial_events {
            while let Some(ev) = self.sub.next_backlog() {
                if let Some(bytes) = self.translate(&ev)
                    && !self.send(bytes).await
                {
                    return;
                }
            }
            if !self.send(self.bookmark(last_rv, true)).await {
                return;
            }
        }
        let mut ticker = tokio::time::interval(bookmark_every);
        ticker.tick().await;
        loop {
            tokio::select! {
                next = self.sub.next() => match next {
                    Some(Ok(ev)) => {
                        last_rv = last_rv.max(ev.rv);
                        if let Some(bytes) = self.translate(&ev) && !self.send(bytes).await {
                            return;
                        }
                    }
                    Some(Err(e)) => {
                        let _ = self.send(line("ERROR", e.to_status())).await;
                        return;
                    }
                    None => return,
                },
                _ = ticker.tick(), if self.bookmarks => {
                    if !self.send(self.bookmark(last_rv, false)).await {
                        return;
                    }
                }
                () = self.tx.closed() => return,
            }
        }
    }
}
