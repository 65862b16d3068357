//! The server as an operator meets it: bootstrap, master key, reflection, health, gRPC-Web,
//! the HTTP endpoints, restarts, and the `loft` binary's own commands.

mod common;

use common::{ADMIN_KEY, Backend, TestServer, fresh_database, start_on_free_ports};
use loft::config::ServeConfig;
use loft::proto as pb;
use prost::Message;
use tokio_stream::StreamExt;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::{ServerReflectionRequest, ServerReflectionResponse};

on_both_backends!(data_survives_restart, http_endpoints_answer);

async fn data_survives_restart(mut server: TestServer) {
    let admin = server.admin().await;
    let p = admin
        .projects
        .clone()
        .create_project(pb::CreateProjectRequest {
            project: Some(pb::Project { name: "kept".into(), ..Default::default() }),
        })
        .await
        .unwrap()
        .into_inner()
        .project
        .unwrap();
    let created = admin
        .destinations
        .clone()
        .create_destination(pb::CreateDestinationRequest {
            project_id: p.id.clone(),
            destination: Some(pb::Destination { url: "https://example.com/x".into(), ..Default::default() }),
        })
        .await
        .unwrap()
        .into_inner();
    server.restart().await;
    let admin = server.admin().await;
    let secret = admin
        .destinations
        .clone()
        .get_destination_secret(pb::GetDestinationSecretRequest {
            project_id: p.id.clone(),
            destination_id: created.destination.unwrap().id,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(secret.secret, created.secret, "sealed secret opens after a restart");
}

async fn http_endpoints_answer(server: TestServer) {
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("{}{path}", server.http_url())).send();
    let healthz = get("/healthz").await.unwrap();
    assert_eq!(healthz.status(), 200);
    let readyz = get("/readyz").await.unwrap();
    assert_eq!(readyz.status(), 200);
    let metrics = get("/metrics").await.unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(metrics.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = metrics.text().await.unwrap();
    for series in ["loft_queue_depth", "loft_deliveries_in_flight", "loft_circuits_open"] {
        assert!(text.contains(series), "{series} missing from /metrics");
    }
    assert!(!text.contains("dst_") && !text.contains("prj_"), "no ids in labels");
}

#[tokio::test]
async fn first_start_creates_one_admin_key_and_a_private_master_key() {
    let (url, dir) = fresh_database(Backend::Sqlite).await;
    let config = ServeConfig::for_tests(&url);
    let first = start_on_free_ports(config.clone()).await;
    let key = first.bootstrap_key.clone().expect("a generated admin key on an empty database");
    assert!(key.starts_with("loft_"));
    let key_file = dir.path().join("loft.db.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key_file).expect("key file beside the database").permissions().mode() & 0o777,
            0o600
        );
    }
    let channel =
        tonic::transport::Channel::from_shared(format!("http://{}", first.grpc_addr)).unwrap().connect().await.unwrap();
    let clients = common::Clients::new(channel, &key);
    clients.projects.clone().list_projects(pb::ListProjectsRequest::default()).await.expect("the printed key works");
    first.shutdown().await;
    let second = start_on_free_ports(config).await;
    assert!(second.bootstrap_key.is_none(), "no second admin key");
    second.shutdown().await;
}

#[tokio::test]
async fn postgres_requires_a_master_key() {
    let (url, _dir) = fresh_database(Backend::Postgres).await;
    let config = ServeConfig::for_tests(&url);
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = loft::serve::start(config, grpc, http).await.err().expect("refuses to start");
    assert!(format!("{err:#}").contains("LOFT_MASTER_KEY"), "{err:#}");
}

async fn reflect(channel: tonic::transport::Channel, request: MessageRequest) -> MessageResponse {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<ServerReflectionRequest, ServerReflectionResponse>::default();
    let path = http::uri::PathAndQuery::from_static("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo");
    let req = ServerReflectionRequest { host: String::new(), message_request: Some(request) };
    let mut stream =
        grpc.streaming(tonic::Request::new(tokio_stream::iter(vec![req])), path, codec).await.unwrap().into_inner();
    stream.next().await.unwrap().unwrap().message_response.unwrap()
}

#[tokio::test]
async fn reflection_describes_every_service_with_comments() {
    let server = TestServer::start(Backend::Sqlite).await;
    let MessageResponse::ListServicesResponse(list) =
        reflect(server.channel().await, MessageRequest::ListServices(String::new())).await
    else {
        panic!("expected a service list")
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    for s in loft::api::SERVICE_NAMES.iter().chain(&["grpc.health.v1.Health"]) {
        assert!(names.contains(s), "{s} missing from {names:?}");
    }
    let MessageResponse::FileDescriptorResponse(files) =
        reflect(server.channel().await, MessageRequest::FileContainingSymbol("loft.v1.DestinationService".into()))
            .await
    else {
        panic!("expected descriptors")
    };
    let file = prost_types::FileDescriptorProto::decode(files.file_descriptor_proto[0].as_slice()).unwrap();
    assert_eq!(file.name(), "loft/v1/destination_service.proto");
    let commented =
        file.source_code_info.as_ref().is_some_and(|i| i.location.iter().any(|l| !l.leading_comments().is_empty()));
    assert!(commented, "comments travel with the descriptors");
    // Imports such as google.rpc resolve too, so grpcurl can decode error details.
    let MessageResponse::FileDescriptorResponse(_) =
        reflect(server.channel().await, MessageRequest::FileContainingSymbol("google.rpc.ErrorInfo".into())).await
    else {
        panic!("google.rpc types are served")
    };
}

#[tokio::test]
async fn grpc_web_serves_browsers() {
    let server = TestServer::start(Backend::Sqlite).await;
    let body = pb::ListProjectsRequest::default().encode_to_vec();
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(body.len() as u32).to_be_bytes());
    framed.extend_from_slice(&body);
    let resp = reqwest::Client::new()
        .post(format!("{}/loft.v1.ProjectService/ListProjects", server.grpc_url()))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .header("origin", "http://localhost:3000")
        .header("authorization", format!("Bearer {ADMIN_KEY}"))
        .body(framed)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["access-control-allow-origin"], "http://localhost:3000");
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("application/grpc-web"));
    let bytes = resp.bytes().await.unwrap();
    assert_eq!(bytes[0], 0, "a data frame first");
    let trailer = String::from_utf8_lossy(&bytes);
    assert!(trailer.contains("grpc-status:0"), "{trailer}");
}

#[tokio::test]
async fn health_reports_each_service() {
    let server = TestServer::start(Backend::Sqlite).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel().await);
    for service in ["", "loft.v1.DestinationService", "loft.v1.EventService"] {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest { service: service.into() })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32, "{service:?}");
    }
}

#[tokio::test]
async fn cli_creates_keys_directly_in_the_database() {
    let mut server = TestServer::start(Backend::Sqlite).await;
    let admin = server.admin().await;
    let p = admin
        .projects
        .clone()
        .create_project(pb::CreateProjectRequest {
            project: Some(pb::Project { name: "cli".into(), ..Default::default() }),
        })
        .await
        .unwrap()
        .into_inner()
        .project
        .unwrap();
    // Recovery: the server is down while the key is written, then comes back with it.
    server.running.take().unwrap().shutdown().await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_loft"))
        .args(["keys", "create", "--role", "viewer", "--project", &p.id, "--database-url", &server.database_url])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    server.running = Some(common::start_on_free_ports(server.config.clone()).await);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut lines = stdout.lines();
    let (id, key) = (lines.next().unwrap(), lines.next().unwrap());
    assert!(id.starts_with("key_") && key.starts_with("loft_"));
    let viewer = server.clients(key).await;
    let listed = viewer.projects.clone().list_projects(pb::ListProjectsRequest::default()).await.unwrap().into_inner();
    assert_eq!(listed.projects.len(), 1);
    // Bad input is refused with a message, not a panic.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_loft"))
        .args(["keys", "create", "--role", "EDITOR", "--database-url", &server.database_url])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--project"));
}
