//! Field paths in kube-apiserver's notation: `spec.triggers[0].metadata[queueName]`.

use std::fmt;

/// One step into a JSON document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// An object property.
    Key(String),
    /// An array element.
    Index(usize),
    /// A value of a map (`additionalProperties`), written `[key]` as the API server does.
    MapKey(String),
}

/// A path from the document root to a field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldPath(Vec<Segment>);

impl FieldPath {
    /// The document root.
    pub fn root() -> Self {
        Self::default()
    }

    /// This path extended by an object property.
    pub fn key(&self, key: &str) -> Self {
        self.with(Segment::Key(key.to_owned()))
    }

    /// This path extended by an array index.
    pub fn index(&self, index: usize) -> Self {
        self.with(Segment::Index(index))
    }

    /// This path extended by a map key.
    pub fn map_key(&self, key: &str) -> Self {
        self.with(Segment::MapKey(key.to_owned()))
    }

    /// The steps of this path.
    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    /// Whether this is the document root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    fn with(&self, segment: Segment) -> Self {
        let mut segments = self.0.clone();
        segments.push(segment);
        Self(segments)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("<root>");
        }
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if i == 0 => f.write_str(key)?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
                Segment::MapKey(key) => write!(f, "[{key}]")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_matches_apiserver_notation() {
        let path = FieldPath::root()
            .key("spec")
            .key("triggers")
            .index(0)
            .key("metadata");
        assert_eq!(
            path.map_key("queueName").to_string(),
            "spec.triggers[0].metadata[queueName]"
        );
        assert_eq!(FieldPath::root().to_string(), "<root>");
    }
}
