//! Label selectors in their string form (spec/kubernetes.md §1.7), as the HPA sends them in
//! `labelSelector` and `metricLabelSelector`.
//!
//! The grammar and the semantics follow apimachinery's `labels.Parse`: a lexer splits the text
//! into identifiers and the operators `! = == != > < in notin ( ) ,`; whitespace between tokens
//! is tolerated; keys must be qualified names and values label values; `>`/`<` take integers.
//! NotIn, `!=` and DoesNotExist match objects that lack the key. The empty selector matches
//! everything. `kube::core` has no string parser for this grammar, hence this module; the sandbox
//! has its own copy, which production code must not depend on.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Longest label name or value.
const MAX_NAME_LENGTH: usize = 63;
/// Longest DNS-subdomain key prefix.
const MAX_PREFIX_LENGTH: usize = 253;

/// A selector that could not be parsed; the message is meant for the client (400 BadRequest).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unable to parse requirement: {detail}")]
pub struct SelectorError {
    /// What was wrong, naming the offending token.
    pub detail: String,
}

/// The operator of one requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// `k=v`, `k==v`, `k in (…)`.
    In,
    /// `k!=v`, `k notin (…)`.
    NotIn,
    /// `k`.
    Exists,
    /// `!k`.
    DoesNotExist,
    /// `k>n`.
    GreaterThan,
    /// `k<n`.
    LessThan,
}

/// One parsed requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// The label key.
    pub key: String,
    /// How the label is compared.
    pub operator: Operator,
    /// The values (one for `=`, `!=`; integers for `>`/`<`; none for (Does)Exist(s)).
    pub values: BTreeSet<String>,
}

/// A parsed selector: the conjunction of its requirements.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

impl Selector {
    /// Parses the string grammar; empty or blank text is the match-everything selector.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let tokens = lex(text)?;
        let mut parser = Parser { tokens, at: 0 };
        let mut requirements = Vec::new();
        if parser.peek() == &Token::End {
            return Ok(Self { requirements });
        }
        loop {
            requirements.push(parser.requirement()?);
            match parser.next() {
                Token::End => break,
                Token::Comma => {}
                other => {
                    return Err(fail(format!(
                        "found '{other}', expected: ',' or end of string"
                    )));
                }
            }
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self { requirements })
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_with(|key| labels.get(key).map(String::as_str))
    }

    /// Whether the labels `lookup` returns satisfy every requirement; lets callers match
    /// composed label sets without building a map.
    pub fn matches_with<'a>(&self, lookup: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.requirements
            .iter()
            .all(|r| r.matches_value(lookup(&r.key)))
    }

    /// Whether this selector matches everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// The value `key` must equal (`key=v`, `key==v` or `key in (v)`), when there is one.
    pub fn required_value(&self, key: &str) -> Option<&str> {
        self.requirements
            .iter()
            .filter(|r| r.key == key && r.operator == Operator::In && r.values.len() == 1)
            .find_map(|r| r.values.first().map(String::as_str))
    }
}

impl Requirement {
    /// Whether a label set in which this requirement's key has `value` satisfies it.
    pub fn matches_value(&self, value: Option<&str>) -> bool {
        match self.operator {
            Operator::In => value.is_some_and(|v| self.values.contains(v)),
            Operator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(actual), Some(bound)) = (
                    value.and_then(|v| v.parse::<i64>().ok()),
                    self.values.first().and_then(|v| v.parse::<i64>().ok()),
                ) else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    actual > bound
                } else {
                    actual < bound
                }
            }
        }
    }
}

impl std::fmt::Display for Selector {
    /// The canonical form: requirements sorted by key, joined by `,` (what the HPA sends).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (index, r) in self.requirements.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            let values = r.values.iter().cloned().collect::<Vec<_>>().join(",");
            match r.operator {
                Operator::In if r.values.len() == 1 => write!(f, "{}={values}", r.key)?,
                Operator::NotIn if r.values.len() == 1 => write!(f, "{}!={values}", r.key)?,
                Operator::In => write!(f, "{} in ({values})", r.key)?,
                Operator::NotIn => write!(f, "{} notin ({values})", r.key)?,
                Operator::Exists => f.write_str(&r.key)?,
                Operator::DoesNotExist => write!(f, "!{}", r.key)?,
                Operator::GreaterThan => write!(f, "{}>{values}", r.key)?,
                Operator::LessThan => write!(f, "{}<{values}", r.key)?,
            }
        }
        Ok(())
    }
}

fn fail(detail: String) -> SelectorError {
    SelectorError { detail }
}

/// A lexer token.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Identifier(String),
    In,
    NotIn,
    Bang,
    Equals,
    DoubleEquals,
    NotEquals,
    Greater,
    Less,
    Open,
    Close,
    Comma,
    End,
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Identifier(text) => text,
            Self::In => "in",
            Self::NotIn => "notin",
            Self::Bang => "!",
            Self::Equals => "=",
            Self::DoubleEquals => "==",
            Self::NotEquals => "!=",
            Self::Greater => ">",
            Self::Less => "<",
            Self::Open => "(",
            Self::Close => ")",
            Self::Comma => ",",
            Self::End => "end of string",
        })
    }
}

/// Characters that end an identifier (apimachinery's special symbols plus whitespace).
fn is_special(c: char) -> bool {
    matches!(c, '!' | '=' | '>' | '<' | '(' | ')' | ',') || c.is_whitespace()
}

fn lex(text: &str) -> Result<Vec<Token>, SelectorError> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        let token = match c {
            c if c.is_whitespace() => continue,
            '(' => Token::Open,
            ')' => Token::Close,
            ',' => Token::Comma,
            '>' => Token::Greater,
            '<' => Token::Less,
            '!' | '=' => {
                let double = chars.next_if(|(_, n)| *n == '=').is_some();
                match (c, double) {
                    ('!', true) => Token::NotEquals,
                    ('!', false) => Token::Bang,
                    ('=', true) => Token::DoubleEquals,
                    _ => Token::Equals,
                }
            }
            _ => {
                let mut end = start + c.len_utf8();
                while let Some((at, n)) = chars.next_if(|(_, n)| !is_special(*n)) {
                    end = at + n.len_utf8();
                }
                match &text[start..end] {
                    "in" => Token::In,
                    "notin" => Token::NotIn,
                    word => Token::Identifier(word.to_owned()),
                }
            }
        };
        tokens.push(token);
    }
    tokens.push(Token::End);
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        self.tokens.get(self.at).unwrap_or(&Token::End)
    }

    fn next(&mut self) -> Token {
        let token = self.peek().clone();
        self.at += 1;
        token
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        let negated = self.peek() == &Token::Bang;
        if negated {
            self.at += 1;
        }
        let key = match self.next() {
            Token::Identifier(key) => validate_key(key)?,
            other => return Err(fail(format!("found '{other}', expected: identifier"))),
        };
        let requirement = |operator, values| Requirement {
            key: key.clone(),
            operator,
            values,
        };
        if negated || matches!(self.peek(), Token::Comma | Token::End) {
            if negated && !matches!(self.peek(), Token::Comma | Token::End) {
                let found = self.peek().clone();
                return Err(fail(format!(
                    "found '{found}', expected: ',' or end of string after '!{key}'"
                )));
            }
            let operator = if negated {
                Operator::DoesNotExist
            } else {
                Operator::Exists
            };
            return Ok(requirement(operator, BTreeSet::new()));
        }
        let (operator, values) = match self.next() {
            Token::Equals | Token::DoubleEquals => (Operator::In, self.single_value()?),
            Token::NotEquals => (Operator::NotIn, self.single_value()?),
            Token::In => (Operator::In, self.value_set()?),
            Token::NotIn => (Operator::NotIn, self.value_set()?),
            op @ (Token::Greater | Token::Less) => {
                let values = self.single_value()?;
                if values.iter().any(|v| v.parse::<i64>().is_err()) {
                    return Err(fail(format!(
                        "for '{op}' operator, the value must be an integer"
                    )));
                }
                let operator = if op == Token::Greater {
                    Operator::GreaterThan
                } else {
                    Operator::LessThan
                };
                (operator, values)
            }
            other => {
                return Err(fail(format!(
                    "found '{other}', expected: in, notin, =, ==, !=, gt, lt"
                )));
            }
        };
        Ok(requirement(operator, values))
    }

    /// The value after `=`, `==`, `!=`, `>`, `<`; empty when followed by `,` or the end.
    fn single_value(&mut self) -> Result<BTreeSet<String>, SelectorError> {
        let value = match self.peek() {
            Token::Comma | Token::End => String::new(),
            Token::Identifier(_) | Token::In | Token::NotIn => self.next().to_string(),
            other => return Err(fail(format!("found '{other}', expected: identifier"))),
        };
        Ok(BTreeSet::from([validate_value(value)?]))
    }

    /// `( v1, v2 … )`; `()` is the set holding the empty value, as in apimachinery.
    fn value_set(&mut self) -> Result<BTreeSet<String>, SelectorError> {
        match self.next() {
            Token::Open => {}
            other => return Err(fail(format!("found '{other}', expected: '('"))),
        }
        let mut values = BTreeSet::new();
        let mut expect_value = true;
        loop {
            match self.next() {
                Token::Close => {
                    if expect_value {
                        values.insert(String::new());
                    }
                    return Ok(values);
                }
                Token::Comma if !expect_value => expect_value = true,
                Token::Comma => {
                    values.insert(String::new());
                }
                token @ (Token::Identifier(_) | Token::In | Token::NotIn) if expect_value => {
                    values.insert(validate_value(token.to_string())?);
                    expect_value = false;
                }
                other => {
                    return Err(fail(format!(
                        "found '{other}', expected: ',', ')' or identifier"
                    )));
                }
            }
        }
    }
}

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`, at most 63 characters.
fn is_label_name(text: &str) -> bool {
    let bytes = text.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_NAME_LENGTH
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A lowercase DNS-1123 subdomain.
fn is_dns_subdomain(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_PREFIX_LENGTH
        && text.split('.').all(|label| {
            let bytes = label.as_bytes();
            !bytes.is_empty()
                && bytes.len() <= MAX_NAME_LENGTH
                && bytes
                    .first()
                    .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                && bytes
                    .last()
                    .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        })
}

fn validate_key(key: String) -> Result<String, SelectorError> {
    let valid = match key.split_once('/') {
        Some((prefix, name)) => is_dns_subdomain(prefix) && is_label_name(name),
        None => is_label_name(&key),
    };
    if valid {
        Ok(key)
    } else {
        Err(fail(format!(
            "invalid label key {key:?}: a qualified name is an optional DNS subdomain prefix and \
             '/' followed by at most 63 alphanumeric characters, '-', '_' or '.', starting and \
             ending with an alphanumeric character"
        )))
    }
}

fn validate_value(value: String) -> Result<String, SelectorError> {
    if value.is_empty() || is_label_name(&value) {
        Ok(value)
    } else {
        Err(fail(format!(
            "invalid label value {value:?}: a label value is empty or at most 63 alphanumeric \
             characters, '-', '_' or '.', starting and ending with an alphanumeric character"
        )))
    }
}

/// Longest selector text kept by a [`SelectorCache`] (longer ones are parsed every time).
const MAX_CACHED_SELECTOR_LENGTH: usize = 1024;
/// Most selectors a [`SelectorCache`] keeps; beyond, it starts over.
const MAX_CACHED_SELECTORS: usize = 1024;

/// Parsed selectors by their text. The HPA sends the same `labelSelector`
/// (`scaledobject.keda.sh/name=<name>`) on every read of a metric, and parsing it cost more
/// than the rest of the read (benches/adapter_latency.rs). Errors are not kept: a bad selector
/// is refused the same way each time. Bounded in entries and in text length.
#[derive(Debug, Default)]
pub struct SelectorCache {
    parsed: Mutex<HashMap<String, Arc<Selector>, foldhash::fast::RandomState>>,
}

impl SelectorCache {
    /// [`Selector::parse`], from the cache when `text` was parsed before.
    pub fn parse(&self, text: &str) -> Result<Arc<Selector>, SelectorError> {
        if let Some(selector) = self.lock().get(text) {
            return Ok(selector.clone());
        }
        let selector = Arc::new(Selector::parse(text)?);
        if text.len() <= MAX_CACHED_SELECTOR_LENGTH {
            let mut parsed = self.lock();
            if parsed.len() >= MAX_CACHED_SELECTORS {
                parsed.clear();
            }
            parsed.insert(text.to_owned(), selector.clone());
        }
        Ok(selector)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<Selector>, foldhash::fast::RandomState>> {
        // A panic while holding the lock leaves a consistent map.
        self.parsed.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
#[path = "selector_tests.rs"]
mod tests;
