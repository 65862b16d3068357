//! HTTP ingest end to end: every source auth scheme with signatures computed here as each
//! provider computes them, limits, dedup, custom responses, paused sources, and relaying the
//! request to a receiver — on SQLite and PostgreSQL.

mod common;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::receiver::Receiver;
use common::{Clients, TestServer, route_some_to, route_to};
use hmac::{Hmac, Mac};
use loft::proto as pb;
use sha2::Sha256;

on_both_backends!(
    relayed_requests_are_stored_and_forwarded_exactly,
    basic_and_api_key_auth,
    provider_signatures_are_verified,
    limits_answer_with_the_right_status,
    dedup_types_and_custom_responses,
    paused_sources_capture_and_hold,
    filters_read_json_sent_without_a_content_type,
);

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

struct Setup {
    c: Clients,
    http: String,
    receiver: Receiver,
}

async fn setup(server: &TestServer) -> Setup {
    let admin = server.admin().await;
    let project = admin
        .projects
        .clone()
        .create_project(pb::CreateProjectRequest {
            project: Some(pb::Project { name: "in".into(), ..Default::default() }),
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
    let receiver = Receiver::start(vec![]).await;
    route_to(&c, "", pb::Destination { url: receiver.url.clone(), ..Default::default() }).await;
    Setup { c, http: server.http_url(), receiver }
}

async fn source(s: &Setup, source: pb::Source) -> pb::Source {
    s.c.sources
        .clone()
        .create_source(pb::CreateSourceRequest { source: Some(source), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .source
        .unwrap()
}

fn signature(scheme: pb::SignatureScheme, secret: &str, header: &str) -> Option<pb::SourceAuth> {
    Some(pb::SourceAuth {
        method: Some(pb::source_auth::Method::Signature(pb::SignatureAuth {
            scheme: scheme as i32,
            secret: secret.into(),
            header: header.into(),
            ..Default::default()
        })),
    })
}

async fn post(url: &str, headers: &[(&str, String)], body: &str) -> (u16, String) {
    let mut req = reqwest::Client::new().post(url).body(body.to_owned());
    for (n, v) in headers {
        req = req.header(*n, v);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

fn event_id(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body).unwrap()["event_id"].as_str().unwrap().to_owned()
}

async fn event(s: &Setup, id: &str) -> pb::Event {
    s.c.events
        .clone()
        .get_event(pb::GetEventRequest { event_id: id.into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .event
        .unwrap()
}

async fn count_events(s: &Setup) -> usize {
    s.c.events.clone().list_events(pb::ListEventsRequest::default()).await.unwrap().into_inner().events.len()
}

async fn relayed_requests_are_stored_and_forwarded_exactly(server: TestServer) {
    let s = setup(&server).await;
    let src = source(&s, pb::Source { name: "plain".into(), ..Default::default() }).await;
    let body = r#"{"action":"opened","number":7}"#;
    let url = format!("{}/github/push?delivery=1&x=2", src.ingest_url);
    let resp = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .header("x-github-event", "pull_request")
        .header("x-dup", "one")
        .header("x-dup", "two")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = event_id(&resp.text().await.unwrap());
    let e = event(&s, &id).await;
    assert_eq!(e.body, body.as_bytes());
    assert_eq!((e.method.as_str(), e.path.as_str(), e.query.as_str()), ("POST", "/github/push", "delivery=1&x=2"));
    assert_eq!(e.source_id, src.id);
    assert_eq!(e.source_ip, "127.0.0.1");
    let dups: Vec<_> = e.headers.iter().filter(|h| h.name == "x-dup").map(|h| h.value.as_str()).collect();
    assert_eq!(dups, vec!["one", "two"], "duplicates kept in order");
    assert_eq!(e.r#type, "webhook", "no event_type_from: the default type");
    // Relayed byte for byte, with the original headers (minus Host and hop-by-hop ones).
    let got = s.receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].body, body.as_bytes());
    assert_eq!(got[0].header("x-github-event"), "pull_request");
    assert_eq!(got[0].headers.get_all("x-dup").iter().count(), 2);
    assert!(!got[0].header("host").contains(&server.http_url()[7..]), "Host is the receiver's, not Loft's");
    assert_eq!(got[0].header("webhook-id"), id);
    // Unknown sources.
    assert_eq!(post(&format!("{}/in/src_01J00000000000000000000000", s.http), &[], "{}").await.0, 404);
    assert_eq!(post(&format!("{}/in/not-an-id", s.http), &[], "{}").await.0, 404);
}

async fn basic_and_api_key_auth(server: TestServer) {
    let s = setup(&server).await;
    let basic = source(
        &s,
        pb::Source {
            auth: Some(pb::SourceAuth {
                method: Some(pb::source_auth::Method::Basic(pb::BasicAuth {
                    username: "shop".into(),
                    password: "s3cret-pw".into(),
                    ..Default::default()
                })),
            }),
            ..Default::default()
        },
    )
    .await;
    let good = format!("Basic {}", STANDARD.encode("shop:s3cret-pw"));
    let bad = format!("Basic {}", STANDARD.encode("shop:wrong"));
    let (status, body) = post(&basic.ingest_url, &[("authorization", good)], "{}").await;
    assert_eq!(status, 200);
    let e = event(&s, &event_id(&body)).await;
    assert!(e.headers.iter().all(|h| h.name != "authorization"), "the checked credential is not stored");
    assert_eq!(post(&basic.ingest_url, &[("authorization", bad)], "{}").await.0, 401);
    assert_eq!(post(&basic.ingest_url, &[], "{}").await.0, 401);

    let keyed = source(
        &s,
        pb::Source {
            auth: Some(pb::SourceAuth {
                method: Some(pb::source_auth::Method::ApiKey(pb::ApiKeyAuth {
                    header: "X-Api-Key".into(),
                    key: "k-123456789".into(),
                    ..Default::default()
                })),
            }),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(post(&keyed.ingest_url, &[("x-api-key", "k-123456789".into())], "{}").await.0, 200);
    assert_eq!(post(&keyed.ingest_url, &[("x-api-key", "k-12345678".into())], "{}").await.0, 401);
    assert_eq!(count_events(&s).await, 2, "rejected requests are never stored");
}

async fn provider_signatures_are_verified(server: TestServer) {
    let s = setup(&server).await;
    let body = r#"{"id":"evt_1","type":"invoice.paid"}"#;

    let github =
        source(&s, pb::Source { auth: signature(pb::SignatureScheme::Github, "gh-secret", ""), ..Default::default() })
            .await;
    let sig = format!("sha256={}", hex::encode(hmac(b"gh-secret", body.as_bytes())));
    assert_eq!(post(&github.ingest_url, &[("x-hub-signature-256", sig.clone())], body).await.0, 200);
    assert_eq!(post(&github.ingest_url, &[("x-hub-signature-256", sig)], "{\"tampered\":1}").await.0, 401);
    assert_eq!(post(&github.ingest_url, &[], body).await.0, 401);

    let stripe_secret = "whsec_stripe0123456789abcdef";
    let stripe = source(
        &s,
        pb::Source {
            auth: signature(pb::SignatureScheme::Stripe, stripe_secret, ""),
            event_type_from: Some(pb::EventTypeFrom {
                from: Some(pb::event_type_from::From::JsonPointer("/type".into())),
            }),
            ..Default::default()
        },
    )
    .await;
    let stripe_sig =
        |t: i64| format!("t={t},v1={}", hex::encode(hmac(stripe_secret.as_bytes(), format!("{t}.{body}").as_bytes())));
    let (status, resp) = post(
        &stripe.ingest_url,
        &[("stripe-signature", stripe_sig(now())), ("content-type", "application/json".into())],
        body,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(event(&s, &event_id(&resp)).await.r#type, "invoice.paid", "type from the JSON pointer");
    assert_eq!(
        post(&stripe.ingest_url, &[("stripe-signature", stripe_sig(now() - 600))], body).await.0,
        401,
        "outside the tolerance"
    );

    let shopify = source(
        &s,
        pb::Source { auth: signature(pb::SignatureScheme::Shopify, "shp-secret", ""), ..Default::default() },
    )
    .await;
    let shopify_sig = STANDARD.encode(hmac(b"shp-secret", body.as_bytes()));
    assert_eq!(post(&shopify.ingest_url, &[("x-shopify-hmac-sha256", shopify_sig)], body).await.0, 200);

    let generic = source(
        &s,
        pb::Source {
            auth: signature(pb::SignatureScheme::HmacSha256Hex, "gen-secret", "X-Signature"),
            ..Default::default()
        },
    )
    .await;
    let generic_sig = hex::encode(hmac(b"gen-secret", body.as_bytes()));
    assert_eq!(post(&generic.ingest_url, &[("x-signature", generic_sig)], body).await.0, 200);
    assert_eq!(post(&generic.ingest_url, &[("x-signature", "00".repeat(32))], body).await.0, 401);

    let sw_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let sw = source(
        &s,
        pb::Source { auth: signature(pb::SignatureScheme::StandardWebhooks, sw_secret, ""), ..Default::default() },
    )
    .await;
    let key = STANDARD.decode(&sw_secret[6..]).unwrap();
    let ts = now();
    let sw_sig = format!("v1,{}", STANDARD.encode(hmac(&key, format!("msg_1.{ts}.{body}").as_bytes())));
    let headers = |sig: String, ts: i64| {
        vec![("webhook-id", "msg_1".to_owned()), ("webhook-timestamp", ts.to_string()), ("webhook-signature", sig)]
    };
    assert_eq!(post(&sw.ingest_url, &headers(sw_sig.clone(), ts), body).await.0, 200);
    assert_eq!(post(&sw.ingest_url, &headers(sw_sig, ts + 1), body).await.0, 401);
    assert_eq!(count_events(&s).await, 5);
}

async fn limits_answer_with_the_right_status(server: TestServer) {
    let s = setup(&server).await;
    let small = source(&s, pb::Source { max_body_bytes: 100, ..Default::default() }).await;
    assert_eq!(post(&small.ingest_url, &[], &"x".repeat(101)).await.0, 413);
    assert_eq!(post(&small.ingest_url, &[], &"x".repeat(100)).await.0, 200);
    let get_resp = reqwest::Client::new().get(&small.ingest_url).send().await.unwrap();
    assert_eq!(get_resp.status(), 405);
    assert_eq!(get_resp.headers()["allow"], "POST");
    let limited =
        source(&s, pb::Source { rate_limit: Some(pb::RateLimit { per_second: 1, burst: 2 }), ..Default::default() })
            .await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let resp = reqwest::Client::new().post(&limited.ingest_url).body("{}").send().await.unwrap();
        if resp.status() == 429 {
            assert!(resp.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
        }
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(statuses, vec![200, 200, 429]);
    let schema = pb::Source {
        json_schema: Some(prost_types::Struct {
            fields: [(
                "required".to_owned(),
                prost_types::Value {
                    kind: Some(prost_types::value::Kind::ListValue(prost_types::ListValue {
                        values: vec![prost_types::Value {
                            kind: Some(prost_types::value::Kind::StringValue("id".into())),
                        }],
                    })),
                },
            )]
            .into(),
        }),
        ..Default::default()
    };
    let checked = source(&s, schema).await;
    let json = [("content-type", "application/json".to_owned())];
    assert_eq!(post(&checked.ingest_url, &json, r#"{"name":"x"}"#).await.0, 400);
    assert_eq!(post(&checked.ingest_url, &json, r#"{"id":"x"}"#).await.0, 200);
    assert_eq!(count_events(&s).await, 4);
}

async fn dedup_types_and_custom_responses(server: TestServer) {
    let s = setup(&server).await;
    let src = source(
        &s,
        pb::Source {
            event_type_from: Some(pb::EventTypeFrom {
                from: Some(pb::event_type_from::From::Header("X-Shopify-Topic".into())),
            }),
            dedup: Some(pb::SourceDedup {
                key: Some(pb::source_dedup::Key::Header("X-Request-Id".into())),
                window: None,
            }),
            response: Some(pb::SourceResponse {
                status_code: 202,
                content_type: "text/plain".into(),
                body: "queued {{ event_id }}".into(),
            }),
            ..Default::default()
        },
    )
    .await;
    let url = src.ingest_url.clone();
    let send = |rid: &'static str| {
        let url = url.clone();
        async move { post(&url, &[("x-shopify-topic", "orders/create".into()), ("x-request-id", rid.into())], "{}").await }
    };
    let (status, first) = send("r-1").await;
    assert_eq!(status, 202);
    let id = first.strip_prefix("queued ").unwrap().to_owned();
    assert!(id.starts_with("evt_"));
    assert_eq!(send("r-1").await, (202, first.clone()), "a repeat within the window is the same event");
    assert_ne!(send("r-2").await.1, first);
    assert_eq!(event(&s, &id).await.r#type, "orders.create");
    assert_eq!(count_events(&s).await, 2);
}

async fn paused_sources_capture_and_hold(server: TestServer) {
    let s = setup(&server).await;
    let src = source(&s, pb::Source { paused: true, ..Default::default() }).await;
    let (status, body) = post(&src.ingest_url, &[], r#"{"held":true}"#).await;
    assert_eq!(status, 200, "still captured");
    let id = event_id(&body);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(s.receiver.received().is_empty(), "not delivered while paused");
    assert_eq!(event(&s, &id).await.status, pb::EventStatus::Pending as i32);
    s.c.sources
        .clone()
        .update_source(pb::UpdateSourceRequest {
            source: Some(pb::Source { id: src.id.clone(), paused: false, ..Default::default() }),
            update_mask: Some(prost_types::FieldMask { paths: vec!["paused".into()] }),
            ..Default::default()
        })
        .await
        .unwrap();
    let got = s.receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].body, br#"{"held":true}"#);
}

/// A body that says nothing of its type counts as JSON, for a filter as for a JSON pointer; one
/// declared as something else does not.
async fn filters_read_json_sent_without_a_content_type(server: TestServer) {
    let s = setup(&server).await;
    let src = source(&s, pb::Source { name: "untyped".into(), ..Default::default() }).await;
    let large = Receiver::start(vec![]).await;
    let subscription =
        pb::Subscription { source_id: src.id.clone(), filter: "body.amount > 100".into(), ..Default::default() };
    let dst =
        route_some_to(&s.c, "", pb::Destination { url: large.url.clone(), ..Default::default() }, subscription).await;
    let send = |content_type: Option<&'static str>, body: &'static str| {
        let url = src.ingest_url.clone();
        async move {
            let headers: Vec<_> = content_type.map(|t| ("content-type", t.to_owned())).into_iter().collect();
            let (status, answer) = post(&url, &headers, body).await;
            assert_eq!(status, 200, "{answer}");
            event_id(&answer)
        }
    };
    let untyped_large = send(None, r#"{"amount":500}"#).await;
    let untyped_small = send(None, r#"{"amount":5}"#).await;
    let text_large = send(Some("text/plain"), r#"{"amount":500}"#).await;
    let to_large = |event: String| {
        let (deliveries, dst) = (s.c.deliveries.clone(), dst.id.clone());
        async move {
            let req = pb::ListDeliveriesRequest { event_id: event, destination_id: dst, ..Default::default() };
            deliveries.clone().list_deliveries(req).await.unwrap().into_inner().deliveries.len()
        }
    };
    assert_eq!(to_large(untyped_large.clone()).await, 1);
    assert_eq!(to_large(untyped_small).await, 0, "filtered out");
    assert_eq!(to_large(text_large).await, 0, "declared as text: no JSON body to filter on");
    let got = large.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].header("webhook-id"), untyped_large);
    assert_eq!(got[0].body, br#"{"amount":500}"#);
}
