//! PostgreSQL restarted under load: health is `NOT_SERVING` (and `/readyz` 503) while it is
//! down, `SERVING` again once it is back, with no restart of Loft; every event acknowledged
//! before, during or after the outage is delivered. Uses a PostgreSQL cluster of its own, so
//! stopping it disturbs no other test.

mod common;

use std::collections::HashSet;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::receiver::Receiver;
use loft::proto as pb;

use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

struct Cluster {
    dir: String,
}

impl Cluster {
    fn start() -> (Self, String) {
        let dir = format!("/tmp/loft-pg-outage-{}", std::process::id());
        let out = Command::new("scripts/pg-start").arg(&dir).output().expect("scripts/pg-start");
        assert!(out.status.success(), "pg-start: {}", String::from_utf8_lossy(&out.stderr));
        (Self { dir }, String::from_utf8(out.stdout).unwrap().trim().to_owned())
    }

    fn pg_ctl(&self, args: &[&str]) {
        let bin =
            Command::new("sh").arg("-c").arg("ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1").output().unwrap();
        let pg_ctl = format!("{}/pg_ctl", String::from_utf8(bin.stdout).unwrap().trim());
        let data = format!("{}/data", self.dir);
        let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        let mut cmd = if root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", &pg_ctl]);
            c
        } else {
            Command::new(&pg_ctl)
        };
        let status = cmd.args(["-D", &data, "-w"]).args(args).status().unwrap();
        assert!(status.success(), "pg_ctl {args:?}");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("scripts/pg-stop").arg(&self.dir).status();
    }
}

async fn wait_for(health: &mut HealthClient<tonic::transport::Channel>, want: ServingStatus) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = health
            .check(HealthCheckRequest { service: "loft.v1.SourceService".into() })
            .await
            .unwrap()
            .into_inner()
            .status;
        if got == want as i32 {
            return;
        }
        assert!(Instant::now() < deadline, "health stayed {got} instead of {want:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_postgres_availability() {
    common::install_log_capture();
    let (cluster, url) = Cluster::start();
    let mut config = loft::config::ServeConfig::for_tests(&url);
    config.master_key = Some("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into());
    config.bootstrap_admin_key = Some(common::ADMIN_KEY.into());
    let running = common::start_on_free_ports(config).await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", running.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel.clone());
    let readyz = format!("http://{}/readyz", running.http_addr);
    wait_for(&mut health, ServingStatus::Serving).await;

    // Load: publishers that keep going through the outage; only OK answers count as acked.
    let receiver = Receiver::start(vec![]).await;
    let admin = common::Clients::new(channel.clone(), common::ADMIN_KEY);
    let project = admin
        .projects
        .clone()
        .create_project(pb::CreateProjectRequest {
            project: Some(pb::Project { name: "outage".into(), ..Default::default() }),
        })
        .await
        .unwrap()
        .into_inner()
        .project
        .unwrap()
        .id;
    let destination = pb::Destination { url: receiver.url.clone(), ..Default::default() };
    let destination = admin
        .destinations
        .clone()
        .create_destination(pb::CreateDestinationRequest {
            project_id: project.clone(),
            destination: Some(destination),
        })
        .await
        .unwrap()
        .into_inner()
        .destination
        .unwrap();
    let get_destination =
        pb::GetDestinationRequest { project_id: project.clone(), destination_id: destination.id.clone() };
    // A point read (its own connections, outside the pool) before the outage, so that one is
    // kept across the restart.
    admin.destinations.clone().get_destination(get_destination.clone()).await.unwrap();
    let destination_id = destination.id.clone();
    let subscription = pb::Subscription { destination_id: destination.id, ..Default::default() };
    admin
        .subscriptions
        .clone()
        .create_subscription(pb::CreateSubscriptionRequest {
            project_id: project.clone(),
            subscription: Some(subscription),
        })
        .await
        .unwrap();
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let stop = tokio_util::sync::CancellationToken::new();
    let mut publishers = Vec::new();
    for w in 0..4 {
        let (mut events, acked, project, stop) = (admin.events.clone(), acked.clone(), project.clone(), stop.clone());
        publishers.push(tokio::spawn(async move {
            for i in 0.. {
                if stop.is_cancelled() {
                    return;
                }
                let req = pb::PublishEventRequest {
                    project_id: project.clone(),
                    r#type: "outage.test".into(),
                    payload: Some(pb::publish_event_request::Payload::Raw(pb::RawPayload {
                        body: format!("{{\"w\":{w},\"i\":{i}}}").into_bytes(),
                        content_type: "application/json".into(),
                    })),
                    ..Default::default()
                };
                match events.publish_event(req).await {
                    Ok(r) => _ = acked.lock().unwrap().insert(r.into_inner().event.unwrap().id),
                    Err(e) => {
                        assert_eq!(e.code(), tonic::Code::Unavailable, "during the outage: {e:?}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;

    // The cluster's port is in its config file, so it comes back on the same address.
    // A fast stop drops every connection, as a restart does; the throwaway cluster runs without
    // fsync, so an immediate stop would lose its data and test nothing of ours.
    cluster.pg_ctl(&["-m", "fast", "stop"]);
    wait_for(&mut health, ServingStatus::NotServing).await;
    assert_eq!(reqwest::get(&readyz).await.unwrap().status(), 503);
    let err = admin.projects.clone().list_projects(loft::proto::ListProjectsRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    let err = admin.destinations.clone().get_destination(get_destination.clone()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");

    cluster.pg_ctl(&["-l", &format!("{}/server.log", cluster.dir), "start"]);
    wait_for(&mut health, ServingStatus::Serving).await;
    assert_eq!(reqwest::get(&readyz).await.unwrap().status(), 200);
    admin.projects.clone().list_projects(loft::proto::ListProjectsRequest::default()).await.expect("works again");
    // The point reads' connections from before the restart are replaced, not failed on.
    let got = admin.destinations.clone().get_destination(get_destination).await.expect("point reads work again");
    assert_eq!(got.into_inner().destination.unwrap().id, destination_id);
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.cancel();
    for p in publishers {
        p.await.unwrap();
    }

    // Every acknowledged event reaches the receiver.
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 20, "the load ran ({} acked)", acked.len());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen: HashSet<String> = receiver.received().iter().map(|r| r.header("webhook-id").to_owned()).collect();
        let missing = acked.difference(&seen).count();
        if missing == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{missing} of {} acknowledged events never delivered", acked.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    running.shutdown().await;
}
