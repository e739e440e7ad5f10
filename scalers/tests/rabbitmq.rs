//! RabbitMQ scaler against a real broker: AMQP and HTTP modes, vhosts, regex, a missing
//! queue, wrong credentials and the message rate.
//!
//! Needs `TIDESCALE_TEST_RABBITMQ_AMQP` (default `amqp://guest:guest@127.0.0.1:5672/%2f`) and
//! `TIDESCALE_TEST_RABBITMQ_HTTP` (default `http://guest:guest@127.0.0.1:15672`).

#![cfg(feature = "rabbitmq")]

mod common;

use std::time::Duration;

use common::rabbit::Mgmt;
use common::{config, eventually, rabbitmq_amqp, rabbitmq_http, unique};
use tidescale_scalers::{MetricsAndActivity, Scaler, ScalerError, build_scaler};

async fn build(
    meta: &[(&str, &str)],
    auth: &[(&str, &str)],
) -> Result<Box<dyn Scaler>, ScalerError> {
    build_scaler(&config("rabbitmq", meta, auth)).await
}

async fn poll(scaler: &dyn Scaler) -> Result<MetricsAndActivity, ScalerError> {
    let name = scaler.metric_specs()[0].metric_name.clone();
    scaler.metrics_and_activity(&name).await
}

fn amqp_unreachable(e: ScalerError) -> Box<dyn Scaler> {
    panic!("RabbitMQ AMQP not usable at TIDESCALE_TEST_RABBITMQ_AMQP: {e}")
}

/// Poll until the first value equals `want` (HTTP counts lag behind by seconds).
async fn poll_until(scaler: &dyn Scaler, want: f64) -> MetricsAndActivity {
    eventually(
        &format!("metric value {want}"),
        Duration::from_secs(20),
        || async { poll(scaler).await.ok().filter(|m| m.values == [want]) },
    )
    .await
}

#[tokio::test]
async fn amqp_queue_length_counts_ready_messages() {
    let mgmt = Mgmt::new().await;
    let queue = unique("amqp-len");
    mgmt.create_queue("/", &queue).await;
    let amqp = rabbitmq_amqp();
    let scaler = build(&[("host", &amqp), ("queueName", &queue)], &[])
        .await
        .unwrap_or_else(amqp_unreachable);
    assert_eq!(
        poll(scaler.as_ref()).await.expect("poll"),
        MetricsAndActivity {
            values: vec![0.0],
            active: false
        }
    );
    mgmt.publish("/", &queue, 3).await;
    let got = poll(scaler.as_ref()).await.expect("poll");
    assert_eq!(
        got,
        MetricsAndActivity {
            values: vec![3.0],
            active: true
        }
    );
    scaler.close().await.expect("close");
    mgmt.delete_queue("/", &queue).await;
}

#[tokio::test]
async fn amqp_missing_queue_errors_and_the_connection_keeps_serving() {
    let mgmt = Mgmt::new().await;
    let queue = unique("amqp-present");
    mgmt.create_queue("/", &queue).await;
    mgmt.publish("/", &queue, 1).await;
    let amqp = rabbitmq_amqp();
    let missing = build(
        &[("host", &amqp), ("queueName", "tidescale-no-such-queue")],
        &[],
    )
    .await
    .unwrap_or_else(amqp_unreachable);
    let present = build(&[("host", &amqp), ("queueName", &queue)], &[])
        .await
        .expect("build");
    for _ in 0..3 {
        let err = poll(missing.as_ref()).await.expect_err("missing queue");
        assert!(err.to_string().contains("NOT_FOUND"), "{err}");
        assert_eq!(
            poll(present.as_ref()).await.expect("present").values,
            vec![1.0]
        );
    }
    mgmt.delete_queue("/", &queue).await;
}

#[tokio::test]
async fn amqp_vhost_name_overrides_the_host_vhost() {
    let mgmt = Mgmt::new().await;
    let vhost = unique("vh-amqp");
    let queue = unique("q");
    mgmt.create_vhost(&vhost).await;
    mgmt.create_queue(&vhost, &queue).await;
    mgmt.publish(&vhost, &queue, 2).await;
    let amqp = rabbitmq_amqp();
    let meta = [
        ("host", amqp.as_str()),
        ("queueName", &queue),
        ("vhostName", &vhost),
    ];
    let scaler = build(&meta, &[]).await.unwrap_or_else(amqp_unreachable);
    assert_eq!(poll(scaler.as_ref()).await.expect("poll").values, vec![2.0]);
    // Without vhostName the queue is looked up in "/" where it does not exist.
    let default_vhost = build(&meta[..2], &[]).await.expect("build");
    assert!(poll(default_vhost.as_ref()).await.is_err());
    mgmt.delete_vhost(&vhost).await;
}

#[tokio::test]
async fn amqp_wrong_credentials_fail_construction_without_leaking_them() {
    let amqp = rabbitmq_amqp();
    let meta = [("host", amqp.as_str()), ("queueName", "q")];
    let auth = [("username", "guest"), ("password", "definitely-wrong-pw")];
    let err = build(&meta, &auth).await.expect_err("wrong credentials");
    let text = err.to_string();
    assert_eq!(err.kind(), "backend", "{text}");
    assert!(!text.contains("definitely-wrong-pw"), "{text}");
}

#[tokio::test]
async fn http_queue_length_with_and_without_unacknowledged() {
    let mgmt = Mgmt::new().await;
    let queue = unique("http-len");
    mgmt.create_queue("/", &queue).await;
    mgmt.publish("/", &queue, 4).await;
    let http = rabbitmq_http();
    let scaler = build(&[("host", &http), ("queueName", &queue)], &[])
        .await
        .expect("build");
    assert!(poll_until(scaler.as_ref(), 4.0).await.active);
    let meta = [
        ("host", http.as_str()),
        ("queueName", &queue),
        ("excludeUnacknowledged", "true"),
    ];
    let ready = build(&meta, &[]).await.expect("build");
    poll_until(ready.as_ref(), 4.0).await;
    mgmt.delete_queue("/", &queue).await;
}

#[tokio::test]
async fn http_vhost_from_host_path_and_from_vhost_name() {
    let mgmt = Mgmt::new().await;
    let vhost = unique("vh-http");
    let queue = unique("q");
    mgmt.create_vhost(&vhost).await;
    mgmt.create_queue(&vhost, &queue).await;
    mgmt.publish(&vhost, &queue, 5).await;
    let http = rabbitmq_http();
    let in_path = format!("{http}/{vhost}");
    let scaler = build(&[("host", &in_path), ("queueName", &queue)], &[])
        .await
        .expect("build");
    poll_until(scaler.as_ref(), 5.0).await;
    let meta = [
        ("host", http.as_str()),
        ("queueName", &queue),
        ("vhostName", &vhost),
    ];
    let by_name = build(&meta, &[]).await.expect("build");
    poll_until(by_name.as_ref(), 5.0).await;
    mgmt.delete_vhost(&vhost).await;
}

#[tokio::test]
async fn http_regex_aggregates_matching_queues() {
    let mgmt = Mgmt::new().await;
    let prefix = unique("rx");
    for (i, n) in [1, 4].iter().enumerate() {
        let queue = format!("{prefix}-{i}");
        mgmt.create_queue("/", &queue).await;
        mgmt.publish("/", &queue, *n).await;
    }
    let http = rabbitmq_http();
    let pattern = format!("^{prefix}-.*$");
    for (operation, want) in [("sum", 5.0), ("max", 4.0), ("avg", 2.0)] {
        let meta = [
            ("host", http.as_str()),
            ("queueName", &pattern),
            ("useRegex", "true"),
            ("operation", operation),
        ];
        let scaler = build(&meta, &[]).await.expect("build");
        poll_until(scaler.as_ref(), want).await;
    }
    for i in 0..2 {
        mgmt.delete_queue("/", &format!("{prefix}-{i}")).await;
    }
}

#[tokio::test]
async fn http_missing_queue_and_wrong_credentials_are_reported() {
    let http = rabbitmq_http();
    let _ = Mgmt::new().await;
    let scaler = build(
        &[("host", &http), ("queueName", "tidescale-no-such-queue")],
        &[],
    )
    .await
    .expect("build");
    let err = poll(scaler.as_ref()).await.expect_err("missing");
    assert!(err.to_string().contains("status: 404"), "{err}");
    let auth = [("username", "guest"), ("password", "definitely-wrong-pw")];
    let scaler = build(&[("host", &http), ("queueName", "q")], &auth)
        .await
        .expect("build");
    let err = poll(scaler.as_ref()).await.expect_err("unauthorized");
    let text = err.to_string();
    assert!(text.contains("status: 401"), "{text}");
    assert!(!text.contains("definitely-wrong-pw"), "{text}");
}

#[tokio::test]
async fn http_message_rate_follows_publishing() {
    let mgmt = Mgmt::new().await;
    let queue = unique("rate");
    mgmt.create_queue("/", &queue).await;
    let http = rabbitmq_http();
    let meta = [
        ("host", http.as_str()),
        ("queueName", &queue),
        ("mode", "MessageRate"),
        ("value", "1"),
    ];
    let scaler = build(&meta, &[]).await.expect("build");
    // The broker samples rates every few seconds: keep publishing until a rate shows.
    let rate = eventually(
        "a non-zero publish rate",
        Duration::from_secs(30),
        || async {
            mgmt.publish("/", &queue, 10).await;
            let got = poll(scaler.as_ref()).await.ok()?;
            (got.values[0] > 0.0).then_some(got)
        },
    )
    .await;
    assert!(rate.active);
    mgmt.delete_queue("/", &queue).await;
}
