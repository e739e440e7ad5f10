//! The shared connections against a tiny in-test broker that requires SASL: it speaks
//! ApiVersions, SaslHandshake v1, SaslAuthenticate v0 (PLAIN, or SCRAM with the server side
//! computed here), FindCoordinator v2 and OffsetFetch v4, and refuses any other request before
//! authentication. The SCRAM algorithm itself is pinned by RFC 7677's vector (`sasl_tests.rs`).
//! `conn_tls_tests.rs` serves the same broker behind a tokio-rustls acceptor.

use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::SecretString;
use tokio::net::TcpListener;

use super::*;

pub(super) const USER: &str = "alice";
pub(super) const PASSWORD: &str = "s3cret-pw";

fn put_s(out: &mut Vec<u8>, v: &str) {
    out.extend_from_slice(&i16::try_from(v.len()).unwrap().to_be_bytes());
    out.extend_from_slice(v.as_bytes());
}

pub(super) fn auth(mechanism: Mechanism, password: &str) -> SaslAuth {
    SaslAuth {
        mechanism,
        username: SecretString::from(USER),
        password: SecretString::from(password),
    }
}

/// What the broker saw.
#[derive(Default)]
pub(super) struct Seen {
    pub(super) connections: AtomicUsize,
    pub(super) authenticated: AtomicUsize,
    pub(super) offset_fetches: AtomicUsize,
}

/// Any socket the in-test broker can serve: TCP, or TLS over TCP.
pub(super) trait Io: AsyncRead + AsyncWrite + Unpin {}

impl<T: AsyncRead + AsyncWrite + Unpin> Io for T {}

async fn read_frame(s: &mut impl Io) -> Option<Vec<u8>> {
    let mut size = [0u8; 4];
    s.read_exact(&mut size).await.ok()?;
    let mut buf = vec![0u8; usize::try_from(i32::from_be_bytes(size)).ok()?];
    s.read_exact(&mut buf).await.ok()?;
    Some(buf)
}

async fn reply(s: &mut impl Io, id: i32, body: &[u8]) {
    let mut out = i32::try_from(body.len() + 4)
        .unwrap()
        .to_be_bytes()
        .to_vec();
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(body);
    let _ = s.write_all(&out).await;
    let _ = s.flush().await;
}

fn auth_reply(code: i16, bytes: &[u8]) -> Vec<u8> {
    let mut b = code.to_be_bytes().to_vec();
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b.extend_from_slice(&i32::try_from(bytes.len()).unwrap().to_be_bytes());
    b.extend_from_slice(bytes);
    b
}

/// The SaslAuthenticate auth bytes of a request body (after the v1 header's client id).
fn auth_bytes(body: &[u8]) -> Vec<u8> {
    body[4..].to_vec()
}

/// Serve one connection. FindCoordinator answers with one of `coordinators` (host, port),
/// picked by the group name; without a `mechanism` the broker requires no SASL.
pub(super) async fn serve(
    mut s: impl Io,
    coordinators: Vec<(String, u16)>,
    mechanism: Option<Mechanism>,
    seen: Arc<Seen>,
) {
    seen.connections.fetch_add(1, Ordering::SeqCst);
    let mut authed = mechanism.is_none();
    let mechanism = mechanism.unwrap_or(Mechanism::Plain);
    let expected = auth(mechanism, PASSWORD);
    let mut scram: Option<(Scram, String)> = None;
    while let Some(frame) = read_frame(&mut s).await {
        let key = i16::from_be_bytes([frame[0], frame[1]]);
        let id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
        let client_len = usize::from(u16::from_be_bytes([frame[8], frame[9]]));
        let body = &frame[10 + client_len..];
        match key {
            18 => {
                let mut b = 0i16.to_be_bytes().to_vec();
                b.extend_from_slice(&5i32.to_be_bytes());
                for (k, max) in [(9i16, 8i16), (10, 4), (17, 1), (18, 3), (36, 2)] {
                    for v in [k, 0, max] {
                        b.extend_from_slice(&v.to_be_bytes());
                    }
                }
                reply(&mut s, id, &b).await;
            }
            17 => {
                let mut b = 0i16.to_be_bytes().to_vec();
                b.extend_from_slice(&1i32.to_be_bytes());
                put_s(&mut b, mechanism.name());
                reply(&mut s, id, &b).await;
            }
            36 => {
                let got = auth_bytes(body);
                let answer = match (mechanism, scram.take()) {
                    (Mechanism::Plain, _) if got == sasl::plain_message(&expected) => {
                        authed = true;
                        auth_reply(0, b"")
                    }
                    (Mechanism::Plain, _) => auth_reply(58, b""),
                    (_, None) => {
                        // client-first: `n,,n=alice,r=<nonce>`.
                        let first = String::from_utf8(got).unwrap();
                        let nonce = first.rsplit("r=").next().unwrap().to_owned();
                        let server_first = format!(
                            "r={nonce}srv,s={},i=4096",
                            STANDARD.encode(b"salt-of-alice")
                        );
                        let (mut mine, _) = Scram::start(&expected, nonce);
                        let want = mine.client_final(&server_first).unwrap();
                        scram = Some((mine, want));
                        auth_reply(0, server_first.as_bytes())
                    }
                    (_, Some((mine, want))) if got == want.as_bytes() => {
                        authed = true;
                        let v = STANDARD.encode(mine.server_signature().unwrap());
                        auth_reply(0, format!("v={v}").as_bytes())
                    }
                    (_, Some(_)) => auth_reply(58, b""),
                };
                reply(&mut s, id, &answer).await;
            }
            _ if !authed => return, // Kafka closes unauthenticated connections.
            10 => {
                let mut b = vec![0, 0, 0, 0, 0, 0, 0xff, 0xff];
                b.extend_from_slice(&1i32.to_be_bytes());
                // FindCoordinator v2 body: key (the group), key type.
                let len = usize::from(u16::from_be_bytes([body[0], body[1]]));
                let pick = body[2..2 + len]
                    .iter()
                    .map(|b| usize::from(*b))
                    .sum::<usize>();
                let (host, port) = &coordinators[pick % coordinators.len()];
                put_s(&mut b, host);
                b.extend_from_slice(&i32::from(*port).to_be_bytes());
                reply(&mut s, id, &b).await;
            }
            9 => {
                seen.offset_fetches.fetch_add(1, Ordering::SeqCst);
                seen.authenticated.fetch_max(1, Ordering::SeqCst);
                let mut b = 0i32.to_be_bytes().to_vec();
                b.extend_from_slice(&1i32.to_be_bytes());
                put_s(&mut b, "t");
                b.extend_from_slice(&1i32.to_be_bytes());
                b.extend_from_slice(&0i32.to_be_bytes());
                b.extend_from_slice(&42i64.to_be_bytes());
                put_s(&mut b, "");
                b.extend_from_slice(&0i16.to_be_bytes());
                b.extend_from_slice(&0i16.to_be_bytes());
                reply(&mut s, id, &b).await;
            }
            _ => return,
        }
    }
}

async fn sasl_broker(mechanism: Mechanism) -> (String, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let seen2 = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let coordinators = vec![("127.0.0.1".to_owned(), addr.port())];
            tokio::spawn(serve(s, coordinators, Some(mechanism), Arc::clone(&seen2)));
        }
    });
    (addr.to_string(), seen)
}

#[tokio::test]
async fn many_groups_share_one_authenticated_connection_per_mechanism() {
    for mechanism in [
        Mechanism::Plain,
        Mechanism::ScramSha256,
        Mechanism::ScramSha512,
    ] {
        let (addr, seen) = sasl_broker(mechanism).await;
        let brokers = Brokers::new(&addr, Some(auth(mechanism, PASSWORD)));
        for i in 0..1000 {
            let deadline = Instant::now() + Duration::from_secs(2);
            let got = brokers
                .committed(&format!("group-{i}"), &[("t".into(), 0)], deadline)
                .await
                .unwrap_or_else(|e| panic!("{mechanism:?}: {e}"));
            assert_eq!(got.get(&("t".to_owned(), 0)), Some(&42));
        }
        assert_eq!(seen.offset_fetches.load(Ordering::SeqCst), 1000);
        assert_eq!(
            seen.connections.load(Ordering::SeqCst),
            1,
            "{mechanism:?}: 1,000 groups, one SASL connection"
        );
        assert_eq!(brokers.open_connections(), 1);
    }
}

#[tokio::test]
async fn wrong_password_fails_without_echoing_it() {
    for mechanism in [Mechanism::Plain, Mechanism::ScramSha512] {
        let (addr, _) = sasl_broker(mechanism).await;
        let brokers = Brokers::new(&addr, Some(auth(mechanism, "wrong-password")));
        let deadline = Instant::now() + Duration::from_secs(2);
        let err = brokers
            .committed("g", &[("t".into(), 0)], deadline)
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, WireError::Sasl { .. }), "{text}");
        assert!(text.contains("authentication failed"), "{text}");
        assert!(
            !text.contains("wrong-password") && !text.contains(USER),
            "{text}"
        );
        assert_eq!(
            brokers.open_connections(),
            0,
            "a failed login closes the socket"
        );
    }
}
