//! create / list / patch through kube-rs over the sandbox's HTTPS listener — the path the
//! operator uses, so these are the figures load tests compare against.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::fixture::{CONCURRENCY, REQUEST_TIMEOUT, configmap, name};
use crate::measured::{Measured, Path, timed_concurrently};
use crate::stats::Latency;

/// POSTs `n` ConfigMaps, `CONCURRENCY` in flight.
pub async fn create(api: &Api<ConfigMap>, n: usize) -> Result<Measured> {
    let (elapsed, latencies) = timed_concurrently(n, CONCURRENCY, |i| {
        let api = api.clone();
        async move {
            api.create(&PostParams::default(), &configmap(i))
                .await
                .with_context(|| format!("creating {}", name(i)))?;
            Ok(())
        }
    })
    .await?;
    Ok(Measured {
        scenario: "create",
        path: Path::Http,
        ops: n,
        objects: n,
        elapsed,
        latency: Latency::of(latencies),
    })
}

/// Merge-patches `ops` objects (round robin over `n`), `CONCURRENCY` in flight.
pub async fn patch(api: &Api<ConfigMap>, n: usize, ops: usize) -> Result<Measured> {
    let (elapsed, latencies) = timed_concurrently(ops, CONCURRENCY, |i| {
        let api = api.clone();
        async move {
            let body = Patch::Merge(json!({"data": {"index": format!("patched-{i}")}}));
            api.patch(&name(i % n), &PatchParams::default(), &body)
                .await
                .with_context(|| format!("patching {}", name(i % n)))?;
            Ok(())
        }
    })
    .await?;
    Ok(Measured {
        scenario: "patch (merge)",
        path: Path::Http,
        ops,
        objects: ops,
        elapsed,
        latency: Latency::of(latencies),
    })
}

/// `rounds` sequential full lists (no limit); each must return all `n` objects.
pub async fn list_full(api: &Api<ConfigMap>, n: usize, rounds: usize) -> Result<Measured> {
    let mut latencies = Vec::with_capacity(rounds);
    let start = Instant::now();
    for _ in 0..rounds {
        let (page, took) = list_page(api, &ListParams::default()).await?;
        ensure!(
            page.items.len() == n,
            "full list returned {} of {n}",
            page.items.len()
        );
        latencies.push(took);
    }
    Ok(Measured {
        scenario: "list (full)",
        path: Path::Http,
        ops: rounds,
        objects: rounds * n,
        elapsed: start.elapsed(),
        latency: Latency::of(latencies),
    })
}

/// `walks` sequential paginated walks with `limit`; latency is per page, every walk must see
/// all `n` objects exactly once.
pub async fn list_paged(
    api: &Api<ConfigMap>,
    n: usize,
    walks: usize,
    limit: u32,
) -> Result<Measured> {
    let mut latencies = Vec::new();
    let start = Instant::now();
    for _ in 0..walks {
        let mut seen = 0;
        let mut token: Option<String> = None;
        loop {
            let mut params = ListParams::default().limit(limit);
            if let Some(t) = &token {
                params = params.continue_token(t);
            }
            let (page, took) = list_page(api, &params).await?;
            latencies.push(took);
            seen += page.items.len();
            token = page.metadata.continue_.filter(|t| !t.is_empty());
            if token.is_none() {
                break;
            }
            ensure!(
                seen < n,
                "paginated list still continues after {seen} of {n} objects"
            );
        }
        ensure!(seen == n, "paginated list returned {seen} of {n}");
    }
    Ok(Measured {
        scenario: "list (limit=500)",
        path: Path::Http,
        ops: latencies.len(),
        objects: walks * n,
        elapsed: start.elapsed(),
        latency: Latency::of(latencies),
    })
}

async fn list_page(
    api: &Api<ConfigMap>,
    params: &ListParams,
) -> Result<(kube::core::ObjectList<ConfigMap>, Duration)> {
    let t = Instant::now();
    let page = tokio::time::timeout(REQUEST_TIMEOUT, api.list(params))
        .await
        .context("list timed out")?
        .context("list")?;
    Ok((page, t.elapsed()))
}
