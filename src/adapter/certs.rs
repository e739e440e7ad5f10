//! (being written: adapter security — certs)
