//! Scaling modifiers (`spec.advanced.scalingModifiers`): KEDA's composite metric.
//!
//! A ScaledObject with a `formula` replaces its triggers' metrics by one metric, the formula's
//! value over the triggers' values by trigger `name` (`reference/keda.md` §2.6, §2.7). The
//! formula language is expr-lang's; [`Formula`] implements the numeric subset KEDA users write:
//!
//! ```text
//! (queue_a + queue_b) / 2
//! max(rabbit, kafka * 2)
//! lag > 1_000 ? lag : 0
//! (prom ?? 0) + (redis ?? 0)
//! ```
//!
//! A formula is compiled once per ScaledObject generation ([`Formula::compile`]) and evaluated
//! on every poll ([`Formula::eval`]).

mod eval;
mod formula;
mod lexer;
mod parser;
#[cfg(test)]
mod tests;

pub use formula::{Formula, FormulaError, MAX_FORMULA_LEN};
