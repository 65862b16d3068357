//! What one attempt means for its delivery (DESIGN §5). Pure: no clock, no randomness of its
//! own, no I/O.
//!
//! | attempt | verdict |
//! |---|---|
//! | 2xx, body complete | succeeded |
//! | timeout, connect, DNS, TLS errors (also a 2xx whose body broke off) | retried |
//! | `408`, `425`, `429`, `5xx` | retried |
//! | `410 Gone` | failed, and the destination disabled |
//! | `3xx` (not followed), other `4xx`, any other status | failed at once |
//! | forbidden address | failed at once: a refusal by Loft's own policy, not a receiver fault |
//! | body too large | failed at once: the same bytes are too large on a retry |
//! | request not built (invalid URL or header: `CONNECT`, "request not sent") | retried, like any `CONNECT` |
//!
//! A retry waits the policy's delay for that attempt with ±20 % jitter, or the receiver's
//! `Retry-After` on `429`/`503`, capped at the policy's longest delay; with no attempts left
//! the delivery fails.

use std::time::{Duration, SystemTime};

use rand::Rng;

use super::sender::{AttemptRecord, ErrorKind};
use crate::domain::retry::RetryPolicy;

/// How far a computed delay is randomly stretched or shrunk, so that deliveries that failed
/// together do not all come back at once.
pub const JITTER: f64 = 0.2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Succeeded,
    Retry { after: Duration },
    Fail,
    FailAndDisable { reason: String },
}

/// The verdict on attempt number `attempt_number` (1-based) of a delivery under `policy`.
pub fn judge(
    record: &AttemptRecord,
    attempt_number: u32,
    policy: &RetryPolicy,
    now: SystemTime,
    rng: &mut impl Rng,
) -> Verdict {
    match class(record) {
        Class::Success => Verdict::Succeeded,
        Class::Permanent => Verdict::Fail,
        Class::Gone => Verdict::FailAndDisable { reason: "the receiver answered 410 Gone".to_owned() },
        Class::Transient => {
            debug_assert!(attempt_number >= 1, "attempt numbers start at 1");
            let Some(delay) = policy.delay_after(attempt_number.max(1)) else {
                return Verdict::Fail;
            };
            let asked = match record.status {
                Some(429 | 503) => retry_after(&record.response_headers, now),
                _ => None,
            };
            let after = match asked {
                Some(asked) => asked.min(policy.max_backoff()),
                None => delay.mul_f64(rng.gen_range(1.0 - JITTER..=1.0 + JITTER)),
            };
            Verdict::Retry { after }
        }
    }
}

/// How long a `Retry-After` header (the first, if several) asks to wait: delay-seconds or an
/// HTTP-date, a date in the past meaning now. `None` when absent or malformed.
pub fn retry_after(headers: &[(String, String)], now: SystemTime) -> Option<Duration> {
    let (_, value) = headers.iter().find(|(name, _)| name.eq_ignore_ascii_case("retry-after"))?;
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for a u64 still means "very long"; the caller caps it.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

enum Class {
    Success,
    Transient,
    Permanent,
    Gone,
}

fn class(record: &AttemptRecord) -> Class {
    if let Some(error) = &record.error {
        match error.kind {
            // A broken body after a 2xx head lands here too: the receiver's answer never fully
            // arrived, and receivers de-duplicate by `webhook-id`.
            ErrorKind::Timeout | ErrorKind::Connect | ErrorKind::Dns | ErrorKind::Tls => return Class::Transient,
            ErrorKind::ForbiddenAddress | ErrorKind::BodyTooLarge => return Class::Permanent,
            ErrorKind::Redirect | ErrorKind::HttpStatus => {}
        }
    }
    match record.status {
        Some(200..=299) => Class::Success,
        Some(410) => Class::Gone,
        Some(408 | 425 | 429 | 500..=599) => Class::Transient,
        Some(_) => Class::Permanent,
        // A record with neither a status nor an error is not produced by the sender; trying
        // again is the side of at-least-once that loses nothing.
        None => Class::Transient,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::sender::AttemptError;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn record(status: Option<u16>, error: Option<ErrorKind>, headers: &[(&str, &str)]) -> AttemptRecord {
        AttemptRecord {
            request_headers: Vec::new(),
            status,
            response_headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
            response_body: Vec::new(),
            response_body_truncated: false,
            error: error.map(|kind| AttemptError { kind, message: "test".to_owned() }),
            started: SystemTime::UNIX_EPOCH,
            duration: Duration::ZERO,
        }
    }

    fn status(code: u16) -> AttemptRecord {
        let kind = match code {
            200..=299 => None,
            300..=399 => Some(ErrorKind::Redirect),
            _ => Some(ErrorKind::HttpStatus),
        };
        record(Some(code), kind, &[])
    }

    fn policy() -> RetryPolicy {
        RetryPolicy::schedule(&[Duration::from_secs(10), Duration::from_secs(100), Duration::from_secs(1000)]).unwrap()
    }

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn judge_first(record: &AttemptRecord) -> Verdict {
        judge(record, 1, &policy(), now(), &mut StdRng::seed_from_u64(7))
    }

    fn is_retry(v: &Verdict) -> bool {
        matches!(v, Verdict::Retry { .. })
    }

    #[test]
    fn every_status_class() {
        for code in [200, 201, 202, 204, 299] {
            assert_eq!(judge_first(&status(code)), Verdict::Succeeded, "{code}");
        }
        for code in [408, 425, 429, 500, 502, 503, 504, 599] {
            assert!(is_retry(&judge_first(&status(code))), "{code}");
        }
        for code in [300, 301, 302, 304, 307, 308, 400, 401, 403, 404, 405, 409, 413, 422, 451, 499, 600, 999] {
            assert_eq!(judge_first(&status(code)), Verdict::Fail, "{code}");
        }
        assert_eq!(
            judge_first(&status(410)),
            Verdict::FailAndDisable { reason: "the receiver answered 410 Gone".to_owned() }
        );
    }

    #[test]
    fn every_error_kind() {
        for kind in [ErrorKind::Timeout, ErrorKind::Connect, ErrorKind::Dns, ErrorKind::Tls] {
            assert!(is_retry(&judge_first(&record(None, Some(kind), &[]))), "{kind}");
        }
        for kind in [ErrorKind::ForbiddenAddress, ErrorKind::BodyTooLarge] {
            assert_eq!(judge_first(&record(None, Some(kind), &[])), Verdict::Fail, "{kind}");
        }
    }

    #[test]
    fn a_body_broken_after_a_2xx_head_is_retried() {
        assert!(is_retry(&judge_first(&record(Some(200), Some(ErrorKind::Connect), &[]))));
        assert!(is_retry(&judge_first(&record(Some(200), Some(ErrorKind::Timeout), &[]))));
    }

    #[test]
    fn no_attempts_left_fails() {
        let p = policy();
        assert_eq!(p.max_attempts(), 4);
        let mut rng = StdRng::seed_from_u64(1);
        assert!(is_retry(&judge(&status(500), 3, &p, now(), &mut rng)));
        assert_eq!(judge(&status(500), 4, &p, now(), &mut rng), Verdict::Fail);
        assert_eq!(judge(&record(None, Some(ErrorKind::Timeout), &[]), 4, &p, now(), &mut rng), Verdict::Fail);
        // 410 disables whatever the attempt number; success is success on the last attempt.
        assert!(matches!(judge(&status(410), 4, &p, now(), &mut rng), Verdict::FailAndDisable { .. }));
        assert_eq!(judge(&status(200), 4, &p, now(), &mut rng), Verdict::Succeeded);
        let single = RetryPolicy::schedule(&[]).unwrap();
        assert_eq!(judge(&status(503), 1, &single, now(), &mut rng), Verdict::Fail);
    }

    #[test]
    fn jitter_stays_within_twenty_percent_of_each_delay() {
        let p = RetryPolicy::default();
        let mut rng = StdRng::seed_from_u64(42);
        for attempt in 1..p.max_attempts() {
            let base = p.delay_after(attempt).unwrap();
            let (mut lo, mut hi) = (Duration::MAX, Duration::ZERO);
            for _ in 0..2000 {
                let Verdict::Retry { after } = judge(&status(500), attempt, &p, now(), &mut rng) else {
                    panic!("attempt {attempt} not retried");
                };
                assert!(after >= base.mul_f64(0.8) && after <= base.mul_f64(1.2), "{attempt}: {after:?} vs {base:?}");
                lo = lo.min(after);
                hi = hi.max(after);
            }
            // The jitter really spreads: both ends of the band are reached.
            assert!(lo < base.mul_f64(0.85) && hi > base.mul_f64(1.15), "{attempt}: {lo:?}..{hi:?}");
        }
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let h = |v: &str| vec![("Retry-After".to_owned(), v.to_owned())];
        assert_eq!(retry_after(&h("120"), now()), Some(Duration::from_secs(120)));
        assert_eq!(retry_after(&h(" 0 "), now()), Some(Duration::ZERO));
        assert_eq!(retry_after(&h("99999999999999999999999"), now()), Some(Duration::from_secs(u64::MAX)));
        let in_90s = httpdate::fmt_http_date(now() + Duration::from_secs(90));
        assert_eq!(retry_after(&h(&in_90s), now()), Some(Duration::from_secs(90)));
        let past = httpdate::fmt_http_date(now() - Duration::from_secs(90));
        assert_eq!(retry_after(&h(&past), now()), Some(Duration::ZERO));
        // The obsolete RFC 850 and asctime forms are HTTP-dates too.
        assert_eq!(retry_after(&h("Tuesday, 14-Nov-23 22:13:20 GMT"), now()), Some(Duration::ZERO));
        assert_eq!(retry_after(&h("Tue Nov 14 22:14:50 2023"), now()), Some(Duration::from_secs(90)));
        for bad in ["", "-1", "1.5", "soon", "120s", "Tue, 14 Nov 2023"] {
            assert_eq!(retry_after(&h(bad), now()), None, "{bad:?}");
        }
        assert_eq!(retry_after(&[("retry-after".to_owned(), "7".to_owned())], now()), Some(Duration::from_secs(7)));
        let two = vec![("retry-after".to_owned(), "7".to_owned()), ("retry-after".to_owned(), "9".to_owned())];
        assert_eq!(retry_after(&two, now()), Some(Duration::from_secs(7)));
        assert_eq!(retry_after(&[], now()), None);
    }

    #[test]
    fn retry_after_is_honoured_on_429_and_503_and_capped() {
        let p = policy();
        let limited = |code: u16, value: &str| {
            record(Some(code), Some(ErrorKind::HttpStatus), &[("retry-after", value), ("content-type", "text/plain")])
        };
        // Replaces the jittered delay exactly, also when shorter.
        assert_eq!(judge_first(&limited(429, "3")), Verdict::Retry { after: Duration::from_secs(3) });
        assert_eq!(judge_first(&limited(503, "250")), Verdict::Retry { after: Duration::from_secs(250) });
        let date = httpdate::fmt_http_date(now() + Duration::from_secs(600));
        assert_eq!(judge_first(&limited(503, &date)), Verdict::Retry { after: Duration::from_secs(600) });
        // Capped at the policy's longest delay (1000 s).
        assert_eq!(judge_first(&limited(429, "86400")), Verdict::Retry { after: Duration::from_secs(1000) });
        let far = httpdate::fmt_http_date(now() + Duration::from_secs(86_400));
        assert_eq!(judge_first(&limited(503, &far)), Verdict::Retry { after: Duration::from_secs(1000) });
        // Ignored on other statuses, and when malformed: the jittered policy delay applies.
        for r in [limited(500, "3"), limited(408, "3"), limited(429, "later")] {
            let Verdict::Retry { after } = judge_first(&r) else { panic!("not retried") };
            assert!(after >= Duration::from_secs(8) && after <= Duration::from_secs(12), "{after:?}");
        }
        // No attempts left: Retry-After does not add one.
        let mut rng = StdRng::seed_from_u64(3);
        assert_eq!(judge(&limited(429, "3"), 4, &p, now(), &mut rng), Verdict::Fail);
    }
}
