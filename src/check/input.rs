//! Reading manifests: files or standard input, YAML or JSON, one or many documents, into JSON
//! values the schema validator understands. YAML merge keys (`<<`) are applied first.

use std::io::Read;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

/// Largest input read; larger ones are refused rather than exhausting memory.
pub const MAX_INPUT_BYTES: u64 = 64 * 1024 * 1024;

/// Why an input could not be read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The file (or standard input) could not be read.
    #[error("cannot read: {0}")]
    Read(#[from] std::io::Error),
    /// The input is larger than [`MAX_INPUT_BYTES`].
    #[error("larger than {MAX_INPUT_BYTES} bytes")]
    TooLarge,
    /// The input is not UTF-8 text.
    #[error("not UTF-8 text")]
    NotUtf8,
    /// A document is not valid YAML or JSON.
    #[error("document {document}: invalid YAML: {message}")]
    Syntax {
        /// 1-based document index.
        document: usize,
        /// The parser's message, with line and column.
        message: String,
    },
}

/// Read a file, or standard input for `-`.
pub fn read_input(path: &Path) -> Result<String, InputError> {
    let mut bytes = Vec::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .lock()
            .take(MAX_INPUT_BYTES + 1)
            .read_to_end(&mut bytes)?;
    } else {
        std::fs::File::open(path)?
            .take(MAX_INPUT_BYTES + 1)
            .read_to_end(&mut bytes)?;
    }
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        return Err(InputError::TooLarge);
    }
    String::from_utf8(bytes).map_err(|_| InputError::NotUtf8)
}

/// Split a YAML/JSON stream into documents. Empty documents (`---` alone) are `Value::Null`.
///
/// Stops at the first syntax error: YAML cannot be resynchronised after one.
pub fn parse_documents(text: &str) -> Result<Vec<Value>, InputError> {
    let mut documents = Vec::new();
    for (i, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let syntax = |message: String| InputError::Syntax {
            document: i + 1,
            message,
        };
        let mut yaml =
            serde_yaml_ng::Value::deserialize(document).map_err(|e| syntax(e.to_string()))?;
        yaml.apply_merge().map_err(|e| syntax(e.to_string()))?;
        let json = serde_json::to_value(&yaml).map_err(|e| syntax(e.to_string()))?;
        documents.push(json);
    }
    Ok(documents)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn splits_yaml_streams_and_reads_json() {
        let docs = parse_documents("a: 1\n---\n---\nb: [1, 2]\n").unwrap();
        assert_eq!(
            docs,
            vec![json!({"a": 1}), Value::Null, json!({"b": [1, 2]})]
        );
        assert_eq!(
            parse_documents("{\"kind\": \"X\"}").unwrap(),
            vec![json!({"kind": "X"})]
        );
    }

    #[test]
    fn merge_keys_are_applied() {
        let docs = parse_documents("base: &b {x: 1}\nobj:\n  <<: *b\n  y: 2\n").unwrap();
        assert_eq!(docs[0]["obj"], json!({"x": 1, "y": 2}));
    }

    #[test]
    fn syntax_errors_name_the_document_and_line() {
        let err = parse_documents("a: 1\n---\nb: [1, 2\n").unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with("document 2: invalid YAML:"),
            "{message}"
        );
        assert!(message.contains("line"), "{message}");
    }
}
