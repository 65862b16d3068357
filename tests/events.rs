//! Publishing: what is stored, routed and refused, on SQLite and PostgreSQL.

mod common;

use common::{Clients, TestServer, assert_error, violation_fields};
use loft::proto as pb;
use prost_types::value::Kind;
use tonic::Code;

on_both_backends!(
    publish_stores_and_routes,
    idempotency_keys_return_the_first_event,
    catalog_and_schemas_are_enforced,
    publish_validation_stores_nothing,
    event_reads_filter_and_isolate,
    retention_deletes_what_is_past_it,
    templates_render_against_stored_events,
);

struct Setup {
    c: Clients,
    project: String,
    destination: String,
}

async fn setup(server: &TestServer, strict: bool) -> Setup {
    let admin = server.admin().await;
    let project = admin
        .projects
        .clone()
        .create_project(pb::CreateProjectRequest {
            project: Some(pb::Project { name: "events".into(), strict_event_types: strict, ..Default::default() }),
        })
        .await
        .unwrap()
        .into_inner()
        .project
        .unwrap()
        .id;
    let key = pb::ApiKey { project_id: project.clone(), role: pb::ApiKeyRole::Editor as i32, ..Default::default() };
    let secret = admin
        .keys
        .clone()
        .create_api_key(pb::CreateApiKeyRequest { api_key: Some(key) })
        .await
        .unwrap()
        .into_inner()
        .secret;
    let c = server.clients(&secret).await;
    let destination = c
        .destinations
        .clone()
        .create_destination(pb::CreateDestinationRequest {
            destination: Some(pb::Destination { url: "https://example.com/hook".into(), ..Default::default() }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .destination
        .unwrap()
        .id;
    // Held, so the deliveries these tests inspect stay PENDING (delivery has its own tests).
    c.destinations
        .clone()
        .pause_destination(pb::PauseDestinationRequest { destination_id: destination.clone(), ..Default::default() })
        .await
        .unwrap();
    Setup { c, project, destination }
}

fn json(v: serde_json::Value) -> Option<pb::publish_event_request::Payload> {
    fn conv(v: &serde_json::Value) -> prost_types::Value {
        prost_types::Value {
            kind: Some(match v {
                serde_json::Value::Null => Kind::NullValue(0),
                serde_json::Value::Bool(b) => Kind::BoolValue(*b),
                serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap()),
                serde_json::Value::String(s) => Kind::StringValue(s.clone()),
                serde_json::Value::Array(a) => {
                    Kind::ListValue(prost_types::ListValue { values: a.iter().map(conv).collect() })
                }
                serde_json::Value::Object(o) => Kind::StructValue(prost_types::Struct {
                    fields: o.iter().map(|(k, v)| (k.clone(), conv(v))).collect(),
                }),
            }),
        }
    }
    Some(pb::publish_event_request::Payload::Json(conv(&v)))
}

async fn subscribe(s: &Setup, sub: pb::Subscription) -> pb::Subscription {
    let sub = pb::Subscription { destination_id: s.destination.clone(), ..sub };
    s.c.subscriptions
        .clone()
        .create_subscription(pb::CreateSubscriptionRequest { subscription: Some(sub), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .subscription
        .unwrap()
}

async fn publish(s: &Setup, t: &str, body: serde_json::Value) -> pb::PublishEventResponse {
    let req = pb::PublishEventRequest { r#type: t.into(), payload: json(body), ..Default::default() };
    s.c.events.clone().publish_event(req).await.expect("publish").into_inner()
}

async fn publish_stores_and_routes(server: TestServer) {
    let s = setup(&server, false).await;
    let paid = subscribe(
        &s,
        pb::Subscription {
            event_types: vec!["invoice.*".into()],
            filter: "body.amount > 100".into(),
            ..Default::default()
        },
    )
    .await;
    let everything = subscribe(&s, pb::Subscription::default()).await;

    let big = publish(&s, "invoice.paid", serde_json::json!({"amount": 250, "currency": "EUR"})).await;
    assert_eq!(big.deliveries_created, 2);
    assert!(!big.duplicate);
    let event = big.event.unwrap();
    assert!(event.id.starts_with("evt_"));
    assert_eq!(
        (event.r#type.as_str(), event.status, event.deliveries_pending),
        ("invoice.paid", pb::EventStatus::Pending as i32, 2)
    );
    assert_eq!(event.content_type, "application/json");

    // The filter keeps small invoices from the first subscription.
    let small = publish(&s, "invoice.paid", serde_json::json!({"amount": 5})).await;
    assert_eq!(small.deliveries_created, 1);
    let other = publish(&s, "customer.created", serde_json::json!({"amount": 500})).await;
    assert_eq!(other.deliveries_created, 1, "only the catch-all subscription");

    // The event reads back exactly, with its deliveries.
    let got =
        s.c.events
            .clone()
            .get_event(pb::GetEventRequest { event_id: event.id.clone(), ..Default::default() })
            .await
            .unwrap()
            .into_inner()
            .event
            .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(body, serde_json::json!({"amount": 250, "currency": "EUR"}));
    assert!(got.json.is_some());
    assert_eq!(got.body_size, got.body.len() as u64);
    let deliveries =
        s.c.deliveries
            .clone()
            .list_deliveries(pb::ListDeliveriesRequest { event_id: event.id.clone(), ..Default::default() })
            .await
            .unwrap()
            .into_inner()
            .deliveries;
    let mut subs: Vec<_> = deliveries.iter().map(|d| d.subscription_id.clone()).collect();
    subs.sort();
    let mut want = vec![paid.id.clone(), everything.id.clone()];
    want.sort();
    assert_eq!(subs, want);
    for d in &deliveries {
        assert_eq!(
            (d.state, d.destination_id.as_str(), d.attempt_count),
            (pb::DeliveryState::Pending as i32, s.destination.as_str(), 0)
        );
        let one =
            s.c.deliveries
                .clone()
                .get_delivery(pb::GetDeliveryRequest { delivery_id: d.id.clone(), ..Default::default() })
                .await
                .unwrap()
                .into_inner()
                .delivery
                .unwrap();
        assert_eq!(&one, d);
    }

    // No subscription matches a raw event from nowhere: NO_ROUTE.
    s.c.subscriptions
        .clone()
        .delete_subscription(pb::DeleteSubscriptionRequest {
            subscription_id: everything.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let raw =
        s.c.events
            .clone()
            .publish_event(pb::PublishEventRequest {
                r#type: "blob.uploaded".into(),
                payload: Some(pb::publish_event_request::Payload::Raw(pb::RawPayload {
                    body: vec![0, 159, 146, 150],
                    content_type: "application/octet-stream".into(),
                })),
                labels: [("tenant".to_owned(), "acme".to_owned())].into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
    assert_eq!(raw.deliveries_created, 0, "routing sees the deletion at once");
    let raw_event = raw.event.unwrap();
    assert_eq!(raw_event.status, pb::EventStatus::NoRoute as i32);
    let got =
        s.c.events
            .clone()
            .get_event(pb::GetEventRequest { event_id: raw_event.id.clone(), ..Default::default() })
            .await
            .unwrap()
            .into_inner()
            .event
            .unwrap();
    assert_eq!(got.body, vec![0, 159, 146, 150], "exact bytes");
    assert_eq!(got.labels.get("tenant").map(String::as_str), Some("acme"));
    assert!(got.json.is_none());
}

async fn idempotency_keys_return_the_first_event(server: TestServer) {
    let s = setup(&server, false).await;
    subscribe(&s, pb::Subscription::default()).await;
    let req = || pb::PublishEventRequest {
        r#type: "order.placed".into(),
        payload: json(serde_json::json!({"n": 1})),
        idempotency_key: "order-42".into(),
        ..Default::default()
    };
    let first = s.c.events.clone().publish_event(req()).await.unwrap().into_inner();
    let again = s.c.events.clone().publish_event(req()).await.unwrap().into_inner();
    assert!(!first.duplicate && again.duplicate);
    assert_eq!(first.event.as_ref().unwrap().id, again.event.as_ref().unwrap().id);
    assert_eq!((first.deliveries_created, again.deliveries_created), (1, 0));
    // Concurrent repeats also resolve to one event.
    let mut handles = Vec::new();
    for _ in 0..8 {
        let mut events = s.c.events.clone();
        let r = pb::PublishEventRequest { idempotency_key: "order-43".into(), ..req() };
        handles.push(tokio::spawn(async move { events.publish_event(r).await.unwrap().into_inner() }));
    }
    let mut ids = std::collections::HashSet::new();
    let mut fresh = 0;
    for h in handles {
        let r = h.await.unwrap();
        ids.insert(r.event.unwrap().id);
        fresh += usize::from(!r.duplicate);
    }
    assert_eq!((ids.len(), fresh), (1, 1));
    let listed = s.c.events.clone().list_events(pb::ListEventsRequest::default()).await.unwrap().into_inner().events;
    assert_eq!(listed.len(), 2, "one event per key");
    let deliveries =
        s.c.deliveries.clone().list_deliveries(pb::ListDeliveriesRequest::default()).await.unwrap().into_inner();
    assert_eq!(deliveries.deliveries.len(), 2);
}

async fn catalog_and_schemas_are_enforced(server: TestServer) {
    let s = setup(&server, true).await;
    subscribe(&s, pb::Subscription::default()).await;
    let unknown =
        s.c.events
            .clone()
            .publish_event(pb::PublishEventRequest {
                r#type: "nope.unknown".into(),
                payload: json(serde_json::json!({})),
                ..Default::default()
            })
            .await;
    assert_error(unknown, Code::FailedPrecondition, "UNKNOWN_EVENT_TYPE");
    let schema = serde_json::json!({"type": "object", "required": ["amount"], "properties": {"amount": {"type": "integer", "minimum": 1}}});
    let serde_json::Value::Object(map) = schema else { unreachable!() };
    let Some(pb::publish_event_request::Payload::Json(prost_types::Value { kind: Some(Kind::StructValue(st)) })) =
        json(serde_json::Value::Object(map))
    else {
        unreachable!()
    };
    s.c.event_types
        .clone()
        .create_event_type(pb::CreateEventTypeRequest {
            event_type: Some(pb::EventType { name: "invoice.paid".into(), schema: Some(st), ..Default::default() }),
            ..Default::default()
        })
        .await
        .unwrap();
    let bad =
        s.c.events
            .clone()
            .publish_event(pb::PublishEventRequest {
                r#type: "invoice.paid".into(),
                payload: json(serde_json::json!({"amount": 0})),
                ..Default::default()
            })
            .await;
    let status = assert_error(bad, Code::InvalidArgument, "SCHEMA_VALIDATION_FAILED");
    assert_eq!(violation_fields(&status), vec!["payload/amount"]);
    let ok = publish(&s, "invoice.paid", serde_json::json!({"amount": 3})).await;
    assert_eq!(ok.deliveries_created, 1);
    let listed = s.c.events.clone().list_events(pb::ListEventsRequest::default()).await.unwrap().into_inner().events;
    assert_eq!(listed.len(), 1, "refused events are not stored");
}

async fn publish_validation_stores_nothing(server: TestServer) {
    let s = setup(&server, false).await;
    let far = std::time::SystemTime::now() + std::time::Duration::from_secs(31 * 24 * 3600);
    let huge = vec![b'x'; 10 * 1024 * 1024 + 1];
    let cases: Vec<(pb::PublishEventRequest, &str, &str)> = vec![
        (
            pb::PublishEventRequest {
                r#type: "bad type".into(),
                payload: json(serde_json::json!({})),
                ..Default::default()
            },
            "type",
            "INVALID_ARGUMENT",
        ),
        (pb::PublishEventRequest { r#type: "a.b".into(), ..Default::default() }, "payload", "INVALID_ARGUMENT"),
        (
            pb::PublishEventRequest {
                r#type: "a.b".into(),
                payload: json(serde_json::json!({})),
                deliver_time: Some(far.into()),
                ..Default::default()
            },
            "deliver_time",
            "INVALID_ARGUMENT",
        ),
        (
            pb::PublishEventRequest {
                r#type: "a.b".into(),
                payload: Some(pb::publish_event_request::Payload::Raw(pb::RawPayload {
                    body: huge,
                    content_type: "text/plain".into(),
                })),
                ..Default::default()
            },
            "payload",
            "PAYLOAD_TOO_LARGE",
        ),
        (
            pb::PublishEventRequest {
                r#type: "a.b".into(),
                payload: json(serde_json::json!({})),
                labels: [("bad key!".to_owned(), "v".to_owned())].into(),
                ..Default::default()
            },
            "labels[\"bad key!\"]",
            "INVALID_ARGUMENT",
        ),
    ];
    for (req, field, reason) in cases {
        let status = assert_error(s.c.events.clone().publish_event(req).await, Code::InvalidArgument, reason);
        assert_eq!(violation_fields(&status), vec![field]);
    }
    assert!(
        s.c.events.clone().list_events(pb::ListEventsRequest::default()).await.unwrap().into_inner().events.is_empty()
    );
}

async fn event_reads_filter_and_isolate(server: TestServer) {
    let s = setup(&server, false).await;
    subscribe(&s, pb::Subscription::default()).await;
    let a = publish(&s, "task.created", serde_json::json!({"title": "needle in here"})).await.event.unwrap();
    let b = publish(&s, "task.created.v2", serde_json::json!({"title": "other"})).await.event.unwrap();
    let c = publish(&s, "tasks.deleted", serde_json::json!({"title": "x"})).await.event.unwrap();
    let list = |req: pb::ListEventsRequest| {
        let mut events = s.c.events.clone();
        async move {
            events.list_events(req).await.unwrap().into_inner().events.into_iter().map(|e| e.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list(pb::ListEventsRequest::default()).await,
        vec![c.id.clone(), b.id.clone(), a.id.clone()],
        "newest first"
    );
    assert_eq!(
        list(pb::ListEventsRequest { r#type: "task".into(), ..Default::default() }).await,
        vec![b.id.clone(), a.id.clone()]
    );
    assert_eq!(
        list(pb::ListEventsRequest { r#type: "task.*".into(), ..Default::default() }).await,
        vec![b.id.clone(), a.id.clone()]
    );
    assert_eq!(
        list(pb::ListEventsRequest { r#type: "task.created.v2".into(), ..Default::default() }).await,
        vec![b.id.clone()]
    );
    assert_eq!(list(pb::ListEventsRequest { r#type: "tasks".into(), ..Default::default() }).await, vec![c.id.clone()]);
    assert_eq!(list(pb::ListEventsRequest { search: "needle".into(), ..Default::default() }).await, vec![a.id.clone()]);
    let page =
        s.c.events
            .clone()
            .list_events(pb::ListEventsRequest { page_size: 2, ..Default::default() })
            .await
            .unwrap()
            .into_inner();
    assert_eq!(page.events.len(), 2);
    assert!(page.events.iter().all(|e| e.body.is_empty()), "BASIC view by default");
    let rest =
        s.c.events
            .clone()
            .list_events(pb::ListEventsRequest {
                page_size: 2,
                page_token: page.next_page_token,
                view: pb::EventView::Full as i32,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
    assert_eq!(rest.events.iter().map(|e| e.id.clone()).collect::<Vec<_>>(), vec![a.id.clone()]);
    assert!(!rest.events[0].body.is_empty());
    assert!(rest.next_page_token.is_empty());

    // Another project's key sees none of it.
    let other = setup(&server, false).await;
    assert_error(
        other.c.events.clone().get_event(pb::GetEventRequest { event_id: a.id.clone(), ..Default::default() }).await,
        Code::NotFound,
        "RESOURCE_NOT_FOUND",
    );
    assert!(
        other
            .c
            .events
            .clone()
            .list_events(pb::ListEventsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .events
            .is_empty()
    );
    assert!(
        other
            .c
            .deliveries
            .clone()
            .list_deliveries(pb::ListDeliveriesRequest::default())
            .await
            .unwrap()
            .into_inner()
            .deliveries
            .is_empty()
    );
    let _ = s.project;
}

async fn retention_deletes_what_is_past_it(server: TestServer) {
    let short = setup(&server, false).await;
    let long = setup(&server, false).await;
    let hour = pb::Project {
        id: short.project.clone(),
        retention: Some(prost_types::Duration { seconds: 3600, nanos: 0 }),
        ..Default::default()
    };
    server
        .admin()
        .await
        .projects
        .clone()
        .update_project(pb::UpdateProjectRequest {
            project: Some(hour),
            update_mask: Some(prost_types::FieldMask { paths: vec!["retention".into()] }),
        })
        .await
        .unwrap();
    subscribe(&short, pb::Subscription::default()).await;
    let keyed = || pb::PublishEventRequest {
        r#type: "a.b".into(),
        payload: json(serde_json::json!({})),
        idempotency_key: "k1".into(),
        ..Default::default()
    };
    let old = short.c.events.clone().publish_event(keyed()).await.unwrap().into_inner().event.unwrap();
    let kept = publish(&long, "a.b", serde_json::json!({})).await.event.unwrap();
    // A sweep as of 25 hours from now: past the one-hour project's retention and the 24 h
    // idempotency window, within the other project's 30 days.
    let later = loft::timeutil::now_micros() + 25 * 3600 * 1_000_000;
    let swept =
        loft::retention::sweep(&server.running().store, later, loft::retention::DEFAULT_FEED_RETENTION).await.unwrap();
    assert_eq!((swept.events, swept.keys), (1, 1));
    assert_error(
        short.c.events.clone().get_event(pb::GetEventRequest { event_id: old.id.clone(), ..Default::default() }).await,
        Code::NotFound,
        "RESOURCE_NOT_FOUND",
    );
    assert!(
        short
            .c
            .deliveries
            .clone()
            .list_deliveries(pb::ListDeliveriesRequest::default())
            .await
            .unwrap()
            .into_inner()
            .deliveries
            .is_empty(),
        "deliveries went with it"
    );
    long.c
        .events
        .clone()
        .get_event(pb::GetEventRequest { event_id: kept.id.clone(), ..Default::default() })
        .await
        .expect("kept");
    let again = short.c.events.clone().publish_event(keyed()).await.unwrap().into_inner();
    assert!(!again.duplicate, "an expired idempotency key may be used again");
}

async fn templates_render_against_stored_events(server: TestServer) {
    let s = setup(&server, false).await;
    let e = publish(&s, "invoice.paid", serde_json::json!({"amount": 250})).await.event.unwrap();
    let render = |event_id: &str| pb::RenderTemplateRequest {
        template: Some(pb::render_template_request::Template::Body(
            "{{ type }}:{{ body.amount }}:{{ event_id }}".into(),
        )),
        input: Some(pb::render_template_request::Input::EventId(event_id.into())),
        ..Default::default()
    };
    let out = s.c.templates.clone().render_template(render(&e.id)).await.unwrap().into_inner();
    assert_eq!(out.rendered, format!("invoice.paid:250:{}", e.id));
    let other = setup(&server, false).await;
    assert_error(other.c.templates.clone().render_template(render(&e.id)).await, Code::NotFound, "RESOURCE_NOT_FOUND");
}
