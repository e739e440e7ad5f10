//! Connection hygiene of the shared RabbitMQ clients (design.md §4.2), against a real broker:
//! 1,000 triggers on one endpoint hold one AMQP connection, polls open no new connections after
//! warm-up, and polls of a dead endpoint fail fast (backoff) without leaking sockets.
//!
//! One test function on purpose: the checks read process-wide counters (pool stats, open file
//! descriptors) that concurrent tests in the same binary would disturb.
//!
//! Needs `TIDESCALE_TEST_RABBITMQ_AMQP` and `TIDESCALE_TEST_RABBITMQ_HTTP` (see `rabbitmq.rs`).

#![cfg(feature = "rabbitmq")]

mod common;

use std::time::{Duration, Instant};

use common::rabbit::Mgmt;
use common::{closed_port, config, eventually, open_fds, rabbitmq_amqp, unique};
use futures::future::join_all;
use tidescale_scalers::pool::amqp;
use tidescale_scalers::{Scaler, build_scaler};

const TRIGGERS: usize = 1000;
const QUEUES: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_connections_and_dead_endpoints_behave() {
    many_triggers_share_one_connection().await;
    dead_endpoints_fail_fast_without_leaking_sockets().await;
}

async fn poll_all(scalers: &[Box<dyn Scaler>]) -> Vec<f64> {
    let polls = scalers.iter().map(|s| async move {
        let name = s.metric_specs()[0].metric_name.clone();
        s.metrics_and_activity(&name).await.expect("poll").values[0]
    });
    join_all(polls).await
}

/// A user of its own (so the broker's connection list can be filtered to this test), its AMQP
/// URL, and `QUEUES` queues where queue `i` holds `i` messages.
async fn setup(mgmt: &Mgmt) -> (String, String, Vec<String>) {
    let user = unique("hygiene");
    mgmt.create_user(&user, "pw").await;
    let mut url = reqwest::Url::parse(&rabbitmq_amqp()).expect("TIDESCALE_TEST_RABBITMQ_AMQP");
    url.set_username(&user)
        .and_then(|()| url.set_password(Some("pw")))
        .expect("userinfo");
    let queues: Vec<String> = (0..QUEUES).map(|i| format!("{user}-{i}")).collect();
    for (i, queue) in queues.iter().enumerate() {
        mgmt.create_queue("/", queue).await;
        mgmt.publish("/", queue, i).await;
    }
    (user, url.to_string(), queues)
}

async fn many_triggers_share_one_connection() {
    let mgmt = Mgmt::new().await;
    let (user, host, queues) = setup(&mgmt).await;
    let builds = (0..TRIGGERS).map(|i| {
        let cfg = config(
            "rabbitmq",
            &[("host", &host), ("queueName", &queues[i % QUEUES])],
            &[],
        );
        async move { build_scaler(&cfg).await }
    });
    let scalers: Vec<Box<dyn Scaler>> = join_all(builds)
        .await
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("RabbitMQ AMQP (TIDESCALE_TEST_RABBITMQ_AMQP): {e}")))
        .collect();
    let stats = amqp::pool().stats();
    assert_eq!((stats.clients, stats.shares), (1, TRIGGERS));
    assert_eq!(amqp::connections_opened(), 1);

    let expected: Vec<f64> = (0..TRIGGERS).map(|i| (i % QUEUES) as f64).collect();
    assert_eq!(poll_all(&scalers).await, expected);
    let warm = amqp::connections_opened();
    for _ in 0..3 {
        assert_eq!(poll_all(&scalers).await, expected);
    }
    assert_eq!(
        amqp::connections_opened(),
        warm,
        "polls opened new connections"
    );
    assert_eq!(amqp::connections_open().await, 1);
    // The broker agrees (its connection list lags by a few seconds).
    eventually("one broker connection", Duration::from_secs(15), || async {
        (mgmt.connections_of(&user).await == 1).then_some(())
    })
    .await;

    for scaler in &scalers {
        scaler.close().await.expect("close");
    }
    assert_eq!(amqp::pool().stats().clients, 0);
    eventually("no broker connection", Duration::from_secs(15), || async {
        (mgmt.connections_of(&user).await == 0).then_some(())
    })
    .await;
    for queue in &queues {
        mgmt.delete_queue("/", queue).await;
    }
    mgmt.delete_user(&user).await;
}

async fn dead_endpoints_fail_fast_without_leaking_sockets() {
    let port = closed_port();
    let before = open_fds();
    // "Fast" means no failure waits for the 3 s timeout: the slowest single call is the measure
    // (a total over 200 calls swings with the load of a shared CI machine).
    let mut slowest = Duration::ZERO;
    let mut timed = |started: Instant| slowest = slowest.max(started.elapsed());

    let amqp_host = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
    for _ in 0..100 {
        let cfg = config("rabbitmq", &[("host", &amqp_host), ("queueName", "q")], &[]);
        let started = Instant::now();
        let err = build_scaler(&cfg).await.expect_err("dead AMQP endpoint");
        timed(started);
        assert_eq!(err.kind(), "backend");
    }

    let http_host = format!("http://guest:guest@127.0.0.1:{port}");
    let cfg = config("rabbitmq", &[("host", &http_host), ("queueName", "q")], &[]);
    let scaler = build_scaler(&cfg)
        .await
        .expect("HTTP scalers connect lazily");
    let name = scaler.metric_specs()[0].metric_name.clone();
    let mut backing_off = 0;
    for _ in 0..100 {
        let started = Instant::now();
        let err = scaler
            .metrics_and_activity(&name)
            .await
            .expect_err("dead HTTP endpoint");
        timed(started);
        backing_off += usize::from(err.to_string().contains("backing off"));
    }
    scaler.close().await.expect("close");

    assert!(
        slowest < Duration::from_secs(1),
        "the slowest of 200 failures took {slowest:?} (timeout 3 s)"
    );
    assert!(
        backing_off >= 99,
        "only {backing_off} of 100 polls were cut short by backoff"
    );
    // Let closed sockets and finished tasks drain before counting.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = open_fds();
    assert!(
        after <= before + 2,
        "file descriptors grew from {before} to {after}"
    );
}
