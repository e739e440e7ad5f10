//! The AMQP side of the RabbitMQ scaler (spec/scalers.md §2.3): the connection URI, rewritten
//! for `vhostName` and `username`/`password`, is the pool key; passive declare lives in
//! [`crate::pool::amqp`].

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use secrecy::ExposeSecret;

use super::{Trigger, config_error, host_url};
use crate::ScalerError;
use crate::pool::amqp::AmqpKey;

/// A vhost is one path segment: everything but unreserved characters is escaped (`/` → `%2F`).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The pool key for `trigger`: its URI (rewritten when asked) plus TLS material if `tls=enable`.
pub(super) fn key(trigger: &Trigger) -> Result<AmqpKey, ScalerError> {
    let mut uri = trigger.host.expose_secret().to_owned();
    if trigger.vhost_name.is_some() || trigger.credentials.is_some() {
        let mut url = host_url(trigger)?;
        if let Some(vhost) = &trigger.vhost_name {
            url.set_path(&format!("/{}", utf8_percent_encode(vhost, SEGMENT)));
        }
        if let Some((user, pass)) = &trigger.credentials {
            let encode = |s: &str| utf8_percent_encode(s, SEGMENT).to_string();
            url.set_username(&encode(user.expose_secret()))
                .and_then(|()| url.set_password(Some(&encode(pass.expose_secret()))))
                .map_err(|()| config_error("parameter \"host\" cannot carry credentials"))?;
        }
        uri = url.to_string();
    }
    let (ca, identity) = if trigger.tls {
        let identity = trigger
            .client_cert
            .as_ref()
            .map(|(cert, key)| (cert.clone(), key.expose_secret().to_owned()));
        (trigger.ca.clone(), identity)
    } else {
        (None, None)
    };
    if identity.is_some() && trigger.key_password.is_some() {
        return Err(config_error(
            "encrypted client keys (keyPassword) are not supported yet",
        ));
    }
    Ok(AmqpKey { uri, ca, identity })
}
