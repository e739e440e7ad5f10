//! The AMQP side of the RabbitMQ scaler (spec/scalers.md §2.3): the connection URI, rewritten
//! for `vhostName` and `username`/`password`, is the pool key; passive declare lives in
//! [`crate::pool::amqp`].

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use secrecy::ExposeSecret;

use super::{Trigger, config_error, host_url, tls_settings};
use crate::ScalerError;
use crate::pool::amqp::AmqpKey;

/// A vhost is one path segment: everything but unreserved characters is escaped (`/` → `%2F`).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The pool key for `trigger`: its URI (rewritten when asked) plus TLS material if `tls=enable`.
///
/// The URI is always re-serialised so that equal endpoints share one connection, and so that
/// an absent or `/` path means the vhost `/` as in KEDA (lapin would read `/` as the vhost "").
pub(super) fn key(trigger: &Trigger) -> Result<AmqpKey, ScalerError> {
    let mut url = host_url(trigger)?;
    if let Some(vhost) = &trigger.vhost_name {
        url.set_path(&format!("/{}", utf8_percent_encode(vhost, SEGMENT)));
    } else if matches!(url.path(), "" | "/") {
        url.set_path("/%2F");
    }
    if let Some((user, pass)) = &trigger.credentials {
        let encode = |s: &str| utf8_percent_encode(s, SEGMENT).to_string();
        url.set_username(&encode(user.expose_secret()))
            .and_then(|()| url.set_password(Some(&encode(pass.expose_secret()))))
            .map_err(|()| config_error("parameter \"host\" cannot carry credentials"))?;
    }
    // SASL EXTERNAL (the client certificate is the identity) when TLS is on, no credentials
    // were given and the host carries no password, as KEDA does.
    if trigger.tls
        && trigger.client_cert.is_some()
        && trigger.credentials.is_none()
        && url.password().is_none()
    {
        url.query_pairs_mut()
            .append_pair("auth_mechanism", "external");
    }
    let uri = url.to_string();
    Ok(AmqpKey {
        uri,
        tls: tls_settings(trigger),
    })
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;
    use crate::ScalerConfig;
    use crate::rabbitmq::parse;

    fn uri(host: &str, vhost_name: Option<&str>, auth: &[(&str, &str)]) -> String {
        let mut cfg = ScalerConfig::default();
        cfg.metadata.insert("host".into(), host.into());
        cfg.metadata.insert("queueName".into(), "q".into());
        if let Some(v) = vhost_name {
            cfg.metadata.insert("vhostName".into(), v.into());
        }
        for (k, v) in auth {
            cfg.auth_params.insert((*k).into(), (*v).into());
        }
        key(&parse(&cfg).expect("valid")).expect("key").uri
    }

    #[rstest]
    #[case::no_path("amqp://u:p@h:5672", None, "amqp://u:p@h:5672/%2F")]
    #[case::slash_path("amqp://u:p@h:5672/", None, "amqp://u:p@h:5672/%2F")]
    #[case::encoded_default("amqp://u:p@h/%2f", None, "amqp://u:p@h/%2f")]
    #[case::named_vhost("amqp://u:p@h/vh", None, "amqp://u:p@h/vh")]
    #[case::vhost_name_overrides("amqp://u:p@h/vh", Some("a/b c"), "amqp://u:p@h/a%2Fb%20c")]
    #[case::vhost_name_slash("amqp://u:p@h/vh", Some("/"), "amqp://u:p@h/%2F")]
    fn vhost_follows_keda(
        #[case] host: &str,
        #[case] vhost_name: Option<&str>,
        #[case] expected: &str,
    ) {
        assert_eq!(uri(host, vhost_name, &[]), expected);
    }

    #[rstest]
    #[case::cert_only(&[("tls", "enable"), ("cert", "C"), ("key", "K")], "amqps://h/vh?auth_mechanism=external")]
    #[case::tls_disabled(&[("cert", "C"), ("key", "K")], "amqps://h/vh")]
    #[case::with_credentials(
        &[("tls", "enable"), ("cert", "C"), ("key", "K"), ("username", "u"), ("password", "p")],
        "amqps://u:p@h/vh"
    )]
    fn sasl_external_with_a_client_certificate_and_no_password(
        #[case] auth: &[(&str, &str)],
        #[case] expected: &str,
    ) {
        assert_eq!(uri("amqps://h/vh", None, auth), expected);
    }

    #[test]
    fn username_and_password_replace_the_userinfo() {
        let auth = [("username", "new user"), ("password", "p@ss:w/rd")];
        assert_eq!(
            uri("amqps://old:old@h:5671/vh", None, &auth),
            "amqps://new%20user:p%40ss%3Aw%2Frd@h:5671/vh"
        );
    }
}
