//! Conversions between protobuf well-known types and their Rust/JSON forms.

use prost_types::value::Kind;
use prost_types::{ListValue, Struct, Value};

/// A `google.protobuf.Value` as JSON. Non-finite numbers, which JSON cannot hold, become null.
pub fn value_to_json(v: &Value) -> serde_json::Value {
    match &v.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::BoolValue(b)) => serde_json::Value::Bool(*b),
        Some(Kind::NumberValue(n)) => number_to_json(*n),
        Some(Kind::StringValue(s)) => serde_json::Value::String(s.clone()),
        Some(Kind::ListValue(l)) => serde_json::Value::Array(l.values.iter().map(value_to_json).collect()),
        Some(Kind::StructValue(s)) => struct_to_json(s),
    }
}

/// Integral numbers stay integers in JSON, so `{"amount": 100}` round-trips as written.
fn number_to_json(n: f64) -> serde_json::Value {
    if n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 {
        serde_json::Value::from(n as i64)
    } else {
        serde_json::Number::from_f64(n).map_or(serde_json::Value::Null, serde_json::Value::Number)
    }
}

pub fn struct_to_json(s: &Struct) -> serde_json::Value {
    serde_json::Value::Object(s.fields.iter().map(|(k, v)| (k.clone(), value_to_json(v))).collect())
}

pub fn json_to_value(j: &serde_json::Value) -> Value {
    let kind = match j {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(*b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        serde_json::Value::String(s) => Kind::StringValue(s.clone()),
        serde_json::Value::Array(a) => Kind::ListValue(ListValue { values: a.iter().map(json_to_value).collect() }),
        serde_json::Value::Object(_) => Kind::StructValue(json_to_struct(j).unwrap_or_default()),
    };
    Value { kind: Some(kind) }
}

/// A JSON object as a `Struct`; `None` for any other JSON value.
pub fn json_to_struct(j: &serde_json::Value) -> Option<Struct> {
    let obj = j.as_object()?;
    Some(Struct { fields: obj.iter().map(|(k, v)| (k.clone(), json_to_value(v))).collect() })
}

/// A `RetryPolicy` message as the domain policy; `None` when no policy is set.
pub fn parse_retry_policy(
    p: Option<&crate::proto::RetryPolicy>,
) -> Result<Option<crate::domain::retry::RetryPolicy>, String> {
    use crate::domain::retry::RetryPolicy;
    use crate::proto::retry_policy::Policy;
    use crate::timeutil::from_duration;
    let Some(policy) = p.and_then(|p| p.policy.as_ref()) else { return Ok(None) };
    let duration = |d: Option<&prost_types::Duration>, what: &str| {
        d.map_or(Ok(std::time::Duration::ZERO), |d| {
            from_duration(d).ok_or_else(|| format!("{what} must not be negative"))
        })
    };
    Ok(Some(match policy {
        Policy::Schedule(s) => {
            let delays = s.delays.iter().map(|d| duration(Some(d), "delays")).collect::<Result<Vec<_>, _>>()?;
            RetryPolicy::schedule(&delays)?
        }
        Policy::Exponential(e) => RetryPolicy::exponential(
            e.max_attempts,
            duration(e.initial_backoff.as_ref(), "initial_backoff")?,
            e.multiplier,
            duration(e.max_backoff.as_ref(), "max_backoff")?,
        )?,
    }))
}

pub fn retry_policy_proto(p: &crate::domain::retry::RetryPolicy) -> crate::proto::RetryPolicy {
    use crate::domain::retry::RetryPolicy;
    use crate::proto::retry_policy::Policy;
    use crate::timeutil::to_duration;
    use std::time::Duration;
    let policy = match p {
        RetryPolicy::Schedule { delays_ms } => Policy::Schedule(crate::proto::ScheduleRetryPolicy {
            delays: delays_ms.iter().map(|ms| to_duration(Duration::from_millis(*ms))).collect(),
        }),
        RetryPolicy::Exponential { max_attempts, initial_backoff_ms, multiplier, max_backoff_ms } => {
            Policy::Exponential(crate::proto::ExponentialRetryPolicy {
                max_attempts: *max_attempts,
                initial_backoff: Some(to_duration(Duration::from_millis(*initial_backoff_ms))),
                multiplier: *multiplier,
                max_backoff: Some(to_duration(Duration::from_millis(*max_backoff_ms))),
            })
        }
    };
    crate::proto::RetryPolicy { policy: Some(policy) }
}

pub fn rate_limit_proto(r: Option<crate::domain::RateLimit>) -> Option<crate::proto::RateLimit> {
    r.map(|r| crate::proto::RateLimit { per_second: r.per_second, burst: r.burst })
}

pub fn parse_rate_limit(r: Option<&crate::proto::RateLimit>) -> Result<Option<crate::domain::RateLimit>, &'static str> {
    r.map_or(Ok(None), |r| crate::domain::RateLimit::parse(r.per_second, r.burst))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips() {
        let j = serde_json::json!({"a": 1, "b": [true, null, "x", 2.5], "c": {"d": -3}});
        assert_eq!(value_to_json(&json_to_value(&j)), j);
        assert_eq!(struct_to_json(&json_to_struct(&j).unwrap()), j);
    }
}
