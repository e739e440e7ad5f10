//! (being written: adapter security — request_info)
