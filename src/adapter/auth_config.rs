//! (being written: adapter security — auth_config)
