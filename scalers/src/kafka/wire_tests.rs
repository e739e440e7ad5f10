//! Codec tests: known answers, and garbage (random, truncated, mutated, oversized lengths)
//! that must give an error, never a panic or a huge allocation.

use proptest::prelude::*;

use super::*;

fn s(out: &mut Vec<u8>, v: &str) {
    out.extend_from_slice(&i16::try_from(v.len()).unwrap().to_be_bytes());
    out.extend_from_slice(v.as_bytes());
}

/// OffsetFetch v4 response: topic "t", partitions (0 → 5, 1 → −1), no errors.
fn offset_fetch_reply() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&0i32.to_be_bytes());
    b.extend_from_slice(&1i32.to_be_bytes());
    s(&mut b, "t");
    b.extend_from_slice(&2i32.to_be_bytes());
    for (p, o) in [(0i32, 5i64), (1, -1)] {
        b.extend_from_slice(&p.to_be_bytes());
        b.extend_from_slice(&o.to_be_bytes());
        s(&mut b, "");
        b.extend_from_slice(&0i16.to_be_bytes());
    }
    b.extend_from_slice(&0i16.to_be_bytes());
    b
}

fn find_coordinator_reply(code: i16) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&0i32.to_be_bytes());
    b.extend_from_slice(&code.to_be_bytes());
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b.extend_from_slice(&3i32.to_be_bytes());
    s(&mut b, "127.0.0.1");
    b.extend_from_slice(&9092i32.to_be_bytes());
    b
}

fn api_versions_reply() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&1i32.to_be_bytes());
    for v in [OFFSET_FETCH, 0, 6] {
        b.extend_from_slice(&v.to_be_bytes());
    }
    b
}

fn decode_all(bytes: &[u8]) {
    let _ = decode_api_versions(bytes);
    let _ = decode_find_coordinator(bytes);
    let _ = decode_offset_fetch(bytes);
}

#[test]
fn known_answers_decode() {
    let got = decode_offset_fetch(&offset_fetch_reply()).unwrap();
    assert_eq!(got.get(&("t".to_owned(), 0)), Some(&5));
    assert_eq!(got.get(&("t".to_owned(), 1)), Some(&-1));
    assert_eq!(
        decode_find_coordinator(&find_coordinator_reply(0)).unwrap(),
        "127.0.0.1:9092"
    );
    let err = decode_find_coordinator(&find_coordinator_reply(15)).unwrap_err();
    assert!(
        err.to_string().contains("COORDINATOR_NOT_AVAILABLE"),
        "{err}"
    );
    assert!(!err.is_transport());
    assert_eq!(
        decode_api_versions(&api_versions_reply()).unwrap(),
        vec![ApiRange {
            key: OFFSET_FETCH,
            min: 0,
            max: 6
        }]
    );
}

#[test]
fn requests_have_the_expected_layout() {
    let body = offset_fetch_request("g", &[("t".into(), 1), ("t".into(), 0)]).unwrap();
    // group "g", 1 topic "t" with partitions [1, 0].
    let want: Vec<u8> = [
        &[0, 1, b'g'][..],
        &[0, 0, 0, 1, 0, 1, b't'],
        &[0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0],
    ]
    .concat();
    assert_eq!(body, want);
    let framed = frame(OFFSET_FETCH, 4, 7, &body).unwrap();
    let size = i32::from_be_bytes(framed[..4].try_into().unwrap());
    assert_eq!(usize::try_from(size).unwrap(), framed.len() - 4);
    assert_eq!(&framed[4..12], &[0, 9, 0, 4, 0, 0, 0, 7]);
    let long = "g".repeat(40_000);
    assert!(matches!(
        find_coordinator_request(&long),
        Err(WireError::RequestTooLong(_))
    ));
}

#[test]
fn huge_array_lengths_are_refused_before_allocating() {
    let mut b = Vec::new();
    b.extend_from_slice(&0i32.to_be_bytes());
    b.extend_from_slice(&i32::MAX.to_be_bytes());
    assert!(matches!(
        decode_offset_fetch(&b),
        Err(WireError::Truncated(_))
    ));
    let mut b = vec![0, 0];
    b.extend_from_slice(&i32::MAX.to_be_bytes());
    assert!(decode_api_versions(&b).is_err());
    let mut b = vec![0, 0, 0, 0];
    b.extend_from_slice(&(-7i32).to_be_bytes());
    assert!(matches!(
        decode_offset_fetch(&b),
        Err(WireError::Invalid(_))
    ));
}

#[test]
fn every_truncation_of_a_valid_answer_is_an_error() {
    for reply in [
        offset_fetch_reply(),
        find_coordinator_reply(0),
        api_versions_reply(),
    ] {
        for cut in 0..reply.len() {
            decode_all(&reply[..cut]);
        }
    }
    let full = offset_fetch_reply();
    for cut in 0..full.len() {
        assert!(decode_offset_fetch(&full[..cut]).is_err(), "cut at {cut}");
    }
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        decode_all(&bytes);
    }

    #[test]
    fn mutated_answers_never_panic(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
    ) {
        for mut reply in [offset_fetch_reply(), find_coordinator_reply(0), api_versions_reply()] {
            for (at, v) in &flips {
                let i = at % reply.len();
                reply[i] = *v;
            }
            decode_all(&reply);
        }
    }
}
