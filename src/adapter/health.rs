//! (being written: adapter HTTP API — health)
