//! What `tidescale check` found, per document, and how it is printed.

use std::fmt;

use serde::Serialize;

/// One problem at one JSON path of one document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Path from the document root, e.g. `.spec.triggers[0].type`.
    pub path: String,
    /// What is wrong, e.g. `Required value`.
    pub message: String,
}

impl Problem {
    /// A problem at `path` (written with a leading dot).
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Problems collected while checking one object.
#[derive(Debug, Default)]
pub struct Problems(Vec<Problem>);

impl Problems {
    /// Record a problem.
    pub fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem::new(path, message));
    }

    /// Record several problems.
    pub fn extend(&mut self, problems: impl IntoIterator<Item = Problem>) {
        self.0.extend(problems);
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The problems, in the order found.
    pub fn into_vec(self) -> Vec<Problem> {
        self.0
    }
}

/// The verdict on one document of an input.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase", tag = "status")]
pub enum Verdict {
    /// A keda.sh object with no problems.
    Valid {
        /// `kind` of the object.
        kind: String,
        /// `metadata.name`, when present.
        name: Option<String>,
        /// What its triggers will serve to the HPA (ScaledObjects and ScaledJobs).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        metrics: Vec<crate::check::rules::MetricReport>,
    },
    /// A keda.sh object (or something that should have been one) with problems.
    Invalid {
        /// `kind` of the object, when known.
        kind: Option<String>,
        /// `metadata.name`, when present.
        name: Option<String>,
        /// What is wrong.
        problems: Vec<Problem>,
    },
    /// Not a keda.sh object: not checked.
    Skipped {
        /// `apiVersion` of the document.
        api_version: String,
        /// `kind` of the document.
        kind: String,
    },
}

/// One document of one input, with its verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DocumentReport {
    /// File name as given (`-` for standard input).
    pub file: String,
    /// 1-based position of the document in the file.
    pub document: usize,
    /// The verdict.
    #[serde(flatten)]
    pub verdict: Verdict,
    /// What could not be fully checked offline (a value from a Secret the input lacks).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<Problem>,
}

impl DocumentReport {
    /// The problems of this document (none unless invalid).
    pub fn problems(&self) -> &[Problem] {
        match &self.verdict {
            Verdict::Invalid { problems, .. } => problems,
            _ => &[],
        }
    }

    /// The `FILE:DOC: .path: message` lines of this document.
    pub fn problem_lines(&self) -> impl Iterator<Item = String> + '_ {
        self.problems()
            .iter()
            .map(|p| format!("{}:{}: {p}", self.file, self.document))
    }
}
