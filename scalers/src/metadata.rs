//! Typed parsing of trigger metadata, auth params and env (spec/scalers.md §1.2).
//!
//! KEDA declares each key with a source order (`M` = trigger metadata, `A` = auth params,
//! `E` = the scale target's env named by `metadata["<key>FromEnv"]`) and a type. This module is
//! that engine: a [`Params`] collects every problem while a scaler reads its keys, so the user
//! sees all of them at once, joined into one [`ScalerError::Config`].
//!
//! ```
//! use tidescale_scalers::ScalerConfig;
//! use tidescale_scalers::metadata::{Params, META, META_AUTH_ENV};
//!
//! let mut cfg = ScalerConfig::default();
//! cfg.metadata.insert("host".into(), "amqp://h".into());
//! cfg.metadata.insert("pageSize".into(), " 50 ".into());
//! let mut p = Params::new(&cfg, "rabbitmq");
//! let host = p.key("host").sources(META_AUTH_ENV).required().string();
//! let page_size = p.key("pageSize").sources(META).int().unwrap_or(100);
//! p.finish().unwrap();
//! assert_eq!((host.as_deref(), page_size), (Some("amqp://h"), 50));
//! ```
//!
//! Error messages name the key, the source the value came from and what was expected. A value
//! is quoted only when it came from trigger metadata: auth params and env may hold secrets.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::LazyLock;
use std::time::Duration;

use regex::Regex;
use secrecy::SecretString;

use crate::{ScalerConfig, ScalerError};

/// Where a parameter value can come from, in KEDA's spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// `triggers[].metadata` (KEDA `triggerMetadata`). Never secret.
    Metadata,
    /// Params resolved from the (Cluster)TriggerAuthentication (KEDA `authParams`).
    Auth,
    /// The scale target's env, named by `metadata["<key>FromEnv"]` (KEDA `resolvedEnv`).
    Env,
}

impl Source {
    /// KEDA's name for the source, used in error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Metadata => "triggerMetadata",
            Source::Auth => "authParams",
            Source::Env => "resolvedEnv",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `M`: trigger metadata only (the default for tuning knobs).
pub const META: &[Source] = &[Source::Metadata];
/// `M,A`.
pub const META_AUTH: &[Source] = &[Source::Metadata, Source::Auth];
/// `M,A,E`.
pub const META_AUTH_ENV: &[Source] = &[Source::Metadata, Source::Auth, Source::Env];
/// `M,E`.
pub const META_ENV: &[Source] = &[Source::Metadata, Source::Env];
/// `A`: auth params only (secrets that must never come from the CR spec).
pub const AUTH: &[Source] = &[Source::Auth];
/// `A,E`.
pub const AUTH_ENV: &[Source] = &[Source::Auth, Source::Env];

/// A value found for a key: the trimmed text, where it came from and under which alias.
#[derive(Clone)]
pub struct Found {
    /// The trimmed, non-empty value.
    pub value: String,
    /// The source it was read from.
    pub source: Source,
    /// The alias (key name) it was found under.
    pub name: &'static str,
}

impl Found {
    /// The value quoted for an error message, or nothing when it may be a secret.
    fn shown(&self) -> String {
        match self.source {
            Source::Metadata => format!(" value {:?}", self.value),
            Source::Auth | Source::Env => String::new(),
        }
    }
}

impl fmt::Debug for Found {
    // Auth and env values may be secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Found")
            .field("value", &self.shown())
            .field("source", &self.source)
            .field("name", &self.name)
            .finish()
    }
}

/// Collects typed parameters and their errors for one scaler. Call [`Params::finish`] last.
pub struct Params<'a> {
    cfg: &'a ScalerConfig,
    scaler: &'static str,
    errors: Vec<String>,
    /// Required keys that are absent but may come from values not known offline.
    unresolved: Vec<String>,
}

impl<'a> Params<'a> {
    /// Start parsing `cfg` for the scaler named `scaler` (its KEDA type, used in errors).
    pub fn new(cfg: &'a ScalerConfig, scaler: &'static str) -> Self {
        Self {
            cfg,
            scaler,
            errors: Vec::new(),
            unresolved: Vec::new(),
        }
    }

    /// Declare a key; by default it is optional and read from trigger metadata only.
    pub fn key(&mut self, name: &'static str) -> Key<'_, 'a> {
        Key {
            params: self,
            names: vec![name],
            sources: META,
            allowed: None,
            required: false,
            separator: ',',
        }
    }

    /// Fail when a deprecated-and-removed key is present (in any source), with `message`.
    pub fn removed(&mut self, name: &'static str, message: &str) {
        if self.lookup(&[name], META_AUTH_ENV).is_some() {
            self.errors.push(format!(
                "parameter {name:?} is deprecated and removed: {message}"
            ));
        }
    }

    /// Record a problem found by the scaler's own validation.
    pub fn invalid(&mut self, message: impl Into<String>) {
        self.errors.push(message.into());
    }

    /// Whether any problem has been recorded so far.
    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// The configuration being parsed.
    pub fn config(&self) -> &'a ScalerConfig {
        self.cfg
    }

    /// Turn the collected problems into one joined error, or `Ok` when there were none.
    ///
    /// Real problems win; otherwise required keys that may come from values not known offline
    /// give [`ScalerError::Unresolved`], since the scaler's own checks cannot run without them.
    pub fn finish(self) -> Result<(), ScalerError> {
        if !self.errors.is_empty() {
            Err(ScalerError::Config {
                scaler: self.scaler,
                message: self.errors.join("; "),
            })
        } else if !self.unresolved.is_empty() {
            Err(ScalerError::Unresolved {
                scaler: self.scaler,
                keys: self.unresolved.join(", "),
            })
        } else {
            Ok(())
        }
    }

    /// Whether an absent key may still have a value in a source not known offline.
    fn may_be_unresolved(&self, names: &[&'static str], sources: &[Source]) -> bool {
        let unresolved = &self.cfg.unresolved;
        sources.iter().any(|&source| match source {
            Source::Metadata => false,
            Source::Auth => {
                unresolved.any_auth_param
                    || names.iter().any(|n| unresolved.auth_params.contains(*n))
            }
            Source::Env => names.iter().any(|n| {
                self.cfg
                    .metadata
                    .get(&format!("{n}FromEnv"))
                    .map(|var| var.trim())
                    .is_some_and(|var| unresolved.any_env || unresolved.env.contains(var))
            }),
        })
    }

    /// Walk `sources` in order, and inside each the aliases in order; first non-empty wins.
    pub fn lookup(&self, names: &[&'static str], sources: &[Source]) -> Option<Found> {
        sources.iter().find_map(|&source| {
            names.iter().find_map(|&name| {
                let raw = match source {
                    Source::Metadata => self.cfg.metadata.get(name),
                    Source::Auth => self.cfg.auth_params.get(name),
                    Source::Env => self
                        .cfg
                        .metadata
                        .get(&format!("{name}FromEnv"))
                        .and_then(|var| self.cfg.resolved_env.get(var.trim())),
                }?;
                let value = raw.trim();
                (!value.is_empty()).then(|| Found {
                    value: value.to_owned(),
                    source,
                    name,
                })
            })
        })
    }
}

/// One key being declared: aliases, sources, allowed values, then a typed getter.
///
/// Getters return `None` when the key is absent or invalid; problems go to the [`Params`].
pub struct Key<'p, 'a> {
    params: &'p mut Params<'a>,
    names: Vec<&'static str>,
    sources: &'static [Source],
    allowed: Option<&'static [&'static str]>,
    required: bool,
    separator: char,
}

impl Key<'_, '_> {
    /// Where to look, in order (see the `META*`/`AUTH*` constants).
    pub fn sources(mut self, sources: &'static [Source]) -> Self {
        self.sources = sources;
        self
    }

    /// Another name for the key, tried after the earlier ones within each source.
    pub fn alias(mut self, name: &'static str) -> Self {
        self.names.push(name);
        self
    }

    /// Absent (or empty) is an error.
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// Every `,`-separated part of the raw value must be one of `allowed` (checked first).
    pub fn one_of(mut self, allowed: &'static [&'static str]) -> Self {
        self.allowed = Some(allowed);
        self
    }

    /// The list separator for [`Key::list`] and [`Key::map`] (default `,`).
    pub fn separator(mut self, separator: char) -> Self {
        self.separator = separator;
        self
    }

    /// The raw value with its source, after the presence and enum checks.
    pub fn found(self) -> Option<Found> {
        self.get(|found, _| Ok(found.clone()))
    }

    /// A string, as is.
    pub fn string(self) -> Option<String> {
        self.get(|found, _| Ok(found.value.clone()))
    }

    /// A secret string: kept in [`SecretString`] so it can never be printed.
    pub fn secret(self) -> Option<SecretString> {
        self.get(|found, _| Ok(SecretString::from(found.value.clone())))
    }

    /// A boolean with Go `strconv.ParseBool` semantics.
    pub fn bool(self) -> Option<bool> {
        self.get(|found, _| parse_bool(&found.value).ok_or("a boolean (true or false)"))
    }

    /// A 64-bit integer written as a JSON number (`1.5`, `1e3`, `+1` are rejected).
    pub fn int(self) -> Option<i64> {
        self.get(|found, _| parse_int(&found.value).ok_or("an integer"))
    }

    /// A finite float written as a JSON number (`1e3` is fine; `.5`, `+1`, `NaN` are not).
    pub fn float(self) -> Option<f64> {
        self.get(|found, _| parse_float(&found.value).ok_or("a number"))
    }

    /// A non-negative Go duration (`300ms`, `1m30s`) or an integer number of milliseconds.
    pub fn duration(self) -> Option<Duration> {
        self.get(|found, _| {
            parse_duration(&found.value)
                .ok_or("a non-negative duration such as \"30s\" or integer milliseconds")
        })
    }

    /// A list split on the separator, each element trimmed.
    pub fn list(self) -> Option<Vec<String>> {
        self.get(|found, sep| Ok(split_list(&found.value, sep)))
    }

    /// A list of integers where an element may also be an inclusive range `a-b`.
    pub fn int_range_list(self) -> Option<Vec<i64>> {
        self.get(|found, sep| {
            parse_int_ranges(&found.value, sep).ok_or("a list of integers or ranges like \"1-3\"")
        })
    }

    /// A map written `k1=v1,k2=v2`; each element must hold exactly one `=`.
    pub fn map(self) -> Option<BTreeMap<String, String>> {
        self.get(|found, sep| parse_map(&found.value, sep).ok_or("a list of key=value pairs"))
    }

    /// Look the key up, check presence and the enum, then convert with `convert`.
    fn get<T>(self, convert: impl FnOnce(&Found, char) -> Result<T, &'static str>) -> Option<T> {
        let Some(found) = self.params.lookup(&self.names, self.sources) else {
            if self.required && self.params.may_be_unresolved(&self.names, self.sources) {
                self.params.unresolved.push(self.names.join(","));
            } else if self.required {
                let sources: Vec<&str> = self.sources.iter().map(|s| s.as_str()).collect();
                self.params.errors.push(format!(
                    "missing required parameter {:?} in [{}]",
                    self.names.join(","),
                    sources.join(" ")
                ));
            }
            return None;
        };
        if let Some(allowed) = self.allowed
            && found
                .value
                .split(',')
                .any(|part| !allowed.contains(&part.trim()))
        {
            self.params.errors.push(format!(
                "parameter {:?}{} (from {}) must be one of [{}]",
                found.name,
                found.shown(),
                found.source,
                allowed.join(" ")
            ));
            return None;
        }
        match convert(&found, self.separator) {
            Ok(value) => Some(value),
            Err(expected) => {
                self.params.errors.push(format!(
                    "parameter {:?}{} (from {}) must be {expected}",
                    found.name,
                    found.shown(),
                    found.source
                ));
                None
            }
        }
    }
}

/// Go `strconv.ParseBool`.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// RFC 8259 number grammar: what Go's `json.Unmarshal` accepts for a number.
static JSON_NUMBER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$").expect("static regex")
});
static JSON_INT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^-?(0|[1-9][0-9]*)$").expect("static regex"));

/// A JSON-number integer that fits in i64.
pub fn parse_int(s: &str) -> Option<i64> {
    JSON_INT.is_match(s).then(|| s.parse().ok()).flatten()
}

/// A JSON-number float; out-of-range values (which would be infinite) are rejected as Go does.
pub fn parse_float(s: &str) -> Option<f64> {
    JSON_NUMBER
        .is_match(s)
        .then(|| s.parse::<f64>().ok())
        .flatten()
        .filter(|v| v.is_finite())
}

/// A Go duration string, else integer milliseconds; negatives are rejected.
pub fn parse_duration(s: &str) -> Option<Duration> {
    if let Some(d) = parse_go_duration(s) {
        return d;
    }
    let ms: i64 = s.parse().ok()?;
    u64::try_from(ms).ok().map(Duration::from_millis)
}

/// Go `time.ParseDuration`: `[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+` or `0`.
///
/// Returns `None` when `s` is not a Go duration, `Some(None)` when it is one but negative.
fn parse_go_duration(s: &str) -> Option<Option<Duration>> {
    let (negative, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(Some(Duration::ZERO));
    }
    if rest.is_empty() {
        return None;
    }
    let mut nanos: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(num_len);
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return None;
        }
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit {
            "ns" => 1.0,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        // "1." and ".5" are valid Go; Rust's parser accepts both forms too.
        nanos += number.parse::<f64>().ok()? * scale;
        rest = tail;
    }
    if negative && nanos > 0.0 {
        return Some(None);
    }
    // Go rejects durations beyond ~292 years; so do we, rather than saturating.
    (nanos < 9.223_372_036_854_776e18).then(|| Some(Duration::from_nanos(nanos as u64)))
}

fn split_list(s: &str, separator: char) -> Vec<String> {
    s.split(separator)
        .map(|part| part.trim().to_owned())
        .collect()
}

fn parse_int_ranges(s: &str, separator: char) -> Option<Vec<i64>> {
    let mut out = Vec::new();
    for part in s.split(separator).map(str::trim) {
        if let Some(v) = parse_int(part) {
            out.push(v);
            continue;
        }
        let (a, b) = part.split_once('-')?;
        let (a, b) = (parse_int(a.trim())?, parse_int(b.trim())?);
        // A bound on the range length keeps a typo like "0-99999999999" from eating memory.
        if b < a || b - a > 100_000 {
            return None;
        }
        out.extend(a..=b);
    }
    Some(out)
}

fn parse_map(s: &str, separator: char) -> Option<BTreeMap<String, String>> {
    s.split(separator)
        .map(|pair| {
            let (k, v) = pair.split_once('=')?;
            if v.contains('=') {
                return None;
            }
            Some((k.trim().to_owned(), v.trim().to_owned()))
        })
        .collect()
}

#[cfg(test)]
#[path = "metadata_tests.rs"]
mod tests;
