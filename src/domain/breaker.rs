//! The circuit breaker and auto-disable, as pure state transitions (DESIGN §5).
//!
//! After [`OPEN_AFTER`] consecutive failed attempts the circuit opens: the destination's
//! deliveries are held, not failed, so an outage does not burn their retries. After a cool-down
//! one probe goes through; a success closes the circuit, a failure opens it again for twice as
//! long (30 s doubling to 10 min). A destination failing continuously for the disable span
//! (3 days by default) is disabled until resumed.

use std::time::Duration;

use crate::timeutil::Micros;

pub const OPEN_AFTER: i64 = 10;
pub const FIRST_COOL_DOWN: Duration = Duration::from_secs(30);
pub const MAX_COOL_DOWN: Duration = Duration::from_secs(600);
pub const DEFAULT_DISABLE_AFTER: Duration = Duration::from_secs(3 * 24 * 3600);

/// What the breaker tracks of a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub consecutive_failures: i64,
    pub failing_since: Option<Micros>,
    pub circuit_open: bool,
    pub circuit_retry_time: Option<Micros>,
    pub disabled: bool,
}

/// What changed, for the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    None,
    CircuitOpened { retry_time: Micros },
    Disabled { reason: String },
}

/// The cool-down after the `failures`-th consecutive failure (the circuit opens at the 10th).
pub fn cool_down(failures: i64) -> Duration {
    let doublings = (failures - OPEN_AFTER).clamp(0, 10) as u32;
    (FIRST_COOL_DOWN * 2u32.pow(doublings)).min(MAX_COOL_DOWN)
}

/// The health after a failed attempt at `now`.
pub fn after_failure(h: &Health, now: Micros, disable_after: Duration) -> (Health, Transition) {
    let failures = h.consecutive_failures + 1;
    let failing_since = h.failing_since.unwrap_or(now);
    let mut next = Health { consecutive_failures: failures, failing_since: Some(failing_since), ..h.clone() };
    if !h.disabled && now - failing_since >= disable_after.as_micros() as i64 {
        next.disabled = true;
        let days = disable_after.as_secs_f64() / 86_400.0;
        return (next, Transition::Disabled { reason: format!("failing continuously for {days:.1} days") });
    }
    if failures >= OPEN_AFTER {
        let retry_time = now + cool_down(failures).as_micros() as i64;
        next.circuit_open = true;
        next.circuit_retry_time = Some(retry_time);
        return (next, Transition::CircuitOpened { retry_time });
    }
    (next, Transition::None)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    fn healthy() -> Health {
        Health {
            consecutive_failures: 0,
            failing_since: None,
            circuit_open: false,
            circuit_retry_time: None,
            disabled: false,
        }
    }

    #[test]
    fn opens_after_ten_failures_with_doubling_cool_downs() {
        let mut h = healthy();
        let mut t: Transition;
        for i in 0..9 {
            (h, t) = after_failure(&h, i * S, DEFAULT_DISABLE_AFTER);
            assert_eq!(t, Transition::None);
        }
        assert!(!h.circuit_open);
        (h, t) = after_failure(&h, 10 * S, DEFAULT_DISABLE_AFTER);
        assert_eq!(t, Transition::CircuitOpened { retry_time: 40 * S });
        assert_eq!(h.failing_since, Some(0));
        // A failed probe opens it for twice as long, up to ten minutes.
        (_, t) = after_failure(&h, 100 * S, DEFAULT_DISABLE_AFTER);
        assert_eq!(t, Transition::CircuitOpened { retry_time: 160 * S });
        assert_eq!(cool_down(30), MAX_COOL_DOWN);
    }

    #[test]
    fn disables_after_the_span() {
        let h = Health { consecutive_failures: 500, failing_since: Some(0), ..healthy() };
        let (h, t) = after_failure(&h, 3 * 24 * 3600 * S, DEFAULT_DISABLE_AFTER);
        assert!(h.disabled);
        assert!(matches!(t, Transition::Disabled { .. }));
    }
}
