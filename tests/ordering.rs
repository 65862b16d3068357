//! ORDERED destinations and fairness between destinations, end to end: real receivers on
//! loopback that record what they get, in what order and how many requests overlapped.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use common::{Clients, TestServer};
use loft::proto as pb;

on_both_backends!(
    ordered_keeps_publish_order_under_retries,
    slow_destination_does_not_delay_others,
    rate_limited_backlog_does_not_delay_others,
);

/// A receiver of `{"seq": n}` bodies: answers after `delay`, fails a sequence number with 500 as
/// often as `failures` says, and records every request and the most that overlapped.
#[derive(Clone)]
struct SeqReceiver {
    url: String,
    state: Arc<ReceiverState>,
}

#[derive(Default)]
struct ReceiverState {
    delay: Duration,
    failures: Mutex<HashMap<u64, u32>>,
    /// Every request: its sequence number, whether it was answered 2xx, and when it arrived.
    log: Mutex<Vec<(u64, bool, Instant)>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl SeqReceiver {
    async fn start(delay: Duration, failures: &[(u64, u32)]) -> Self {
        let state = Arc::new(ReceiverState {
            delay,
            failures: Mutex::new(failures.iter().copied().collect()),
            ..Default::default()
        });
        let app = Router::new().fallback(handle).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, state }
    }

    fn log(&self) -> Vec<(u64, bool, Instant)> {
        self.state.log.lock().unwrap().clone()
    }

    /// Sequence numbers answered 2xx, in the order they arrived.
    fn succeeded(&self) -> Vec<u64> {
        self.log().into_iter().filter(|r| r.1).map(|r| r.0).collect()
    }

    fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    /// Waits until `n` requests were answered 2xx (panics after `within`).
    async fn wait_for_successes(&self, n: usize, within: Duration) -> Vec<u64> {
        let deadline = Instant::now() + within;
        loop {
            let ok = self.succeeded();
            if ok.len() >= n {
                return ok;
            }
            assert!(
                Instant::now() < deadline,
                "receiver got {} of {n} successful requests: {:?}",
                ok.len(),
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn handle(State(s): State<Arc<ReceiverState>>, body: Bytes) -> StatusCode {
    let now = s.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    s.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let seq =
        serde_json::from_slice::<serde_json::Value>(&body).ok().and_then(|v| v["seq"].as_u64()).unwrap_or(u64::MAX);
    let fail = {
        let mut failures = s.failures.lock().unwrap();
        match failures.get_mut(&seq) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    };
    if !s.delay.is_zero() {
        tokio::time::sleep(s.delay).await;
    }
    // Logged before the answer leaves, so a request that overlaps this one is logged after it.
    s.log.lock().unwrap().push((seq, !fail, Instant::now()));
    s.in_flight.fetch_sub(1, Ordering::SeqCst);
    if fail { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::OK }
}

/// A project with an EDITOR key; returns its clients and id.
async fn project_with_id(server: &TestServer) -> (Clients, String) {
    let p = common::editor_project(server, "ordering").await;
    (p.clients, p.project)
}

async fn project(server: &TestServer) -> Clients {
    project_with_id(server).await.0
}

/// Creates `destination` and `subscriptions` subscriptions of it to events of `event_type`;
/// returns its id.
async fn destination(c: &Clients, destination: pb::Destination, event_type: &str, subscriptions: usize) -> String {
    let id = c
        .destinations
        .clone()
        .create_destination(pb::CreateDestinationRequest { destination: Some(destination), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .destination
        .unwrap()
        .id;
    for _ in 0..subscriptions {
        let sub = pb::Subscription {
            destination_id: id.clone(),
            event_types: vec![event_type.to_owned()],
            ..Default::default()
        };
        c.subscriptions
            .clone()
            .create_subscription(pb::CreateSubscriptionRequest { subscription: Some(sub), ..Default::default() })
            .await
            .unwrap();
    }
    id
}

async fn publish(c: &Clients, event_type: &str, seq: u64) -> pb::Event {
    let req = pb::PublishEventRequest {
        r#type: event_type.into(),
        payload: Some(pb::publish_event_request::Payload::Raw(pb::RawPayload {
            body: format!("{{\"seq\": {seq}}}").into_bytes(),
            content_type: "application/json".into(),
        })),
        ..Default::default()
    };
    c.events.clone().publish_event(req).await.unwrap().into_inner().event.unwrap()
}

/// Retries after 150 ms each, up to ten attempts.
fn quick_retries() -> Option<pb::RetryPolicy> {
    let delays = (0..9).map(|_| prost_types::Duration { seconds: 0, nanos: 150_000_000 }).collect();
    Some(pb::RetryPolicy { policy: Some(pb::retry_policy::Policy::Schedule(pb::ScheduleRetryPolicy { delays })) })
}

/// Checks what a receiver of an ORDERED destination saw for events published as `0..n`: never
/// two requests at once, successes in publish order, and a retried event repeated only until it
/// succeeded (no later event in between).
fn assert_fifo(receiver: &SeqReceiver, n: u64) {
    assert_eq!(receiver.max_in_flight(), 1, "ORDERED: requests overlapped at the receiver: {:?}", receiver.log());
    assert_eq!(receiver.succeeded(), (0..n).collect::<Vec<_>>(), "ORDERED: successes out of publish order");
    let mut runs: Vec<u64> = receiver.log().iter().map(|r| r.0).collect();
    runs.dedup();
    assert_eq!(runs, (0..n).collect::<Vec<_>>(), "ORDERED: a retried event was not repeated consecutively");
}

async fn ordered_keeps_publish_order_under_retries(server: TestServer) {
    let c = project(&server).await;
    // Event 2 fails three times, event 5 once; each request takes a while, so overlap would show.
    let receiver = SeqReceiver::start(Duration::from_millis(30), &[(2, 3), (5, 1)]).await;
    let d = pb::Destination {
        url: receiver.url.clone(),
        ordering: pb::DestinationOrdering::Ordered as i32,
        // ORDERED sends one at a time whatever max_in_flight says.
        max_in_flight: 16,
        retry_policy: quick_retries(),
        ..Default::default()
    };
    destination(&c, d, "task.*", 1).await;
    const N: u64 = 10;
    for seq in 0..N {
        publish(&c, "task.created", seq).await;
    }
    receiver.wait_for_successes(N as usize, Duration::from_secs(30)).await;
    assert_fifo(&receiver, N);
    assert_eq!(receiver.log().len(), N as usize + 4, "each failure retried once, nothing else repeated");
}

/// Publishes `events` events of `event_type` from a few concurrent publishers.
async fn publish_many(c: &Clients, event_type: &str, events: u64) {
    let mut tasks = Vec::new();
    for p in 0..4 {
        let c = c.clone();
        let event_type = event_type.to_owned();
        tasks.push(tokio::spawn(async move {
            for seq in (p..events).step_by(4) {
                publish(&c, &event_type, seq).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// With destination `a` backlogged, events for another destination are delivered promptly.
async fn assert_prompt_while_backlogged(c: &Clients, a: &SeqReceiver, a_total: usize) {
    let b = SeqReceiver::start(Duration::ZERO, &[]).await;
    destination(c, pb::Destination { url: b.url.clone(), ..Default::default() }, "b.*", 1).await;
    let start = Instant::now();
    for seq in 0..10 {
        publish(c, "b.created", seq).await;
    }
    b.wait_for_successes(10, Duration::from_secs(30)).await;
    let took = start.elapsed();
    let a_done = a.log().len();
    assert!(
        took < Duration::from_secs(4),
        "destination B's 10 events took {took:?} to deliver while A was backlogged ({a_done} of {a_total} sent)"
    );
    assert!(a_done < a_total / 2, "A was not backlogged during the check ({a_done} of {a_total} sent)");
}

async fn slow_destination_does_not_delay_others(server: TestServer) {
    let c = project(&server).await;
    // A: 2 s per request and 1200 deliveries (120 events × 10 subscriptions): with 16 in flight,
    // two and a half minutes of work, more than a node holds in flight.
    let a = SeqReceiver::start(Duration::from_secs(2), &[]).await;
    destination(&c, pb::Destination { url: a.url.clone(), ..Default::default() }, "a.*", 10).await;
    publish_many(&c, "a.created", 120).await;
    // Let the dispatcher take all it will of A first.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(a.max_in_flight() <= 16, "A's max_in_flight exceeded: {}", a.max_in_flight());
    assert_prompt_while_backlogged(&c, &a, 1200).await;
}

async fn rate_limited_backlog_does_not_delay_others(server: TestServer) {
    let c = project(&server).await;
    // A: 5 requests/s and 1000 deliveries (100 events × 10 subscriptions).
    let a = SeqReceiver::start(Duration::ZERO, &[]).await;
    let d = pb::Destination {
        url: a.url.clone(),
        rate_limit: Some(pb::RateLimit { per_second: 5, burst: 1 }),
        ..Default::default()
    };
    destination(&c, d, "a.*", 10).await;
    publish_many(&c, "a.created", 100).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_prompt_while_backlogged(&c, &a, 1000).await;
}

mod postgres_nodes {
    use super::*;

    /// Two nodes on one PostgreSQL database, both woken by publishes, never send two deliveries
    /// of an ORDERED destination at once nor out of order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_nodes_keep_an_ordered_destination_fifo() {
        let server = TestServer::start(common::Backend::Postgres).await;
        let second = common::start_on_free_ports(server.config.clone()).await;
        let (c, project_id) = project_with_id(&server).await;
        let c2 = Clients::new(
            tonic::transport::Channel::from_shared(format!("http://{}", second.grpc_addr))
                .unwrap()
                .connect()
                .await
                .unwrap(),
            common::ADMIN_KEY,
        );
        let receiver = SeqReceiver::start(Duration::from_millis(40), &[(3, 2), (11, 1)]).await;
        let d = pb::Destination {
            url: receiver.url.clone(),
            ordering: pb::DestinationOrdering::Ordered as i32,
            retry_policy: quick_retries(),
            ..Default::default()
        };
        destination(&c, d, "task.*", 1).await;
        // Alternate the publishing node, so that both dispatchers are woken and race for the work.
        const N: u64 = 20;
        for seq in 0..N {
            if seq % 2 == 0 {
                publish(&c, "task.created", seq).await;
            } else {
                let req = pb::PublishEventRequest {
                    project_id: project_id.clone(),
                    r#type: "task.created".into(),
                    payload: Some(pb::publish_event_request::Payload::Raw(pb::RawPayload {
                        body: format!("{{\"seq\": {seq}}}").into_bytes(),
                        content_type: "application/json".into(),
                    })),
                    ..Default::default()
                };
                c2.events.clone().publish_event(req).await.unwrap();
            }
        }
        receiver.wait_for_successes(N as usize, Duration::from_secs(60)).await;
        assert_fifo(&receiver, N);
        second.shutdown().await;
    }
}
