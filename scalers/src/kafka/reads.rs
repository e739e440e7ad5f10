//! The blocking librdkafka reads of spec §3.4 steps 1–2: topic partitions (Metadata), high
//! watermarks (ListOffsets, timestamp −1) and, for OAUTHBEARER triggers (and TLS material
//! rustls cannot load) only, committed offsets through a group-bound handle.
//!
//! rdkafka stays in charge of metadata and watermarks because it does them well through the
//! one shared group-less client: it batches ListOffsets per partition leader, follows
//! leadership changes and speaks every security mechanism. Only committed offsets needed a
//! per-group handle, and those moved to the shared connections of `conn.rs` for plaintext,
//! SASL PLAIN/SCRAM and TLS.
//!
//! Every function here blocks: callers run it on `spawn_blocking` through [`blocking`], which
//! also bounds it with a tokio timeout.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::params::PartitionLimitation;

/// Extra time allowed on top of a librdkafka timeout before the tokio guard gives up.
const GUARD_MARGIN: Duration = Duration::from_millis(250);

/// The partitions to evaluate, as (topic, partition).
pub(crate) type Parts = Vec<(String, i32)>;
/// An offset per (topic, partition).
pub(crate) type OffsetMap = HashMap<(String, i32), i64>;
/// What one poll reads: partitions, committed offsets, high watermarks.
pub(crate) type Offsets = (Parts, OffsetMap, OffsetMap);

/// Why a read failed: the endpoint (counts towards its backoff) or the answer.
#[derive(Debug)]
pub(crate) enum CallError {
    Transport(String),
    Answer(String),
}

pub(crate) fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// Run a blocking librdkafka call, bounded by `timeout` (plus a margin so librdkafka's own
/// timeout fires first and gives the better message).
pub(crate) async fn blocking<T, F>(timeout: Duration, f: F) -> Result<T, CallError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, CallError> + Send + 'static,
{
    match tokio::time::timeout(timeout + GUARD_MARGIN, tokio::task::spawn_blocking(f)).await {
        Ok(Ok(result)) => result,
        Ok(Err(join)) => Err(CallError::Answer(format!("kafka call failed: {join}"))),
        Err(_) => Err(CallError::Transport(format!(
            "kafka call timed out after {timeout:?}"
        ))),
    }
}

fn partition_list(partitions: &[(String, i32)]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for (topic, partition) in partitions {
        tpl.add_partition(topic, *partition);
    }
    tpl
}

/// The whole poll through a group-bound handle, in one blocking task (a hand-off per request
/// costs more than the request itself on a nearby broker). The per-group-handle path.
pub(crate) fn read_with_handle(
    client: &BaseConsumer,
    group: &BaseConsumer,
    topic: Option<&str>,
    limitation: &PartitionLimitation,
    cached: Option<Parts>,
    deadline: Instant,
) -> Result<Offsets, CallError> {
    let (parts, committed) = match (cached, topic) {
        (Some(parts), _) => (parts, None),
        (None, Some(t)) => (topic_partitions(client, t, limitation, deadline)?, None),
        (None, None) => {
            let all = all_partitions(client, deadline)?;
            let committed = read_committed(group, &all, deadline)?;
            (committed_topics(all, &committed), Some(committed))
        }
    };
    let committed = match committed {
        Some(c) => c,
        None => read_committed(group, &parts, deadline)?,
    };
    let watermarks = read_watermarks(client, &parts, deadline)?;
    Ok((parts, committed, watermarks))
}

/// Describe `topic` and keep the partitions allowed by `partitionLimitation`.
pub(crate) fn topic_partitions(
    client: &BaseConsumer,
    topic: &str,
    limitation: &PartitionLimitation,
    deadline: Instant,
) -> Result<Parts, CallError> {
    drain_events(client);
    let md = client
        .fetch_metadata(Some(topic), remaining(deadline))
        .map_err(|e| CallError::Transport(format!("error describing topics: {e}")))?;
    let [t] = md.topics() else {
        let n = md.topics().len();
        return Err(CallError::Answer(format!(
            "expected only 1 topic metadata, got {n}"
        )));
    };
    if let Some(err) = t.error() {
        return Err(CallError::Answer(format!(
            "error describing topic {topic}: {err:?}"
        )));
    }
    let parts: Parts = t
        .partitions()
        .iter()
        .filter(|p| limitation.allows(p.id()))
        .map(|p| (topic.to_owned(), p.id()))
        .collect();
    if parts.is_empty() {
        return Err(CallError::Answer(format!(
            "expected at least one active partition within the topic '{topic}'"
        )));
    }
    Ok(parts)
}

/// Every partition of every topic in the cluster (no `topic`: the group's topics are the ones
/// with a committed offset among these).
pub(crate) fn all_partitions(client: &BaseConsumer, deadline: Instant) -> Result<Parts, CallError> {
    drain_events(client);
    let md = client
        .fetch_metadata(None, remaining(deadline))
        .map_err(|e| CallError::Transport(format!("error listing topics: {e}")))?;
    Ok(md
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| (t.name().to_owned(), p.id())))
        .collect())
}

/// Every partition of the topics the group has committed at least one offset for.
pub(crate) fn committed_topics(all: Parts, committed: &OffsetMap) -> Parts {
    let topics: BTreeSet<&str> = committed
        .iter()
        .filter(|(_, c)| **c >= 0)
        .map(|((t, _), _)| t.as_str())
        .collect();
    all.into_iter()
        .filter(|(t, _)| topics.contains(t.as_str()))
        .collect()
}

/// OffsetFetch through a group-bound handle; a partition with nothing committed reads as −1.
fn read_committed(
    group: &BaseConsumer,
    parts: &[(String, i32)],
    deadline: Instant,
) -> Result<OffsetMap, CallError> {
    drain_events(group);
    if parts.is_empty() {
        return Ok(HashMap::new());
    }
    let reply = group
        .committed_offsets(partition_list(parts), remaining(deadline))
        .map_err(|e| CallError::Transport(format!("error listing consumer group offsets: {e}")))?;
    let mut out = HashMap::new();
    for e in reply.elements() {
        if let Err(err) = e.error() {
            return Err(CallError::Answer(format!(
                "error listing consumer group offsets for partition {} of topic {}: {err}",
                e.partition(),
                e.topic()
            )));
        }
        // Anything but a real offset (librdkafka's INVALID for "nothing committed") reads as -1.
        let c = match e.offset() {
            Offset::Offset(o) if o >= 0 => o,
            _ => -1,
        };
        out.insert((e.topic().to_owned(), e.partition()), c);
    }
    Ok(out)
}

/// High watermarks in one librdkafka call: ListOffsets with timestamp −1, which librdkafka
/// batches per partition leader and sends in parallel.
pub(crate) fn read_watermarks(
    client: &BaseConsumer,
    parts: &[(String, i32)],
    deadline: Instant,
) -> Result<OffsetMap, CallError> {
    if parts.is_empty() {
        return Ok(HashMap::new());
    }
    drain_events(client);
    let mut tpl = partition_list(parts);
    tpl.set_all_offsets(Offset::End)
        .map_err(|e| CallError::Answer(format!("kafka offset request: {e}")))?;
    let reply = client
        .offsets_for_times(tpl, remaining(deadline))
        .map_err(|e| CallError::Transport(format!("error listing offsets: {e}")))?;
    let mut out = HashMap::new();
    for e in reply.elements() {
        if let Err(err) = e.error() {
            return Err(CallError::Answer(format!(
                "error listing offsets for partition {} of topic {}: {err}",
                e.partition(),
                e.topic()
            )));
        }
        if let Offset::Offset(o) = e.offset() {
            out.insert((e.topic().to_owned(), e.partition()), o);
        }
    }
    Ok(out)
}

/// A handle that is never polled would queue error and log events forever (a broker that
/// flaps produces one per reconnect); drain them on every use.
fn drain_events(consumer: &BaseConsumer) {
    for _ in 0..1000 {
        if consumer.poll(Duration::ZERO).is_none() {
            return;
        }
    }
}
