use rstest::rstest;

use super::*;

const QUEUE: &str = include_str!("../../tests/azure_servicebus_fixtures/queue_entry.xml");
const SUBSCRIPTION: &str =
    include_str!("../../tests/azure_servicebus_fixtures/subscription_entry.xml");
const FEED: &str = include_str!("../../tests/azure_servicebus_fixtures/feed.xml");
const EMPTY_FEED: &str = include_str!("../../tests/azure_servicebus_fixtures/empty_feed.xml");
const ERROR: &str = include_str!("../../tests/azure_servicebus_fixtures/error.xml");

fn fill(template: &str, name: &str, active: &str) -> String {
    template
        .replace("{host}", "ns.servicebus.windows.net")
        .replace("{topic}", "orders")
        .replace("{name}", name)
        .replace("{active}", active)
        .replace("{total}", "1000")
}

fn feed(entries: &str) -> String {
    FEED.replace("{title}", "Queues")
        .replace("{host}", "h")
        .replace("{path}", "$Resources/Queues")
        .replace("{entries}", entries)
}

#[rstest]
#[case::queue(QUEUE, Kind::Queue, 7)]
#[case::subscription(SUBSCRIPTION, Kind::Subscription, 4)]
fn entity_reads_active_not_total_count(
    #[case] template: &str,
    #[case] kind: Kind,
    #[case] active: i64,
) {
    let body = fill(template, "q", &active.to_string());
    assert_eq!(entity(&body, kind), Ok(EntityReply::Count(active)));
}

#[test]
fn empty_feed_means_missing_entity() {
    assert_eq!(entity(EMPTY_FEED, Kind::Queue), Ok(EntityReply::Missing));
}

#[rstest]
#[case::no_count_details(
    r#"<entry xmlns="http://www.w3.org/2005/Atom"><content><QueueDescription xmlns="http://schemas.microsoft.com/netservices/2010/10/servicebus/connect"><MessageCount>3</MessageCount></QueueDescription></content></entry>"#,
    "invalid queue runtime properties: no CountDetails element"
)]
#[case::topic_not_queue(
    r#"<entry xmlns="http://www.w3.org/2005/Atom"><content><TopicDescription/></content></entry>"#,
    "no CountDetails element"
)]
#[case::wrong_namespace(
    r#"<entry xmlns="http://www.w3.org/2005/Atom"><content><QueueDescription><CountDetails><ActiveMessageCount>1</ActiveMessageCount></CountDetails></QueueDescription></content></entry>"#,
    "no ActiveMessageCount element"
)]
#[case::garbage_count(&fill(QUEUE, "q", "many"), "ActiveMessageCount \"many\" is not an integer")]
#[case::overflowing_count(&fill(QUEUE, "q", "99999999999999999999"), "is not an integer")]
#[case::not_xml("{\"json\": true}", "invalid atom response")]
#[case::truncated(&fill(QUEUE, "q", "1")[..200], "invalid atom response")]
#[case::dtd_refused(
    "<!DOCTYPE x [<!ENTITY a \"aaaa\">]><entry xmlns=\"http://www.w3.org/2005/Atom\">&a;</entry>",
    "invalid atom response"
)]
#[case::other_root("<html><body>proxy error</body></html>", "unexpected root element")]
fn entity_rejects_malformed_replies(#[case] body: &str, #[case] message: &str) {
    let err = entity(body, Kind::Queue).expect_err("malformed");
    assert!(err.contains(message), "{err} does not contain {message}");
}

#[test]
fn listing_reads_every_entry_title_and_count() {
    let entries = [
        fill(QUEUE, "a", "1"),
        fill(QUEUE, "b", "20"),
        fill(QUEUE, "c", "0"),
    ]
    .concat();
    let got = listing(&feed(&entries), Kind::Queue).unwrap();
    assert_eq!(
        got,
        vec![("a".into(), 1), ("b".into(), 20), ("c".into(), 0)]
    );
    assert_eq!(listing(&feed(""), Kind::Queue).unwrap(), vec![]);
    assert_eq!(listing(EMPTY_FEED, Kind::Subscription).unwrap(), vec![]);
}

#[test]
fn listing_rejects_a_bad_entry() {
    let entries = fill(QUEUE, "a", "x");
    assert!(listing(&feed(&entries), Kind::Queue).is_err());
    let untitled = fill(QUEUE, "", "1");
    assert!(
        listing(&feed(&untitled), Kind::Queue)
            .unwrap_err()
            .contains("without a title")
    );
    assert!(
        listing(&fill(QUEUE, "a", "1"), Kind::Queue)
            .unwrap_err()
            .contains("expected a feed")
    );
}

#[test]
fn error_detail_extracts_and_shortens() {
    let body = ERROR.replace("{code}", "401").replace(
        "{detail}",
        "Manage,EntityRead claims required for this operation.",
    );
    assert_eq!(
        error_detail(&body),
        "Manage,EntityRead claims required for this operation."
    );
    assert_eq!(error_detail("plain text"), "plain text");
    let long = "x".repeat(1000);
    assert_eq!(error_detail(&long).chars().count(), 301);
}
