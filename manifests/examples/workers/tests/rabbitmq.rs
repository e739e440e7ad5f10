//! The RabbitMQ worker against the real broker `scripts/test` starts
//! (`TIDESCALE_TEST_RABBITMQ_AMQP`, default `amqp://guest:guest@127.0.0.1:5672/%2f`): it drains
//! every published message, acknowledging each, and stops cleanly when told to.

use std::time::Duration;

use lapin::options::{BasicPublishOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use tidescale_sample_workers::rabbitmq::{Config, run};
use tidescale_sample_workers::{Common, Progress};
use tokio_util::sync::CancellationToken;

const MESSAGES: u64 = 25;

fn amqp_url() -> String {
    std::env::var("TIDESCALE_TEST_RABBITMQ_AMQP")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

#[tokio::test]
async fn rabbitmq_worker_drains_published_messages_and_acks_them() {
    tidescale_sample_workers::install_crypto_provider();
    let url = amqp_url();
    let connection = Connection::connect(&url, ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| panic!("RabbitMQ is not reachable at TIDESCALE_TEST_RABBITMQ_AMQP (scripts/services start): {e}"));
    let channel = connection.create_channel().await.expect("channel");
    let queue = format!("tidescale-sample-worker-{}", std::process::id());
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("declare");
    for i in 0..MESSAGES {
        channel
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                format!("job {i}").as_bytes(),
                BasicProperties::default(),
            )
            .await
            .expect("publish")
            .await
            .expect("publish confirm");
    }

    let config = Config {
        url: url.clone(),
        queue: queue.clone(),
        prefetch: 5,
        common: Common {
            work: Duration::from_millis(5),
        },
    };
    let shutdown = CancellationToken::new();
    let progress = Progress::default();
    let worker = tokio::spawn({
        let (config, shutdown, progress) = (config.clone(), shutdown.clone(), progress.clone());
        async move { run(&config, shutdown, progress).await }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while progress.processed() < MESSAGES {
        assert!(
            tokio::time::Instant::now() < deadline,
            "worker processed {} of {MESSAGES} messages in 30 s",
            progress.processed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), worker)
        .await
        .expect("worker stops within 10 s of shutdown")
        .expect("worker task")
        .expect("worker ends without error");
    assert_eq!(progress.processed(), MESSAGES);

    // Every message was acknowledged: the queue is empty (passive declare counts are immediate).
    let check = connection.create_channel().await.expect("channel");
    let state = check
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("passive declare");
    assert_eq!(state.message_count(), 0, "messages left unacknowledged");
    let _ = check
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await;
}

#[tokio::test]
async fn rabbitmq_worker_reports_an_unreachable_broker() {
    tidescale_sample_workers::install_crypto_provider();
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = free.local_addr().expect("addr").port();
    drop(free);
    let config = Config {
        url: format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
        queue: "nowhere".into(),
        prefetch: 1,
        common: Common {
            work: Duration::ZERO,
        },
    };
    let err = run(&config, CancellationToken::new(), Progress::default())
        .await
        .expect_err("no broker");
    assert!(format!("{err:#}").contains("RABBITMQ_URL"), "{err:#}");
}
