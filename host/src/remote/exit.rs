//! The exit codes of the client commands, the one place they are defined.
//! Scripts rely on them, so a code never changes meaning; new outcomes get
//! new numbers.

use perdure_records::RuntimeStatus;

/// The command did what it was asked. For `start --wait` and `status`,
/// also: the instance completed, or (for `status`) it has not finished yet.
pub const SUCCESS: i32 = 0;

/// The host could not be reached (refused, DNS, TLS, no answer in time),
/// or it answered with an error no other code names (409 conflict, 410
/// already finished, 5xx).
pub const ERROR: i32 = 1;

/// Bad usage or bad input: clap's own code for a command line it cannot
/// parse, kept for input this command refuses (JSON that does not parse,
/// an unreadable `@file`, an unusable `--url`) and for the host's 400
/// and 413 answers.
pub const USAGE: i32 = 2;

/// The instance failed (`runtimeStatus` `Failed`).
pub const FAILED: i32 = 3;

/// The instance was terminated (`runtimeStatus` `Terminated`).
pub const TERMINATED: i32 = 4;

/// `start --wait --timeout` gave up before the instance finished; the
/// instance keeps running.
pub const TIMED_OUT: i32 = 5;

/// The host answered 404: no such instance, entity state, orchestrator
/// route.
pub const NOT_FOUND: i32 = 6;

/// The host answered 401 or 403: no key, or not a key for this route.
pub const UNAUTHORIZED: i32 = 7;

/// Interrupted (Ctrl-C) while waiting; the instance keeps running. The
/// shell's convention for SIGINT, 128 + 2.
pub const INTERRUPTED: i32 = 130;

/// Every code with its meaning, in order, for `--help`.
const ALL: [(i32, &str); 9] = [
    (
        SUCCESS,
        "success (for start --wait and status: Completed or not finished yet)",
    ),
    (
        ERROR,
        "host unreachable, or another API error (409, 410, 5xx)",
    ),
    (
        USAGE,
        "bad usage or bad input (including the host's 400 and 413)",
    ),
    (FAILED, "the instance Failed"),
    (TERMINATED, "the instance was Terminated"),
    (
        TIMED_OUT,
        "start --wait --timeout gave up; the instance keeps running",
    ),
    (NOT_FOUND, "not found (404)"),
    (
        UNAUTHORIZED,
        "unauthorized (401, 403): check --key / PERDURE_MASTER_KEY",
    ),
    (INTERRUPTED, "interrupted while waiting (Ctrl-C)"),
];

/// The exit-code table shown after the help of `perdure` and of every
/// client command.
pub fn help() -> String {
    let mut text = String::from("Exit codes of the client commands:\n");
    for (code, meaning) in ALL {
        text.push_str(&format!("  {code:>3}  {meaning}\n"));
    }
    text
}

/// The code for an instance seen in `status`: only a finished instance
/// that did not complete is a non-zero outcome.
pub fn for_status(status: Option<RuntimeStatus>) -> i32 {
    match status {
        Some(RuntimeStatus::Failed) => FAILED,
        Some(RuntimeStatus::Terminated) => TERMINATED,
        _ => SUCCESS,
    }
}

/// The code for an HTTP error status the host answered.
pub fn for_http_status(status: u16) -> i32 {
    match status {
        400 | 413 => USAGE,
        401 | 403 => UNAUTHORIZED,
        404 => NOT_FOUND,
        _ => ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_distinct_and_explained() {
        let mut codes: Vec<i32> = ALL.iter().map(|(code, _)| *code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), ALL.len());
        let help = help();
        for (code, meaning) in ALL {
            assert!(help.contains(&format!("{code:>3}  {meaning}")), "{help}");
        }
    }

    #[test]
    fn only_unsuccessful_ends_are_errors() {
        assert_eq!(for_status(Some(RuntimeStatus::Completed)), SUCCESS);
        assert_eq!(for_status(Some(RuntimeStatus::Running)), SUCCESS);
        assert_eq!(for_status(Some(RuntimeStatus::Failed)), FAILED);
        assert_eq!(for_status(Some(RuntimeStatus::Terminated)), TERMINATED);
        assert_eq!(for_http_status(404), NOT_FOUND);
        assert_eq!(for_http_status(401), UNAUTHORIZED);
        assert_eq!(for_http_status(400), USAGE);
        assert_eq!(for_http_status(503), ERROR);
    }
}
