//! The scaling loop's logic. `decision` and `fallback` are pure functions of an object's state
//! and a poll's outcome — no I/O, no clock — so every row of KEDA's decision table is a table
//! test (`reference/keda.md` §2.5–§2.6).

pub mod decision;
pub mod fallback;
pub mod last_active;
pub mod live;
pub mod modifiers;
pub mod poll;
pub mod replicas;
pub mod runtime;
pub mod scheduler;
pub mod store;
