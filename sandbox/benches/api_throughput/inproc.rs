//! The baseline: the same create / patch / list through the in-process `Store` API, with no
//! HTTP, TLS or serde in between. One sequential caller on a blocking thread (the store is one
//! mutex, so more callers would only contend; controllers call it this way).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use tidescale_sandbox::patch::{PatchContext, PatchKind};
use tidescale_sandbox::{Store, WriteOptions};

use crate::fixture::{NAMESPACE, configmap_json, configmaps, name};
use crate::measured::{Measured, Path};
use crate::stats::Latency;

/// Creates objects `0..n` (built before the clock starts).
pub async fn create(store: Arc<Store>, n: usize) -> Result<Measured> {
    let objects = (0..n).map(configmap_json).collect::<Result<Vec<Value>>>()?;
    let (elapsed, latencies) = blocking(move || {
        let gr = configmaps();
        timed_loop(objects.into_iter().enumerate(), |(i, obj)| {
            store
                .create(&gr, obj, &WriteOptions::default())
                .with_context(|| format!("store create {}", name(i)))
                .map(drop)
        })
    })
    .await?;
    Ok(measured("create", n, n, elapsed, latencies))
}

/// Merge-patches `ops` objects round robin over `0..n`, as the HTTP handler would.
pub async fn patch(store: Arc<Store>, n: usize, ops: usize) -> Result<Measured> {
    let (elapsed, latencies) = blocking(move || {
        let gr = configmaps();
        let ctx = PatchContext {
            api_version: "v1".to_owned(),
            ..PatchContext::default()
        };
        timed_loop(0..ops, |i| {
            let body = json!({"data": {"index": format!("patched-{i}")}});
            store
                .patch(
                    &gr,
                    Some(NAMESPACE),
                    &name(i % n),
                    PatchKind::Merge,
                    &body,
                    &ctx,
                )
                .with_context(|| format!("store patch {}", name(i % n)))
                .map(drop)
        })
    })
    .await?;
    Ok(measured("patch (merge)", ops, ops, elapsed, latencies))
}

/// `rounds` full lists of the namespace.
pub async fn list_full(store: Arc<Store>, n: usize, rounds: usize) -> Result<Measured> {
    let (elapsed, latencies) = blocking(move || {
        let gr = configmaps();
        timed_loop(0..rounds, |_| {
            let (items, _) = store.list(&gr, Some(NAMESPACE));
            ensure!(
                items.len() == n,
                "store list returned {} of {n}",
                items.len()
            );
            Ok(())
        })
    })
    .await?;
    Ok(measured(
        "list (full)",
        rounds,
        rounds * n,
        elapsed,
        latencies,
    ))
}

fn measured(
    scenario: &'static str,
    ops: usize,
    objects: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
) -> Measured {
    Measured {
        scenario,
        path: Path::InProcess,
        ops,
        objects,
        elapsed,
        latency: Latency::of(latencies),
    }
}

/// Calls `op` for every item, timing each call and the whole loop.
fn timed_loop<T>(
    items: impl Iterator<Item = T>,
    mut op: impl FnMut(T) -> Result<()>,
) -> Result<(Duration, Vec<Duration>)> {
    let mut latencies = Vec::new();
    let start = Instant::now();
    for item in items {
        let t = Instant::now();
        op(item)?;
        latencies.push(t.elapsed());
    }
    Ok((start.elapsed(), latencies))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .context("in-process benchmark thread panicked")?
}
