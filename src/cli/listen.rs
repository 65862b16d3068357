//! `loft listen`: follows a source's events and re-sends each to a local URL, resuming from a
//! cursor file so that a restart neither repeats nor skips.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use sha2::Digest as _;

use super::{Follower, format_time, stop_requested};
use crate::config::ListenArgs;
use crate::proto::watch_events_response::Activity;
use crate::proto::{ActivityKind, Event, WatchEventsRequest};
use crate::signing::{Scheme, SecretString, sign_outbound_as_with_id};

/// Pauses before the second and third try of a request the local server did not take.
const CONNECT_RETRIES: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(2)];

pub async fn run(args: ListenArgs) -> anyhow::Result<ExitCode> {
    if let Some(secret) = &args.secret {
        // Fail now rather than on the first event.
        sign_outbound_as_with_id(&Scheme::StandardWebhooks, secret.expose(), "msg_check", b"", SystemTime::now())
            .map_err(|e| anyhow::anyhow!("--secret: {e}"))?;
    }
    let cursor_file = match &args.cursor_file {
        Some(path) => path.clone(),
        None => default_cursor_file(&args)?,
    };
    let mut saved = read_cursor(&cursor_file)?;
    let request = WatchEventsRequest {
        project_id: args.server.project.clone().unwrap_or_default(),
        source_ids: args.sources.clone(),
        kinds: vec![ActivityKind::EventReceived as i32],
        include_payload: true,
        ..Default::default()
    };
    let mut follower = Follower::new(&args.server, request, saved.clone())?;
    let forwarder = Forwarder::new(&args)?;
    eprintln!(
        "Forwarding events of {} to {} ({}; cursor file {})",
        args.sources.join(", "),
        redact(&args.forward_to),
        if saved.is_some() { "resuming from the saved cursor" } else { "starting from now" },
        cursor_file.display(),
    );

    let stop = stop_requested();
    tokio::pin!(stop);
    let mut out = std::io::stdout();
    loop {
        let item = tokio::select! {
            _ = &mut stop => return Ok(ExitCode::SUCCESS),
            item = follower.next() => item?,
        };
        let line = match &item.activity {
            Some(Activity::EventReceived(received)) => {
                let event = received.event.clone().unwrap_or_default();
                let outcome = forwarder.forward(&event).await;
                Some(format!(
                    "{}  {}  {}  {}",
                    format_time(item.time.as_ref()),
                    event.id,
                    if event.r#type.is_empty() { "-" } else { &event.r#type },
                    outcome
                ))
            }
            // Heartbeats (the first one carries the starting position) only move the cursor.
            _ => None,
        };
        if saved.as_deref() != Some(item.cursor.as_str()) {
            write_cursor(&cursor_file, &item.cursor)?;
            saved = Some(item.cursor);
        }
        // Printed once the cursor is saved: a printed event is never forwarded again.
        if let Some(line) = line {
            let _ = writeln!(out, "{line}").and_then(|()| out.flush());
        }
    }
}

/// Re-sends events to the local URL.
struct Forwarder {
    client: reqwest::Client,
    url: url::Url,
    secret: Option<SecretString>,
    timeout: Duration,
}

/// What came of forwarding one event; printed as the end of its line.
enum Outcome {
    Answered { method: String, status: u16, elapsed: Duration },
    Failed { method: String, error: String, tries: usize, elapsed: Duration },
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Answered { method, status, elapsed } => write!(f, "{method} {status}  {}ms", elapsed.as_millis()),
            Self::Failed { method, error, tries, elapsed } => {
                let tries = if *tries == 1 { String::new() } else { format!(" ({tries} tries)") };
                write!(f, "{method} error: {error}{tries}  {}ms", elapsed.as_millis())
            }
        }
    }
}

impl Forwarder {
    fn new(args: &ListenArgs) -> anyhow::Result<Self> {
        crate::delivery::sender::install_crypto_provider();
        let timeout = Duration::from_secs(args.timeout.max(1));
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).timeout(timeout).build()?;
        Ok(Self { client, url: args.forward_to.clone(), secret: args.secret.clone(), timeout })
    }

    async fn forward(&self, event: &Event) -> Outcome {
        let method = if event.method.is_empty() { "POST" } else { event.method.as_str() };
        let started = Instant::now();
        let Ok(http_method) = reqwest::Method::from_bytes(method.as_bytes()) else {
            let error = "the event's method is not a valid HTTP method".to_owned();
            return Outcome::Failed { method: method.to_owned(), error, tries: 1, elapsed: started.elapsed() };
        };
        let url = self.url_for(event);
        let mut tries = 0;
        loop {
            tries += 1;
            let request = self
                .client
                .request(http_method.clone(), url.clone())
                .headers(self.headers_for(event))
                .body(event.body.clone());
            match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    // Read the answer so the connection can be reused; its content is not shown.
                    let _ = response.bytes().await;
                    return Outcome::Answered { method: method.to_owned(), status, elapsed: started.elapsed() };
                }
                // Only a request the local server never took is tried again: one that timed out
                // may have been acted on.
                Err(e) if e.is_connect() && tries <= CONNECT_RETRIES.len() => {
                    tokio::time::sleep(CONNECT_RETRIES[tries - 1]).await;
                }
                Err(e) => {
                    let error = if e.is_timeout() {
                        format!("no answer within {} s", self.timeout.as_secs())
                    } else {
                        innermost(&e)
                    };
                    return Outcome::Failed { method: method.to_owned(), error, tries, elapsed: started.elapsed() };
                }
            }
        }
    }

    /// `--forward-to` as given, with the event's query string appended to any it has.
    fn url_for(&self, event: &Event) -> url::Url {
        let mut url = self.url.clone();
        if !event.query.is_empty() {
            let query = match url.query() {
                Some(own) if !own.is_empty() => format!("{own}&{}", event.query),
                _ => event.query.clone(),
            };
            url.set_query(Some(&query));
        }
        url
    }

    /// The original headers in order, duplicates kept, less those that describe the original
    /// connection; with `--secret`, less the original signatures and plus fresh ones.
    fn headers_for(&self, event: &Event) -> HeaderMap {
        let connection_listed: Vec<String> = event
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("connection"))
            .flat_map(|h| h.value.split(',').map(|t| t.trim().to_ascii_lowercase()))
            .collect();
        let mut headers = HeaderMap::new();
        for header in &event.headers {
            let lower = header.name.to_ascii_lowercase();
            if HOP_BY_HOP.contains(&lower.as_str())
                || connection_listed.contains(&lower)
                || (self.secret.is_some() && SIGNATURE_HEADERS.contains(&lower.as_str()))
            {
                continue;
            }
            // A header that was stored but cannot be sent again (not a token name) is dropped.
            if let (Ok(name), Ok(value)) =
                (HeaderName::from_bytes(header.name.as_bytes()), HeaderValue::from_bytes(header.value.as_bytes()))
            {
                headers.append(name, value);
            }
        }
        if !headers.contains_key(CONTENT_TYPE)
            && !event.content_type.is_empty()
            && let Ok(value) = HeaderValue::from_str(&event.content_type)
        {
            headers.insert(CONTENT_TYPE, value);
        }
        if let Some(secret) = &self.secret {
            let signed = sign_outbound_as_with_id(
                &Scheme::StandardWebhooks,
                secret.expose(),
                &event.id,
                &event.body,
                SystemTime::now(),
            )
            .expect("the secret was checked at start");
            for (name, value) in signed {
                if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(&value))
                {
                    headers.insert(name, value);
                }
            }
        }
        headers
    }
}

/// Headers about the hop from the sender to Loft, not about the message (RFC 9110 §7.6.1), and
/// those the HTTP client sets for the new request itself.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

/// Signatures of the original request, replaced when `--secret` re-signs it.
const SIGNATURE_HEADERS: &[&str] = &[
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "x-hub-signature",
    "x-hub-signature-256",
    "stripe-signature",
    "x-shopify-hmac-sha256",
];

/// The deepest cause's message, e.g. `Connection refused (os error 111)`; never the URL.
fn innermost(error: &reqwest::Error) -> String {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message = cause.to_string();
        source = cause.source();
    }
    message
}

fn redact(url: &url::Url) -> String {
    let mut url = url.clone();
    if url.password().is_some() {
        let _ = url.set_password(Some("redacted"));
    }
    url.to_string()
}

/// `$XDG_STATE_HOME/loft/listen-<hash>.cursor` (or under `~/.local/state`), one file per server,
/// project and set of sources, so two `listen`s on different sources keep their own places.
fn default_cursor_file(args: &ListenArgs) -> anyhow::Result<PathBuf> {
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/state")))
        .context("neither XDG_STATE_HOME nor HOME is set: pass --cursor-file")?;
    let mut sources = args.sources.clone();
    sources.sort();
    sources.dedup();
    let key =
        format!("{}\n{}\n{}", args.server.server, args.server.project.as_deref().unwrap_or(""), sources.join(","));
    let hash = hex::encode(&sha2::Sha256::digest(key.as_bytes())[..8]);
    Ok(state.join("loft").join(format!("listen-{hash}.cursor")))
}

fn read_cursor(path: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text.trim().to_owned()).filter(|c| !c.is_empty())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading cursor file {}", path.display())),
    }
}

/// Replaces the file atomically (a temporary file renamed over it), so a crash leaves either
/// the old cursor or the new one.
fn write_cursor(path: &Path, cursor: &str) -> anyhow::Result<()> {
    let context = || format!("saving cursor file {}", path.display());
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(context)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = std::fs::File::create(&tmp).with_context(context)?;
    file.write_all(cursor.as_bytes()).and_then(|()| file.sync_all()).with_context(context)?;
    std::fs::rename(&tmp, path).with_context(context)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Cli, Command};
    use crate::proto::Header;
    use clap::Parser as _;

    fn forwarder(extra: &[&str]) -> Forwarder {
        let mut argv = vec!["loft", "listen", "--source", "src_1", "--forward-to", "http://127.0.0.1:3000/hook?a=1"];
        argv.extend_from_slice(extra);
        match Cli::parse_from(argv).command {
            Command::Listen(args) => Forwarder::new(&args).unwrap(),
            _ => unreachable!(),
        }
    }

    fn event() -> Event {
        let h = |name: &str, value: &str| Header { name: name.into(), value: value.into() };
        Event {
            id: "evt_1".into(),
            query: "b=2&b=3".into(),
            body: b"{}".to_vec(),
            content_type: "application/json".into(),
            headers: vec![
                h("Host", "loft.example"),
                h("Content-Length", "2"),
                h("Connection", "keep-alive, X-Hop"),
                h("X-Hop", "1"),
                h("X-Dup", "a"),
                h("X-Dup", "b"),
                h("X-Hub-Signature-256", "sha256=00"),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn keeps_end_to_end_headers_and_appends_the_query() {
        let f = forwarder(&[]);
        assert_eq!(f.url_for(&event()).as_str(), "http://127.0.0.1:3000/hook?a=1&b=2&b=3");
        let headers = f.headers_for(&event());
        let names: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-dup", "x-hub-signature-256", "content-type"]);
        assert_eq!(headers.get_all("x-dup").iter().collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn a_secret_replaces_the_signatures() {
        let f = forwarder(&["--secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]);
        let headers = f.headers_for(&event());
        assert!(headers.get("x-hub-signature-256").is_none());
        assert_eq!(headers.get("webhook-id").unwrap(), "evt_1");
        assert!(headers.get("webhook-signature").unwrap().to_str().unwrap().starts_with("v1,"));
    }

    #[test]
    fn cursor_files_are_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/listen.cursor");
        assert_eq!(read_cursor(&path).unwrap(), None);
        write_cursor(&path, "c1").unwrap();
        write_cursor(&path, "c2").unwrap();
        assert_eq!(read_cursor(&path).unwrap().as_deref(), Some("c2"));
        assert_eq!(std::fs::read_dir(path.parent().unwrap()).unwrap().count(), 1, "no temporary file left");
    }
}
