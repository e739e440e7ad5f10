//! (being written: adapter HTTP API — routes)
