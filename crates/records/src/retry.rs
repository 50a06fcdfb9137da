//! Retry policies of activities and sub-orchestrations: when a failed
//! attempt is tried again.
//!
//! A policy is stored as JSON with its task (work item or child instance);
//! storage asks [`RetryPolicy::next_delay`] when an attempt fails and, if
//! there is a delay, keeps the failure from the orchestrator and sets a
//! durable timer for the next attempt instead.

use serde::{Deserialize, Serialize};

/// How to retry a failed task. The first attempt counts: `max_attempts` 1
/// never retries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub first_retry_interval_ms: u64,
    /// Each interval is the previous one times this (>= 1).
    pub backoff_coefficient: f64,
    pub max_retry_interval_ms: Option<u64>,
    /// No attempt starts once this long has passed since the first one.
    pub retry_timeout_ms: Option<u64>,
}

/// Why a retry policy is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid retry policy: {0}")]
pub struct InvalidPolicy(&'static str);

impl RetryPolicy {
    /// Checks what the orchestrator passed.
    pub fn validate(&self) -> Result<(), InvalidPolicy> {
        if self.max_attempts == 0 {
            return Err(InvalidPolicy("max-attempts must be at least 1"));
        }
        if !self.backoff_coefficient.is_finite() || self.backoff_coefficient < 1.0 {
            return Err(InvalidPolicy("backoff-coefficient must be a number >= 1"));
        }
        if self
            .max_retry_interval_ms
            .is_some_and(|max| max < self.first_retry_interval_ms)
        {
            return Err(InvalidPolicy(
                "max-retry-interval must not be below first-retry-interval",
            ));
        }
        Ok(())
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }

    /// Reads a stored policy; `None` (no retry) if it does not parse.
    pub fn from_json(json: &str) -> Option<Self> {
        serde_json::from_str(json).ok()
    }

    /// The wait before the next attempt after `failures` attempts failed
    /// (the first started at `first_ms`), or `None` when the task has to
    /// fail: attempts used up, or the retry timeout would pass first.
    pub fn next_delay(&self, failures: u32, first_ms: i64, now_ms: i64) -> Option<i64> {
        if failures >= self.max_attempts {
            return None;
        }
        let exponent = i32::try_from(failures.saturating_sub(1)).unwrap_or(i32::MAX);
        let mut delay =
            self.first_retry_interval_ms as f64 * self.backoff_coefficient.powi(exponent);
        if let Some(max) = self.max_retry_interval_ms {
            delay = delay.min(max as f64);
        }
        // Saturates at i64::MAX for absurd intervals.
        let delay = delay.max(0.0).min(i64::MAX as f64 / 2.0) as i64;
        if let Some(timeout) = self.retry_timeout_ms {
            let deadline = first_ms.saturating_add(i64::try_from(timeout).unwrap_or(i64::MAX));
            if now_ms.saturating_add(delay) > deadline {
                return None;
            }
        }
        Some(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            first_retry_interval_ms: 100,
            backoff_coefficient: 2.0,
            max_retry_interval_ms: Some(300),
            retry_timeout_ms: None,
        }
    }

    #[test]
    fn backs_off_up_to_the_maximum_then_gives_up() {
        let p = policy(5);
        let delays: Vec<_> = (1..=5).map(|f| p.next_delay(f, 0, 0)).collect();
        assert_eq!(delays, [Some(100), Some(200), Some(300), Some(300), None]);
        assert_eq!(policy(1).next_delay(1, 0, 0), None);
    }

    #[test]
    fn the_retry_timeout_stops_retries() {
        let p = RetryPolicy {
            retry_timeout_ms: Some(1_000),
            ..policy(10)
        };
        assert_eq!(p.next_delay(1, 0, 800), Some(100));
        assert_eq!(p.next_delay(1, 0, 950), None);
    }

    #[test]
    fn bad_policies_are_refused_and_stored_ones_round_trip() {
        assert!(policy(0).validate().is_err());
        let mut p = policy(3);
        p.backoff_coefficient = 0.5;
        assert!(p.validate().is_err());
        p.backoff_coefficient = f64::NAN;
        assert!(p.validate().is_err());
        let p = policy(3);
        assert_eq!(RetryPolicy::from_json(&p.to_json()), Some(p));
    }
}
