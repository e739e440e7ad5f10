//! (being written: adapter HTTP API — custom)
