//! The Atom XML of the Service Bus management API (spec/scalers.md §4.3): an `<entry>` for one
//! entity, a `<feed>` of entries for a listing, and an empty `<feed>` ("Publicly Listed
//! Services") instead of 404 for a missing entity. Bodies come from the network: anything
//! unexpected is an error, never a panic.

use roxmltree::{Document, Node, ParsingOptions};

const ATOM: &str = "http://www.w3.org/2005/Atom";
/// Namespace of the `CountDetails` children (`ActiveMessageCount`, …).
const COUNTS: &str = "http://schemas.microsoft.com/netservices/2011/06/servicebus";
/// A listing page holds at most a few hundred entries; this caps what a hostile body costs.
const MAX_NODES: u32 = 1_000_000;

/// The kind of entity a description belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `QueueDescription`.
    Queue,
    /// `SubscriptionDescription`.
    Subscription,
}

impl Kind {
    fn description(self) -> &'static str {
        match self {
            Kind::Queue => "QueueDescription",
            Kind::Subscription => "SubscriptionDescription",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Kind::Queue => "queue",
            Kind::Subscription => "subscription",
        }
    }
}

/// What a GET of one entity returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntityReply {
    /// The entity exists; its active message count.
    Count(i64),
    /// The service answered with an empty feed: no such entity.
    Missing,
}

fn parse(body: &str) -> Result<Document<'_>, String> {
    let options = ParsingOptions {
        allow_dtd: false,
        nodes_limit: MAX_NODES,
        ..ParsingOptions::default()
    };
    Document::parse_with_options(body, options).map_err(|e| format!("invalid atom response: {e}"))
}

fn is_atom(node: &Node<'_, '_>, name: &str) -> bool {
    node.is_element() && node.tag_name().name() == name && node.tag_name().namespace() == Some(ATOM)
}

/// Parse the reply to `GET /<queue>` or `GET /<topic>/Subscriptions/<sub>`.
pub fn entity(body: &str, kind: Kind) -> Result<EntityReply, String> {
    let doc = parse(body)?;
    let root = doc.root_element();
    if is_atom(&root, "feed") {
        // Service Bus answers 200 with an empty feed for a missing entity.
        return Ok(EntityReply::Missing);
    }
    if !is_atom(&root, "entry") {
        return Err(format!(
            "invalid atom response: unexpected root element {:?}",
            root.tag_name().name()
        ));
    }
    active_count(root, kind).map(EntityReply::Count)
}

/// Parse one page of a listing (`GET /$Resources/Queues`, `GET /<topic>/Subscriptions`):
/// `(entity name, active message count)` per entry.
pub fn listing(body: &str, kind: Kind) -> Result<Vec<(String, i64)>, String> {
    let doc = parse(body)?;
    let root = doc.root_element();
    if !is_atom(&root, "feed") {
        return Err(format!(
            "invalid atom response: expected a feed, got {:?}",
            root.tag_name().name()
        ));
    }
    root.children()
        .filter(|n| is_atom(n, "entry"))
        .map(|entry| {
            let title = entry
                .children()
                .find(|n| is_atom(n, "title"))
                .and_then(|t| t.text())
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| {
                    format!(
                        "invalid atom response: {} entry without a title",
                        kind.label()
                    )
                })?;
            Ok((title.to_owned(), active_count(entry, kind)?))
        })
        .collect()
}

/// `content/<Kind>Description/CountDetails/ActiveMessageCount` of an `<entry>`.
fn active_count(entry: Node<'_, '_>, kind: Kind) -> Result<i64, String> {
    let no_details = || {
        format!(
            "invalid {} runtime properties: no CountDetails element",
            kind.label()
        )
    };
    let description = entry
        .children()
        .find(|n| is_atom(n, "content"))
        .and_then(|c| {
            c.children()
                .find(|n| n.is_element() && n.tag_name().name() == kind.description())
        })
        .ok_or_else(no_details)?;
    let details = description
        .children()
        .find(|n| n.is_element() && n.tag_name().name() == "CountDetails")
        .ok_or_else(no_details)?;
    let active = details
        .children()
        .find(|n| {
            n.is_element()
                && n.tag_name().name() == "ActiveMessageCount"
                && n.tag_name().namespace() == Some(COUNTS)
        })
        .ok_or_else(|| {
            format!(
                "invalid {} runtime properties: no ActiveMessageCount element",
                kind.label()
            )
        })?;
    let text = active.text().unwrap_or_default().trim();
    text.parse::<i64>().map_err(|_| {
        format!(
            "invalid {} runtime properties: ActiveMessageCount {text:?} is not an integer",
            kind.label()
        )
    })
}

/// The `Detail` of an `<Error><Code>…</Code><Detail>…</Detail></Error>` body, shortened; the
/// raw body (also shortened) when it is not that shape.
pub fn error_detail(body: &str) -> String {
    const MAX: usize = 300;
    let detail = parse(body).ok().and_then(|doc| {
        let root = doc.root_element();
        (root.tag_name().name() == "Error")
            .then(|| {
                root.children()
                    .find(|n| n.tag_name().name() == "Detail")
                    .and_then(|d| d.text())
            })
            .flatten()
            .map(|d| d.trim().to_owned())
    });
    let text = detail.unwrap_or_else(|| body.trim().to_owned());
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
#[path = "atom_tests.rs"]
mod tests;
