//! The client commands as a user runs them: the real `loft` binary (`send`, `listen`, `tail`)
//! against a real server, posting to real sources and forwarding to real receivers, all on
//! loopback. Every child process is killed (by its PID) when its handle drops.

mod common;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::receiver::Receiver;
use common::{Clients, TestServer};
use hmac::{Hmac, Mac};
use loft::proto as pb;
use sha2::Sha256;
use tokio::io::{AsyncBufReadExt, BufReader};

on_both_backends!(
    send_signs_as_each_provider,
    listen_forwards_and_resumes_without_repeats,
    listen_resigns_and_moves_past_a_down_receiver,
    listen_reconnects_when_the_server_restarts,
    tail_prints_json_and_human_lines,
);

const LOFT: &str = env!("CARGO_BIN_EXE_loft");
const WAIT: Duration = Duration::from_secs(30);

struct Setup {
    c: Clients,
    /// An EDITOR key of the project, so the CLI needs no `--project`.
    key: String,
    grpc: String,
}

async fn setup(server: &TestServer) -> Setup {
    let p = common::editor_project(server, "cli").await;
    Setup { c: p.clients, key: p.secret, grpc: server.grpc_url() }
}

async fn source(s: &Setup, auth: Option<pb::SourceAuth>) -> pb::Source {
    let source = pb::Source { auth, allowed_methods: vec!["POST".into(), "PUT".into()], ..Default::default() };
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

async fn event(s: &Setup, id: &str) -> pb::Event {
    let req = pb::GetEventRequest { event_id: id.into(), ..Default::default() };
    s.c.events.clone().get_event(req).await.unwrap().into_inner().event.unwrap()
}

/// Posts to a source; returns the new event's id.
async fn ingest(url: &str, method: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut req = reqwest::Client::new().request(method.parse().unwrap(), url).body(body.to_owned());
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    body["event_id"].as_str().unwrap().to_owned()
}

/// A finished run of the binary.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

async fn run(args: &[&str]) -> Run {
    let child = tokio::process::Command::new(LOFT).args(args).kill_on_drop(true).output();
    let out = tokio::time::timeout(WAIT, child).await.expect("loft finished in time").unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A long-running `loft listen` or `loft tail`, with its output lines collected as they come.
struct Running {
    child: tokio::process::Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Running {
    fn spawn(args: &[&str], key: &str) -> Self {
        let mut child = tokio::process::Command::new(LOFT)
            .args(args)
            .env("LOFT_API_KEY", key)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn loft");
        let collect = |pipe: Box<dyn tokio::io::AsyncRead + Unpin + Send>| {
            let lines = Arc::new(Mutex::new(Vec::new()));
            let sink = lines.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(pipe).lines();
                while let Ok(Some(line)) = reader.next_line().await {
                    sink.lock().unwrap().push(line);
                }
            });
            lines
        };
        let stdout = collect(Box::new(child.stdout.take().unwrap()));
        let stderr = collect(Box::new(child.stderr.take().unwrap()));
        Self { child, stdout, stderr }
    }

    fn stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// Waits until stdout has `n` lines passing `keep`; returns those.
    async fn lines(&self, n: usize, keep: impl Fn(&str) -> bool) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let got: Vec<String> = self.stdout().into_iter().filter(|l| keep(l)).collect();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "got {} of {n} lines:\n{}\nstderr:\n{}",
                got.len(),
                self.stdout().join("\n"),
                self.stderr.lock().unwrap().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until `receiver` got `n` requests, showing this command's output if it does not.
    async fn forwarded(&self, receiver: &Receiver, n: usize) -> Vec<common::receiver::Received> {
        let deadline = Instant::now() + WAIT;
        loop {
            let got = receiver.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "receiver got {} of {n}; stdout:\n{}\nstderr:\n{}",
                got.len(),
                self.stdout().join("\n"),
                self.stderr.lock().unwrap().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the stream is open (the command says so on stderr).
    async fn connected(&self) {
        let deadline = Instant::now() + WAIT;
        while !self.stderr.lock().unwrap().iter().any(|l| l.starts_with("Connected to ")) {
            assert!(Instant::now() < deadline, "not connected; stderr:\n{}", self.stderr.lock().unwrap().join("\n"));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            // SIGKILL to this child's PID: no chance to tidy up, as in a crash.
            let _ = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() as i64
}

async fn send_signs_as_each_provider(server: TestServer) {
    let s = setup(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let data_file = dir.path().join("data.json");
    std::fs::write(&data_file, br#"{"from":"file"}"#).unwrap();
    let from_file = format!("@{}", data_file.display());

    let sw_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let cases: [(&str, pb::SignatureScheme, &str, &str); 6] = [
        ("standard-webhooks", pb::SignatureScheme::StandardWebhooks, sw_secret, ""),
        ("github", pb::SignatureScheme::Github, "gh-secret", ""),
        ("stripe", pb::SignatureScheme::Stripe, "whsec_stripe_test_secret", ""),
        ("shopify", pb::SignatureScheme::Shopify, "shp-secret", ""),
        ("hmac-sha256-hex", pb::SignatureScheme::HmacSha256Hex, "hex-secret", "X-Signature"),
        ("hmac-sha256-base64", pb::SignatureScheme::HmacSha256Base64, "b64-secret", "X-Sig"),
    ];
    for (name, scheme, secret, header) in cases {
        let src = source(&s, signature(scheme, secret, header)).await;
        let data = if name == "github" { from_file.as_str() } else { r#"{"n":1}"# };
        let mut args = vec![src.ingest_url.as_str(), "--scheme", name, "--type", "order.created", "--data", data];
        args.extend(["--header", "X-Test: yes"]);
        if !header.is_empty() {
            args.extend(["--signature-header", header]);
        }
        let good = run(&[&["send", "--secret", secret][..], &args].concat()).await;
        assert_eq!(good.code, Some(0), "{name}: {}{}", good.stdout, good.stderr);
        assert!(good.stdout.starts_with("200 OK\n"), "{name}: {}", good.stdout);
        let id = serde_json::from_str::<serde_json::Value>(good.stdout.lines().nth(1).unwrap()).unwrap()["event_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let stored = event(&s, &id).await;
        assert_eq!(stored.source_id, src.id);
        assert!(stored.headers.iter().any(|h| h.name.eq_ignore_ascii_case("x-test") && h.value == "yes"), "{name}");
        let body: serde_json::Value = serde_json::from_slice(&stored.body).unwrap();
        match name {
            "standard-webhooks" => assert_eq!(
                (body["type"].as_str(), &body["data"]),
                (Some("order.created"), &serde_json::json!({"n": 1}))
            ),
            "stripe" => assert_eq!(body["data"]["object"], serde_json::json!({"n": 1})),
            "github" => assert_eq!(stored.body, br#"{"from":"file"}"#),
            _ => assert_eq!(stored.body, br#"{"n":1}"#),
        }

        let wrong_secret = if name == "standard-webhooks" { "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" } else { "wrong" };
        let bad = run(&[&["send", "--secret", wrong_secret][..], &args].concat()).await;
        assert_eq!(bad.code, Some(1), "{name}: {}{}", bad.stdout, bad.stderr);
        assert!(bad.stdout.starts_with("401 "), "{name}: {}", bad.stdout);
        assert!(!bad.stderr.contains(wrong_secret) && !good.stderr.contains(secret));
    }

    // The generic schemes need the header named; that is a usage error, not a request.
    let usage = run(&["send", "http://127.0.0.1:9/in/x", "--scheme", "hmac-sha256-hex", "--secret", "x"]).await;
    assert_ne!(usage.code, Some(0));
    assert!(usage.stderr.contains("--signature-header"), "{}", usage.stderr);
}

async fn listen_forwards_and_resumes_without_repeats(server: TestServer) {
    let s = setup(&server).await;
    let src = source(&s, None).await;
    let other = source(&s, None).await;
    let receiver = Receiver::start(vec![]).await;
    let dir = tempfile::tempdir().unwrap();
    let cursor_file = dir.path().join("state/listen.cursor");
    let cursor_arg = cursor_file.to_str().unwrap();
    let args = [
        "listen",
        "--server",
        &s.grpc,
        "--source",
        &src.id,
        "--forward-to",
        &receiver.url,
        "--cursor-file",
        cursor_arg,
    ];

    let listen = Running::spawn(&args, &s.key);
    listen.connected().await;
    // The opening position is saved before any event, so even a first run that stops early resumes.
    // ("Connected" is printed as the opening heartbeat arrives; the save, with its fsync, follows.)
    let deadline = Instant::now() + WAIT;
    while !std::fs::read_to_string(&cursor_file).is_ok_and(|c| !c.is_empty()) {
        assert!(Instant::now() < deadline, "no cursor saved after the opening heartbeat");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let headers = [("content-type", "application/json"), ("x-custom", "a"), ("x-custom", "b")];
    let mut sent = Vec::new();
    for n in 0..3 {
        let body = format!(r#"{{"n":{n}}}"#);
        sent.push((ingest(&format!("{}/orders?x={n}&y=z", src.ingest_url), "POST", &headers, &body).await, body));
    }
    ingest(&other.ingest_url, "POST", &[], "{\"other\":true}").await;
    let lines = listen.lines(3, |_| true).await;
    let got = listen.forwarded(&receiver, 3).await;
    for (n, ((id, body), request)) in sent.iter().zip(&got).enumerate() {
        assert_eq!(request.body, body.as_bytes());
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/hook");
        assert_eq!(request.query.as_deref(), Some(format!("x={n}&y=z").as_str()));
        assert_eq!(request.header("content-type"), "application/json");
        let custom: Vec<&str> = request.headers.get_all("x-custom").iter().map(|v| v.to_str().unwrap()).collect();
        assert_eq!(custom, ["a", "b"]);
        assert!(request.header("webhook-signature").is_empty());
        assert!(lines[n].contains(id.as_str()) && lines[n].contains("POST 200"), "{}", lines[n]);
    }

    // Killed outright; two events arrive while nobody listens, one with another method.
    drop(listen);
    let missed = [
        (ingest(&src.ingest_url, "PUT", &[("content-type", "text/plain")], "missed one").await, "missed one"),
        (ingest(&src.ingest_url, "POST", &[], "missed two").await, "missed two"),
    ];
    let listen = Running::spawn(&args, &s.key);
    let got = listen.forwarded(&receiver, 5).await;
    assert_eq!(got[3].body, b"missed one");
    assert_eq!(got[3].method, "PUT");
    assert_eq!(got[3].header("content-type"), "text/plain");
    assert_eq!(got[4].body, b"missed two");
    let lines = listen.lines(2, |_| true).await;
    assert!(lines[0].contains(&missed[0].0) && lines[1].contains(&missed[1].0), "{lines:?}");

    // Live again, and nothing repeated across heartbeats (one a second in tests).
    ingest(&src.ingest_url, "POST", &[], "live").await;
    listen.forwarded(&receiver, 6).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let bodies: Vec<Vec<u8>> = receiver.received().into_iter().map(|r| r.body).collect();
    let expected: Vec<Vec<u8>> = sent
        .iter()
        .map(|(_, b)| b.as_bytes().to_vec())
        .chain([b"missed one".to_vec(), b"missed two".to_vec(), b"live".to_vec()])
        .collect();
    assert_eq!(bodies, expected);
    assert_eq!(listen.stdout().len(), 3);
}

async fn listen_resigns_and_moves_past_a_down_receiver(server: TestServer) {
    let s = setup(&server).await;
    let src = source(&s, None).await;
    let receiver = Receiver::start(vec![]).await;
    let dir = tempfile::tempdir().unwrap();
    let cursor = dir.path().join("c");
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let listen = Running::spawn(
        &[
            "listen",
            "--server",
            &s.grpc,
            "--source",
            &src.id,
            "--forward-to",
            &receiver.url,
            "--cursor-file",
            cursor.to_str().unwrap(),
            "--secret",
            secret,
        ],
        &s.key,
    );
    listen.connected().await;
    let body = r#"{"signed":true}"#;
    let id = ingest(
        &src.ingest_url,
        "POST",
        &[
            ("webhook-id", "msg_original"),
            ("webhook-signature", "v1,bm90IGEgc2lnbmF0dXJl"),
            ("x-hub-signature-256", "sha256=00"),
        ],
        body,
    )
    .await;
    let got = listen.forwarded(&receiver, 1).await;
    let request = &got[0];
    assert_eq!(request.body, body.as_bytes());
    assert_eq!(request.header("webhook-id"), id);
    assert!(request.header("x-hub-signature-256").is_empty());
    assert_eq!(request.headers.get_all("webhook-signature").iter().count(), 1);
    let timestamp = request.header("webhook-timestamp");
    assert!((timestamp.parse::<i64>().unwrap() - unix_now()).abs() < 60);
    let key = STANDARD.decode(&secret["whsec_".len()..]).unwrap();
    let expected = format!("v1,{}", STANDARD.encode(hmac(&key, format!("{id}.{timestamp}.{body}").as_bytes())));
    assert_eq!(request.header("webhook-signature"), expected);
    // The line is printed once the cursor is saved; killed before that, the event would be
    // forwarded again (at least once), which is not what this test is about.
    listen.lines(1, |_| true).await;
    drop(listen);

    // A local server that is not running: each event is tried three times, reported, and
    // passed, so the next one still gets its turn.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    let listen = Running::spawn(
        &[
            "listen",
            "--server",
            &s.grpc,
            "--source",
            &src.id,
            "--forward-to",
            &down,
            "--cursor-file",
            cursor.to_str().unwrap(),
        ],
        &s.key,
    );
    listen.connected().await;
    let first = ingest(&src.ingest_url, "POST", &[], "{}").await;
    let second = ingest(&src.ingest_url, "POST", &[], "{}").await;
    let lines = listen.lines(2, |_| true).await;
    for (line, id) in lines.iter().zip([&first, &second]) {
        assert!(line.contains(id.as_str()) && line.contains("error:") && line.contains("(3 tries)"), "{line}");
    }
}

async fn listen_reconnects_when_the_server_restarts(mut server: TestServer) {
    let s = setup(&server).await;
    let src = source(&s, None).await;
    let receiver = Receiver::start(vec![]).await;
    let dir = tempfile::tempdir().unwrap();
    let cursor = dir.path().join("c");
    let listen = Running::spawn(
        &[
            "listen",
            "--server",
            &s.grpc,
            "--source",
            &src.id,
            "--forward-to",
            &receiver.url,
            "--cursor-file",
            cursor.to_str().unwrap(),
        ],
        &s.key,
    );
    listen.connected().await;
    ingest(&src.ingest_url, "POST", &[], "before").await;
    listen.forwarded(&receiver, 1).await;

    // Stopped (streams end with UNAVAILABLE), down for a moment, then back on the same ports.
    let running = server.running.take().unwrap();
    let (grpc, http) = (running.grpc_addr, running.http_addr);
    running.shutdown().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let listeners =
        (tokio::net::TcpListener::bind(grpc).await.unwrap(), tokio::net::TcpListener::bind(http).await.unwrap());
    server.running = Some(loft::serve::start(server.config.clone(), listeners.0, listeners.1).await.unwrap());

    ingest(&src.ingest_url, "POST", &[], "after").await;
    let got = listen.forwarded(&receiver, 2).await;
    assert_eq!(got[1].body, b"after");
    let stderr = listen.stderr.lock().unwrap().join("\n");
    assert!(stderr.contains("reconnecting in"), "{stderr}");
    assert_eq!(stderr.matches("Connected to ").count(), 2, "{stderr}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.received().len(), 2);
}

async fn tail_prints_json_and_human_lines(server: TestServer) {
    let s = setup(&server).await;
    let json = Running::spawn(&["tail", "--server", &s.grpc, "--json"], &s.key);
    let human = Running::spawn(&["tail", "--server", &s.grpc], &s.key);
    json.connected().await;
    human.connected().await;

    let receiver = Receiver::start(vec![]).await;
    let destination =
        common::route_to(&s.c, "", pb::Destination { url: receiver.url.clone(), ..Default::default() }).await;
    let published =
        s.c.events
            .clone()
            .publish_event(pb::PublishEventRequest {
                r#type: "order.created".into(),
                payload: Some(pb::publish_event_request::Payload::Json(prost_types::Value {
                    kind: Some(prost_types::value::Kind::StringValue("hi".into())),
                })),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .event
            .unwrap();

    // JSON: every line an object with a cursor and one activity, named in lowerCamelCase.
    let parse = |l: &str| serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{l}: {e}"));
    let lines = json.lines(1, |l| l.contains("deliverySucceeded")).await;
    let items: Vec<serde_json::Value> = json.stdout().iter().map(|l| parse(l)).collect();
    let _ = lines;
    for item in &items {
        assert!(item["cursor"].as_str().is_some_and(|c| !c.is_empty()), "{item}");
    }
    let kinds: Vec<&str> = items
        .iter()
        .flat_map(|i| i.as_object().unwrap().keys())
        .map(String::as_str)
        .filter(|k| !matches!(*k, "cursor" | "time"))
        .collect();
    for kind in ["heartbeat", "resourceChanged", "eventReceived", "attemptFinished", "deliverySucceeded"] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    let received = items.iter().find(|i| i.get("eventReceived").is_some()).unwrap();
    assert_eq!(received["eventReceived"]["event"]["id"], published.id.as_str());
    assert_eq!(received["eventReceived"]["event"]["type"], "order.created");
    let changed = items.iter().find(|i| i.get("resourceChanged").is_some()).unwrap();
    assert_eq!(changed["resourceChanged"]["action"], "CHANGE_ACTION_CREATED");
    assert_eq!(changed["resourceChanged"]["resourceType"], "loft.v1.Destination");

    // Human: one line per item, heartbeats hidden.
    human.lines(1, |l| l.contains("delivery.succeeded")).await;
    let lines = human.stdout();
    assert!(lines.iter().all(|l| !l.contains("heartbeat")), "{lines:?}");
    let find = |kind: &str| lines.iter().find(|l| l.contains(kind)).unwrap_or_else(|| panic!("{kind} in {lines:?}"));
    assert!(find("resource.changed").contains(&format!("created  loft.v1.Destination  {}", destination.id)));
    assert!(find("event.received").contains(&format!("{}  type=order.created", published.id)));
    assert!(find("attempt.finished").contains(&destination.id) && find("attempt.finished").contains("  200  "));
    assert!(find("delivery.succeeded").contains(&published.id));

    // --after replays from a cursor; --kind keeps only that kind (and heartbeats, in JSON).
    let first = items[0]["cursor"].as_str().unwrap().to_owned();
    let replay =
        Running::spawn(&["tail", "--server", &s.grpc, "--json", "--kind", "event-received", "--after", &first], &s.key);
    let lines = replay.lines(1, |l| l.contains("eventReceived")).await;
    assert!(lines[0].contains(&published.id));
    assert!(replay.stdout().iter().all(|l| l.contains("eventReceived") || l.contains("heartbeat")));
}
