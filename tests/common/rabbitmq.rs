//! The real RabbitMQ the test script starts: URLs from `scripts/services env` and a queue the
//! test declares, fills, purges and deletes through the management API.

use std::time::Duration;

pub fn amqp_url() -> String {
    std::env::var("TIDESCALE_TEST_RABBITMQ_AMQP")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

pub fn management_url() -> String {
    std::env::var("TIDESCALE_TEST_RABBITMQ_HTTP")
        .unwrap_or_else(|_| "http://guest:guest@127.0.0.1:15672".into())
}

/// RabbitMQ's management API, to declare, fill and purge the test's queue.
pub struct Broker {
    http: reqwest::Client,
    base: reqwest::Url,
    queue: String,
}

impl Broker {
    pub async fn new(queue: &str) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let base =
            reqwest::Url::parse(&management_url()).expect("TIDESCALE_TEST_RABBITMQ_HTTP is a URL");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let broker = Broker {
            http,
            base,
            queue: queue.to_owned(),
        };
        broker
            .call(
                reqwest::Method::PUT,
                &format!("queues/%2f/{queue}"),
                Some(serde_json::json!({"durable": false})),
            )
            .await;
        broker
    }

    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<serde_json::Value>) {
        // Credentials go in the header only: userinfo in the URL as well makes a bad request.
        let mut bare = self.base.clone();
        let _ = bare.set_username("");
        let _ = bare.set_password(None);
        let url = format!("{}/api/{path}", bare.as_str().trim_end_matches('/'));
        let mut request = self
            .http
            .request(method, &url)
            .basic_auth(self.base.username(), self.base.password());
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap_or_else(|e| {
            panic!("RabbitMQ management API at {} is unreachable ({e}); set TIDESCALE_TEST_RABBITMQ_HTTP or run scripts/test", self.base)
        });
        assert!(
            response.status().is_success(),
            "{url}: {}",
            response.status()
        );
    }

    pub async fn publish(&self, count: usize) {
        for _ in 0..count {
            let body = serde_json::json!({"properties": {}, "routing_key": self.queue, "payload": "job", "payload_encoding": "string"});
            self.call(
                reqwest::Method::POST,
                "exchanges/%2f/amq.default/publish",
                Some(body),
            )
            .await;
        }
    }

    pub async fn purge(&self) {
        self.call(
            reqwest::Method::DELETE,
            &format!("queues/%2f/{}/contents", self.queue),
            None,
        )
        .await;
    }

    pub async fn delete(&self) {
        self.call(
            reqwest::Method::DELETE,
            &format!("queues/%2f/{}", self.queue),
            None,
        )
        .await;
    }
}
