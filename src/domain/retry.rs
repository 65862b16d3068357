//! Retry policies: an explicit list of delays, or exponential backoff.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The most attempts any policy may make, and the longest delay between two.
pub const MAX_ATTEMPTS: u32 = 50;
pub const MAX_DELAY: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RetryPolicy {
    /// Delay before each retry; attempts = delays + 1.
    Schedule {
        delays_ms: Vec<u64>,
    },
    Exponential {
        max_attempts: u32,
        initial_backoff_ms: u64,
        multiplier: f64,
        max_backoff_ms: u64,
    },
}

impl Default for RetryPolicy {
    /// The Standard Webhooks schedule: at once, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
    fn default() -> Self {
        const S: u64 = 1000;
        RetryPolicy::Schedule {
            delays_ms: vec![5 * S, 300 * S, 1800 * S, 7200 * S, 18_000 * S, 36_000 * S, 36_000 * S],
        }
    }
}

impl RetryPolicy {
    pub fn schedule(delays: &[Duration]) -> Result<Self, String> {
        if delays.len() as u32 >= MAX_ATTEMPTS {
            return Err(format!("at most {} delays", MAX_ATTEMPTS - 1));
        }
        if let Some(i) = delays.iter().position(|d| *d > MAX_DELAY) {
            return Err(format!("delays[{i}] exceeds 7 days"));
        }
        Ok(RetryPolicy::Schedule { delays_ms: delays.iter().map(|d| d.as_millis() as u64).collect() })
    }

    pub fn exponential(max_attempts: u32, initial: Duration, multiplier: f64, max: Duration) -> Result<Self, String> {
        if max_attempts == 0 || max_attempts > MAX_ATTEMPTS {
            return Err(format!("max_attempts must be between 1 and {MAX_ATTEMPTS}"));
        }
        if initial.is_zero() {
            return Err("initial_backoff must be positive".into());
        }
        if !(1.0..=10.0).contains(&multiplier) {
            return Err("multiplier must be between 1 and 10".into());
        }
        if max < initial || max > MAX_DELAY {
            return Err("max_backoff must be at least initial_backoff and at most 7 days".into());
        }
        Ok(RetryPolicy::Exponential {
            max_attempts,
            initial_backoff_ms: initial.as_millis() as u64,
            multiplier,
            max_backoff_ms: max.as_millis() as u64,
        })
    }

    pub fn max_attempts(&self) -> u32 {
        match self {
            RetryPolicy::Schedule { delays_ms } => delays_ms.len() as u32 + 1,
            RetryPolicy::Exponential { max_attempts, .. } => *max_attempts,
        }
    }

    /// The longest delay this policy waits; caps a receiver's `Retry-After`.
    pub fn max_backoff(&self) -> Duration {
        Duration::from_millis(match self {
            RetryPolicy::Schedule { delays_ms } => delays_ms.iter().copied().max().unwrap_or(0),
            RetryPolicy::Exponential { max_backoff_ms, .. } => *max_backoff_ms,
        })
    }

    /// The delay (before jitter) after failed attempt number `attempt` (1-based), or `None`
    /// when that was the last attempt.
    pub fn delay_after(&self, attempt: u32) -> Option<Duration> {
        if attempt >= self.max_attempts() {
            return None;
        }
        Some(match self {
            RetryPolicy::Schedule { delays_ms } => Duration::from_millis(delays_ms[attempt as usize - 1]),
            RetryPolicy::Exponential { initial_backoff_ms, multiplier, max_backoff_ms, .. } => {
                let ms = *initial_backoff_ms as f64 * multiplier.powi(attempt as i32 - 1);
                Duration::from_millis(ms.min(*max_backoff_ms as f64) as u64)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_standard_webhooks() {
        let p = RetryPolicy::default();
        assert_eq!(p.max_attempts(), 8);
        assert_eq!(p.delay_after(1), Some(Duration::from_secs(5)));
        assert_eq!(p.delay_after(7), Some(Duration::from_secs(36_000)));
        assert_eq!(p.delay_after(8), None);
    }

    #[test]
    fn exponential_caps() {
        let p = RetryPolicy::exponential(5, Duration::from_secs(1), 2.0, Duration::from_secs(5)).unwrap();
        let d: Vec<_> = (1..=5).map(|a| p.delay_after(a)).collect();
        assert_eq!(
            d,
            vec![
                Some(Duration::from_secs(1)),
                Some(Duration::from_secs(2)),
                Some(Duration::from_secs(4)),
                Some(Duration::from_secs(5)),
                None
            ]
        );
        assert!(RetryPolicy::exponential(0, Duration::from_secs(1), 2.0, Duration::from_secs(5)).is_err());
        assert!(RetryPolicy::exponential(3, Duration::from_secs(9), 2.0, Duration::from_secs(5)).is_err());
    }
}
