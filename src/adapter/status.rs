//! (being written: adapter HTTP API — status)
