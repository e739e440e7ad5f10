//! (being written: adapter HTTP API — selector)
