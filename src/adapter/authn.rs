//! (being written: adapter security — authn)
