//! (being written: adapter HTTP API — external)
