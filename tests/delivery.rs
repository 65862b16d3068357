//! Deliveries end to end: a real receiver on loopback, signatures recomputed here (not with
//! Loft's signer), every outcome class, the attempt log, retry and cancel, on both backends.

mod common;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::receiver::{Receiver, Reply};
use common::{Clients, TestServer, assert_error};
use hmac::{Hmac, Mac};
use loft::proto as pb;
use sha2::Sha256;
use tonic::Code;

on_both_backends!(
    delivery_is_signed_and_logged,
    ed25519_signatures_verify_with_the_public_key,
    failures_are_retried_until_success,
    client_errors_fail_at_once_and_gone_disables,
    retry_after_is_honoured,
    timeouts_and_redirects_are_recorded,
    retry_and_cancel,
    replay_and_recover,
    test_destination_pings_now,
    rate_limits_pace_without_dropping,
    attempt_log_shows_the_body_sent,
);

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

struct Setup {
    c: Clients,
    destination: pb::Destination,
}

async fn setup(server: &TestServer, destination: pb::Destination) -> Setup {
    let admin = server.admin().await;
    let project = admin
        .projects
        .clone()
        .create_project(pb::CreateProjectRequest {
            project: Some(pb::Project { name: "d".into(), ..Default::default() }),
        })
        .await
        .unwrap()
        .into_inner()
        .project
        .unwrap()
        .id;
    let key = pb::ApiKey { project_id: project, role: pb::ApiKeyRole::Editor as i32, ..Default::default() };
    let secret = admin
        .keys
        .clone()
        .create_api_key(pb::CreateApiKeyRequest { api_key: Some(key) })
        .await
        .unwrap()
        .into_inner()
        .secret;
    let c = server.clients(&secret).await;
    let destination = common::route_to(&c, "", destination).await;
    Setup { c, destination }
}

/// The attempt with `id`, bodies included.
async fn get_attempt(s: &Setup, id: &str) -> pb::Attempt {
    let req = pb::GetAttemptRequest { attempt_id: id.into(), ..Default::default() };
    s.c.deliveries.clone().get_attempt(req).await.unwrap().into_inner().attempt.unwrap()
}

/// A schedule policy with short delays, so retries happen within the test.
fn quick_retries(delays_ms: &[u64]) -> Option<pb::RetryPolicy> {
    let delays = delays_ms
        .iter()
        .map(|ms| prost_types::Duration { seconds: (*ms / 1000) as i64, nanos: ((*ms % 1000) * 1_000_000) as i32 })
        .collect();
    Some(pb::RetryPolicy { policy: Some(pb::retry_policy::Policy::Schedule(pb::ScheduleRetryPolicy { delays })) })
}

async fn publish(s: &Setup, body: &str) -> pb::Event {
    let req = pb::PublishEventRequest {
        r#type: "invoice.paid".into(),
        payload: Some(pb::publish_event_request::Payload::Raw(pb::RawPayload {
            body: body.as_bytes().to_vec(),
            content_type: "application/json".into(),
        })),
        ..Default::default()
    };
    s.c.events.clone().publish_event(req).await.unwrap().into_inner().event.unwrap()
}

/// Waits until the event's only delivery reaches `state`.
async fn delivery_in(s: &Setup, event: &str, state: pb::DeliveryState) -> pb::Delivery {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let list =
            s.c.deliveries
                .clone()
                .list_deliveries(pb::ListDeliveriesRequest { event_id: event.into(), ..Default::default() })
                .await
                .unwrap()
                .into_inner()
                .deliveries;
        if let Some(d) = list.into_iter().find(|d| d.state == state as i32) {
            return d;
        }
        assert!(std::time::Instant::now() < deadline, "delivery of {event} never reached {state:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn attempts(s: &Setup, delivery: &str, order: pb::AttemptOrder) -> Vec<pb::Attempt> {
    let req = pb::ListAttemptsRequest { delivery_id: delivery.into(), order_by: order as i32, ..Default::default() };
    s.c.deliveries.clone().list_attempts(req).await.unwrap().into_inner().attempts
}

async fn delivery_is_signed_and_logged(server: TestServer) {
    let receiver = Receiver::start(vec![]).await;
    let s = setup(
        &server,
        pb::Destination {
            url: receiver.url.clone(),
            secret: SECRET.into(),
            headers: vec![pb::Header { name: "X-Team".into(), value: "billing".into() }],
            auth: Some(pb::DestinationAuth {
                method: Some(pb::destination_auth::Method::Bearer(pb::BearerAuth {
                    token: "receiver-token-123".into(),
                    ..Default::default()
                })),
            }),
            legacy_signature: true,
            ..Default::default()
        },
    )
    .await;
    let body = r#"{"amount":250,"currency":"EUR"}"#;
    let event = publish(&s, body).await;
    let got = receiver.wait_for(1, Duration::from_secs(10)).await;
    let r = &got[0];
    assert_eq!(r.body, body.as_bytes(), "body byte-identical");
    assert_eq!(r.method, "POST");
    assert_eq!(r.header("webhook-id"), event.id);
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(r.header("x-loft-event-type"), "invoice.paid");
    assert_eq!(r.header("x-loft-attempt"), "1");
    assert!(r.header("x-loft-delivery-id").starts_with("dlv_"));
    assert!(r.header("user-agent").starts_with("Loft/"));
    assert_eq!(r.header("x-team"), "billing");
    assert_eq!(r.header("authorization"), "Bearer receiver-token-123");
    // Standard Webhooks, recomputed here: v1,base64(HMAC-SHA256(key, "id.timestamp.body")).
    let ts: i64 = r.header("webhook-timestamp").parse().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!((now - ts).abs() < 30);
    let key = STANDARD.decode(&SECRET[6..]).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.{}", event.id, ts, body).as_bytes());
    assert_eq!(r.header("webhook-signature"), format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes())));
    let mut legacy = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    legacy.update(body.as_bytes());
    assert_eq!(r.header("x-loft-signature"), format!("sha256={}", hex::encode(legacy.finalize().into_bytes())));

    let d = delivery_in(&s, &event.id, pb::DeliveryState::Succeeded).await;
    assert_eq!((d.attempt_count, d.last_status_code), (1, 200));
    let log = attempts(&s, &d.id, pb::AttemptOrder::Newest).await;
    assert_eq!(log.len(), 1);
    let a =
        s.c.deliveries
            .clone()
            .get_attempt(pb::GetAttemptRequest { attempt_id: log[0].id.clone(), ..Default::default() })
            .await
            .unwrap()
            .into_inner()
            .attempt
            .unwrap();
    assert_eq!(a.outcome, pb::AttemptOutcome::Succeeded as i32);
    let req = a.request.unwrap();
    assert_eq!(
        (req.url.as_str(), req.method.as_str(), req.body.as_slice()),
        (receiver.url.as_str(), "POST", body.as_bytes())
    );
    let auth = req.headers.iter().find(|h| h.name == "authorization").unwrap();
    assert_eq!(auth.value, "[redacted]", "credentials never stored in the attempt log");
    // Every other header as the receiver got it, the ones the HTTP client adds included.
    for name in ["webhook-signature", "x-team", "user-agent", "accept"] {
        let logged: Vec<_> = req.headers.iter().filter(|h| h.name == name).map(|h| h.value.as_str()).collect();
        assert_eq!(logged, [r.header(name)], "{name}");
    }
    let resp = a.response.unwrap();
    assert_eq!((resp.status_code, resp.body.as_slice()), (200, b"ok".as_slice()));
    let ev =
        s.c.events
            .clone()
            .get_event(pb::GetEventRequest { event_id: event.id.clone(), ..Default::default() })
            .await
            .unwrap()
            .into_inner()
            .event
            .unwrap();
    assert_eq!((ev.status, ev.deliveries_succeeded), (pb::EventStatus::Delivered as i32, 1));
    let dst = s
        .c
        .destinations
        .clone()
        .get_destination(pb::GetDestinationRequest { destination_id: s.destination.id.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .destination
        .unwrap();
    assert!(dst.last_success_time.is_some());
    assert!(!common::captured_logs().contains("receiver-token-123"));
}

async fn ed25519_signatures_verify_with_the_public_key(server: TestServer) {
    let receiver = Receiver::start(vec![]).await;
    let s = setup(
        &server,
        pb::Destination {
            url: receiver.url.clone(),
            signature_scheme: pb::DestinationSignatureScheme::Ed25519 as i32,
            ..Default::default()
        },
    )
    .await;
    let event = publish(&s, r#"{"x":1}"#).await;
    let r = &receiver.wait_for(1, Duration::from_secs(10)).await[0];
    let sig = r.header("webhook-signature").strip_prefix("v1a,").expect("a v1a signature").to_owned();
    let public: [u8; 32] =
        STANDARD.decode(s.destination.public_key.strip_prefix("whpk_").unwrap()).unwrap().try_into().unwrap();
    let key = ed25519_dalek::VerifyingKey::from_bytes(&public).unwrap();
    let signature = ed25519_dalek::Signature::from_slice(&STANDARD.decode(sig).unwrap()).unwrap();
    let content = format!("{}.{}.{}", event.id, r.header("webhook-timestamp"), r#"{"x":1}"#);
    key.verify_strict(content.as_bytes(), &signature).expect("Ed25519 signature verifies with whpk_");
}

async fn failures_are_retried_until_success(server: TestServer) {
    let receiver = Receiver::start(vec![Reply::status(500), Reply::status(503)]).await;
    let s = setup(
        &server,
        pb::Destination {
            url: receiver.url.clone(),
            retry_policy: quick_retries(&[100, 100, 100]),
            ..Default::default()
        },
    )
    .await;
    let event = publish(&s, "{}").await;
    let d = delivery_in(&s, &event.id, pb::DeliveryState::Succeeded).await;
    assert_eq!(d.attempt_count, 3);
    let got = receiver.received();
    assert_eq!(got.iter().map(|r| r.header("x-loft-attempt").to_owned()).collect::<Vec<_>>(), vec!["1", "2", "3"]);
    assert!(got.iter().all(|r| r.header("webhook-id") == event.id), "the same webhook-id on every retry");
    let newest = attempts(&s, &d.id, pb::AttemptOrder::Newest).await;
    let codes = |a: &[pb::Attempt]| a.iter().map(|a| a.response.as_ref().unwrap().status_code).collect::<Vec<_>>();
    assert_eq!(codes(&newest), vec![200, 503, 500]);
    assert_eq!(codes(&attempts(&s, &d.id, pb::AttemptOrder::Oldest).await), vec![500, 503, 200]);
    assert_eq!(codes(&attempts(&s, &d.id, pb::AttemptOrder::StatusCode).await), vec![503, 500, 200]);
    assert_eq!(newest[1].error.as_ref().unwrap().kind, pb::AttemptErrorKind::HttpStatus as i32);
    // The attempt log pages by any order without repeats.
    let first =
        s.c.deliveries
            .clone()
            .list_attempts(pb::ListAttemptsRequest {
                delivery_id: d.id.clone(),
                page_size: 2,
                order_by: pb::AttemptOrder::Duration as i32,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
    let second =
        s.c.deliveries
            .clone()
            .list_attempts(pb::ListAttemptsRequest {
                delivery_id: d.id.clone(),
                page_size: 2,
                order_by: pb::AttemptOrder::Duration as i32,
                page_token: first.next_page_token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
    let mut ids: Vec<_> = first.attempts.iter().chain(&second.attempts).map(|a| a.id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3);
    assert!(second.next_page_token.is_empty());
}

async fn client_errors_fail_at_once_and_gone_disables(server: TestServer) {
    let receiver = Receiver::start(vec![Reply::status(400), Reply::status(410)]).await;
    let s = setup(
        &server,
        pb::Destination { url: receiver.url.clone(), retry_policy: quick_retries(&[100, 100]), ..Default::default() },
    )
    .await;
    let bad = publish(&s, "{}").await;
    let d = delivery_in(&s, &bad.id, pb::DeliveryState::Failed).await;
    assert_eq!((d.attempt_count, d.last_status_code), (1, 400), "a 400 is not retried");
    let gone = publish(&s, "{}").await;
    let d = delivery_in(&s, &gone.id, pb::DeliveryState::Failed).await;
    assert_eq!((d.attempt_count, d.last_status_code), (1, 410));
    let dst = s
        .c
        .destinations
        .clone()
        .get_destination(pb::GetDestinationRequest { destination_id: s.destination.id.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .destination
        .unwrap();
    assert_eq!(dst.state, pb::DestinationState::Disabled as i32);
    assert!(dst.disabled_reason.contains("410"), "{}", dst.disabled_reason);
    // A disabled destination holds new deliveries; resuming releases them.
    let held = publish(&s, "{}").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(receiver.received().len(), 2, "nothing sent while disabled");
    delivery_in(&s, &held.id, pb::DeliveryState::Pending).await;
    s.c.destinations
        .clone()
        .resume_destination(pb::ResumeDestinationRequest {
            destination_id: s.destination.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    delivery_in(&s, &held.id, pb::DeliveryState::Succeeded).await;
}

async fn retry_after_is_honoured(server: TestServer) {
    let mut slow_down = Reply::status(429);
    slow_down.headers.push(("retry-after", "1".into()));
    let receiver = Receiver::start(vec![slow_down]).await;
    // Without Retry-After the retry would come after 100 ms; the cap is the longest delay, 5 s.
    let s = setup(
        &server,
        pb::Destination { url: receiver.url.clone(), retry_policy: quick_retries(&[100, 5000]), ..Default::default() },
    )
    .await;
    let event = publish(&s, "{}").await;
    delivery_in(&s, &event.id, pb::DeliveryState::Succeeded).await;
    let got = receiver.received();
    let gap = got[1].at - got[0].at;
    assert!(gap >= Duration::from_millis(950) && gap < Duration::from_secs(4), "retried after {gap:?}");
}

async fn timeouts_and_redirects_are_recorded(server: TestServer) {
    let mut slow = Reply::status(200);
    slow.delay = Duration::from_secs(3);
    let receiver = Receiver::start(vec![slow]).await;
    let s = setup(
        &server,
        pb::Destination {
            url: receiver.url.clone(),
            timeout: Some(prost_types::Duration { seconds: 1, nanos: 0 }),
            retry_policy: quick_retries(&[60_000]),
            ..Default::default()
        },
    )
    .await;
    let event = publish(&s, "{}").await;
    let d = delivery_in(&s, &event.id, pb::DeliveryState::Retrying).await;
    let a = &attempts(&s, &d.id, pb::AttemptOrder::Newest).await[0];
    assert_eq!(a.error.as_ref().unwrap().kind, pb::AttemptErrorKind::Timeout as i32);
    let took = a.duration.unwrap();
    assert!(took.seconds >= 1 && took.seconds < 3, "timed out after {took:?}");

    let mut redirect = Reply::status(302);
    redirect.headers.push(("location", "http://127.0.0.1:9/elsewhere".into()));
    let receiver = Receiver::start(vec![redirect]).await;
    let s = setup(
        &server,
        pb::Destination { url: receiver.url.clone(), retry_policy: quick_retries(&[100]), ..Default::default() },
    )
    .await;
    let event = publish(&s, "{}").await;
    let d = delivery_in(&s, &event.id, pb::DeliveryState::Failed).await;
    let a = &attempts(&s, &d.id, pb::AttemptOrder::Newest).await[0];
    assert_eq!(
        (a.error.as_ref().unwrap().kind, a.response.as_ref().unwrap().status_code),
        (pb::AttemptErrorKind::Redirect as i32, 302)
    );
    assert_eq!(receiver.received().len(), 1, "redirects are not followed");
}

async fn retry_and_cancel(server: TestServer) {
    let receiver = Receiver::start(vec![Reply::status(400)]).await;
    let s = setup(&server, pb::Destination { url: receiver.url.clone(), ..Default::default() }).await;
    let event = publish(&s, "{}").await;
    let failed = delivery_in(&s, &event.id, pb::DeliveryState::Failed).await;
    // RetryDelivery re-arms a failed delivery; this time the receiver accepts it.
    let retried =
        s.c.deliveries
            .clone()
            .retry_delivery(pb::RetryDeliveryRequest { delivery_id: failed.id.clone(), ..Default::default() })
            .await
            .unwrap()
            .into_inner()
            .delivery
            .unwrap();
    assert_eq!(retried.state, pb::DeliveryState::Retrying as i32);
    let done = delivery_in(&s, &event.id, pb::DeliveryState::Succeeded).await;
    assert_eq!(done.attempt_count, 2);
    assert_error(
        s.c.deliveries
            .clone()
            .cancel_delivery(pb::CancelDeliveryRequest { delivery_id: done.id.clone(), ..Default::default() })
            .await,
        Code::FailedPrecondition,
        "DELIVERY_STATE_CONFLICT",
    );
    // A held delivery (paused destination) can be cancelled; it is then never sent.
    s.c.destinations
        .clone()
        .pause_destination(pb::PauseDestinationRequest {
            destination_id: s.destination.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let held = publish(&s, "{}").await;
    let pending = delivery_in(&s, &held.id, pb::DeliveryState::Pending).await;
    let cancelled =
        s.c.deliveries
            .clone()
            .cancel_delivery(pb::CancelDeliveryRequest { delivery_id: pending.id.clone(), ..Default::default() })
            .await
            .unwrap()
            .into_inner()
            .delivery
            .unwrap();
    assert_eq!(cancelled.state, pb::DeliveryState::Cancelled as i32);
    s.c.destinations
        .clone()
        .resume_destination(pb::ResumeDestinationRequest {
            destination_id: s.destination.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(receiver.received().len(), 2, "the cancelled delivery was never sent");
    // Other tenants cannot touch it.
    let other = setup(&server, pb::Destination { url: receiver.url.clone(), ..Default::default() }).await;
    for r in [
        other
            .c
            .deliveries
            .clone()
            .retry_delivery(pb::RetryDeliveryRequest { delivery_id: done.id.clone(), ..Default::default() })
            .await
            .map(|_| ()),
        other
            .c
            .deliveries
            .clone()
            .get_delivery(pb::GetDeliveryRequest { delivery_id: done.id.clone(), ..Default::default() })
            .await
            .map(|_| ()),
    ] {
        assert_error(r, Code::NotFound, "RESOURCE_NOT_FOUND");
    }
    assert!(
        other
            .c
            .deliveries
            .clone()
            .list_attempts(pb::ListAttemptsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .attempts
            .is_empty()
    );
}

async fn replay_and_recover(server: TestServer) {
    let receiver = Receiver::start(vec![Reply::status(400), Reply::status(400)]).await;
    let s = setup(&server, pb::Destination { url: receiver.url.clone(), ..Default::default() }).await;
    let since = std::time::SystemTime::now();
    let a = publish(&s, r#"{"n":1}"#).await;
    let b = publish(&s, r#"{"n":2}"#).await;
    delivery_in(&s, &a.id, pb::DeliveryState::Failed).await;
    delivery_in(&s, &b.id, pb::DeliveryState::Failed).await;
    // RecoverDestination re-arms every failed delivery since a time; the receiver now accepts.
    let recovered =
        s.c.events
            .clone()
            .recover_destination(pb::RecoverDestinationRequest {
                destination_id: s.destination.id.clone(),
                start_time: Some(since.into()),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
    assert_eq!(recovered.deliveries_recovered, 2);
    let first = delivery_in(&s, &a.id, pb::DeliveryState::Succeeded).await;
    delivery_in(&s, &b.id, pb::DeliveryState::Succeeded).await;
    // ReplayEvent makes a fresh delivery, linked to the original, with the same webhook-id.
    let replayed =
        s.c.events
            .clone()
            .replay_event(pb::ReplayEventRequest { event_id: a.id.clone(), ..Default::default() })
            .await
            .unwrap()
            .into_inner()
            .deliveries;
    assert_eq!(replayed.len(), 1);
    assert_eq!(replayed[0].replay_of, first.id);
    assert_ne!(replayed[0].id, first.id);
    let got = receiver.wait_for(5, Duration::from_secs(10)).await;
    assert_eq!(got.iter().filter(|r| r.header("webhook-id") == a.id).count(), 3, "failed, recovered, replayed");
    let other = pb::ReplayEventRequest {
        event_id: a.id.clone(),
        destination_id: "dst_01J00000000000000000000000".into(),
        ..Default::default()
    };
    assert_error(s.c.events.clone().replay_event(other).await, Code::NotFound, "RESOURCE_NOT_FOUND");
    let missing = pb::ReplayEventRequest { event_id: "evt_01J00000000000000000000000".into(), ..Default::default() };
    assert_error(s.c.events.clone().replay_event(missing).await, Code::NotFound, "RESOURCE_NOT_FOUND");
}

async fn test_destination_pings_now(server: TestServer) {
    let receiver = Receiver::start(vec![Reply::status(200), Reply::status(500)]).await;
    let s = setup(&server, pb::Destination { url: receiver.url.clone(), secret: SECRET.into(), ..Default::default() })
        .await;
    // Even a paused destination can be tested.
    s.c.destinations
        .clone()
        .pause_destination(pb::PauseDestinationRequest {
            destination_id: s.destination.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let test = || pb::TestDestinationRequest { destination_id: s.destination.id.clone(), ..Default::default() };
    let a = s.c.destinations.clone().test_destination(test()).await.unwrap().into_inner().attempt.unwrap();
    assert_eq!((a.outcome, a.response.as_ref().unwrap().status_code), (pb::AttemptOutcome::Succeeded as i32, 200));
    let got = receiver.received();
    assert_eq!(got.len(), 1, "sent synchronously");
    assert_eq!(got[0].header("x-loft-event-type"), "loft.ping");
    let body: serde_json::Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body["type"], "loft.ping");
    // A failing test is reported, not retried, and does not count against the destination.
    let failed = s.c.destinations.clone().test_destination(test()).await.unwrap().into_inner().attempt.unwrap();
    assert_eq!((failed.outcome, failed.response.unwrap().status_code), (pb::AttemptOutcome::Failed as i32, 500));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(receiver.received().len(), 2);
    let dst = s
        .c
        .destinations
        .clone()
        .get_destination(pb::GetDestinationRequest { destination_id: s.destination.id.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .destination
        .unwrap();
    assert_eq!((dst.consecutive_failures, dst.state), (0, pb::DestinationState::Paused as i32));
    let bad = pb::TestDestinationRequest { event_type: "bad type".into(), ..test() };
    assert_error(s.c.destinations.clone().test_destination(bad).await, Code::InvalidArgument, "INVALID_ARGUMENT");
}

async fn rate_limits_pace_without_dropping(server: TestServer) {
    let receiver = Receiver::start(vec![]).await;
    let s = setup(
        &server,
        pb::Destination {
            url: receiver.url.clone(),
            rate_limit: Some(pb::RateLimit { per_second: 5, burst: 1 }),
            ..Default::default()
        },
    )
    .await;
    for _ in 0..8 {
        publish(&s, "{}").await;
    }
    let got = receiver.wait_for(8, Duration::from_secs(20)).await;
    let span = got.last().unwrap().at - got.first().unwrap().at;
    // Eight requests at 5/s with a burst of 1: seven gaps of 200 ms, measured at the receiver.
    assert!(span >= Duration::from_millis(1300), "8 requests in {span:?}: the rate limit was not respected");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), 8, "excess waits, nothing is dropped or doubled");
}

mod breaker {
    use super::common;
    use super::*;

    on_both_backends!(circuit_opens_holds_and_resume_releases, failing_destinations_are_disabled);

    async fn circuit_opens_holds_and_resume_releases(server: TestServer) {
        let receiver = Receiver::start((0..10).map(|_| Reply::status(500)).collect()).await;
        let s = setup(
            &server,
            pb::Destination { url: receiver.url.clone(), retry_policy: quick_retries(&[20; 15]), ..Default::default() },
        )
        .await;
        let event = publish(&s, "{}").await;
        receiver.wait_for(10, Duration::from_secs(15)).await;
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(receiver.received().len(), 10, "the open circuit holds further attempts");
        let d = delivery_in(&s, &event.id, pb::DeliveryState::Retrying).await;
        assert_eq!(d.attempt_count, 10, "held, not failed: its retries are not burnt");
        let get = pb::GetDestinationRequest { destination_id: s.destination.id.clone(), ..Default::default() };
        let dst =
            s.c.destinations.clone().get_destination(get.clone()).await.unwrap().into_inner().destination.unwrap();
        assert_eq!((dst.circuit, dst.consecutive_failures), (pb::CircuitState::Open as i32, 10));
        assert!(dst.last_failure_time.is_some());
        // Resuming closes the circuit and releases what it held; the receiver now answers 200.
        let resumed =
            s.c.destinations
                .clone()
                .resume_destination(pb::ResumeDestinationRequest {
                    destination_id: s.destination.id.clone(),
                    ..Default::default()
                })
                .await
                .unwrap();
        assert_eq!(resumed.into_inner().destination.unwrap().circuit, pb::CircuitState::Closed as i32);
        // Released by the resume alone, at once: nothing else asks for it.
        let done = delivery_in(&s, &event.id, pb::DeliveryState::Succeeded).await;
        assert_eq!(done.attempt_count, 11);
        let dst = s.c.destinations.clone().get_destination(get).await.unwrap().into_inner().destination.unwrap();
        assert_eq!((dst.circuit, dst.consecutive_failures), (pb::CircuitState::Closed as i32, 0));
    }

    async fn failing_destinations_are_disabled(server: TestServer) {
        let server = TestServer::start_with(server.backend, |c| c.disable_failing_destinations_after = 1).await;
        let receiver = Receiver::start((0..20).map(|_| Reply::status(503)).collect()).await;
        let s = setup(
            &server,
            pb::Destination { url: receiver.url.clone(), retry_policy: quick_retries(&[400; 8]), ..Default::default() },
        )
        .await;
        publish(&s, "{}").await;
        let get = pb::GetDestinationRequest { destination_id: s.destination.id.clone(), ..Default::default() };
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let dst =
                s.c.destinations.clone().get_destination(get.clone()).await.unwrap().into_inner().destination.unwrap();
            if dst.state == pb::DestinationState::Disabled as i32 {
                assert!(dst.disabled_reason.contains("failing continuously"), "{}", dst.disabled_reason);
                break;
            }
            assert!(std::time::Instant::now() < deadline, "never disabled");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let sent = receiver.received().len();
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert_eq!(receiver.received().len(), sent, "a disabled destination is sent nothing");
    }
}

/// Fresh deliveries go from memory (DESIGN §3): once this node has loaded the destination, each
/// new delivery is leased by the transaction that stores it and sent without a claim. Counted
/// by the server's own `/metrics`: a child process, so no other test adds to them.
async fn fresh_deliveries_go_from_memory(backend: common::Backend) {
    let (url, _dir) = common::fresh_database(backend).await;
    let server = common::ChildServer::spawn(&url).await;
    let c = server.clients(common::ADMIN_KEY).await;
    let project = common::create_project(&c, "fresh").await;
    let receiver = Receiver::start(vec![]).await;
    common::route_to(&c, &project, pb::Destination { url: receiver.url.clone(), ..Default::default() }).await;
    const EVENTS: usize = 20;
    let metric = |metrics: &str, series: &str| -> u64 {
        metrics.lines().find_map(|l| l.strip_prefix(series)).map_or(0, |v| v.trim().parse().unwrap())
    };
    let scrape = || async { reqwest::get(format!("{}/metrics", server.http)).await.unwrap().text().await.unwrap() };
    let empty_claims = |m: &str| metric(m, "loft_claims_total{found=\"none\"} ");
    let (empty_before, start) = (empty_claims(&scrape().await), std::time::Instant::now());
    let mut published = Vec::new();
    for n in 0..EVENTS {
        let req = pb::PublishEventRequest {
            project_id: project.clone(),
            r#type: "invoice.paid".into(),
            payload: Some(pb::publish_event_request::Payload::Raw(pb::RawPayload {
                body: format!(r#"{{"n":{n}}}"#).into_bytes(),
                content_type: "application/json".into(),
            })),
            ..Default::default()
        };
        published.push(c.events.clone().publish_event(req).await.unwrap().into_inner().event.unwrap().id);
        receiver.wait_for(n + 1, Duration::from_secs(10)).await;
    }
    let got: Vec<String> = receiver.received().iter().map(|r| r.header("webhook-id").to_owned()).collect();
    assert_eq!(got, published, "each delivered once, in publish order");

    let metrics = scrape().await;
    let started = |via: &str| metric(&metrics, &format!("loft_attempts_started_total{{via=\"{via}\"}} "));
    let (memory, claim) = (started("memory"), started("claim"));
    // Nothing was left for a claim: besides the twice-a-second poll, the claim loop stays
    // asleep. (On PostgreSQL a node hears its own commits' NOTIFY too; heeding it woke a claim
    // for every event and every attempt, 2 × EVENTS empty claims.)
    let polls = start.elapsed().as_millis() as u64 / 500;
    let empty = empty_claims(&metrics) - empty_before;
    assert!(empty <= polls + 4, "{empty} empty claims in {polls} polls\n{metrics}");
    assert_eq!(memory + claim, EVENTS as u64, "{metrics}");
    // The first delivery loads the destination through a claim; the rest skip it (a stall of
    // more than the 2 s settings cache between two events could add one more claim).
    assert!(memory >= EVENTS as u64 - 2, "only {memory} of {EVENTS} went from memory");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_deliveries_go_from_memory_sqlite() {
    fresh_deliveries_go_from_memory(common::Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_deliveries_go_from_memory_postgres() {
    fresh_deliveries_go_from_memory(common::Backend::Postgres).await;
}

/// The request logged by the first attempt of each of `event`'s deliveries, body included;
/// waits until each has one.
async fn logged_requests(s: &Setup, event: &str) -> Vec<pb::AttemptRequest> {
    let list = pb::ListDeliveriesRequest { event_id: event.into(), ..Default::default() };
    let deliveries = s.c.deliveries.clone().list_deliveries(list).await.unwrap().into_inner().deliveries;
    let mut out = Vec::new();
    for d in deliveries {
        let listed = loop {
            if let Some(a) = attempts(s, &d.id, pb::AttemptOrder::Newest).await.pop() {
                break a;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        };
        assert!(listed.request.unwrap().body.is_empty(), "lists leave bodies out");
        out.push(get_attempt(s, &listed.id).await.request.unwrap());
    }
    out
}

/// The attempt log keeps what went over the wire: the event's body, or a template's output,
/// byte for byte, cut at 64 KiB.
async fn attempt_log_shows_the_body_sent(server: TestServer) {
    let receiver = Receiver::start(vec![]).await;
    let s = setup(&server, pb::Destination { url: receiver.url.clone(), secret: SECRET.into(), ..Default::default() })
        .await;
    // A second route to the same destination, through a template.
    let reshaped = pb::Subscription {
        destination_id: s.destination.id.clone(),
        transform: Some(pb::subscription::Transform::Template(r#"{"total": {{ body.amount * 2 }}}"#.into())),
        ..Default::default()
    };
    let req = pb::CreateSubscriptionRequest { subscription: Some(reshaped), ..Default::default() };
    s.c.subscriptions.clone().create_subscription(req).await.unwrap();

    let event = publish(&s, r#"{"amount":250}"#).await;
    let got = receiver.wait_for(2, Duration::from_secs(10)).await;
    let mut sent: Vec<Vec<u8>> = got.iter().map(|r| r.body.clone()).collect();
    sent.sort();
    assert_eq!(sent, [br#"{"amount":250}"#.to_vec(), br#"{"total": 500}"#.to_vec()]);
    let logged = logged_requests(&s, &event.id).await;
    assert!(logged.iter().all(|r| (r.body_size, r.body_truncated) == (r.body.len() as u64, false)), "{logged:?}");
    let mut logged: Vec<Vec<u8>> = logged.into_iter().map(|r| r.body).collect();
    logged.sort();
    assert_eq!(logged, sent, "each attempt logs its own delivery's body");

    // 100 KiB: the log keeps the first 64 KiB and says it was cut.
    let big: String = std::iter::repeat_n("0123456789abcdef", 6_400).collect();
    let big = format!(r#"{{"amount":1,"pad":"{big}"}}"#);
    let event = publish(&s, &big).await;
    receiver.wait_for(4, Duration::from_secs(10)).await;
    let mut logged = logged_requests(&s, &event.id).await;
    logged.sort_by_key(|r| r.body_size);
    assert_eq!(logged.len(), 2);
    assert_eq!((logged[0].body.as_slice(), logged[0].body_truncated), (br#"{"total": 2}"#.as_slice(), false));
    assert_eq!((logged[1].body_size, logged[1].body_truncated), (big.len() as u64, true));
    assert_eq!(logged[1].body, big.as_bytes()[..64 * 1024]);
}
