//! (being written: adapter security — server)
