//! (being written: adapter security — authz)
