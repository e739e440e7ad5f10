use super::*;

fn auth(mechanism: Mechanism, user: &str, password: &str) -> SaslAuth {
    SaslAuth {
        mechanism,
        username: SecretString::from(user),
        password: SecretString::from(password),
    }
}

/// RFC 7677 §3: the SCRAM-SHA-256 example exchange, byte for byte.
#[test]
fn scram_sha256_matches_rfc_7677() {
    let (mut scram, first) = Scram::start(
        &auth(Mechanism::ScramSha256, "user", "pencil"),
        "rOprNGfwEbeRWgbNEkqO".into(),
    );
    assert_eq!(first, "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
    let server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                        s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    let fin = scram.client_final(server_first).unwrap();
    assert_eq!(
        fin,
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
         p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    );
    scram
        .verify("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
        .unwrap();
    assert!(scram.verify("v=AAAA").is_err());
}

#[test]
fn scram_refuses_hostile_server_first_messages() {
    let a = auth(Mechanism::ScramSha512, "u", "p");
    for server_first in [
        "r=other,s=QQ==,i=4096",
        "r=abc,s=QQ==,i=4096",
        "r=abcX,s=***,i=4096",
        "r=abcX,s=QQ==,i=1",
        "r=abcX,s=QQ==,i=999999999",
        "m=ext,r=abcX,s=QQ==,i=4096",
        "",
    ] {
        let (mut scram, _) = Scram::start(&a, "abc".into());
        assert!(scram.client_final(server_first).is_err(), "{server_first}");
    }
}

#[test]
fn scram_user_names_are_escaped() {
    let (_, first) = Scram::start(&auth(Mechanism::ScramSha256, "a=b,c", "p"), "n".into());
    assert_eq!(first, "n,,n=a=3Db=2Cc,r=n");
}

#[test]
fn plain_message_and_frames() {
    let a = auth(Mechanism::Plain, "alice", "s3cret");
    assert_eq!(plain_message(&a), b"\0alice\0s3cret");
    assert_eq!(
        handshake_request(Mechanism::ScramSha512).unwrap(),
        b"\x00\x0dSCRAM-SHA-512"
    );
    assert_eq!(authenticate_request(b"ab").unwrap(), b"\x00\x00\x00\x02ab");
    // error 0, null message, 3 bytes.
    let ok = b"\x00\x00\xff\xff\x00\x00\x00\x03xyz";
    assert_eq!(decode_authenticate(ok).unwrap(), Ok(b"xyz".to_vec()));
    // error 58 (SASL_AUTHENTICATION_FAILED) with a message that is not kept.
    let failed = b"\x00\x3a\x00\x03bad\xff\xff\xff\xff";
    assert_eq!(decode_authenticate(failed).unwrap(), Err(58));
    assert!(decode_authenticate(b"\x00").is_err());
    assert!(decode_handshake(b"\x00\x21\x00\x00\x00\x00").is_err());
    assert!(decode_handshake(b"\x00\x00\x00\x00\x00\x00").is_ok());
}

#[test]
fn credentials_never_print() {
    let text = format!("{:?}", auth(Mechanism::Plain, "alice", "s3cret"));
    assert!(
        !text.contains("alice") && !text.contains("s3cret"),
        "{text}"
    );
}

#[test]
fn nonces_are_fresh_and_comma_free() {
    let (a, b) = (client_nonce().unwrap(), client_nonce().unwrap());
    assert_ne!(a, b);
    assert!(!a.contains(','));
}
