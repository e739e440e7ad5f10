//! RabbitMQ setup through the management API: vhosts, users, queues, publishing, connections.

use serde_json::{Value, json};

use super::{http_client, rabbitmq_http, split_userinfo};
use tidescale_scalers::naming::query_escape;

/// The management API of the test broker, as its admin user.
pub struct Mgmt {
    base: String,
    user: String,
    pass: String,
    client: reqwest::Client,
}

impl Mgmt {
    /// Connect to `TIDESCALE_TEST_RABBITMQ_HTTP`; panics naming the env var when unreachable.
    pub async fn new() -> Self {
        let (base, user, pass) = split_userinfo(&rabbitmq_http());
        let mgmt = Self {
            base,
            user,
            pass,
            client: http_client(),
        };
        let overview = mgmt.client.get(format!("{}/api/overview", mgmt.base));
        match overview
            .basic_auth(&mgmt.user, Some(&mgmt.pass))
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => mgmt,
            other => panic!(
                "RabbitMQ management API not reachable at {} (set TIDESCALE_TEST_RABBITMQ_HTTP): \
                 {other:?}",
                mgmt.base
            ),
        }
    }

    /// Base URL without credentials.
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let mut request = self
            .client
            .request(method, &url)
            .basic_auth(&self.user, Some(&self.pass));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "{url}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Create a vhost and give the admin user full permissions on it.
    pub async fn create_vhost(&self, vhost: &str) {
        let v = query_escape(vhost);
        self.call(reqwest::Method::PUT, &format!("/api/vhosts/{v}"), None)
            .await;
        self.grant(vhost, &self.user.clone()).await;
    }

    /// Delete a vhost (and its queues).
    pub async fn delete_vhost(&self, vhost: &str) {
        let v = query_escape(vhost);
        self.call(reqwest::Method::DELETE, &format!("/api/vhosts/{v}"), None)
            .await;
    }

    /// Create a user with full permissions on `/`.
    pub async fn create_user(&self, user: &str, pass: &str) {
        let body = json!({"password": pass, "tags": ""});
        self.call(
            reqwest::Method::PUT,
            &format!("/api/users/{user}"),
            Some(body),
        )
        .await;
        self.grant("/", user).await;
    }

    /// Delete a user.
    pub async fn delete_user(&self, user: &str) {
        self.call(reqwest::Method::DELETE, &format!("/api/users/{user}"), None)
            .await;
    }

    async fn grant(&self, vhost: &str, user: &str) {
        let v = query_escape(vhost);
        let body = json!({"configure": ".*", "write": ".*", "read": ".*"});
        self.call(
            reqwest::Method::PUT,
            &format!("/api/permissions/{v}/{user}"),
            Some(body),
        )
        .await;
    }

    /// Declare a non-durable queue.
    pub async fn create_queue(&self, vhost: &str, queue: &str) {
        let path = format!(
            "/api/queues/{}/{}",
            query_escape(vhost),
            query_escape(queue)
        );
        let body = json!({"durable": false, "auto_delete": false});
        self.call(reqwest::Method::PUT, &path, Some(body)).await;
    }

    /// Delete a queue.
    pub async fn delete_queue(&self, vhost: &str, queue: &str) {
        let path = format!(
            "/api/queues/{}/{}",
            query_escape(vhost),
            query_escape(queue)
        );
        self.call(reqwest::Method::DELETE, &path, None).await;
    }

    /// Publish `count` messages to `queue` through the default exchange.
    pub async fn publish(&self, vhost: &str, queue: &str, count: usize) {
        let path = format!("/api/exchanges/{}/amq.default/publish", query_escape(vhost));
        for _ in 0..count {
            let body = json!({"properties": {}, "routing_key": queue, "payload": "m",
                              "payload_encoding": "string"});
            let routed = self.call(reqwest::Method::POST, &path, Some(body)).await;
            assert_eq!(
                routed["routed"],
                json!(true),
                "message to {queue} not routed"
            );
        }
    }

    /// Connections the broker sees for `user`.
    pub async fn connections_of(&self, user: &str) -> usize {
        let all = self
            .call(reqwest::Method::GET, "/api/connections", None)
            .await;
        all.as_array()
            .map_or(0, |c| c.iter().filter(|c| c["user"] == json!(user)).count())
    }
}
