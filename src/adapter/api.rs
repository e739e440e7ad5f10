//! (being written: adapter HTTP API — api)
