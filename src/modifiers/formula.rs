//! `advanced.scalingModifiers.formula`: compile once, evaluate on every poll.
//!
//! KEDA compiles the formula with expr-lang against the ScaledObject's trigger names (each a
//! `float64`), wraps it in `float(...)` so that the result is a number, and runs it once with
//! every trigger at `-1` to catch errors before the object is accepted. When the formula uses
//! `??`, a failed trigger is fed in as `nil` and a `nil` result is kept (the caller then applies
//! the fallback); otherwise a `nil` reaching the result is an error, as `float(nil)` is.
//! [`Formula`] does the same with its own small expr-lang implementation (`parser.rs`,
//! `eval.rs`), which covers the numeric subset formulas use.

use super::eval::{self, Ty, Value};
use super::parser::{self, Builtin, Node};
use std::collections::BTreeMap;

/// Longest formula accepted, in bytes. KEDA's users write a line or two; the limit keeps
/// compile time and memory trivially bounded for anything a manifest can carry.
pub const MAX_FORMULA_LEN: usize = 4096;

/// The value every trigger gets in the compile-time dry run (KEDA's `dummyValue`).
const DRY_RUN_VALUE: f64 = -1.0;

/// Why a formula was rejected or could not be evaluated. Columns are 1-based characters.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FormulaError {
    /// The formula does not parse: `message` says what was expected and what was found.
    #[error("syntax error at column {column}: {message}")]
    Syntax {
        /// Where the offending token starts.
        column: usize,
        /// What was expected and what was found instead.
        message: String,
    },
    /// The formula names triggers the ScaledObject does not have (or that are cpu/memory).
    #[error(
        "unknown name{} {} in formula (column {column}); it can use the names of the \
         ScaledObject's non-cpu/memory triggers{}",
        if names.len() > 1 { "s" } else { "" },
        names.join(", "),
        if known.is_empty() { String::from(", and none has a name") } else { format!(": {}", known.join(", ")) }
    )]
    UnknownNames {
        /// Every unknown name, once each, in order of appearance.
        names: Vec<String>,
        /// Where the first of them is.
        column: usize,
        /// The names the formula may use.
        known: Vec<String>,
    },
    /// A call to something that is not one of the supported builtins.
    #[error(
        "unknown function {name} at column {column} (formulas can call {})",
        Builtin::NAMES
    )]
    UnknownFunction {
        /// The name called.
        name: String,
        /// Where the call starts.
        column: usize,
    },
    /// An operation that can never work whatever the triggers' values (e.g. `a % 2`, since
    /// triggers are floats, or a condition that is not a bool).
    #[error("type error at column {column}: {message}")]
    Type {
        /// Where the operation is.
        column: usize,
        /// expr-lang's wording of the problem.
        message: String,
    },
    /// An error while evaluating: an operation on a failed (nil) trigger outside `??`, an
    /// integer division by zero, a result that is nil or not a number.
    #[error("formula failed at column {column}: {message}")]
    Eval {
        /// Where the failing operation is.
        column: usize,
        /// What went wrong.
        message: String,
    },
    /// The compile-time dry run (every trigger at -1, as KEDA does) failed.
    #[error(
        "formula fails when every trigger is -1 (the check KEDA runs before accepting it): {0}"
    )]
    DryRun(Box<FormulaError>),
    /// The formula is longer than [`MAX_FORMULA_LEN`].
    #[error("formula is {len} bytes long; at most {max} are accepted")]
    TooLong {
        /// The formula's length in bytes.
        len: usize,
        /// [`MAX_FORMULA_LEN`].
        max: usize,
    },
    /// The formula nests deeper than any real formula does.
    #[error("formula nests more than {max} levels deep (at column {column})")]
    TooDeep {
        /// Where the limit was reached.
        column: usize,
        /// The limit.
        max: u16,
    },
}

/// A compiled scaling-modifiers formula.
///
/// ```
/// use std::collections::BTreeMap;
/// use tidescale::modifiers::Formula;
///
/// // `queue` failed this poll (None): `??` gives it a default instead of failing the formula.
/// let formula = Formula::compile("max(queue ?? 0, lag / 2)", &["queue", "lag"])?;
/// let values = BTreeMap::from([("queue".to_string(), None), ("lag".to_string(), Some(10.0))]);
/// assert_eq!(formula.eval(&values)?, Some(5.0));
///
/// // Rejected when compiled, as KEDA's admission webhook rejects it.
/// assert!(Formula::compile("queue + kafka", &["queue"]).is_err());
/// # Ok::<(), tidescale::modifiers::FormulaError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Formula {
    source: String,
    tree: Node,
    names: Vec<String>,
    keeps_nil: bool,
}

impl Formula {
    /// Compiles `src` against the trigger names it may use, as KEDA's admission check does:
    /// syntax, unknown names and functions, types, then a dry run with every name at -1.
    pub fn compile(src: &str, known_names: &[&str]) -> Result<Self, FormulaError> {
        if src.len() > MAX_FORMULA_LEN {
            return Err(FormulaError::TooLong {
                len: src.len(),
                max: MAX_FORMULA_LEN,
            });
        }
        let tree = parser::parse(src)?;

        let mut names: Vec<String> = Vec::new();
        let mut unknown: Vec<String> = Vec::new();
        let mut first_unknown = 0;
        tree.for_each_name(&mut |name, column| {
            let list = if known_names.contains(&name) {
                &mut names
            } else {
                if unknown.is_empty() {
                    first_unknown = column;
                }
                &mut unknown
            };
            if !list.iter().any(|n| n == name) {
                list.push(name.to_string());
            }
        });
        if !unknown.is_empty() {
            let mut known: Vec<String> = known_names.iter().map(|n| n.to_string()).collect();
            known.sort();
            known.dedup();
            return Err(FormulaError::UnknownNames {
                names: unknown,
                column: first_unknown,
                known,
            });
        }

        let keeps_nil = tree.uses_coalesce();
        match eval::check(&tree)? {
            Ty::Bool => return Err(not_a_number(&tree, "bool")),
            Ty::Nil if !keeps_nil => return Err(not_a_number(&tree, "nil")),
            _ => {}
        }

        let formula = Self {
            source: src.to_string(),
            tree,
            names,
            keeps_nil,
        };
        let dummy = known_names
            .iter()
            .map(|n| (n.to_string(), Some(DRY_RUN_VALUE)))
            .collect();
        formula
            .eval(&dummy)
            .map_err(|e| FormulaError::DryRun(Box::new(e)))?;
        Ok(formula)
    }

    /// Evaluates the formula. `values` maps trigger names to their metric value, or `None` for
    /// a trigger that failed (a name missing from the map counts as failed too).
    ///
    /// Returns `Ok(None)` only for a formula that uses `??` and still comes out nil: the caller
    /// then falls back. Float division by zero is not an error: it gives ±Inf or NaN, which the
    /// caller clamps.
    pub fn eval(
        &self,
        values: &BTreeMap<String, Option<f64>>,
    ) -> Result<Option<f64>, FormulaError> {
        let column = self.tree.column;
        match eval::eval(&self.tree, values)? {
            Value::Int(i) => Ok(Some(i as f64)),
            Value::Float(f) => Ok(Some(f)),
            Value::Nil if self.keeps_nil => Ok(None),
            Value::Nil => Err(FormulaError::Eval {
                column,
                message: "the result is nil (a trigger failed); use `??` to give it a default"
                    .to_string(),
            }),
            Value::Bool(_) => Err(FormulaError::Eval {
                column,
                message: "the result is a bool, not a number".to_string(),
            }),
        }
    }

    /// The formula as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The trigger names the formula uses, once each, in order of appearance.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// True when the formula uses `??`, so a nil result is kept (`Ok(None)`) rather than an error.
    pub fn keeps_nil(&self) -> bool {
        self.keeps_nil
    }
}

fn not_a_number(tree: &Node, ty: &str) -> FormulaError {
    FormulaError::Type {
        column: tree.column,
        message: format!("the formula must produce a number, but produces {ty}"),
    }
}
