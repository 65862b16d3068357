//! `WatchEvents`: the durable feed followed live and resumed from cursors, its filters and
//! payloads, the audit of resource changes, heartbeats, many watchers, a stalled watcher, and
//! (on PostgreSQL) several nodes writing while watchers follow — against the real server.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::receiver::Receiver;
use common::{ADMIN_KEY, Backend, Clients, TestServer, assert_error, violation_fields};
use loft::proto as pb;
use loft::proto::watch_events_response::Activity;
use tonic::Code;

on_both_backends!(
    watch_follows_and_resumes_exactly_once,
    filters_and_payloads,
    resource_changes_are_audited,
    watch_rejects_bad_requests,
    heartbeats_keep_a_quiet_cursor_fresh,
    a_hundred_watchers_receive_everything,
    shutdown_ends_open_watches,
    a_lone_event_arrives_without_a_later_commit,
);

type Stream = tonic::Streaming<pb::WatchEventsResponse>;

struct Setup {
    c: Clients,
    project: String,
    key_id: String,
    destination: pb::Destination,
    receiver: Receiver,
}

/// A project, an EDITOR key for it, and a destination on a loopback receiver subscribed to all.
async fn setup(server: &TestServer) -> Setup {
    let common::EditorProject { project, key_id, clients: c, .. } = common::editor_project(server, "feed").await;
    let receiver = Receiver::start(vec![]).await;
    let destination =
        common::route_to(&c, "", pb::Destination { url: receiver.url.clone(), ..Default::default() }).await;
    Setup { c, project, key_id, destination, receiver }
}

async fn publish(c: &Clients, t: &str, body: &str) -> pb::Event {
    let req = pb::PublishEventRequest {
        r#type: t.into(),
        payload: Some(pb::publish_event_request::Payload::Raw(pb::RawPayload {
            body: body.as_bytes().to_vec(),
            content_type: "application/json".into(),
        })),
        ..Default::default()
    };
    let mut events = c.events.clone();
    let published = tokio::time::timeout(Duration::from_secs(20), events.publish_event(req));
    published.await.expect("publish answers within 20 s").unwrap().into_inner().event.unwrap()
}

async fn open(c: &Clients, req: pb::WatchEventsRequest) -> Stream {
    let mut events = c.events.clone();
    let opened = tokio::time::timeout(Duration::from_secs(20), events.watch_events(req));
    opened.await.expect("WatchEvents answers within 20 s").unwrap().into_inner()
}

fn after(cursor: &str) -> Option<pb::watch_events_request::Start> {
    Some(pb::watch_events_request::Start::AfterCursor(cursor.to_owned()))
}

async fn next(s: &mut Stream) -> pb::WatchEventsResponse {
    tokio::time::timeout(Duration::from_secs(20), s.message())
        .await
        .expect("a feed item within 20 s")
        .expect("the stream stays healthy")
        .expect("the stream stays open")
}

/// The next `n` items that are not heartbeats.
async fn items(s: &mut Stream, n: usize) -> Vec<pb::WatchEventsResponse> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let m = next(s).await;
        if !matches!(m.activity, Some(Activity::Heartbeat(_))) {
            out.push(m);
        }
    }
    out
}

/// The position inside a cursor (the test knows the format; clients treat it as opaque).
fn seq(cursor: &str) -> i64 {
    let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(cursor).unwrap()).unwrap();
    raw.rsplit(':').next().unwrap().parse().unwrap()
}

/// What an item is about: its kind and the id of the thing it reports.
fn about(m: &pb::WatchEventsResponse) -> (&'static str, String) {
    match m.activity.as_ref().unwrap() {
        Activity::EventReceived(e) => ("event_received", e.event.as_ref().unwrap().id.clone()),
        Activity::AttemptFinished(a) => ("attempt_finished", a.attempt.as_ref().unwrap().event_id.clone()),
        Activity::DeliverySucceeded(d) => ("delivery_succeeded", d.delivery.as_ref().unwrap().event_id.clone()),
        Activity::DeliveryFailed(d) => ("delivery_failed", d.delivery.as_ref().unwrap().event_id.clone()),
        Activity::DestinationStateChanged(d) => ("destination_state_changed", d.destination_id.clone()),
        Activity::ResourceChanged(r) => ("resource_changed", r.resource_id.clone()),
        Activity::Heartbeat(_) => ("heartbeat", String::new()),
    }
}

async fn watch_follows_and_resumes_exactly_once(server: TestServer) {
    let s = setup(&server).await;
    let mut live = open(&s.c, pb::WatchEventsRequest::default()).await;
    // The stream opens with a heartbeat carrying the position it starts from.
    let opening = next(&mut live).await;
    assert!(matches!(opening.activity, Some(Activity::Heartbeat(_))), "{opening:?}");

    let mut published = Vec::new();
    for i in 0..3 {
        published.push(publish(&s.c, "invoice.paid", &format!("{{\"n\":{i}}}")).await.id);
    }
    // Each event: received, one attempt, one success — 9 items, in commit order.
    let first = items(&mut live, 9).await;
    let seqs: Vec<i64> = first.iter().map(|m| seq(&m.cursor)).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "cursors increase: {seqs:?}");
    for id in &published {
        let at = |kind: &str| first.iter().position(|m| about(m) == (kind_static(kind), id.clone())).unwrap();
        assert!(at("event_received") < at("attempt_finished"), "{id}");
        assert!(at("attempt_finished") < at("delivery_succeeded"), "{id}");
    }
    let attempt = first.iter().find_map(|m| match &m.activity {
        Some(Activity::AttemptFinished(a)) => a.attempt.clone(),
        _ => None,
    });
    let attempt = attempt.unwrap();
    assert_eq!(attempt.destination_id, s.destination.id);
    assert_eq!(attempt.response.unwrap().status_code, 200);
    assert!(attempt.request.unwrap().body.is_empty(), "bodies only with include_payload");

    // Disconnect after the fourth item; more happens meanwhile; resume from its cursor.
    drop(live);
    for i in 3..5 {
        published.push(publish(&s.c, "invoice.paid", &format!("{{\"n\":{i}}}")).await.id);
    }
    s.receiver.wait_for(5, Duration::from_secs(20)).await;
    let mut resumed = open(&s.c, pb::WatchEventsRequest { start: after(&first[3].cursor), ..Default::default() }).await;
    let rest = items(&mut resumed, 5 + 6).await;
    // The same items (an event's status is read when the item is sent, so it may have moved on).
    let position = |ms: &[pb::WatchEventsResponse]| ms.iter().map(|m| (m.cursor.clone(), about(m))).collect::<Vec<_>>();
    assert_eq!(position(&rest[..5]), position(&first[4..]), "resuming continues exactly after the cursor");
    let all: Vec<_> = first[..4].iter().chain(&rest).map(about).collect();
    let distinct: HashSet<_> = all.iter().cloned().collect();
    assert_eq!(distinct.len(), all.len(), "no item twice: {all:?}");
    assert_eq!(all.len(), 15, "every item once: 5 events × 3");
    for id in &published {
        for kind in ["event_received", "attempt_finished", "delivery_succeeded"] {
            assert!(distinct.contains(&(kind_static(kind), id.clone())), "{kind} of {id}");
        }
    }
    // Nothing more arrives but heartbeats.
    let quiet = tokio::time::timeout(Duration::from_millis(1500), resumed.message()).await;
    if let Ok(Ok(Some(m))) = quiet {
        assert!(matches!(m.activity, Some(Activity::Heartbeat(_))), "unexpected {m:?}");
    }

    // A watcher "from now" can resume from its opening heartbeat and miss nothing.
    let mut again = open(&s.c, pb::WatchEventsRequest { start: after(&opening.cursor), ..Default::default() }).await;
    assert_eq!(items(&mut again, 1).await[0].cursor, first[0].cursor);
    // From a time: the first item at or after it.
    let start = first[0].time;
    let mut timed = open(
        &s.c,
        pb::WatchEventsRequest { start: start.map(pb::watch_events_request::Start::StartTime), ..Default::default() },
    )
    .await;
    assert_eq!(items(&mut timed, 1).await[0].cursor, first[0].cursor);
}

fn kind_static(kind: &str) -> &'static str {
    ["event_received", "attempt_finished", "delivery_succeeded", "delivery_failed"]
        .into_iter()
        .find(|k| *k == kind)
        .unwrap()
}

async fn filters_and_payloads(server: TestServer) {
    let s = setup(&server).await;
    let orders = pb::WatchEventsRequest {
        event_types: vec!["order.*".into()],
        kinds: vec![pb::ActivityKind::EventReceived as i32],
        include_payload: true,
        ..Default::default()
    };
    let mut with_payload = open(&s.c, orders.clone()).await;
    let mut without = open(&s.c, pb::WatchEventsRequest { include_payload: false, ..orders }).await;
    let mut attempts = open(
        &s.c,
        pb::WatchEventsRequest {
            destination_ids: vec![s.destination.id.clone()],
            kinds: vec![pb::ActivityKind::AttemptFinished as i32],
            include_payload: true,
            ..Default::default()
        },
    )
    .await;
    publish(&s.c, "invoice.paid", "{\"skip\":true}").await;
    let order = publish(&s.c, "order.created", "{\"n\":1}").await;

    let got = items(&mut with_payload, 1).await.remove(0);
    let Some(Activity::EventReceived(e)) = got.activity else { panic!("{got:?}") };
    let e = e.event.unwrap();
    assert_eq!((e.id.as_str(), e.r#type.as_str()), (order.id.as_str(), "order.created"));
    assert_eq!(e.body, b"{\"n\":1}");
    assert!(e.json.is_some(), "JSON bodies come parsed too");

    let got = items(&mut without, 1).await.remove(0);
    let Some(Activity::EventReceived(e)) = got.activity else { panic!("{got:?}") };
    assert_eq!(e.event.as_ref().unwrap().id, order.id);
    assert!(e.event.unwrap().body.is_empty(), "no body without include_payload");

    // Both events' attempts went to the one destination, bodies included.
    for m in items(&mut attempts, 2).await {
        let Some(Activity::AttemptFinished(a)) = m.activity else { panic!("{m:?}") };
        let a = a.attempt.unwrap();
        assert_eq!(a.destination_id, s.destination.id);
        assert!(!a.request.unwrap().body.is_empty(), "request body with include_payload");
    }

    // A filter on another destination sees none of it (but heartbeats keep coming).
    let other =
        s.c.destinations
            .clone()
            .create_destination(pb::CreateDestinationRequest {
                destination: Some(pb::Destination { url: "http://127.0.0.1:9/none".into(), ..Default::default() }),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .destination
            .unwrap();
    let since = pb::watch_events_request::Start::StartTime(prost_types::Timestamp { seconds: 0, nanos: 0 });
    let mut elsewhere = open(
        &s.c,
        pb::WatchEventsRequest {
            destination_ids: vec![other.id.clone()],
            kinds: vec![pb::ActivityKind::AttemptFinished as i32],
            start: Some(since),
            ..Default::default()
        },
    )
    .await;
    for _ in 0..3 {
        let m = next(&mut elsewhere).await;
        assert!(matches!(m.activity, Some(Activity::Heartbeat(_))), "filtered out: {m:?}");
    }
}

async fn resource_changes_are_audited(server: TestServer) {
    let s = setup(&server).await;
    let mut feed = open(
        &s.c,
        pb::WatchEventsRequest {
            kinds: vec![pb::ActivityKind::ResourceChanged as i32, pb::ActivityKind::DestinationStateChanged as i32],
            ..Default::default()
        },
    )
    .await;
    let mut dst = s.c.destinations.clone();
    let d = dst
        .create_destination(pb::CreateDestinationRequest {
            destination: Some(pb::Destination { url: "http://127.0.0.1:9/a".into(), ..Default::default() }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .destination
        .unwrap();
    dst.update_destination(pb::UpdateDestinationRequest {
        destination: Some(pb::Destination {
            id: d.id.clone(),
            url: "http://127.0.0.1:9/b".into(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask { paths: vec!["url".into()] }),
        ..Default::default()
    })
    .await
    .unwrap();
    dst.pause_destination(pb::PauseDestinationRequest { destination_id: d.id.clone(), ..Default::default() })
        .await
        .unwrap();
    dst.delete_destination(pb::DeleteDestinationRequest { destination_id: d.id.clone(), ..Default::default() })
        .await
        .unwrap();

    let got = items(&mut feed, 5).await;
    let changes: Vec<(i32, Vec<String>)> = got
        .iter()
        .filter_map(|m| match &m.activity {
            Some(Activity::ResourceChanged(r)) => {
                assert_eq!(r.resource_type, "loft.v1.Destination");
                assert_eq!(r.resource_id, d.id);
                assert_eq!(r.actor_key_id, s.key_id, "the key that made the change");
                Some((r.action, r.changed_fields.clone()))
            }
            _ => None,
        })
        .collect();
    use pb::ChangeAction as A;
    assert_eq!(
        changes,
        vec![
            (A::Created as i32, vec![]),
            (A::Updated as i32, vec!["url".to_owned()]),
            (A::Updated as i32, vec!["state".to_owned()]),
            (A::Deleted as i32, vec![]),
        ]
    );
    let paused = got
        .iter()
        .find_map(|m| match &m.activity {
            Some(Activity::DestinationStateChanged(c)) => Some(c.clone()),
            _ => None,
        })
        .expect("the pause is a state change too");
    assert_eq!(paused.destination_id, d.id);
    assert_eq!(paused.state, pb::DestinationState::Paused as i32);
    assert_eq!(paused.reason, format!("paused by {}", s.key_id));
    // The audit items of this project are not visible from another project.
    assert!(got.iter().all(|m| !m.cursor.is_empty()));
}

async fn watch_rejects_bad_requests(server: TestServer) {
    let s = setup(&server).await;
    let other = setup(&server).await;
    let watch = |c: &Clients, req: pb::WatchEventsRequest| {
        let mut events = c.events.clone();
        async move { events.watch_events(req).await.map(|_| ()) }
    };
    let status = assert_error(
        watch(&s.c, pb::WatchEventsRequest { start: after("not-a-cursor"), ..Default::default() }).await,
        Code::InvalidArgument,
        "INVALID_CURSOR",
    );
    assert_eq!(violation_fields(&status), ["after_cursor"]);
    // A cursor of another project.
    let mut theirs = open(&other.c, pb::WatchEventsRequest::default()).await;
    let their_cursor = next(&mut theirs).await.cursor;
    assert_error(
        watch(&s.c, pb::WatchEventsRequest { start: after(&their_cursor), ..Default::default() }).await,
        Code::InvalidArgument,
        "INVALID_CURSOR",
    );
    let status = assert_error(
        watch(
            &s.c,
            pb::WatchEventsRequest {
                kinds: vec![0, 99],
                source_ids: vec!["src_nope".into()],
                event_types: vec!["bad pattern".into()],
                ..Default::default()
            },
        )
        .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violation_fields(&status), ["source_ids[0]", "event_types[0]", "kinds[0]", "kinds[1]"]);
    // Another project's feed is not found, like its other resources.
    assert_error(
        watch(&s.c, pb::WatchEventsRequest { project_id: other.project.clone(), ..Default::default() }).await,
        Code::NotFound,
        "RESOURCE_NOT_FOUND",
    );
    assert_error(
        watch(&Clients::new(server.channel().await, ""), pb::WatchEventsRequest::default()).await,
        Code::Unauthenticated,
        "API_KEY_MISSING",
    );

    // A cursor whose following items retention deleted has expired.
    let mut live = open(&s.c, pb::WatchEventsRequest::default()).await;
    let start = next(&mut live).await.cursor;
    publish(&s.c, "invoice.paid", "{}").await;
    // Received, attempted, delivered: the last item is the newest of the whole feed.
    let item = items(&mut live, 3).await.remove(2);
    let far_future = loft::timeutil::now_micros() + 3_600_000_000;
    let deleted = server.running().store.delete_feed_before(far_future, 100_000).await.unwrap();
    assert!(deleted > 0);
    assert_error(
        watch(&s.c, pb::WatchEventsRequest { start: after(&start), ..Default::default() }).await,
        Code::OutOfRange,
        "CURSOR_EXPIRED",
    );
    // A cursor at the end of what was deleted is still good: nothing after it is missing.
    let mut fresh = open(&s.c, pb::WatchEventsRequest { start: after(&item.cursor), ..Default::default() }).await;
    let _ = next(&mut fresh).await;
}

async fn heartbeats_keep_a_quiet_cursor_fresh(server: TestServer) {
    let s = setup(&server).await;
    let busy = setup(&server).await;
    // Only this project's invoices: nothing matches while another project is busy.
    let mut quiet =
        open(&s.c, pb::WatchEventsRequest { event_types: vec!["invoice.*".into()], ..Default::default() }).await;
    let opening = next(&mut quiet).await;
    publish(&busy.c, "invoice.paid", "{}").await;
    busy.receiver.wait_for(1, Duration::from_secs(20)).await;
    // The test server beats every second; within a few the cursor has moved past the other
    // project's items, so a resume does not read them again.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let fresh = loop {
        let m = next(&mut quiet).await;
        assert!(matches!(m.activity, Some(Activity::Heartbeat(_))), "nothing of this project: {m:?}");
        if seq(&m.cursor) > seq(&opening.cursor) {
            break m;
        }
        assert!(std::time::Instant::now() < deadline, "heartbeats never moved the cursor");
    };
    let mine = publish(&s.c, "invoice.paid", "{}").await;
    let mut resumed = open(
        &s.c,
        pb::WatchEventsRequest {
            event_types: vec!["invoice.*".into()],
            kinds: vec![pb::ActivityKind::EventReceived as i32],
            start: after(&fresh.cursor),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(about(&items(&mut resumed, 1).await[0]), ("event_received", mine.id));
}

async fn a_hundred_watchers_receive_everything(server: TestServer) {
    let s = setup(&server).await;
    let request = pb::WatchEventsRequest { kinds: vec![pb::ActivityKind::EventReceived as i32], ..Default::default() };
    let mut watchers = Vec::new();
    for _ in 0..100 {
        let mut w = open(&s.c, request.clone()).await;
        next(&mut w).await; // subscribed: the opening heartbeat
        watchers.push(w);
    }
    let mut publishers = Vec::new();
    for i in 0..20 {
        let c = s.c.clone();
        publishers.push(tokio::spawn(async move { publish(&c, "invoice.paid", &format!("{{\"n\":{i}}}")).await.id }));
    }
    let mut published = HashSet::new();
    for p in publishers {
        published.insert(p.await.unwrap());
    }
    let mut readers = Vec::new();
    for mut w in watchers {
        readers
            .push(tokio::spawn(async move { items(&mut w, 20).await.iter().map(|m| about(m).1).collect::<Vec<_>>() }));
    }
    let mut orders = HashMap::new();
    for r in readers {
        let got = r.await.unwrap();
        assert_eq!(got.iter().cloned().collect::<HashSet<_>>(), published, "every watcher gets all 20");
        orders.insert(got, ());
    }
    assert_eq!(orders.len(), 1, "every watcher sees the same order");
}

/// A watcher that stops reading: writers go on, the server's memory stays bounded, and when the
/// watcher reads again it gets every item once (from the log).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_watcher_leaves_memory_bounded() {
    let (url, _dir) = common::fresh_database(Backend::Sqlite).await;
    let server = common::ChildServer::spawn(&url).await;
    let c = server.clients(ADMIN_KEY).await;
    let project = c
        .projects
        .clone()
        .create_project(pb::CreateProjectRequest {
            project: Some(pb::Project { name: "stall".into(), ..Default::default() }),
        })
        .await
        .unwrap()
        .into_inner()
        .project
        .unwrap()
        .id;
    let request = pb::WatchEventsRequest {
        project_id: project.clone(),
        kinds: vec![pb::ActivityKind::EventReceived as i32],
        include_payload: true,
        ..Default::default()
    };
    let mut stalled = c.events.clone().watch_events(request).await.unwrap().into_inner();
    next(&mut stalled).await;

    const EVENTS: usize = 1200;
    const BODY: usize = 64 * 1024;
    let publish_some = |from: usize, to: usize| {
        let (c, project) = (c.clone(), project.clone());
        async move {
            let mut tasks = Vec::new();
            for w in 0..8 {
                let (mut events, project) = (c.events.clone(), project.clone());
                tasks.push(tokio::spawn(async move {
                    for i in (from..to).filter(|i| i % 8 == w) {
                        let mut body = format!("{{\"n\":{i},\"pad\":\"").into_bytes();
                        body.resize(BODY - 2, b'x');
                        body.extend_from_slice(b"\"}");
                        let req = pb::PublishEventRequest {
                            project_id: project.clone(),
                            r#type: "bulk.item".into(),
                            payload: Some(pb::publish_event_request::Payload::Raw(pb::RawPayload {
                                body,
                                content_type: "application/json".into(),
                            })),
                            ..Default::default()
                        };
                        events.publish_event(req).await.unwrap();
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        }
    };
    // Warm up (allocator arenas, page cache, connection pool), then measure.
    publish_some(0, 100).await;
    let before = server.rss_bytes();
    publish_some(100, EVENTS).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = server.rss_bytes();
    let grown = after.saturating_sub(before);
    let published_bytes = (EVENTS - 100) * BODY;
    eprintln!(
        "stalled watcher: RSS {} MiB → {} MiB (+{} MiB) while {} MiB of payloads were published",
        before >> 20,
        after >> 20,
        grown >> 20,
        published_bytes >> 20
    );
    assert!(grown < 40 << 20, "server memory grew by {} MiB behind a stalled watcher", grown >> 20);

    // Reading again, it gets everything, in order, each once, bodies included.
    let got = items(&mut stalled, EVENTS).await;
    let mut seen = HashSet::new();
    let mut last = 0;
    for m in &got {
        let Some(Activity::EventReceived(e)) = &m.activity else { panic!("{m:?}") };
        let e = e.event.as_ref().unwrap();
        assert_eq!(e.body.len(), BODY);
        assert!(seen.insert(e.id.clone()), "{} twice", e.id);
        assert!(seq(&m.cursor) > last);
        last = seq(&m.cursor);
    }
    assert_eq!(seen.len(), EVENTS);
}

/// Several nodes on one PostgreSQL: concurrent publishers on both, watchers on both. Each
/// watcher sees every item exactly once, in strictly increasing, gap-free sequence order — a
/// reader never skips an item that commits later with a smaller number.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_two_nodes_commit_order_without_gaps() {
    let server = TestServer::start(Backend::Postgres).await;
    let second = common::start_on_free_ports(server.config.clone()).await;
    let s = setup(&server).await;
    let secret = {
        let admin = server.admin().await;
        let key =
            pb::ApiKey { project_id: s.project.clone(), role: pb::ApiKeyRole::Editor as i32, ..Default::default() };
        admin
            .keys
            .clone()
            .create_api_key(pb::CreateApiKeyRequest { api_key: Some(key) })
            .await
            .unwrap()
            .into_inner()
            .secret
    };
    // Each watcher on a connection of its own: an HTTP/2 connection's flow-control window is
    // shared, so a stream nobody reads yet would hold up the publishes beside it.
    let connect = |addr: std::net::SocketAddr, key: String| async move {
        let channel =
            tonic::transport::Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
        Clients::new(channel, &key)
    };
    let first_addr = server.running().grpc_addr;
    let publishers = [connect(first_addr, secret.clone()).await, connect(second.grpc_addr, secret.clone()).await];

    const PER_TASK: usize = 40;
    const TASKS: usize = 8;
    let total = TASKS * PER_TASK;
    let only_events =
        pb::WatchEventsRequest { kinds: vec![pb::ActivityKind::EventReceived as i32], ..Default::default() };
    // Two watchers of the events (one per node) and, on the second node, one of everything:
    // events, attempts and successes, to check that the numbering has no gap.
    let mut watchers = Vec::new();
    for (addr, request, n) in [
        (first_addr, only_events.clone(), total),
        (second.grpc_addr, only_events, total),
        (second.grpc_addr, pb::WatchEventsRequest::default(), total * 3),
    ] {
        let c = connect(addr, secret.clone()).await;
        let mut stream = open(&c, request).await;
        let opening = seq(&next(&mut stream).await.cursor);
        watchers.push(tokio::spawn(async move {
            let _keep = c;
            (opening, items(&mut stream, n).await)
        }));
    }

    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let c = publishers[t % 2].clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..PER_TASK {
                ids.push(publish(&c, "load.item", &format!("{{\"t\":{t},\"i\":{i}}}")).await.id);
            }
            ids
        }));
    }
    let mut published = HashSet::new();
    for t in tasks {
        published.extend(t.await.unwrap());
    }
    let mut results = Vec::new();
    for w in watchers {
        results.push(w.await.unwrap());
    }
    for (name, (_, got)) in ["first node", "second node"].into_iter().zip(&results) {
        let ids: Vec<String> = got.iter().map(|m| about(m).1).collect();
        assert_eq!(ids.iter().cloned().collect::<HashSet<_>>(), published, "{name}: every event");
        assert_eq!(ids.len(), total, "{name}: each once");
        let seqs: Vec<i64> = got.iter().map(|m| seq(&m.cursor)).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{name}: in commit order");
    }
    let (opening, all) = &results[2];
    let seqs: Vec<i64> = all.iter().map(|m| seq(&m.cursor)).collect();
    let expected: Vec<i64> = (opening + 1..=opening + seqs.len() as i64).collect();
    assert_eq!(seqs, expected, "no gap and no reordering in the feed");
    second.shutdown().await;
}

/// Stopping the server ends open watches (so a graceful shutdown does not wait on them), with
/// UNAVAILABLE: the client's cue to reconnect and resume.
async fn shutdown_ends_open_watches(mut server: TestServer) {
    let s = setup(&server).await;
    let mut watch = open(&s.c, pb::WatchEventsRequest::default()).await;
    let opening = next(&mut watch).await;
    tokio::time::timeout(Duration::from_secs(10), server.restart()).await.expect("shutdown does not wait on watchers");
    let ended = tokio::time::timeout(Duration::from_secs(5), watch.message()).await.expect("the stream ends");
    match ended {
        Err(status) => assert_eq!(status.code(), Code::Unavailable, "{status:?}"),
        Ok(None) => {}
        Ok(Some(m)) => panic!("unexpected {m:?}"),
    }
    // Resuming on the restarted server works from the last cursor.
    let c = server.clients(ADMIN_KEY).await;
    let mut resumed = open(
        &c,
        pb::WatchEventsRequest { project_id: s.project.clone(), start: after(&opening.cursor), ..Default::default() },
    )
    .await;
    assert!(matches!(next(&mut resumed).await.activity, Some(Activity::Heartbeat(_))));
}

/// One event and nothing after it (no subscription, so no attempts follow): it must reach a
/// watcher that opened just before, though no later commit wakes anyone. The hub used to start
/// its broadcast from a horizon read after such a commit, so the event waited for the next one.
async fn a_lone_event_arrives_without_a_later_commit(server: TestServer) {
    let admin = server.admin().await;
    for round in 0..3 {
        let project = admin
            .projects
            .clone()
            .create_project(pb::CreateProjectRequest {
                project: Some(pb::Project { name: format!("lone-{round}"), ..Default::default() }),
            })
            .await
            .unwrap()
            .into_inner()
            .project
            .unwrap()
            .id;
        let request = pb::WatchEventsRequest {
            project_id: project.clone(),
            kinds: vec![pb::ActivityKind::EventReceived as i32],
            ..Default::default()
        };
        let mut watch = open(&admin, request).await;
        next(&mut watch).await;
        let event = admin
            .events
            .clone()
            .publish_event(pb::PublishEventRequest {
                project_id: project,
                r#type: "lone".into(),
                payload: Some(pb::publish_event_request::Payload::Raw(pb::RawPayload {
                    body: b"{}".to_vec(),
                    content_type: "application/json".into(),
                })),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .event
            .unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), items(&mut watch, 1))
            .await
            .unwrap_or_else(|_| panic!("round {round}: the lone event never arrived"));
        assert_eq!(about(&got[0]), ("event_received", event.id));
        // Nobody listens for a moment, as between two runs of `loft listen`.
        drop(watch);
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
}
