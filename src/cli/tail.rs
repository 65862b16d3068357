//! `loft tail`: the feed on stdout, one line per item, human-readable or proto3 JSON.

use std::io::Write as _;
use std::process::ExitCode;

use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, SerializeOptions};

use super::{Follower, format_time, is_heartbeat, stop_requested};
use crate::config::{ActivityKindArg, TailArgs};
use crate::proto::watch_events_response::Activity;
use crate::proto::{
    ActivityKind, AttemptOutcome, ChangeAction, CircuitState, DestinationState, WatchEventsRequest, WatchEventsResponse,
};

pub async fn run(args: TailArgs) -> anyhow::Result<ExitCode> {
    let json = if args.json { Some(JsonPrinter::new()?) } else { None };
    let request = WatchEventsRequest {
        project_id: args.server.project.clone().unwrap_or_default(),
        source_ids: args.sources,
        destination_ids: args.destinations,
        event_types: args.types,
        kinds: args.kinds.iter().map(|k| kind(*k) as i32).collect(),
        start: None,
        include_payload: false,
    };
    let mut follower = Follower::new(&args.server, request, args.after)?;
    let stop = stop_requested();
    tokio::pin!(stop);
    let mut out = std::io::stdout().lock();
    loop {
        let item = tokio::select! {
            _ = &mut stop => return Ok(ExitCode::SUCCESS),
            item = follower.next() => item?,
        };
        let line = match &json {
            Some(printer) => printer.line(&item)?,
            None if is_heartbeat(&item) => continue,
            None => human_line(&item),
        };
        // A closed pipe (`loft tail | head`) ends the command quietly.
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            return Ok(ExitCode::SUCCESS);
        }
    }
}

fn kind(k: ActivityKindArg) -> ActivityKind {
    match k {
        ActivityKindArg::EventReceived => ActivityKind::EventReceived,
        ActivityKindArg::AttemptFinished => ActivityKind::AttemptFinished,
        ActivityKindArg::DeliverySucceeded => ActivityKind::DeliverySucceeded,
        ActivityKindArg::DeliveryFailed => ActivityKind::DeliveryFailed,
        ActivityKindArg::DestinationStateChanged => ActivityKind::DestinationStateChanged,
        ActivityKindArg::ResourceChanged => ActivityKind::ResourceChanged,
    }
}

/// Encodes responses in the proto3 JSON mapping through reflection over the compiled
/// descriptors: field names in lowerCamelCase, enums by name, 64-bit integers and bytes as
/// strings, timestamps in RFC 3339, default values omitted.
pub struct JsonPrinter {
    descriptor: MessageDescriptor,
    options: SerializeOptions,
}

impl JsonPrinter {
    pub fn new() -> anyhow::Result<Self> {
        let pool = DescriptorPool::decode(crate::proto::FILE_DESCRIPTOR_SET)?;
        let descriptor = pool
            .get_message_by_name("loft.v1.WatchEventsResponse")
            .ok_or_else(|| anyhow::anyhow!("descriptor set lacks loft.v1.WatchEventsResponse"))?;
        Ok(Self { descriptor, options: SerializeOptions::new() })
    }

    pub fn line(&self, item: &WatchEventsResponse) -> anyhow::Result<String> {
        let message = DynamicMessage::decode(self.descriptor.clone(), item.encode_to_vec().as_slice())?;
        let mut out = Vec::new();
        let mut serializer = serde_json::Serializer::new(&mut out);
        message.serialize_with_options(&mut serializer, &self.options)?;
        Ok(String::from_utf8(out)?)
    }
}

/// `TIME  kind  ids and details`, columns separated by two spaces.
pub fn human_line(item: &WatchEventsResponse) -> String {
    let time = format_time(item.time.as_ref());
    let (kind, detail) = match &item.activity {
        Some(Activity::EventReceived(e)) => {
            let event = e.event.clone().unwrap_or_default();
            let mut detail = format!("{}  type={}", event.id, or_dash(&event.r#type));
            if !event.source_id.is_empty() {
                detail.push_str(&format!("  source={}", event.source_id));
            }
            if !event.method.is_empty() {
                detail.push_str(&format!("  {} /{}", event.method, event.path.trim_start_matches('/')));
            }
            detail.push_str(&format!("  {} B", event.body_size));
            ("event.received", detail)
        }
        Some(Activity::AttemptFinished(a)) => {
            let attempt = a.attempt.clone().unwrap_or_default();
            let result = match (&attempt.response, &attempt.error) {
                (Some(r), _) if attempt.outcome == AttemptOutcome::Succeeded as i32 => r.status_code.to_string(),
                (_, Some(e)) if !e.message.is_empty() => format!("failed: {}", e.message),
                (Some(r), _) => format!("failed: {}", r.status_code),
                _ => "failed".to_owned(),
            };
            let millis = attempt.duration.map(|d| d.seconds * 1000 + i64::from(d.nanos) / 1_000_000).unwrap_or(0);
            let detail = format!(
                "{}  delivery={}  event={}  destination={}  #{}  {result}  {millis}ms",
                attempt.id, attempt.delivery_id, attempt.event_id, attempt.destination_id, attempt.number
            );
            ("attempt.finished", detail)
        }
        Some(Activity::DeliverySucceeded(d)) => {
            let d = d.delivery.clone().unwrap_or_default();
            let detail = format!(
                "{}  event={}  destination={}  attempts={}  status={}",
                d.id, d.event_id, d.destination_id, d.attempt_count, d.last_status_code
            );
            ("delivery.succeeded", detail)
        }
        Some(Activity::DeliveryFailed(d)) => {
            let d = d.delivery.clone().unwrap_or_default();
            let mut detail = format!(
                "{}  event={}  destination={}  attempts={}",
                d.id, d.event_id, d.destination_id, d.attempt_count
            );
            if d.last_status_code != 0 {
                detail.push_str(&format!("  status={}", d.last_status_code));
            }
            if !d.last_error.is_empty() {
                detail.push_str(&format!("  error={:?}", d.last_error));
            }
            ("delivery.failed", detail)
        }
        Some(Activity::DestinationStateChanged(c)) => {
            let detail = format!(
                "{}  state={}  circuit={}  reason={:?}",
                c.destination_id,
                enum_name(DestinationState::try_from(c.state).ok()),
                enum_name(CircuitState::try_from(c.circuit).ok()),
                c.reason
            );
            ("destination.state_changed", detail)
        }
        Some(Activity::ResourceChanged(r)) => {
            let action = enum_name(ChangeAction::try_from(r.action).ok());
            let mut detail = format!("{action}  {}  {}", r.resource_type, r.resource_id);
            if !r.actor_key_id.is_empty() {
                detail.push_str(&format!("  by={}", r.actor_key_id));
            }
            if !r.changed_fields.is_empty() {
                detail.push_str(&format!("  fields={}", r.changed_fields.join(",")));
            }
            ("resource.changed", detail)
        }
        Some(Activity::Heartbeat(_)) => ("heartbeat", String::new()),
        None => ("unknown", String::new()),
    };
    format!("{time}  {kind:<26}  {detail}").trim_end().to_owned()
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

/// An enum value's name without its type prefix, lower case: `DESTINATION_STATE_PAUSED` → `paused`.
fn enum_name<E: EnumName>(value: Option<E>) -> String {
    value.map_or_else(|| "unknown".to_owned(), |v| v.short_name())
}

trait EnumName {
    fn short_name(&self) -> String;
}

macro_rules! enum_names {
    ($($ty:ty => $prefix:literal),* $(,)?) => {
        $(impl EnumName for $ty {
            fn short_name(&self) -> String {
                let full = self.as_str_name();
                full.strip_prefix($prefix).unwrap_or(full).to_ascii_lowercase()
            }
        })*
    };
}

enum_names!(
    DestinationState => "DESTINATION_STATE_",
    CircuitState => "CIRCUIT_STATE_",
    ChangeAction => "CHANGE_ACTION_",
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Event, EventReceived, Heartbeat};

    #[test]
    fn json_lines_use_the_proto3_mapping() {
        let item = WatchEventsResponse {
            cursor: "c1".into(),
            time: Some(prost_types::Timestamp { seconds: 1_700_000_000, nanos: 0 }),
            activity: Some(Activity::EventReceived(EventReceived {
                event: Some(Event {
                    id: "evt_1".into(),
                    source_id: "src_1".into(),
                    body: b"{}".to_vec(),
                    body_size: 2,
                    ..Default::default()
                }),
            })),
        };
        let line = JsonPrinter::new().unwrap().line(&item).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["cursor"], "c1");
        assert_eq!(v["time"], "2023-11-14T22:13:20Z");
        assert_eq!(v["eventReceived"]["event"]["sourceId"], "src_1");
        assert_eq!(v["eventReceived"]["event"]["body"], "e30=");
        // uint64 is a string in proto3 JSON.
        assert_eq!(v["eventReceived"]["event"]["bodySize"], "2");

        let beat =
            WatchEventsResponse { cursor: "c2".into(), time: None, activity: Some(Activity::Heartbeat(Heartbeat {})) };
        let line = JsonPrinter::new().unwrap().line(&beat).unwrap();
        assert_eq!(line, r#"{"cursor":"c2","heartbeat":{}}"#);
    }

    #[test]
    fn human_lines_name_the_kind_and_ids() {
        let item = WatchEventsResponse {
            cursor: "c1".into(),
            time: Some(prost_types::Timestamp { seconds: 1_700_000_000, nanos: 5_000_000 }),
            activity: Some(Activity::EventReceived(EventReceived {
                event: Some(Event {
                    id: "evt_1".into(),
                    r#type: "invoice.paid".into(),
                    source_id: "src_1".into(),
                    method: "POST".into(),
                    path: "/orders".into(),
                    body_size: 2,
                    ..Default::default()
                }),
            })),
        };
        assert_eq!(
            human_line(&item),
            "2023-11-14T22:13:20.005Z  event.received              evt_1  type=invoice.paid  source=src_1  POST /orders  2 B"
        );
    }
}
