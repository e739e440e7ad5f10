//! Per-scaler query overhead (work in progress).
fn main() {}
