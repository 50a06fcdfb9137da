//! Logging into the host's log, tagged with the app, function and instance.
//! Lines an orchestrator logs while it replays are suppressed by the host.
//! Writing to stdout or stderr also reaches the host log.

use crate::bindings::perdure::functions::logging::{Level, log};

pub fn trace(message: &str) {
    log(Level::Trace, message);
}

pub fn debug(message: &str) {
    log(Level::Debug, message);
}

pub fn info(message: &str) {
    log(Level::Info, message);
}

pub fn warn(message: &str) {
    log(Level::Warn, message);
}

pub fn error(message: &str) {
    log(Level::Error, message);
}
