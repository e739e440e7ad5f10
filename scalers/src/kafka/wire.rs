//! A minimal Kafka wire codec for the three requests the shared offset path sends:
//! ApiVersions v0 (checked once per connection), FindCoordinator v2 and OffsetFetch v4.
//!
//! Why these versions: all three are non-flexible (classic request header v1, response header
//! v0), librdkafka's mock cluster accepts them (ApiVersions 0–3, FindCoordinator 0–3,
//! OffsetFetch 0–6) and so does every broker since Kafka 2.0 (FindCoordinator v2 and
//! OffsetFetch v4 both arrived in 2.0). Each connection checks the broker's ApiVersions answer
//! before use, so an older broker gets a clear "does not support" error rather than garbage.
//!
//! Why hand-written instead of the `kafka-protocol` crate: its decoders (0.18) allocate
//! `Vec::with_capacity(n)` straight from a wire array length, so four garbage bytes can ask
//! for hundreds of GiB — an allocation failure aborts the process, it is not even a panic.
//! Three small messages are cheaper to decode by hand with every length checked against the
//! bytes actually left ([`Reader::array_len`]), and it keeps a large generated crate out of
//! the build.

use std::collections::BTreeMap;

use thiserror::Error;

/// OffsetFetch API key.
pub(crate) const OFFSET_FETCH: i16 = 9;
/// FindCoordinator API key.
pub(crate) const FIND_COORDINATOR: i16 = 10;
/// ApiVersions API key.
pub(crate) const API_VERSIONS: i16 = 18;
/// The versions sent: (API key, name, version).
pub(crate) const REQUIRED: [(i16, &str, i16); 2] = [
    (FIND_COORDINATOR, "FindCoordinator", 2),
    (OFFSET_FETCH, "OffsetFetch", 4),
];
/// Largest response accepted; an OffsetFetch of ~1M partitions still fits.
pub(crate) const MAX_RESPONSE: usize = 32 << 20;
const CLIENT_ID: &str = "tidescale";

/// Why a Kafka exchange failed. Messages name brokers and APIs, never credentials.
#[derive(Debug, Error)]
pub(crate) enum WireError {
    #[error("kafka response truncated while reading {0}")]
    Truncated(&'static str),
    #[error("kafka response has an invalid {0}")]
    Invalid(&'static str),
    #[error("kafka response of {0} bytes exceeds the {MAX_RESPONSE}-byte limit")]
    TooLarge(i64),
    #[error("kafka request field {0} is too long")]
    RequestTooLong(&'static str),
    #[error("kafka response correlation id {got} does not match request {want}")]
    Correlation { want: i32, got: i32 },
    #[error("kafka broker {addr}: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
    #[error("kafka broker {addr} did not answer in time")]
    Timeout { addr: String },
    #[error("kafka broker {addr} does not support {api} v{version}")]
    Unsupported {
        addr: String,
        api: &'static str,
        version: i16,
    },
    #[error("{api} failed: {}", error_name(*code))]
    Kafka { api: &'static str, code: i16 },
    #[error(
        "error listing consumer group offsets for partition {partition} of topic {topic}: {}",
        error_name(*code)
    )]
    Partition {
        topic: String,
        partition: i32,
        code: i16,
    },
    #[error("no kafka bootstrap server configured")]
    NoBrokers,
    /// The TLS handshake failed (rustls' reason: certificates and protocol, never key material).
    #[error("kafka broker {addr}: TLS handshake failed: {reason}")]
    Tls { addr: String, reason: String },
    /// SASL failed (the broker's message is not quoted: it may echo the user name).
    #[error("kafka broker {addr}: SASL {mechanism} authentication failed: {reason}")]
    Sasl {
        addr: String,
        mechanism: &'static str,
        reason: String,
    },
}

impl WireError {
    /// The endpoint failed (unreachable, slow or speaking garbage), as opposed to answering
    /// with an error: only these count towards the endpoint's backoff.
    pub(crate) fn is_transport(&self) -> bool {
        !matches!(
            self,
            Self::Kafka { .. } | Self::Partition { .. } | Self::RequestTooLong(_)
        )
    }
}

/// Kafka's name for the error codes this path can meet.
pub(crate) fn error_name(code: i16) -> String {
    let name = match code {
        -1 => "UNKNOWN_SERVER_ERROR",
        3 => "UNKNOWN_TOPIC_OR_PARTITION",
        14 => "COORDINATOR_LOAD_IN_PROGRESS",
        15 => "COORDINATOR_NOT_AVAILABLE",
        16 => "NOT_COORDINATOR",
        24 => "INVALID_GROUP_ID",
        29 => "TOPIC_AUTHORIZATION_FAILED",
        30 => "GROUP_AUTHORIZATION_FAILED",
        35 => "UNSUPPORTED_VERSION",
        _ => return format!("kafka error code {code}"),
    };
    name.to_owned()
}

pub(crate) fn put_str(out: &mut Vec<u8>, s: &str, what: &'static str) -> Result<(), WireError> {
    let len = i16::try_from(s.len()).map_err(|_| WireError::RequestTooLong(what))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

pub(crate) fn put_len(out: &mut Vec<u8>, n: usize, what: &'static str) -> Result<(), WireError> {
    let len = i32::try_from(n).map_err(|_| WireError::RequestTooLong(what))?;
    out.extend_from_slice(&len.to_be_bytes());
    Ok(())
}

/// A size-prefixed request: header v1 (key, version, correlation id, client id), then `body`.
pub(crate) fn frame(
    api_key: i16,
    version: i16,
    correlation_id: i32,
    body: &[u8],
) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::with_capacity(4 + 8 + 2 + CLIENT_ID.len() + body.len());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&api_key.to_be_bytes());
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&correlation_id.to_be_bytes());
    put_str(&mut out, CLIENT_ID, "client id")?;
    out.extend_from_slice(body);
    let size = i32::try_from(out.len() - 4).map_err(|_| WireError::RequestTooLong("request"))?;
    out[..4].copy_from_slice(&size.to_be_bytes());
    Ok(out)
}

/// FindCoordinator v2 body for a consumer group (key type 0).
pub(crate) fn find_coordinator_request(group: &str) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::with_capacity(3 + group.len());
    put_str(&mut out, group, "consumer group")?;
    out.push(0);
    Ok(out)
}

/// OffsetFetch v4 body: the group and its partitions, grouped by topic.
pub(crate) fn offset_fetch_request(
    group: &str,
    partitions: &[(String, i32)],
) -> Result<Vec<u8>, WireError> {
    let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in partitions {
        topics.entry(t.as_str()).or_default().push(*p);
    }
    let mut out = Vec::with_capacity(16 + group.len() + partitions.len() * 8);
    put_str(&mut out, group, "consumer group")?;
    put_len(&mut out, topics.len(), "topics")?;
    for (topic, ids) in &topics {
        put_str(&mut out, topic, "topic")?;
        put_len(&mut out, ids.len(), "partitions")?;
        for id in ids {
            out.extend_from_slice(&id.to_be_bytes());
        }
    }
    Ok(out)
}

/// Bounds-checked big-endian reads over a response body.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    fn take<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], WireError> {
        let (head, tail) = self
            .buf
            .split_first_chunk::<N>()
            .ok_or(WireError::Truncated(what))?;
        self.buf = tail;
        Ok(*head)
    }

    pub(crate) fn i16(&mut self, what: &'static str) -> Result<i16, WireError> {
        self.take(what).map(i16::from_be_bytes)
    }

    pub(crate) fn i32(&mut self, what: &'static str) -> Result<i32, WireError> {
        self.take(what).map(i32::from_be_bytes)
    }

    pub(crate) fn i64(&mut self, what: &'static str) -> Result<i64, WireError> {
        self.take(what).map(i64::from_be_bytes)
    }

    /// Nullable BYTES (int32 length, −1 is null → empty).
    pub(crate) fn bytes(&mut self, what: &'static str) -> Result<Vec<u8>, WireError> {
        let len = self.i32(what)?;
        if len == -1 {
            return Ok(Vec::new());
        }
        let len = usize::try_from(len).map_err(|_| WireError::Invalid(what))?;
        if self.buf.len() < len {
            return Err(WireError::Truncated(what));
        }
        let (bytes, tail) = self.buf.split_at(len);
        self.buf = tail;
        Ok(bytes.to_vec())
    }

    /// A nullable string (length −1 is null).
    pub(crate) fn nullable_string(
        &mut self,
        what: &'static str,
    ) -> Result<Option<String>, WireError> {
        let len = self.i16(what)?;
        if len == -1 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| WireError::Invalid(what))?;
        if self.buf.len() < len {
            return Err(WireError::Truncated(what));
        }
        let (bytes, tail) = self.buf.split_at(len);
        self.buf = tail;
        let s = std::str::from_utf8(bytes).map_err(|_| WireError::Invalid(what))?;
        Ok(Some(s.to_owned()))
    }

    pub(crate) fn string(&mut self, what: &'static str) -> Result<String, WireError> {
        self.nullable_string(what)?.ok_or(WireError::Invalid(what))
    }

    /// An array length, refused when the bytes left cannot hold that many elements of at
    /// least `min_size` bytes: no allocation is ever sized by an unchecked wire value.
    fn array_len(&mut self, what: &'static str, min_size: usize) -> Result<usize, WireError> {
        let n = self.i32(what)?;
        if n == -1 {
            return Ok(0);
        }
        let n = usize::try_from(n).map_err(|_| WireError::Invalid(what))?;
        if n.saturating_mul(min_size) > self.buf.len() {
            return Err(WireError::Truncated(what));
        }
        Ok(n)
    }
}

/// One API's supported version range, from ApiVersions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ApiRange {
    pub key: i16,
    pub min: i16,
    pub max: i16,
}

/// ApiVersions v0 response body.
pub(crate) fn decode_api_versions(body: &[u8]) -> Result<Vec<ApiRange>, WireError> {
    let mut r = Reader::new(body);
    let code = r.i16("ApiVersions error code")?;
    if code != 0 {
        return Err(WireError::Kafka {
            api: "ApiVersions",
            code,
        });
    }
    let n = r.array_len("ApiVersions api keys", 6)?;
    (0..n)
        .map(|_| {
            Ok(ApiRange {
                key: r.i16("api key")?,
                min: r.i16("min version")?,
                max: r.i16("max version")?,
            })
        })
        .collect()
}

/// FindCoordinator v2 response body: the coordinator's `host:port`.
pub(crate) fn decode_find_coordinator(body: &[u8]) -> Result<String, WireError> {
    let mut r = Reader::new(body);
    r.i32("throttle time")?;
    let code = r.i16("FindCoordinator error code")?;
    r.nullable_string("error message")?;
    if code != 0 {
        return Err(WireError::Kafka {
            api: "FindCoordinator",
            code,
        });
    }
    r.i32("node id")?;
    let host = r.string("coordinator host")?;
    let port = r.i32("coordinator port")?;
    let port = u16::try_from(port).map_err(|_| WireError::Invalid("coordinator port"))?;
    if host.is_empty() {
        return Err(WireError::Invalid("coordinator host"));
    }
    Ok(if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    })
}

/// A committed offset per (topic, partition): −1 when nothing is committed.
pub(crate) type Committed = std::collections::HashMap<(String, i32), i64>;

/// OffsetFetch v4 response body. A top-level or partition error code is an error.
pub(crate) fn decode_offset_fetch(body: &[u8]) -> Result<Committed, WireError> {
    let mut r = Reader::new(body);
    r.i32("throttle time")?;
    let topics = r.array_len("OffsetFetch topics", 6)?;
    let mut out = Committed::new();
    let mut first_error = None;
    for _ in 0..topics {
        let topic = r.string("topic name")?;
        let partitions = r.array_len("OffsetFetch partitions", 16)?;
        for _ in 0..partitions {
            let partition = r.i32("partition index")?;
            let offset = r.i64("committed offset")?;
            r.nullable_string("offset metadata")?;
            let code = r.i16("partition error code")?;
            if code != 0 && first_error.is_none() {
                first_error = Some((topic.clone(), partition, code));
            }
            out.insert((topic.clone(), partition), offset.max(-1));
        }
    }
    let code = r.i16("OffsetFetch error code")?;
    if code != 0 {
        return Err(WireError::Kafka {
            api: "OffsetFetch",
            code,
        });
    }
    if let Some((topic, partition, code)) = first_error {
        return Err(WireError::Partition {
            topic,
            partition,
            code,
        });
    }
    Ok(out)
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
