//! [`SharedText`]: a string of a status condition, kept once for the whole process when it is
//! one of the few texts conditions repeat (types, `True`/`False`, reasons, the usual
//! messages).
//!
//! Why: every cached ScaledObject carries five conditions of four strings each — ~20 small
//! allocations, ~0.5 KiB per object of issue #5's budget of 10 KiB, all of them the same
//! few dozen texts. Why by hand: the interning crates (`ustr`, `internment`) keep every string
//! they ever saw, and a condition message can carry an error's detail; here at most
//! [`MAX_SHARED`] distinct texts of at most [`MAX_SHARED_LEN`] bytes are kept (leaked on
//! purpose, a few tens of KiB at most), and any other text is an ordinary owned string.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::ops::Deref;
use std::sync::{LazyLock, Mutex, PoisonError};

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Most distinct texts shared.
pub const MAX_SHARED: usize = 512;
/// Longest text shared.
pub const MAX_SHARED_LEN: usize = 160;

static SHARED: LazyLock<Mutex<HashSet<&'static str>>> = LazyLock::new(Mutex::default);

/// A condition's text: shared when it is a common one, owned otherwise.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SharedText(Cow<'static, str>);

impl SharedText {
    /// `text`, shared when it is short and the table has room (or holds it already).
    pub fn new(text: &str) -> Self {
        if text.len() > MAX_SHARED_LEN {
            return Self(Cow::Owned(text.to_owned()));
        }
        let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(kept) = shared.get(text) {
            return Self(Cow::Borrowed(kept));
        }
        if shared.len() >= MAX_SHARED {
            return Self(Cow::Owned(text.to_owned()));
        }
        let kept: &'static str = Box::leak(text.to_owned().into_boxed_str());
        shared.insert(kept);
        Self(Cow::Borrowed(kept))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for SharedText {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for SharedText {
    fn from(text: &str) -> Self {
        Self::new(text)
    }
}

impl From<String> for SharedText {
    fn from(text: String) -> Self {
        Self::new(&text)
    }
}

impl PartialEq<str> for SharedText {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for SharedText {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for SharedText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for SharedText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for SharedText {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for SharedText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Cow::<'de, str>::deserialize(deserializer)?;
        Ok(Self::new(&text))
    }
}

impl JsonSchema for SharedText {
    fn inline_schema() -> bool {
        String::inline_schema()
    }

    fn schema_name() -> Cow<'static, str> {
        String::schema_name()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        String::json_schema(generator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_shared(text: &SharedText) -> bool {
        matches!(text.0, Cow::Borrowed(_))
    }

    #[test]
    fn common_texts_are_kept_once_and_compare_as_strings() {
        let a = SharedText::from("ScaledObjectReady");
        let b: SharedText = serde_json::from_str(r#""ScaledObjectReady""#).expect("a string");
        assert!(is_shared(&a) && is_shared(&b));
        assert_eq!(a.as_str().as_ptr(), b.as_str().as_ptr(), "one copy");
        assert_eq!(a, b);
        assert!(a == "ScaledObjectReady");
        assert_eq!(
            serde_json::to_string(&a).expect("serializes"),
            r#""ScaledObjectReady""#
        );
        assert_eq!(
            format!("{a} {a:?}"),
            r#"ScaledObjectReady "ScaledObjectReady""#
        );
    }

    #[test]
    fn long_texts_are_owned() {
        let long = "x".repeat(MAX_SHARED_LEN + 1);
        let text = SharedText::from(long.as_str());
        assert!(!is_shared(&text));
        assert_eq!(text.as_str(), long);
    }

    #[test]
    fn the_schema_is_a_string() {
        assert_eq!(
            schemars::schema_for!(SharedText),
            schemars::schema_for!(String)
        );
    }
}
