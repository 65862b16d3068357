//! HTTP ingest: `/{in}/{source_id}[/sub/path]` on the HTTP listener.
//!
//! A request is checked against its source (method, size, rate limit, auth or the provider's
//! signature, schema), turned into an event (type from a static value, a header or a JSON
//! pointer; dedup key), accepted through the same path as `PublishEvent`, and answered only
//! once it is durable. The exact request is stored: method, sub-path, query, headers in order
//! with duplicates (minus the credential Loft itself checked), source IP and body bytes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use subtle::ConstantTimeEq;

use crate::crypto::Cipher;
use crate::domain::RateLimit;
use crate::domain::source::{DedupKey, EventTypeFrom, SignatureScheme, SourceAuth, SourceSpec};
use crate::ids::SourceId;
use crate::intake::{BodyJson, InboundRequest, Incoming, Intake, IntakeError};
use crate::routing::pattern::EventTypeName;
use crate::signing::providers::{InboundVerifier, Scheme};
use crate::store::{Store, StoreError, Stored};

/// How long a source's settings are cached on this node.
const SOURCE_TTL: Duration = Duration::from_secs(2);
/// The type of events whose source says nothing (or whose type cannot be read).
pub const DEFAULT_EVENT_TYPE: &str = "webhook";

/// A source ready to check requests: its settings, opened secrets and compiled schema.
struct Prepared {
    source: Stored<SourceSpec>,
    check: Check,
    schema: Option<jsonschema::Validator>,
    loaded: Instant,
}

enum Check {
    None,
    Basic { expected: Vec<u8> },
    ApiKey { header: String, key: Vec<u8> },
    Signature { verifier: InboundVerifier, tolerance: Duration },
}

/// Per-node token buckets of the sources with a rate limit.
#[derive(Default)]
struct Buckets(Mutex<HashMap<String, (f64, Instant)>>);

impl Buckets {
    /// Takes a token, or says how long until one is free.
    fn take(&self, source: &str, limit: RateLimit) -> Result<(), Duration> {
        let mut all = self.0.lock().expect("buckets poisoned");
        let now = Instant::now();
        let (tokens, at) = all.entry(source.to_owned()).or_insert((f64::from(limit.burst), now));
        *tokens =
            (*tokens + now.duration_since(*at).as_secs_f64() * f64::from(limit.per_second)).min(f64::from(limit.burst));
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / f64::from(limit.per_second)))
        }
    }
}

/// The ingest endpoint's state. Cheap to clone: axum clones it for every request, so it is one
/// `Arc` (cloning the store, cipher and intake each time was ≈ 2 % of ingest's CPU).
#[derive(Clone)]
pub struct Ingest(Arc<Shared>);

struct Shared {
    store: Store,
    cipher: Cipher,
    intake: Intake,
    sources: Mutex<HashMap<String, Arc<Prepared>>>,
    buckets: Buckets,
}

impl Ingest {
    pub fn new(store: Store, cipher: Cipher, intake: Intake) -> Self {
        Self(Arc::new(Shared { store, cipher, intake, sources: Mutex::default(), buckets: Buckets::default() }))
    }

    /// Forgets cached sources after one changed on this node.
    pub fn invalidate(&self) {
        self.0.sources.lock().expect("sources poisoned").clear();
    }

    async fn prepared(&self, id: &str) -> Result<Option<Arc<Prepared>>, StoreError> {
        if let Some(p) = self.0.sources.lock().expect("sources poisoned").get(id)
            && p.loaded.elapsed() < SOURCE_TTL
        {
            return Ok(Some(p.clone()));
        }
        let source = match self.0.store.source_by_id(id).await {
            Ok(s) => s,
            Err(StoreError::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        let open = |s: &crate::domain::secret::SealedSecret| {
            s.open(&self.0.cipher).map_err(|e| StoreError::Corrupt(e.to_string()))
        };
        let check = match &source.spec.auth {
            SourceAuth::None => Check::None,
            SourceAuth::Basic { username, password } => Check::Basic {
                expected: format!("Basic {}", STANDARD.encode(format!("{username}:{}", open(password)?))).into_bytes(),
            },
            SourceAuth::ApiKey { header, key } => {
                Check::ApiKey { header: header.clone(), key: open(key)?.into_bytes() }
            }
            SourceAuth::Signature { scheme, secret, header, tolerance_secs } => {
                let header = header.clone().unwrap_or_default();
                let scheme = match scheme {
                    SignatureScheme::StandardWebhooks => Scheme::StandardWebhooks,
                    SignatureScheme::Github => Scheme::Github,
                    SignatureScheme::Stripe => Scheme::Stripe,
                    SignatureScheme::Shopify => Scheme::Shopify,
                    SignatureScheme::HmacSha256Hex => Scheme::HmacSha256Hex { header },
                    SignatureScheme::HmacSha256Base64 => Scheme::HmacSha256Base64 { header },
                };
                let verifier =
                    InboundVerifier::new(scheme, &open(secret)?).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                Check::Signature { verifier, tolerance: Duration::from_secs(*tolerance_secs) }
            }
        };
        let schema = source.spec.json_schema.as_ref().and_then(|s| jsonschema::validator_for(s).ok());
        let prepared = Arc::new(Prepared { source, check, schema, loaded: Instant::now() });
        self.0.sources.lock().expect("sources poisoned").insert(id.to_owned(), prepared.clone());
        Ok(Some(prepared))
    }
}

fn reply(status: StatusCode, message: &str) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], serde_json::json!({ "error": message }).to_string())
        .into_response()
}

/// `/in/{source_id}`.
pub async fn ingest_root(
    state: State<Ingest>,
    Path(source): Path<String>,
    peer: ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    handle(state, source, String::new(), peer, req).await
}

/// `/in/{source_id}/{*path}`: the sub-path is kept on the event.
pub async fn ingest_sub(
    state: State<Ingest>,
    Path((source, rest)): Path<(String, String)>,
    peer: ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    handle(state, source, format!("/{rest}"), peer, req).await
}

async fn handle(
    State(ingest): State<Ingest>,
    source_id: String,
    sub_path: String,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let response = accept(&ingest, &source_id, sub_path, peer, req).await;
    let outcome = match response.status().as_u16() {
        200..=299 => "accepted",
        401 => "unauthorized",
        404 => "unknown_source",
        413 => "too_large",
        429 => "rate_limited",
        503 => "unavailable",
        _ => "rejected",
    };
    metrics::counter!("loft_events_received_total", "outcome" => outcome).increment(1);
    response
}

async fn accept(ingest: &Ingest, source_id: &str, sub_path: String, peer: SocketAddr, req: Request) -> Response {
    let not_found = || reply(StatusCode::NOT_FOUND, "no such source");
    let Ok(id) = source_id.parse::<SourceId>() else { return not_found() };
    let prepared = match ingest.prepared(&id.to_string()).await {
        Ok(Some(p)) => p,
        Ok(None) => return not_found(),
        Err(StoreError::Unavailable(_)) => {
            return reply(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable; retry later");
        }
        Err(e) => {
            tracing::error!(error = %e, source = source_id, "loading source failed");
            return reply(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
        }
    };
    let spec = &prepared.source.spec;
    let (parts, body) = req.into_parts();
    if !spec.allowed_methods.iter().any(|m| m == parts.method.as_str()) {
        let mut r = reply(StatusCode::METHOD_NOT_ALLOWED, "method not allowed for this source");
        if let Ok(allow) = HeaderValue::from_str(&spec.allowed_methods.join(", ")) {
            r.headers_mut().insert(header::ALLOW, allow);
        }
        return r;
    }
    if let Some(limit) = spec.rate_limit
        && let Err(wait) = ingest.0.buckets.take(source_id, limit)
    {
        let mut r = reply(StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded");
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait.as_secs().max(1)));
        return r;
    }
    let declared =
        parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > spec.max_body_bytes) {
        return reply(StatusCode::PAYLOAD_TOO_LARGE, "body exceeds this source's limit");
    }
    let body: Bytes = match axum::body::to_bytes(Body::new(body), spec.max_body_bytes as usize).await {
        Ok(b) => b,
        Err(_) => return reply(StatusCode::PAYLOAD_TOO_LARGE, "body exceeds this source's limit"),
    };
    // Auth. The credential Loft checks here is not stored with the event (nor forwarded).
    let mut strip: Option<&str> = None;
    match &prepared.check {
        Check::None => {}
        Check::Basic { expected } => {
            let given = parts.headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()).unwrap_or_default();
            if !bool::from(given.ct_eq(expected)) {
                let mut r = reply(StatusCode::UNAUTHORIZED, "authentication failed");
                r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"loft\""));
                return r;
            }
            strip = Some("authorization");
        }
        Check::ApiKey { header, key } => {
            let given = parts.headers.get(header.as_str()).map(|v| v.as_bytes()).unwrap_or_default();
            if !bool::from(given.ct_eq(key)) {
                return reply(StatusCode::UNAUTHORIZED, "authentication failed");
            }
            strip = Some(header.as_str());
        }
        Check::Signature { verifier, tolerance } => {
            if let Err(e) = verifier.verify(&parts.headers, &body, SystemTime::now(), *tolerance) {
                tracing::debug!(source = source_id, error = %e, "signature rejected");
                return reply(StatusCode::UNAUTHORIZED, "signature verification failed");
            }
        }
    }
    let content_type = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let json = BodyJson::new(&content_type);
    if let Some(schema) = &prepared.schema {
        let valid = json.get(&body).is_some_and(|j| schema.is_valid(j));
        if !valid {
            return reply(StatusCode::BAD_REQUEST, "body does not match this source's JSON schema");
        }
    }
    let event_type = event_type(spec.event_type_from.as_ref(), &parts.headers, || json.get(&body));
    let dedup = spec.dedup.as_ref().and_then(|d| {
        let key = match &d.key {
            DedupKey::Header(h) => parts.headers.get(h.as_str()).and_then(|v| v.to_str().ok()).map(str::to_owned),
            DedupKey::JsonPointer(p) => json.get(&body).and_then(|j| j.pointer(p)).map(|v| match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            }),
        }?;
        Some((source_id.to_owned(), key, d.window_secs as i64 * 1_000_000))
    });
    let headers = parts
        .headers
        .iter()
        .filter(|(n, _)| strip.is_none_or(|s| !n.as_str().eq_ignore_ascii_case(s)))
        .map(|(n, v)| (n.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let incoming = Incoming {
        project: prepared.source.project_id,
        source_id: Some(id),
        event_type,
        body: body.to_vec(),
        content_type: if content_type.is_empty() { "application/octet-stream".to_owned() } else { content_type },
        json,
        request: Some(InboundRequest {
            method: parts.method.to_string(),
            path: sub_path,
            query: parts.uri.query().unwrap_or("").to_owned(),
            headers,
            source_ip: peer.ip().to_string(),
        }),
        dedup,
        idempotency_key: None,
        labels: Default::default(),
        occur_time: None,
        deliver_time: None,
        hold: spec.paused,
    };
    match ingest.0.intake.accept(incoming).await {
        Ok(accepted) => respond(spec, &accepted.event_id),
        Err(IntakeError::UnknownEventType(t)) => {
            reply(StatusCode::UNPROCESSABLE_ENTITY, &format!("event type `{t}` is not in the catalog"))
        }
        Err(IntakeError::Schema { .. }) => {
            reply(StatusCode::BAD_REQUEST, "body does not match the event type's schema")
        }
        Err(IntakeError::Store(StoreError::Unavailable(_))) => {
            reply(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable; retry later")
        }
        Err(IntakeError::Store(e)) => {
            tracing::error!(error = %e, source = source_id, "storing an inbound event failed");
            reply(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

/// The event type: from where the source says, made a valid name (`orders/create` →
/// `orders.create`, other characters `_`), or [`DEFAULT_EVENT_TYPE`].
fn event_type<'j>(
    from: Option<&EventTypeFrom>,
    headers: &HeaderMap,
    json: impl FnOnce() -> Option<&'j serde_json::Value>,
) -> String {
    let raw = match from {
        None => None,
        Some(EventTypeFrom::Static(t)) => Some(t.clone()),
        Some(EventTypeFrom::Header(h)) => headers.get(h.as_str()).and_then(|v| v.to_str().ok()).map(str::to_owned),
        Some(EventTypeFrom::JsonPointer(p)) => {
            json().and_then(|j| j.pointer(p)).and_then(|v| v.as_str()).map(str::to_owned)
        }
    };
    let Some(raw) = raw else { return DEFAULT_EVENT_TYPE.to_owned() };
    let name: String = raw
        .trim()
        .chars()
        .take(128)
        .map(|c| match c {
            '/' | ':' => '.',
            c if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.' => c,
            _ => '_',
        })
        .collect();
    match EventTypeName::parse(&name) {
        Ok(n) => n.into_string(),
        Err(_) => DEFAULT_EVENT_TYPE.to_owned(),
    }
}

/// The source's custom answer (with `{{ event_id }}` filled in), or `200 {"event_id": …}`.
fn respond(spec: &SourceSpec, event_id: &str) -> Response {
    match &spec.response {
        None => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            // An event id needs no escaping.
            format!(r#"{{"event_id":"{event_id}"}}"#),
        )
            .into_response(),
        Some(r) => {
            let status = StatusCode::from_u16(r.status_code).unwrap_or(StatusCode::OK);
            let body = r.body.replace("{{ event_id }}", event_id).replace("{{event_id}}", event_id);
            let content_type =
                HeaderValue::from_str(&r.content_type).unwrap_or(HeaderValue::from_static("application/json"));
            (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_are_read_and_made_valid() {
        let mut h = HeaderMap::new();
        h.insert("x-github-event", HeaderValue::from_static("pull_request"));
        h.insert("x-shopify-topic", HeaderValue::from_static("orders/create"));
        let json = serde_json::json!({"type": "invoice.paid", "n": 1});
        assert_eq!(event_type(Some(&EventTypeFrom::Header("x-github-event".into())), &h, || None), "pull_request");
        assert_eq!(event_type(Some(&EventTypeFrom::Header("x-shopify-topic".into())), &h, || None), "orders.create");
        assert_eq!(event_type(Some(&EventTypeFrom::JsonPointer("/type".into())), &h, || Some(&json)), "invoice.paid");
        assert_eq!(event_type(Some(&EventTypeFrom::JsonPointer("/n".into())), &h, || Some(&json)), DEFAULT_EVENT_TYPE);
        assert_eq!(event_type(Some(&EventTypeFrom::Header("x-missing".into())), &h, || None), DEFAULT_EVENT_TYPE);
        assert_eq!(event_type(None, &h, || None), DEFAULT_EVENT_TYPE);
    }

    #[test]
    fn buckets_refill() {
        let b = Buckets::default();
        // A token every 100 ms: a test thread held up between two takes does not refill it.
        let limit = RateLimit { per_second: 10, burst: 2 };
        assert!(b.take("s", limit).is_ok() && b.take("s", limit).is_ok());
        assert!(b.take("s", limit).is_err());
        std::thread::sleep(Duration::from_millis(120));
        assert!(b.take("s", limit).is_ok());
    }
}
