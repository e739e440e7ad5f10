//! (being written: adapter HTTP API — live)
