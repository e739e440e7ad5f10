//! Watch fan-out: N kube-rs watches on the bench namespace's ConfigMaps (10,000 objects in the
//! store), then a sequential writer merge-patches `updates` distinct objects through kube-rs.
//!
//! Each patch carries its sequence number and the send time (nanoseconds since a shared
//! `Instant`), so every watcher computes delivery latency = event received − PATCH sent (the
//! writer's round trip is inside it: it is what a controller watching a change experiences).
//! The writer keeps one PATCH in flight, so latency is the sandbox's delivery path under
//! N-way fan-out rather than a queue of the writer's own making; events/s is what the N
//! watchers received together between the first PATCH and the last event.
//!
//! Every watcher must see every update exactly once: a missing event is a correctness bug of
//! the sandbox (the caller fails the run), a duplicate is reported.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{Patch, PatchParams, WatchEvent, WatchParams};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::fixture::{Fixture, REQUEST_TIMEOUT, name};
use crate::stats::{Latency, ms, rate};

/// A watcher that receives nothing for this long gives up (and reports what it missed).
const IDLE_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound on opening all watches.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Server-side watch timeout asked for (longer than any scenario).
const WATCH_TIMEOUT_SECS: u32 = 240;

/// The figures of one watcher count.
#[derive(Debug)]
pub struct Fanout {
    pub watchers: usize,
    pub updates: usize,
    /// Distinct (watcher, update) pairs delivered.
    pub received: usize,
    /// Updates a watcher saw more than once.
    pub duplicates: usize,
    /// One line per watcher that stopped before seeing every update.
    pub incomplete: Vec<String>,
    /// Time to open all watches.
    pub setup: Duration,
    /// Writer: first PATCH sent → last PATCH answered.
    pub writer: Duration,
    /// First PATCH sent → last event received by any watcher.
    pub delivery: Duration,
    /// Delivery latency over all watchers and updates.
    pub latency: Option<Latency>,
}

impl Fanout {
    pub fn expected(&self) -> usize {
        self.watchers * self.updates
    }

    pub fn lost(&self) -> usize {
        self.expected().saturating_sub(self.received)
    }

    pub fn writes_per_s(&self) -> f64 {
        rate(self.updates, self.writer)
    }

    pub fn events_per_s(&self) -> f64 {
        rate(self.received, self.delivery)
    }

    pub fn json(&self) -> Value {
        json!({
            "watchers": self.watchers,
            "updates": self.updates,
            "events_expected": self.expected(),
            "events_received": self.received,
            "events_lost": self.lost(),
            "duplicates": self.duplicates,
            "incomplete_watchers": self.incomplete,
            "watch_setup_ms": ms(self.setup),
            "writer_ms": ms(self.writer),
            "writer_updates_per_s": self.writes_per_s(),
            "delivery_ms": ms(self.delivery),
            "events_per_s": self.events_per_s(),
            "latency": self.latency.map(|l| l.json()),
        })
    }
}

/// What one watcher saw.
struct Seen {
    by_seq: Vec<bool>,
    count: usize,
    duplicates: usize,
    latencies: Vec<Duration>,
    /// When the last event arrived, since the shared base instant.
    last: Duration,
    /// Why the watcher stopped early, if it did.
    ended: Option<String>,
}

impl Seen {
    fn new(updates: usize) -> Self {
        Self {
            by_seq: vec![false; updates],
            count: 0,
            duplicates: 0,
            latencies: Vec::with_capacity(updates),
            last: Duration::ZERO,
            ended: None,
        }
    }

    /// Records a MODIFIED event carrying `seq` and `sent_ns`; others are not the writer's.
    fn record(&mut self, cm: &ConfigMap, now: Duration) {
        let field = |k: &str| cm.data.as_ref()?.get(k)?.parse::<u64>().ok();
        let (Some(seq), Some(sent_ns)) = (field("seq"), field("sent_ns")) else {
            return;
        };
        let Some(slot) = usize::try_from(seq)
            .ok()
            .and_then(|s| self.by_seq.get_mut(s))
        else {
            return;
        };
        if std::mem::replace(slot, true) {
            self.duplicates += 1;
            return;
        }
        self.count += 1;
        self.latencies
            .push(now.saturating_sub(Duration::from_nanos(sent_ns)));
        self.last = now;
    }
}

/// Opens `watchers` watches at the store's current resourceVersion, writes `updates` patches
/// spread over the `objects` populated objects, and collects what every watcher saw.
pub async fn run(
    fixture: &Fixture,
    objects: usize,
    watchers: usize,
    updates: usize,
) -> Result<Fanout> {
    let rv = fixture.sandbox.store().resource_version().to_string();
    let base = Instant::now();
    let (ready_tx, mut ready_rx) = mpsc::channel(watchers.max(1));
    let tasks: Vec<JoinHandle<Seen>> = (0..watchers)
        .map(|_| {
            tokio::spawn(watch(
                fixture.api(),
                rv.clone(),
                updates,
                base,
                ready_tx.clone(),
            ))
        })
        .collect();
    drop(ready_tx);
    let setup_start = Instant::now();
    let ready = tokio::time::timeout(SETUP_TIMEOUT, async {
        for _ in 0..watchers {
            ready_rx
                .recv()
                .await
                .ok_or_else(|| anyhow!("a watcher ended before starting"))??;
        }
        Ok::<_, anyhow::Error>(())
    })
    .await;
    let setup = setup_start.elapsed();
    if let Err(e) =
        ready.unwrap_or_else(|_| Err(anyhow!("watches not open after {SETUP_TIMEOUT:?}")))
    {
        tasks.iter().for_each(JoinHandle::abort);
        bail!("opening {watchers} watches: {e:#}");
    }
    let writer_start = base.elapsed();
    write(&fixture.api(), objects, updates, base).await?;
    let writer = base.elapsed().saturating_sub(writer_start);
    let mut seen = Vec::with_capacity(watchers);
    for task in tasks {
        // A watcher stops by itself within IDLE_TIMEOUT of its last event; this is a backstop.
        let outcome = tokio::time::timeout(IDLE_TIMEOUT * 2, task).await;
        seen.push(
            outcome
                .context("watcher did not stop")?
                .context("watcher panicked")?,
        );
    }
    Ok(summarize(
        watchers,
        updates,
        setup,
        writer_start,
        writer,
        seen,
    ))
}

fn summarize(
    watchers: usize,
    updates: usize,
    setup: Duration,
    writer_start: Duration,
    writer: Duration,
    seen: Vec<Seen>,
) -> Fanout {
    let incomplete = seen
        .iter()
        .enumerate()
        .filter(|(_, s)| s.count < updates)
        .map(|(w, s)| {
            let why = s.ended.as_deref().unwrap_or("stopped");
            format!("watcher {w}: {} of {updates} ({why})", s.count)
        })
        .collect();
    let last = seen.iter().map(|s| s.last).max().unwrap_or(writer_start);
    Fanout {
        watchers,
        updates,
        received: seen.iter().map(|s| s.count).sum(),
        duplicates: seen.iter().map(|s| s.duplicates).sum(),
        incomplete,
        setup,
        writer,
        delivery: last.saturating_sub(writer_start),
        latency: Latency::of(seen.into_iter().flat_map(|s| s.latencies).collect()),
    }
}

/// The sequential writer: update `seq` goes to object `seq * objects / updates`.
async fn write(api: &Api<ConfigMap>, objects: usize, updates: usize, base: Instant) -> Result<()> {
    for seq in 0..updates {
        let target = name(seq * objects / updates.max(1));
        let sent_ns = base.elapsed().as_nanos().to_string();
        let body = Patch::Merge(json!({"data": {"seq": seq.to_string(), "sent_ns": sent_ns}}));
        tokio::time::timeout(
            REQUEST_TIMEOUT,
            api.patch(&target, &PatchParams::default(), &body),
        )
        .await
        .with_context(|| format!("watch writer: patch {target} timed out"))?
        .with_context(|| format!("watch writer: patch {target}"))?;
    }
    Ok(())
}

/// One watcher: opens the watch, reports readiness, then records events until it has every
/// update, the stream ends, or nothing arrives for `IDLE_TIMEOUT`.
async fn watch(
    api: Api<ConfigMap>,
    rv: String,
    updates: usize,
    base: Instant,
    ready: mpsc::Sender<Result<()>>,
) -> Seen {
    let mut seen = Seen::new(updates);
    let params = WatchParams::default().timeout(WATCH_TIMEOUT_SECS);
    let opened = tokio::time::timeout(REQUEST_TIMEOUT, api.watch(&params, &rv)).await;
    let stream = match opened {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return failed(seen, &ready, anyhow!(e).context("watch request")).await,
        Err(_) => return failed(seen, &ready, anyhow!("watch request timed out")).await,
    };
    let _ = ready.send(Ok(())).await;
    let mut stream = std::pin::pin!(stream);
    while seen.count < updates {
        let event = match tokio::time::timeout(IDLE_TIMEOUT, stream.next()).await {
            Err(_) => Err(format!("no event for {IDLE_TIMEOUT:?}")),
            Ok(None) => Err("stream closed".to_owned()),
            Ok(Some(Err(e))) => Err(format!("stream error: {e}")),
            Ok(Some(Ok(event))) => Ok(event),
        };
        match event {
            Ok(WatchEvent::Modified(cm)) => seen.record(&cm, base.elapsed()),
            Ok(WatchEvent::Error(status)) => {
                seen.ended = Some(format!("ERROR event {}: {}", status.code, status.message));
                break;
            }
            Ok(_) => {}
            Err(why) => {
                seen.ended = Some(why);
                break;
            }
        }
    }
    seen
}

async fn failed(mut seen: Seen, ready: &mpsc::Sender<Result<()>>, e: anyhow::Error) -> Seen {
    seen.ended = Some(format!("{e:#}"));
    let _ = ready.send(Err(e)).await;
    seen
}
