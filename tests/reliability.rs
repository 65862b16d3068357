//! Reliability (DESIGN §13): `kill -9` of the server under load loses nothing acknowledged, and
//! a receiver failing at random leaves no delivery stuck — on SQLite and PostgreSQL.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::receiver::{Receiver, Reply};
use common::{ADMIN_KEY, Backend, ChildServer, Clients, fresh_database};
use loft::proto as pb;

on_both_backends!(kill_9_under_load_loses_nothing_acknowledged, random_failures_leave_nothing_stuck);

async fn project_with_destination(c: &Clients, url: &str, retry: Option<pb::RetryPolicy>) -> String {
    let project = c
        .projects
        .clone()
        .create_project(pb::CreateProjectRequest {
            project: Some(pb::Project { name: "r".into(), ..Default::default() }),
        })
        .await
        .unwrap()
        .into_inner()
        .project
        .unwrap()
        .id;
    let dst = c
        .destinations
        .clone()
        .create_destination(pb::CreateDestinationRequest {
            project_id: project.clone(),
            // A short timeout keeps leases short: a killed node's work comes due again soon.
            destination: Some(pb::Destination {
                url: url.into(),
                retry_policy: retry,
                timeout: Some(prost_types::Duration { seconds: 2, nanos: 0 }),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .destination
        .unwrap();
    let sub = pb::Subscription { destination_id: dst.id, ..Default::default() };
    c.subscriptions
        .clone()
        .create_subscription(pb::CreateSubscriptionRequest { project_id: project.clone(), subscription: Some(sub) })
        .await
        .unwrap();
    project
}

fn publish_request(project: &str, n: usize) -> pb::PublishEventRequest {
    pb::PublishEventRequest {
        project_id: project.into(),
        r#type: "load.test".into(),
        payload: Some(pb::publish_event_request::Payload::Raw(pb::RawPayload {
            body: format!("{{\"n\":{n}}}").into_bytes(),
            content_type: "application/json".into(),
        })),
        ..Default::default()
    }
}

async fn kill_9_under_load_loses_nothing_acknowledged(server: common::TestServer) {
    let backend = server.backend;
    drop(server);
    let (url, _dir) = fresh_database(backend).await;
    let receiver = Receiver::start(vec![]).await;
    let first = ChildServer::spawn(&url).await;
    let c = first.clients(ADMIN_KEY).await;
    let project = project_with_destination(&c, &receiver.url, None).await;

    // Eight publishers run until the server dies under them; only OK answers count as acked.
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let mut workers = Vec::new();
    for w in 0..8 {
        let (mut events, acked, project) = (c.events.clone(), acked.clone(), project.clone());
        workers.push(tokio::spawn(async move {
            for i in 0.. {
                match events.publish_event(publish_request(&project, w * 100_000 + i)).await {
                    Ok(r) => {
                        acked.lock().unwrap().insert(r.into_inner().event.unwrap().id);
                    }
                    Err(_) => return,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    first.kill_9();
    for w in workers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 50, "the load ran ({} acked)", acked.len());

    // Restarted on the same database, every acknowledged event is delivered.
    let _second = ChildServer::spawn(&url).await;
    all_delivered(&receiver, &acked).await;
}

/// Waits until every acknowledged event reached the receiver; duplicates (at-least-once) only
/// ever of the same webhook-id with the same body.
async fn all_delivered(receiver: &Receiver, acked: &HashSet<String>) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let seen: HashSet<String> = receiver.received().iter().map(|r| r.header("webhook-id").to_owned()).collect();
        let missing = acked.difference(&seen).count();
        if missing == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{missing} of {} acknowledged events never delivered", acked.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut bodies = std::collections::HashMap::new();
    for r in receiver.received() {
        let previous = bodies.insert(r.header("webhook-id").to_owned(), r.body.clone());
        assert!(previous.is_none_or(|b| b == r.body), "a duplicate carried another body");
    }
}

/// Two nodes on one PostgreSQL share the work; one is killed with deliveries leased and in
/// flight. The survivor finishes them once their leases lapse: nothing acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_nodes_one_killed_the_other_finishes() {
    let (url, _dir) = fresh_database(Backend::Postgres).await;
    // Slow answers keep deliveries in flight on both nodes when one dies.
    let slow = Reply { status: 200, headers: vec![], delay: Duration::from_millis(1000) };
    let receiver = Receiver::start(vec![slow; 100_000]).await;
    let doomed = ChildServer::spawn(&url).await;
    let survivor = ChildServer::spawn(&url).await;
    let c = doomed.clients(ADMIN_KEY).await;
    let project = project_with_destination(&c, &receiver.url, None).await;
    // Raise the destination's concurrency so both nodes have many attempts in flight.
    let dst = c
        .destinations
        .clone()
        .list_destinations(pb::ListDestinationsRequest { project_id: project.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .destinations
        .remove(0);
    c.destinations
        .clone()
        .update_destination(pb::UpdateDestinationRequest {
            project_id: project.clone(),
            destination: Some(pb::Destination { id: dst.id, max_in_flight: 32, ..Default::default() }),
            update_mask: Some(prost_types::FieldMask { paths: vec!["max_in_flight".into()] }),
        })
        .await
        .unwrap();
    const EVENTS: usize = 600;
    let survivor_clients = survivor.clients(ADMIN_KEY).await;
    let mut publishers = Vec::new();
    for w in 0..8 {
        // Half through each node.
        let mut events = if w % 2 == 0 { c.events.clone() } else { survivor_clients.events.clone() };
        let project = project.clone();
        publishers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in (0..EVENTS).filter(|n| n % 8 == w) {
                let r = events.publish_event(publish_request(&project, n)).await.unwrap();
                ids.push(r.into_inner().event.unwrap().id);
            }
            ids
        }));
    }
    let mut acked = HashSet::new();
    for p in publishers {
        acked.extend(p.await.unwrap());
    }
    // Both nodes are sending (each answer takes a second); kill one mid-flight.
    receiver.wait_for(20, Duration::from_secs(30)).await;
    doomed.kill_9();
    let at_kill = receiver.received().len();
    assert!(at_kill < EVENTS, "the load was still running when the node died ({at_kill} delivered)");
    all_delivered(&receiver, &acked).await;
}

async fn random_failures_leave_nothing_stuck(server: common::TestServer) {
    // Statuses and delays drawn at random (seeded): 500s, 503s, timeouts, slow successes.
    let mut rng = 0x2545F4914F6CDD1Du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let script: Vec<Reply> = (0..400)
        .map(|_| match next() % 6 {
            0 => Reply::status(500),
            1 => Reply::status(503),
            2 => Reply { status: 200, headers: vec![], delay: Duration::from_millis(1500) },
            3 => Reply { status: 200, headers: vec![], delay: Duration::from_millis(50) },
            _ => Reply::status(200),
        })
        .collect();
    let receiver = Receiver::start(script).await;
    let c = server.admin().await;
    let delays = (0..3).map(|_| prost_types::Duration { seconds: 0, nanos: 50_000_000 }).collect();
    let retry =
        Some(pb::RetryPolicy { policy: Some(pb::retry_policy::Policy::Schedule(pb::ScheduleRetryPolicy { delays })) });
    let project = project_with_destination(&c, &receiver.url, retry).await;
    // A 1 s timeout turns the slow (1.5 s) answers into timeouts.
    let dst = c
        .destinations
        .clone()
        .list_destinations(pb::ListDestinationsRequest { project_id: project.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .destinations
        .remove(0);
    c.destinations
        .clone()
        .update_destination(pb::UpdateDestinationRequest {
            project_id: project.clone(),
            destination: Some(pb::Destination {
                id: dst.id,
                timeout: Some(prost_types::Duration { seconds: 1, nanos: 0 }),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask { paths: vec!["timeout".into()] }),
        })
        .await
        .unwrap();
    for n in 0..60 {
        c.events.clone().publish_event(publish_request(&project, n)).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut states = std::collections::HashMap::<i32, usize>::new();
        let mut token = String::new();
        loop {
            let page = c
                .deliveries
                .clone()
                .list_deliveries(pb::ListDeliveriesRequest {
                    project_id: project.clone(),
                    page_size: 1000,
                    page_token: token,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            for d in page.deliveries {
                *states.entry(d.state).or_default() += 1;
            }
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        let finished = states.get(&(pb::DeliveryState::Succeeded as i32)).copied().unwrap_or(0)
            + states.get(&(pb::DeliveryState::Failed as i32)).copied().unwrap_or(0);
        if finished == 60 {
            assert!(states[&(pb::DeliveryState::Succeeded as i32)] > 30, "most succeed within 4 attempts: {states:?}");
            break;
        }
        assert!(Instant::now() < deadline, "deliveries stuck: {states:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = Backend::Sqlite;
}
