//! The outbound HTTP sender: one attempt of one delivery (DESIGN §5, §7).
//!
//! One pooled [`reqwest::Client`] serves every destination. The sender never follows
//! redirects, never decompresses, and enforces the destination URL policy at connect time:
//! host names go through a resolver that drops every address [`check_ip`] refuses, and
//! literal IP addresses (which never reach a resolver) are checked before anything is sent.
//! So a name that resolves to a loopback or metadata address (DNS rebinding) is refused even
//! though it passed when the destination was created.
//!
//! An attempt never fails as a Rust error: whatever happens becomes an [`AttemptRecord`], with
//! an [`AttemptError`] whose message names the class of failure. Messages never contain the
//! request body, header values or the URL, which may all carry secrets; the attempt log
//! already holds the URL.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, LazyLock, Once};
use std::time::{Duration, Instant, SystemTime};

use aho_corasick::AhoCorasick;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

use crate::domain::url_policy::{ForbiddenAddress, UrlPolicy, check_ip};

/// How much of a response body an attempt keeps. The rest is not read: the connection is
/// dropped instead, so a huge or endless body cannot hold a sender.
pub const RESPONSE_BODY_LIMIT: usize = 64 * 1024;

/// Longest wait for a TCP connection to one destination. Bounded further by the attempt's
/// own timeout; with several resolved addresses it is shared between them, so a dead first
/// address does not use up the whole attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How idle pooled connections stay open. Receivers commonly close after 60 s or more; hyper
/// re-sends a request whose pooled connection turned out to be closed before it was written.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// What an attempt records in place of a credential-bearing header value.
pub const REDACTED: &str = "[redacted]";

/// One HTTP request to a destination, fully built: signing, static and auth headers included.
#[derive(Clone)]
pub struct OutboundRequest {
    pub url: String,
    pub method: Method,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// Bounds the whole exchange: resolving, connecting, sending, the response head and the
    /// captured part of the body.
    pub timeout: Duration,
}

/// Header values and the body may be secrets: `Debug` shows only names and sizes.
impl fmt::Debug for OutboundRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboundRequest")
            .field("url", &self.url)
            .field("method", &self.method)
            .field("headers", &self.headers.iter().map(|(name, _)| name).collect::<Vec<_>>())
            .field("body_len", &self.body.len())
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// What one attempt sent and got back (the `Attempt` resource of DESIGN §4, less its ids).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    /// The headers Loft chose, in order: the request's own, then `user-agent` and `accept` as
    /// the client adds them. Values of credential-bearing headers (`authorization`, `cookie`,
    /// names containing `auth`, `token`, `secret`, `api-key`...) are [`REDACTED`]; an auth
    /// header with an innocuous name must be redacted by the caller, which knows its name.
    /// `host` and `content-length` follow from the URL and body and are not listed.
    pub request_headers: Vec<(String, String)>,
    /// The response status, when a response head arrived, also when the attempt failed later
    /// (e.g. the connection broke while the body was read).
    pub status: Option<u16>,
    pub response_headers: Vec<(String, String)>,
    /// At most [`RESPONSE_BODY_LIMIT`] bytes.
    pub response_body: Vec<u8>,
    pub response_body_truncated: bool,
    pub error: Option<AttemptError>,
    pub started: SystemTime,
    pub duration: Duration,
}

/// Why an attempt did not succeed. The message names the class of failure and never quotes
/// header values, the body or the URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AttemptError {
    pub kind: ErrorKind,
    pub message: String,
}

/// The error kinds of an attempt, as `Attempt.error.kind` in the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The attempt's timeout passed (or the TCP connect timed out).
    Timeout,
    /// The connection could not be made, broke, or the request could not be built.
    Connect,
    /// The host name did not resolve.
    Dns,
    /// The TLS handshake failed (certificate, protocol).
    Tls,
    /// Every address of the host, or the literal address, is refused by the URL policy.
    ForbiddenAddress,
    /// A body over the size limit. Not produced by the sender: set by whoever builds a
    /// request body that is too large to send.
    BodyTooLarge,
    /// The receiver answered 3xx; redirects are not followed.
    Redirect,
    /// The receiver answered with a status other than 2xx or 3xx.
    HttpStatus,
}

impl ErrorKind {
    /// The name in the API's `ErrorKind` enum, also fit for a metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Timeout => "TIMEOUT",
            ErrorKind::Connect => "CONNECT",
            ErrorKind::Dns => "DNS",
            ErrorKind::Tls => "TLS",
            ErrorKind::ForbiddenAddress => "FORBIDDEN_ADDRESS",
            ErrorKind::BodyTooLarge => "BODY_TOO_LARGE",
            ErrorKind::Redirect => "REDIRECT",
            ErrorKind::HttpStatus => "HTTP_STATUS",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AttemptError {
    fn new(kind: ErrorKind, message: impl Into<String>) -> AttemptError {
        AttemptError { kind, message: message.into() }
    }
}

/// Why the sender could not be built: a startup problem of the host, not of a destination.
#[derive(Debug, thiserror::Error)]
pub enum SenderInitError {
    #[error("the user agent is not a valid header value")]
    UserAgent,
    /// Typically: no CA certificates on the system (install `ca-certificates`).
    #[error("cannot set up the outbound HTTP client: {0}")]
    Client(String),
}

/// Sends attempts to destinations. Cheap to clone: every clone shares one connection pool.
#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    policy: Arc<UrlPolicy>,
    user_agent: HeaderValue,
}

impl fmt::Debug for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender").field("policy", &self.policy).field("user_agent", &self.user_agent).finish()
    }
}

impl Sender {
    /// Fails when the system's CA certificates cannot be loaded, or `user_agent` is not a
    /// valid header value.
    pub fn new(policy: UrlPolicy, user_agent: String) -> Result<Sender, SenderInitError> {
        install_crypto_provider();
        let user_agent = HeaderValue::try_from(user_agent).map_err(|_| SenderInitError::UserAgent)?;
        let policy = Arc::new(policy);
        let client = reqwest::Client::builder()
            .user_agent(user_agent.clone())
            .redirect(reqwest::redirect::Policy::none())
            .referer(false)
            // Environment proxies would route around the address policy.
            .no_proxy()
            // Explicit, in case another crate in the build turns the decompression features on.
            .no_gzip()
            .no_brotli()
            .no_deflate()
            .no_zstd()
            .tcp_nodelay(true)
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .dns_resolver(PolicyResolver { policy: Arc::clone(&policy) })
            .build()
            .map_err(|e| SenderInitError::Client(error_chain(&e)))?;
        Ok(Sender { client, policy, user_agent })
    }

    /// Makes one attempt. Never panics on anything the receiver or the network does.
    pub async fn send(&self, req: &OutboundRequest) -> AttemptRecord {
        let started = SystemTime::now();
        let clock = Instant::now();
        let mut record = AttemptRecord {
            request_headers: self.recorded_headers(&req.headers),
            status: None,
            response_headers: Vec::new(),
            response_body: Vec::new(),
            response_body_truncated: false,
            error: None,
            started,
            duration: Duration::ZERO,
        };
        let outcome = match self.prepare(req) {
            Ok(request) => {
                let mut phase = Phase::AwaitingHead;
                let exchange = self.exchange(request, &mut record, &mut phase);
                match tokio::time::timeout(req.timeout, exchange).await {
                    Ok(outcome) => outcome,
                    Err(_) => Err(AttemptError::new(
                        ErrorKind::Timeout,
                        format!("timed out after {} {}", seconds(req.timeout), phase.describe()),
                    )),
                }
            }
            Err(error) => Err(error),
        };
        // A non-2xx status decides the outcome, even when the body was then cut short.
        record.error = match (record.status, outcome) {
            (Some(status), outcome) if !(200..300).contains(&status) => Some(status_error(status, outcome.err())),
            (_, outcome) => outcome.err(),
        };
        record.duration = clock.elapsed();
        record
    }

    /// Builds the request, refusing a literal IP address the policy forbids.
    fn prepare(&self, req: &OutboundRequest) -> Result<reqwest::Request, AttemptError> {
        let not_sent = |why: &str| AttemptError::new(ErrorKind::Connect, format!("request not sent: {why}"));
        let url = Url::parse(&req.url).map_err(|_| not_sent("the URL is not valid"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(not_sent("the URL scheme is not http or https"));
        }
        let literal = match url.host() {
            None => return Err(not_sent("the URL has no host")),
            Some(Host::Domain(_)) => None,
            Some(Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        };
        if let Some(ip) = literal {
            check_ip(ip, &self.policy).map_err(|f| AttemptError::new(ErrorKind::ForbiddenAddress, f.to_string()))?;
        }
        let mut headers = HeaderMap::with_capacity(req.headers.len());
        for (name, value) in &req.headers {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| not_sent(&format!("header name {name:?} is not valid")))?;
            let mut value = HeaderValue::from_str(value)
                .map_err(|_| not_sent(&format!("the value of header {header} is not valid")))?;
            // HTTP/2 then keeps the value out of its header compression tables.
            value.set_sensitive(carries_credentials(header.as_str()));
            headers.append(header, value);
        }
        let mut request = reqwest::Request::new(req.method.clone(), url);
        *request.headers_mut() = headers;
        *request.body_mut() = Some(reqwest::Body::from(req.body.clone()));
        Ok(request)
    }

    /// Sends `request` and captures the response into `record`; `phase` tells a timeout where
    /// it struck. A body that breaks off is an error even after a 2xx head.
    async fn exchange(
        &self,
        request: reqwest::Request,
        record: &mut AttemptRecord,
        phase: &mut Phase,
    ) -> Result<(), AttemptError> {
        let mut response = self.client.execute(request).await.map_err(|e| network_error(&e, Phase::AwaitingHead))?;
        record.status = Some(response.status().as_u16());
        record.response_headers = response
            .headers()
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
            .collect();
        *phase = Phase::ReadingBody;
        let expected = response.content_length().map_or(0, |len| len.min(RESPONSE_BODY_LIMIT as u64) as usize);
        record.response_body.reserve_exact(expected);
        while let Some(chunk) = response.chunk().await.map_err(|e| network_error(&e, Phase::ReadingBody))? {
            let room = RESPONSE_BODY_LIMIT - record.response_body.len();
            if chunk.len() > room {
                record.response_body.extend_from_slice(&chunk[..room]);
                record.response_body_truncated = true;
                // Dropping the unfinished response closes the connection (HTTP/1.1) or
                // resets the stream (HTTP/2) instead of reading the rest.
                break;
            }
            record.response_body.extend_from_slice(&chunk);
        }
        Ok(())
    }

    fn recorded_headers(&self, headers: &[(String, String)]) -> Vec<(String, String)> {
        let mut recorded: Vec<(String, String)> = headers
            .iter()
            .map(|(name, value)| {
                let name = name.to_ascii_lowercase();
                let value = if carries_credentials(&name) { REDACTED.to_owned() } else { value.clone() };
                (name, value)
            })
            .collect();
        let has = |recorded: &[(String, String)], name: &str| recorded.iter().any(|(n, _)| n == name);
        if !has(&recorded, "user-agent") {
            let user_agent = String::from_utf8_lossy(self.user_agent.as_bytes()).into_owned();
            recorded.push(("user-agent".to_owned(), user_agent));
        }
        // reqwest adds `accept: */*` to every request that has none.
        if !has(&recorded, "accept") {
            recorded.push(("accept".to_owned(), "*/*".to_owned()));
        }
        recorded
    }
}

/// Where an exchange was when it failed or timed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Resolving, connecting, sending the request, waiting for the status line and headers.
    AwaitingHead,
    ReadingBody,
}

impl Phase {
    fn describe(self) -> &'static str {
        match self {
            Phase::AwaitingHead => "waiting for the response",
            Phase::ReadingBody => "reading the response body",
        }
    }
}

fn status_error(status: u16, body_problem: Option<AttemptError>) -> AttemptError {
    let reason = StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason());
    let mut message = match reason {
        Some(reason) => format!("the receiver answered {status} {reason}"),
        None => format!("the receiver answered {status}"),
    };
    let kind = if (300..400).contains(&status) {
        message.push_str("; redirects are not followed");
        ErrorKind::Redirect
    } else {
        ErrorKind::HttpStatus
    };
    if let Some(problem) = body_problem {
        message.push_str(&format!(" (response body incomplete: {problem})"));
    }
    AttemptError::new(kind, message)
}

/// Classifies a failed exchange by walking the error's causes. reqwest's own `Display`
/// quotes the URL, so messages are built from the causes beneath it only.
fn network_error(error: &reqwest::Error, phase: Phase) -> AttemptError {
    let suffix = match phase {
        Phase::AwaitingHead => "",
        Phase::ReadingBody => " while reading the response body",
    };
    let mut io_error = None;
    let mut hyper_error = None;
    let mut innermost = None;
    for e in causes(error) {
        if let Some(refused) = e.downcast_ref::<OnlyForbiddenAddresses>() {
            return AttemptError::new(ErrorKind::ForbiddenAddress, refused.to_string());
        }
        if let Some(failure) = e.downcast_ref::<DnsFailure>() {
            return AttemptError::new(ErrorKind::Dns, failure.to_string());
        }
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return AttemptError::new(ErrorKind::Tls, format!("TLS handshake failed: {tls}"));
        }
        // The innermost I/O error is the operating system's own.
        if let Some(io) = e.downcast_ref::<io::Error>() {
            io_error = Some(io);
        }
        if let Some(hyper) = e.downcast_ref::<hyper::Error>() {
            hyper_error.get_or_insert(hyper);
        }
        if !e.is::<reqwest::Error>() {
            innermost = Some(e);
        }
    }
    if error.is_timeout() || io_error.is_some_and(|io| io.kind() == io::ErrorKind::TimedOut) {
        let message = match phase {
            Phase::AwaitingHead => format!("connect timed out after {}", seconds(CONNECT_TIMEOUT)),
            Phase::ReadingBody => "timed out reading the response body".to_owned(),
        };
        return AttemptError::new(ErrorKind::Timeout, message);
    }
    let what = match io_error.map(io::Error::kind) {
        Some(io::ErrorKind::ConnectionRefused) => "connection refused".to_owned(),
        Some(io::ErrorKind::ConnectionReset) => "connection reset by the receiver".to_owned(),
        Some(io::ErrorKind::ConnectionAborted) => "connection aborted".to_owned(),
        Some(io::ErrorKind::BrokenPipe) => "connection closed by the receiver while sending the request".to_owned(),
        Some(io::ErrorKind::UnexpectedEof) => "connection closed before the response was complete".to_owned(),
        Some(io::ErrorKind::NetworkUnreachable) => "network unreachable".to_owned(),
        Some(io::ErrorKind::HostUnreachable) => "host unreachable".to_owned(),
        _ => match (hyper_error, innermost) {
            (Some(h), _) if h.is_incomplete_message() => {
                "connection closed before the response was complete".to_owned()
            }
            (Some(h), _) if h.is_parse_too_large() => "the response head is too large".to_owned(),
            (Some(h), _) if h.is_parse() || h.is_parse_status() => "the response is not valid HTTP".to_owned(),
            // hyper's and the OS's own wording name the class without quoting the request.
            (_, Some(e)) => format!("connection failed: {e}"),
            (_, None) => "connection failed".to_owned(),
        },
    };
    AttemptError::new(ErrorKind::Connect, format!("{what}{suffix}"))
}

/// `error` and its causes, outermost first. An `io::Error` wrapping another error reports that
/// error's *source* as its own, skipping the wrapped error itself (tokio-rustls and
/// hyper-rustls wrap `rustls::Error` so, twice), so the walk steps into the wrapped error.
fn causes<'a>(error: &'a (dyn StdError + 'static)) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(error), |&e| match e.downcast_ref::<io::Error>().and_then(io::Error::get_ref) {
        Some(wrapped) => Some(wrapped as &(dyn StdError + 'static)),
        None => e.source(),
    })
}

/// `e` and its causes, for startup errors that quote no request.
fn error_chain(e: &(dyn StdError + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// A duration as the messages show it: `30s`, `0.25s`.
fn seconds(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

/// Whether a lower-case header name carries credentials: the names DESIGN §7 keeps out of
/// static headers, plus anything naming `auth`, where custom auth headers usually live.
fn carries_credentials(name: &str) -> bool {
    const NAMES: [&str; 4] = ["authorization", "proxy-authorization", "cookie", "set-cookie"];
    // One pass over the name: ten `str::contains`, each setting up its own search, were ≈ 2 %
    // of the end-to-end benchmark's CPU (every header of every attempt is checked).
    static PARTS: LazyLock<AhoCorasick> = LazyLock::new(|| {
        AhoCorasick::new([
            "secret",
            "token",
            "api-key",
            "apikey",
            "api_key",
            "password",
            "passwd",
            "credential",
            "private-key",
            "auth",
        ])
        .expect("fixed patterns")
    });
    NAMES.contains(&name) || PARTS.is_match(name)
}

/// Resolves with the system resolver and keeps only the addresses the policy allows.
struct PolicyResolver {
    policy: Arc<UrlPolicy>,
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = Arc::clone(&self.policy);
        Box::pin(async move {
            // Port 0: the connector puts the URL's port in afterwards.
            let resolved = tokio::net::lookup_host((name.as_str(), 0)).await.map_err(DnsFailure::Lookup)?;
            let mut refused = None;
            let allowed: Vec<SocketAddr> = resolved
                .filter(|addr| match check_ip(addr.ip(), &policy) {
                    Ok(()) => true,
                    Err(forbidden) => {
                        refused.get_or_insert(forbidden);
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                return Err(match refused {
                    Some(forbidden) => OnlyForbiddenAddresses(forbidden).into(),
                    None => DnsFailure::NoAddresses.into(),
                });
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// Carried through reqwest's error chain so that the attempt is classified `DNS`.
#[derive(Debug, thiserror::Error)]
enum DnsFailure {
    #[error("DNS lookup failed: {0}")]
    Lookup(io::Error),
    #[error("DNS lookup returned no addresses")]
    NoAddresses,
}

/// Carried through reqwest's error chain so that the attempt is classified `FORBIDDEN_ADDRESS`.
#[derive(Debug, thiserror::Error)]
#[error("resolved only to forbidden addresses ({0})")]
struct OnlyForbiddenAddresses(ForbiddenAddress);

/// reqwest is built without a bundled crypto provider (`rustls-no-provider`), which keeps
/// aws-lc's C build out of the crate; ring is installed as the process default unless
/// something else installed one first.
pub fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            // Losing a race with another installer is fine: any provider will do.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::extract::State;
    use axum::http::{HeaderMap as AxumHeaders, Uri};
    use axum::response::IntoResponse;
    use axum::routing::any;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    const SECRET: &str = "SECRET-7f3a";

    fn dev() -> UrlPolicy {
        UrlPolicy { allow_private: true, ..UrlPolicy::default() }
    }

    fn sender(policy: UrlPolicy) -> Sender {
        Sender::new(policy, "Loft/test".to_owned()).unwrap()
    }

    /// A request whose header values, body and query all hold [`SECRET`], so that every
    /// error message can be checked for leaks.
    fn request(url: String, timeout: Duration) -> OutboundRequest {
        OutboundRequest {
            url: format!("{url}?token={SECRET}"),
            method: Method::POST,
            headers: vec![
                ("content-type".to_owned(), "application/json".to_owned()),
                ("webhook-id".to_owned(), "evt_01".to_owned()),
                ("webhook-timestamp".to_owned(), "1700000000".to_owned()),
                ("webhook-signature".to_owned(), "v1,c2lnbmF0dXJl".to_owned()),
                ("X-Loft-Event-Type".to_owned(), "task.created".to_owned()),
                ("x-tenant".to_owned(), "acme".to_owned()),
                ("x-tenant".to_owned(), "beta".to_owned()),
                ("authorization".to_owned(), format!("Bearer {SECRET}")),
                ("X-Api-Key".to_owned(), SECRET.to_owned()),
            ],
            body: Bytes::from(format!(r#"{{"secret":"{SECRET}"}}"#)),
            timeout,
        }
    }

    fn local(addr: SocketAddr, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", addr.port())
    }

    /// One attempt through a sender that allows private addresses, as every loopback test needs.
    async fn send_dev(url: String, timeout: Duration) -> AttemptRecord {
        sender(dev()).send(&request(url, timeout)).await
    }

    fn assert_no_leak(record: &AttemptRecord) {
        let message = &record.error.as_ref().expect("an error").message;
        assert!(!message.contains(SECRET), "message leaks: {message}");
        assert!(!message.contains("127.0.0.1:"), "message quotes the URL: {message}");
        for (name, value) in &record.request_headers {
            assert!(!value.contains(SECRET), "request header {name} recorded in clear");
        }
    }

    fn kind(record: &AttemptRecord) -> Option<ErrorKind> {
        record.error.as_ref().map(|e| e.kind)
    }

    async fn serve(app: Router) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    }

    /// A receiver that answers 200 and counts what it got.
    async fn counting_receiver() -> (SocketAddr, Arc<AtomicUsize>) {
        let hits = Arc::new(AtomicUsize::new(0));
        let app = Router::new().fallback(any(|State(hits): State<Arc<AtomicUsize>>| async move {
            hits.fetch_add(1, Ordering::SeqCst);
            "ok"
        }));
        (serve(app.with_state(Arc::clone(&hits))).await, hits)
    }

    /// A raw receiver: `handle` gets each accepted connection after its request head was read.
    async fn raw_receiver<F, Fut>(handle: F) -> SocketAddr
    where
        F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = Arc::new(handle);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let handle = Arc::clone(&handle);
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    handle(stream).await;
                });
            }
        });
        addr
    }

    /// What a receiver got: method, target, headers, body.
    type Received = (Method, Uri, AxumHeaders, Bytes);

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<Received>>>);

    #[tokio::test]
    async fn delivers_exactly_what_it_is_given_and_captures_the_response() {
        let captured = Captured::default();
        let app = Router::new()
            .fallback(any(
                |State(c): State<Captured>, method: Method, uri: Uri, headers: AxumHeaders, body: Bytes| async move {
                    c.0.lock().unwrap().push((method, uri, headers, body));
                    (
                        axum::response::AppendHeaders([
                            ("x-receipt", "r-1"),
                            ("set-cookie", "a=1"),
                            ("set-cookie", "b=2"),
                            ("content-type", "application/json"),
                        ]),
                        r#"{"received":true}"#,
                    )
                },
            ))
            .with_state(captured.clone());
        let addr = serve(app).await;
        let req = request(local(addr, "/hooks/a"), Duration::from_secs(5));
        let record = sender(dev()).send(&req).await;

        assert_eq!(record.error, None);
        assert_eq!(record.status, Some(200));
        assert_eq!(record.response_body, br#"{"received":true}"#);
        assert!(!record.response_body_truncated);
        let response_header = |name: &str| {
            record.response_headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect::<Vec<_>>()
        };
        assert_eq!(response_header("x-receipt"), ["r-1"]);
        assert_eq!(response_header("set-cookie"), ["a=1", "b=2"]);
        assert!(record.duration > Duration::ZERO && record.duration < Duration::from_secs(5));
        assert!(record.started <= SystemTime::now());

        let got = captured.0.lock().unwrap().pop().expect("the receiver got the request");
        let (method, uri, headers, body) = got;
        assert_eq!(method, Method::POST);
        assert_eq!(uri.path(), "/hooks/a");
        assert_eq!(uri.query(), Some(format!("token={SECRET}").as_str()));
        assert_eq!(body, req.body);
        // Every header sent arrives with its exact value, duplicates in order...
        for (name, _) in &req.headers {
            let want: Vec<&str> =
                req.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect();
            let got: Vec<&str> = headers.get_all(name.as_str()).iter().map(|v| v.to_str().unwrap()).collect();
            assert_eq!(got, want, "{name}");
        }
        // ...plus only what HTTP/1.1 and the client add: no accept-encoding, no referer.
        assert_eq!(headers["user-agent"], "Loft/test");
        assert_eq!(headers["accept"], "*/*");
        assert_eq!(headers["host"], format!("127.0.0.1:{}", addr.port()));
        assert_eq!(headers["content-length"], req.body.len().to_string());
        let mut extra: Vec<&str> = headers
            .keys()
            .map(|n| n.as_str())
            .filter(|n| !req.headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(n)))
            .collect();
        extra.sort_unstable();
        assert_eq!(extra, ["accept", "content-length", "host", "user-agent"]);

        // The record lists the same headers, with the credential redacted.
        let recorded: Vec<(&str, &str)> =
            record.request_headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        assert_eq!(
            recorded,
            [
                ("content-type", "application/json"),
                ("webhook-id", "evt_01"),
                ("webhook-timestamp", "1700000000"),
                ("webhook-signature", "v1,c2lnbmF0dXJl"),
                ("x-loft-event-type", "task.created"),
                ("x-tenant", "acme"),
                ("x-tenant", "beta"),
                ("authorization", REDACTED),
                ("x-api-key", REDACTED),
                ("user-agent", "Loft/test"),
                ("accept", "*/*"),
            ]
        );
    }

    #[tokio::test]
    async fn statuses_are_classified_and_redirects_not_followed() {
        let target_hits = Arc::new(AtomicUsize::new(0));
        let hits = Arc::clone(&target_hits);
        let app = Router::new()
            .route("/500", any(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "boom") }))
            .route("/404", any(|| async { (axum::http::StatusCode::NOT_FOUND, "nope") }))
            .route("/410", any(|| async { axum::http::StatusCode::GONE }))
            .route(
                "/503",
                any(|| async { (axum::http::StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "120")], "later") }),
            )
            .route("/301", any(|| async { axum::response::Redirect::permanent("/target").into_response() }))
            .route("/307", any(|| async { axum::response::Redirect::temporary("/target").into_response() }))
            .route(
                "/target",
                any(move || async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    "followed"
                }),
            );
        let addr = serve(app).await;
        let sender = sender(dev());
        let send = |path: &str| {
            let sender = sender.clone();
            let req = request(local(addr, &format!("/{path}")), Duration::from_secs(5));
            async move { sender.send(&req).await }
        };

        let r = send("500").await;
        assert_eq!((r.status, kind(&r)), (Some(500), Some(ErrorKind::HttpStatus)));
        assert_eq!(r.error.as_ref().unwrap().message, "the receiver answered 500 Internal Server Error");
        assert_eq!(r.response_body, b"boom");
        assert_no_leak(&r);

        let r = send("404").await;
        assert_eq!((r.status, kind(&r)), (Some(404), Some(ErrorKind::HttpStatus)));
        assert_eq!(r.response_body, b"nope");

        let r = send("410").await;
        assert_eq!((r.status, kind(&r)), (Some(410), Some(ErrorKind::HttpStatus)));
        assert_eq!(r.error.as_ref().unwrap().message, "the receiver answered 410 Gone");

        let r = send("503").await;
        assert_eq!((r.status, kind(&r)), (Some(503), Some(ErrorKind::HttpStatus)));
        assert!(r.response_headers.contains(&("retry-after".to_owned(), "120".to_owned())));

        for (path, code) in [("301", 308), ("307", 307)] {
            let r = send(path).await;
            assert_eq!((r.status, kind(&r)), (Some(code), Some(ErrorKind::Redirect)), "{path}");
            assert!(r.response_headers.contains(&("location".to_owned(), "/target".to_owned())));
            assert!(r.error.as_ref().unwrap().message.ends_with("redirects are not followed"));
            assert_no_leak(&r);
        }
        assert_eq!(target_hits.load(Ordering::SeqCst), 0, "a redirect was followed");
    }

    #[tokio::test]
    async fn a_receiver_that_never_answers_times_out() {
        let addr = raw_receiver(|stream| async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            drop(stream);
        })
        .await;
        let timeout = Duration::from_millis(300);
        let started = Instant::now();
        let r = send_dev(local(addr, "/"), timeout).await;
        let took = started.elapsed();
        assert_eq!(kind(&r), Some(ErrorKind::Timeout));
        assert_eq!(r.error.as_ref().unwrap().message, "timed out after 0.3s waiting for the response");
        assert_eq!(r.status, None);
        assert!(took >= timeout && took < timeout + Duration::from_secs(1), "{took:?}");
        assert!(r.duration >= timeout);
        assert_no_leak(&r);
    }

    #[tokio::test]
    async fn a_body_that_stalls_times_out_keeping_the_status() {
        let addr = raw_receiver(|mut stream| async move {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial").await;
            tokio::time::sleep(Duration::from_secs(60)).await;
        })
        .await;
        let r = send_dev(local(addr, "/"), Duration::from_millis(300)).await;
        assert_eq!((r.status, kind(&r)), (Some(200), Some(ErrorKind::Timeout)));
        assert_eq!(r.error.as_ref().unwrap().message, "timed out after 0.3s reading the response body");
        assert_eq!(r.response_body, b"partial");
    }

    #[tokio::test]
    async fn a_closed_port_is_a_connect_error() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let r = sender(dev()).send(&request(format!("http://127.0.0.1:{port}/"), Duration::from_secs(5))).await;
        assert_eq!((r.status, kind(&r)), (None, Some(ErrorKind::Connect)));
        assert_eq!(r.error.as_ref().unwrap().message, "connection refused");
        assert_no_leak(&r);
    }

    #[tokio::test]
    async fn a_reset_mid_response_is_a_network_error() {
        // Reset after part of the body: the 200 is kept, but the answer never completed.
        let addr = raw_receiver(|mut stream| async move {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\npartial").await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            stream.set_zero_linger().unwrap();
        })
        .await;
        let r = send_dev(local(addr, "/"), Duration::from_secs(5)).await;
        assert_eq!((r.status, kind(&r)), (Some(200), Some(ErrorKind::Connect)));
        assert_eq!(
            r.error.as_ref().unwrap().message,
            "connection reset by the receiver while reading the response body"
        );
        assert_eq!(r.response_body, b"partial");
        assert_no_leak(&r);

        // Reset in the middle of the status line.
        let addr = raw_receiver(|mut stream| async move {
            let _ = stream.write_all(b"HTTP/1.1 2").await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            stream.set_zero_linger().unwrap();
        })
        .await;
        let r = send_dev(local(addr, "/"), Duration::from_secs(5)).await;
        assert_eq!((r.status, kind(&r)), (None, Some(ErrorKind::Connect)));
        assert_eq!(r.error.as_ref().unwrap().message, "connection reset by the receiver");
        assert_no_leak(&r);

        // A clean close before any answer.
        let addr = raw_receiver(|stream| async move { drop(stream) }).await;
        let r = send_dev(local(addr, "/"), Duration::from_secs(5)).await;
        assert_eq!((r.status, kind(&r)), (None, Some(ErrorKind::Connect)));
        assert_eq!(r.error.as_ref().unwrap().message, "connection closed before the response was complete");
        assert_no_leak(&r);

        // Not HTTP at all.
        let addr = raw_receiver(|mut stream| async move {
            let _ = stream.write_all(b"SSH-2.0-OpenSSH_9.6\r\n\r\n").await;
        })
        .await;
        let r = send_dev(local(addr, "/"), Duration::from_secs(5)).await;
        assert_eq!((r.status, kind(&r)), (None, Some(ErrorKind::Connect)));
        assert_eq!(r.error.as_ref().unwrap().message, "the response is not valid HTTP");

        // A non-2xx status decides, even when its body breaks off.
        let addr = raw_receiver(|mut stream| async move {
            let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 100\r\n\r\nno").await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            stream.set_zero_linger().unwrap();
        })
        .await;
        let r = send_dev(local(addr, "/"), Duration::from_secs(5)).await;
        assert_eq!((r.status, kind(&r)), (Some(404), Some(ErrorKind::HttpStatus)));
        assert_eq!(
            r.error.as_ref().unwrap().message,
            "the receiver answered 404 Not Found (response body incomplete: \
             connection reset by the receiver while reading the response body)"
        );
    }

    #[tokio::test]
    async fn only_the_first_64_kib_of_a_huge_body_is_read() {
        // 10 MiB announced, 1 MiB written, then nothing: reading past the limit would hang
        // until the timeout.
        let written = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&written);
        let addr = raw_receiver(move |mut stream| {
            let count = Arc::clone(&count);
            async move {
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10485760\r\n\r\n").await;
                let chunk = vec![b'x'; 64 * 1024];
                for _ in 0..16 {
                    if stream.write_all(&chunk).await.is_err() {
                        return;
                    }
                    count.fetch_add(chunk.len(), Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
        })
        .await;
        let r = send_dev(local(addr, "/"), Duration::from_secs(10)).await;
        // No timeout: the sender stopped reading at the limit.
        assert_eq!((r.status, r.error), (Some(200), None));
        assert_eq!(r.response_body.len(), RESPONSE_BODY_LIMIT);
        assert!(r.response_body_truncated);
        assert!(r.duration < Duration::from_secs(5), "{:?}", r.duration);

        // A whole 10 MiB body from an ordinary server, and a body of exactly the limit.
        let app = Router::new()
            .route("/huge", any(|| async { vec![b'y'; 10 << 20] }))
            .route("/exact", any(|| async { vec![b'z'; RESPONSE_BODY_LIMIT] }));
        let addr = serve(app).await;
        let sender = sender(dev());
        let r = sender.send(&request(local(addr, "/huge"), Duration::from_secs(10))).await;
        assert_eq!(
            (r.status, r.error, r.response_body.len(), r.response_body_truncated),
            (Some(200), None, 65536, true)
        );
        let r = sender.send(&request(local(addr, "/exact"), Duration::from_secs(10))).await;
        assert_eq!(
            (r.status, r.error, r.response_body.len(), r.response_body_truncated),
            (Some(200), None, 65536, false)
        );
    }

    #[tokio::test]
    async fn forbidden_addresses_are_refused_before_connecting() {
        let (addr, hits) = counting_receiver().await;
        let strict = sender(UrlPolicy::default());
        let port = addr.port();

        let r = strict.send(&request(format!("http://127.0.0.1:{port}/"), Duration::from_secs(5))).await;
        assert_eq!((r.status, kind(&r)), (None, Some(ErrorKind::ForbiddenAddress)));
        assert_eq!(r.error.as_ref().unwrap().message, "127.0.0.1 is a loopback address");
        assert_no_leak(&r);

        let r = strict.send(&request(format!("http://[::ffff:127.0.0.1]:{port}/"), Duration::from_secs(5))).await;
        assert_eq!(kind(&r), Some(ErrorKind::ForbiddenAddress));

        // A name goes through the resolver, which drops every address the policy refuses.
        let r = strict.send(&request(format!("http://localhost:{port}/"), Duration::from_secs(5))).await;
        assert_eq!((r.status, kind(&r)), (None, Some(ErrorKind::ForbiddenAddress)));
        let message = &r.error.as_ref().unwrap().message;
        assert!(
            message == "resolved only to forbidden addresses (127.0.0.1 is a loopback address)"
                || message == "resolved only to forbidden addresses (::1 is a loopback address)",
            "{message}"
        );
        assert_no_leak(&r);
        assert_eq!(hits.load(Ordering::SeqCst), 0, "the receiver saw a request");

        let relaxed = sender(dev());
        for host in ["127.0.0.1", "localhost"] {
            let r = relaxed.send(&request(format!("http://{host}:{port}/"), Duration::from_secs(5))).await;
            assert_eq!((r.status, r.error), (Some(200), None), "{host}");
        }
        // An allowed network admits its addresses, also behind a name.
        let subnet = sender(UrlPolicy { allowed_cidrs: vec!["127.0.0.0/8".parse().unwrap()], ..UrlPolicy::default() });
        for host in ["127.0.0.1", "localhost"] {
            let r = subnet.send(&request(format!("http://{host}:{port}/"), Duration::from_secs(5))).await;
            assert_eq!((r.status, r.error), (Some(200), None), "{host}");
        }
        assert_eq!(hits.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn dns_tls_and_unusable_requests() {
        let sender = sender(dev());
        let r = sender.send(&request("http://no-such-host.invalid/".to_owned(), Duration::from_secs(10))).await;
        assert_eq!((r.status, kind(&r)), (None, Some(ErrorKind::Dns)));
        assert!(r.error.as_ref().unwrap().message.starts_with("DNS lookup failed"), "{:?}", r.error);
        assert_no_leak(&r);

        // TLS spoken to a plain-HTTP receiver.
        let (addr, hits) = counting_receiver().await;
        let r = sender.send(&request(format!("https://127.0.0.1:{}/", addr.port()), Duration::from_secs(5))).await;
        assert_eq!((r.status, kind(&r)), (None, Some(ErrorKind::Tls)), "{:?}", r.error);
        assert!(r.error.as_ref().unwrap().message.starts_with("TLS handshake failed: "), "{:?}", r.error);
        assert_no_leak(&r);
        assert_eq!(hits.load(Ordering::SeqCst), 0);

        let mut bad = request(local(addr, "/"), Duration::from_secs(5));
        bad.headers.push(("x-bad".to_owned(), "two\nlines".to_owned()));
        let r = sender.send(&bad).await;
        assert_eq!(kind(&r), Some(ErrorKind::Connect));
        assert_eq!(r.error.as_ref().unwrap().message, "request not sent: the value of header x-bad is not valid");
        for url in ["not a url", "ftp://127.0.0.1/"] {
            let r = sender.send(&OutboundRequest { url: url.to_owned(), ..bad.clone() }).await;
            assert_eq!(kind(&r), Some(ErrorKind::Connect), "{url}");
            assert!(r.error.as_ref().unwrap().message.starts_with("request not sent: "), "{url}");
        }
        assert_eq!(hits.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn credentials_are_recognised_and_sender_is_shareable() {
        for name in ["authorization", "cookie", "x-api-key", "x-auth-token", "x-custom-auth", "client_secret"] {
            assert!(carries_credentials(name), "{name}");
        }
        for name in ["content-type", "webhook-signature", "webhook-id", "x-loft-attempt", "user-agent"] {
            assert!(!carries_credentials(name), "{name}");
        }
        fn shareable<T: Clone + Send + Sync + 'static>() {}
        shareable::<Sender>();
        let debug = format!("{:?}", request("http://example.com/".to_owned(), Duration::from_secs(1)));
        assert!(!debug.contains("Bearer") && !debug.contains(r#""secret""#), "{debug}");
    }
}
