//! (being written: adapter HTTP API — discovery)
