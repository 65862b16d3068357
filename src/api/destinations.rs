//! `DestinationService`.

use std::sync::Arc;
use std::time::Duration;

use tonic::{Request, Response, Status};

use super::audit::{self, Change};
use super::convert::{parse_rate_limit, parse_retry_policy, rate_limit_proto, retry_policy_proto};
use super::paging::Page;
use super::resource::{self, Cx, Fields, Resource};
use super::{AppState, Violations};
use crate::auth::Access;
use crate::domain::destination::{
    DEFAULT_MAX_IN_FLIGHT, DEFAULT_ROTATION_GRACE_SECS, DEFAULT_TIMEOUT_MS, DestinationAuth, DestinationSpec,
    MAX_IN_FLIGHT, MAX_TIMEOUT_MS, Ordering, SignatureAlgorithm, SigningKey, parse_method,
};
use crate::domain::headers::StaticHeaders;
use crate::domain::secret::SealedSecret;
use crate::domain::url_policy::DestinationUrl;
use crate::domain::{parse_description, parse_name};
use crate::error::{ApiError, ApiResult};
use crate::ids::DestinationId;
use crate::proto::destination_service_server::DestinationService;
use crate::proto::{self as pb, ErrorReason};
use crate::signing::{DestinationKey, SignatureScheme};
use crate::store::{DestinationHealth, DocumentFilter, NewActivity, Stored};
use crate::timeutil::{from_duration, now_micros, to_duration, to_timestamp};

pub struct Destinations(pub Arc<AppState>);

/// Most signing keys a destination holds at once (current + rotated-out ones in grace).
const MAX_KEYS: usize = 5;
const MAX_GRACE: Duration = Duration::from_secs(7 * 24 * 3600);

impl Fields for DestinationSpec {
    type Proto = pb::Destination;
    const FIELD: &'static str = "destination";
    const PATHS: &'static [&'static str] = &[
        "name",
        "description",
        "url",
        "http_method",
        "headers",
        "auth",
        "legacy_signature",
        "timeout",
        "rate_limit",
        "max_in_flight",
        "retry_policy",
        "ordering",
    ];

    fn apply(&mut self, d: &pb::Destination, path: &str, cx: &Cx<'_>, v: &mut Violations) {
        let field = format!("destination.{path}");
        match path {
            "name" => match parse_name(&d.name, false) {
                Ok(n) => self.name = n,
                Err(e) => v.invalid(field, e),
            },
            "description" => match parse_description(&d.description) {
                Ok(s) => self.description = s,
                Err(e) => v.invalid(field, e),
            },
            "url" => match DestinationUrl::parse(&d.url, &cx.state.url_policy) {
                Ok(u) => self.url = u.as_str().to_owned(),
                Err(e) => v.add(field, ErrorReason::DestinationUrlForbidden, e),
            },
            "http_method" => match parse_method(&d.http_method) {
                Ok(m) => self.http_method = m,
                Err(e) => v.invalid(field, e),
            },
            "headers" => {
                let pairs = d.headers.iter().map(|h| (h.name.clone(), h.value.clone())).collect();
                match StaticHeaders::parse(pairs) {
                    Ok(h) => self.headers = h.iter_str().map(|(n, v)| (n.to_owned(), v.to_owned())).collect(),
                    Err(e) => v.add(field, ErrorReason::HeaderForbidden, e),
                }
            }
            "auth" => match parse_auth(d.auth.as_ref(), &self.auth, cx) {
                Ok(a) => self.auth = a,
                Err((sub, e)) => v.invalid(format!("{field}{sub}"), e),
            },
            "legacy_signature" => self.legacy_signature = d.legacy_signature,
            "timeout" => match d.timeout.as_ref().map(from_duration) {
                None => self.timeout_ms = DEFAULT_TIMEOUT_MS,
                Some(Some(t)) if t.is_zero() => self.timeout_ms = DEFAULT_TIMEOUT_MS,
                Some(Some(t)) if t >= Duration::from_secs(1) && t.as_millis() as u64 <= MAX_TIMEOUT_MS => {
                    self.timeout_ms = t.as_millis() as u64
                }
                Some(_) => v.invalid(field, format!("must be between 1 s and {} s", MAX_TIMEOUT_MS / 1000)),
            },
            "rate_limit" => match parse_rate_limit(d.rate_limit.as_ref()) {
                Ok(r) => self.rate_limit = r,
                Err(e) => v.invalid(field, e),
            },
            "max_in_flight" => match d.max_in_flight {
                0 => self.max_in_flight = DEFAULT_MAX_IN_FLIGHT,
                n if n <= MAX_IN_FLIGHT => self.max_in_flight = n,
                _ => v.invalid(field, format!("must be at most {MAX_IN_FLIGHT}")),
            },
            "retry_policy" => match parse_retry_policy(d.retry_policy.as_ref()) {
                Ok(p) => self.retry_policy = p,
                Err(e) => v.invalid(field, e),
            },
            "ordering" => match pb::DestinationOrdering::try_from(d.ordering) {
                Ok(pb::DestinationOrdering::Unspecified | pb::DestinationOrdering::Unordered) => {
                    self.ordering = Ordering::Unordered
                }
                Ok(pb::DestinationOrdering::Ordered) => self.ordering = Ordering::Ordered,
                Err(_) => v.invalid(field, "unknown ordering"),
            },
            _ => unreachable!("unlisted path {path}"),
        }
    }

    fn check_complete(&self, v: &mut Violations) {
        if self.url.is_empty() {
            v.invalid("destination.url", "is required");
        }
    }
}

impl Resource for DestinationSpec {
    const KIND: &'static str = "destination";

    fn new_id(_: &pb::Destination) -> Result<DestinationId, String> {
        Ok(DestinationId::generate())
    }

    fn named_id(input: &pb::Destination) -> (&str, &'static str) {
        (&input.id, "id")
    }
}

/// Parses the auth oneof, sealing its credentials; the error names the sub-field. On update, an
/// empty credential keeps the stored one when the method is unchanged.
fn parse_auth(
    a: Option<&pb::DestinationAuth>,
    current: &DestinationAuth,
    cx: &Cx<'_>,
) -> Result<DestinationAuth, (&'static str, String)> {
    use pb::destination_auth::Method;
    let secret = |given: &str, kept: Option<&SealedSecret>, sub: &'static str| match (given.is_empty(), kept) {
        (false, _) if given.len() > 4096 => Err((sub, "is too long".to_owned())),
        (false, _) => Ok(SealedSecret::seal(&cx.state.cipher, given)),
        (true, Some(k)) if !cx.creating => Ok(k.clone()),
        (true, _) => Err((sub, "is required".to_owned())),
    };
    Ok(match a.and_then(|a| a.method.as_ref()) {
        None | Some(Method::None(_)) => DestinationAuth::None,
        Some(Method::Bearer(b)) => {
            let kept = match current {
                DestinationAuth::Bearer { token } => Some(token),
                _ => None,
            };
            if b.token.contains(['\r', '\n']) {
                return Err((".bearer.token", "must be a single line".to_owned()));
            }
            DestinationAuth::Bearer { token: secret(&b.token, kept, ".bearer.token")? }
        }
        Some(Method::Basic(b)) => {
            if b.username.is_empty() || b.username.contains(':') {
                return Err((".basic.username", "is required and must not contain `:`".to_owned()));
            }
            let kept = match current {
                DestinationAuth::Basic { password, .. } => Some(password),
                _ => None,
            };
            DestinationAuth::Basic {
                username: b.username.clone(),
                password: secret(&b.password, kept, ".basic.password")?,
            }
        }
        Some(Method::Header(h)) => {
            let name = crate::domain::source::parse_header_name(&h.name).map_err(|e| (".header.name", e.to_owned()))?;
            if http::HeaderValue::from_str(&h.value).is_err() {
                return Err((".header.value", "must be a valid HTTP header value".to_owned()));
            }
            let kept = match current {
                DestinationAuth::Header { name: n, value } if *n == name => Some(value),
                _ => None,
            };
            DestinationAuth::Header { value: secret(&h.value, kept, ".header.value")?, name }
        }
    })
}

fn auth_proto(a: &DestinationAuth) -> pb::DestinationAuth {
    use pb::destination_auth::Method;
    let method = match a {
        DestinationAuth::None => Method::None(pb::NoAuth {}),
        DestinationAuth::Bearer { token } => {
            Method::Bearer(pb::BearerAuth { token: String::new(), token_hint: token.hint.clone() })
        }
        DestinationAuth::Basic { username, password } => Method::Basic(pb::BasicAuth {
            username: username.clone(),
            password: String::new(),
            password_hint: password.hint.clone(),
        }),
        DestinationAuth::Header { name, value } => {
            Method::Header(pb::HeaderAuth { name: name.clone(), value: String::new(), value_hint: value.hint.clone() })
        }
    };
    pb::DestinationAuth { method: Some(method) }
}

fn destination_proto(d: &Stored<DestinationSpec>, health: &DestinationHealth) -> pb::Destination {
    let s = &d.spec;
    pb::Destination {
        id: d.id.to_string(),
        project_id: d.project_id.to_string(),
        name: s.name.clone(),
        description: s.description.clone(),
        url: s.url.clone(),
        http_method: s.http_method.clone(),
        headers: s
            .headers
            .iter()
            .map(|(name, value)| pb::Header { name: name.clone(), value: value.clone() })
            .collect(),
        auth: Some(auth_proto(&s.auth)),
        secret: String::new(),
        secret_hint: s.keys.first().map(|k| k.secret.hint.clone()).unwrap_or_default(),
        public_key: s.public_key.clone().unwrap_or_default(),
        signature_scheme: match s.signature_scheme {
            SignatureAlgorithm::HmacSha256 => pb::DestinationSignatureScheme::HmacSha256,
            SignatureAlgorithm::Ed25519 => pb::DestinationSignatureScheme::Ed25519,
        } as i32,
        legacy_signature: s.legacy_signature,
        timeout: Some(to_duration(Duration::from_millis(s.timeout_ms))),
        rate_limit: rate_limit_proto(s.rate_limit),
        max_in_flight: s.max_in_flight,
        retry_policy: s.retry_policy.as_ref().map(retry_policy_proto),
        ordering: match s.ordering {
            Ordering::Unordered => pb::DestinationOrdering::Unordered,
            Ordering::Ordered => pb::DestinationOrdering::Ordered,
        } as i32,
        state: match health.state.as_str() {
            "PAUSED" => pb::DestinationState::Paused,
            "DISABLED" => pb::DestinationState::Disabled,
            _ => pb::DestinationState::Active,
        } as i32,
        disabled_reason: health.disabled_reason.clone(),
        consecutive_failures: health.consecutive_failures.clamp(0, i64::from(u32::MAX)) as u32,
        last_success_time: health.last_success_time.map(to_timestamp),
        last_failure_time: health.last_failure_time.map(to_timestamp),
        circuit: match health.circuit.as_str() {
            "OPEN" => pb::CircuitState::Open,
            "HALF_OPEN" => pb::CircuitState::HalfOpen,
            _ => pb::CircuitState::Closed,
        } as i32,
        create_time: Some(to_timestamp(d.create_time)),
        update_time: Some(to_timestamp(d.update_time)),
    }
}

/// The signing key of a new destination or a rotation: the one given (which must fit the
/// scheme), or a fresh one.
fn signing_key(given: &str, scheme: SignatureAlgorithm, field: &str) -> ApiResult<DestinationKey> {
    let wanted = match scheme {
        SignatureAlgorithm::HmacSha256 => SignatureScheme::HmacSha256,
        SignatureAlgorithm::Ed25519 => SignatureScheme::Ed25519,
    };
    if given.is_empty() {
        return Ok(DestinationKey::generate(wanted));
    }
    let key = DestinationKey::parse(given).map_err(|e| ApiError::invalid(field, ErrorReason::InvalidSecret, e))?;
    if key.scheme() != wanted {
        let expected = if wanted == SignatureScheme::HmacSha256 { "a whsec_ secret" } else { "a whsk_ key" };
        return Err(ApiError::invalid(
            field,
            ErrorReason::InvalidSecret,
            format!("this destination's signature scheme needs {expected}"),
        ));
    }
    Ok(key)
}

impl Destinations {
    async fn respond(&self, d: &Stored<DestinationSpec>) -> ApiResult<pb::Destination> {
        let health = self.0.store.destination_health(&d.id.to_string()).await?;
        Ok(destination_proto(d, &health))
    }

    /// Moves a destination to `state` (pause/resume), returning it as it is now. Pausing a
    /// disabled destination is refused: only resuming brings it back.
    async fn set_state(&self, cx: &Cx<'_>, id: &str, state: &str, reset: bool) -> ApiResult<pb::Destination> {
        let id = resource::parse_resource_id::<DestinationSpec>("destination_id", id)?;
        let store = &self.0.store;
        let mut tx = store.begin().await?;
        let d = store
            .get_document_in::<DestinationSpec>(&mut tx, cx.project, &id)
            .await
            .map_err(|e| ApiError::from_store(e, "destination", id.to_string()))?;
        if state == "PAUSED" && store.destination_health_in(&mut tx, &id.to_string()).await?.state == "DISABLED" {
            return Err(ApiError::FailedPrecondition {
                reason: ErrorReason::DestinationStateConflict,
                message: format!("destination {id} is disabled; resume it instead"),
            });
        }
        store.set_destination_state(&mut tx, &id.to_string(), state, "", reset).await?;
        let health = store.destination_health_in(&mut tx, &id.to_string()).await?;
        let actor = cx.principal.key_id.to_string();
        let verb = if state == "PAUSED" { "paused" } else { "resumed" };
        let changed = serde_json::json!({
            "destination_id": id.to_string(), "state": health.state, "circuit": health.circuit,
            "reason": format!("{verb} by {actor}"),
        });
        let items = [
            audit::activity("destination", &id.to_string(), Change::Updated(&["state"]), Some(&cx.principal.key_id)),
            NewActivity {
                kind: "DESTINATION_STATE_CHANGED",
                source_id: None,
                destination_id: Some(id.to_string()),
                event_type: None,
                payload: serde_json::to_vec(&changed).expect("JSON of strings"),
            },
        ];
        audit::record(store, &mut tx, &cx.project.to_string(), &items).await?;
        tx.commit().await?;
        // Fresh deliveries must not be handed over on the state this node knew before; a
        // resume releases what the pause or the open circuit held.
        self.0.dispatcher.forget();
        if state == "ACTIVE" {
            self.0.wake.notify();
        }
        Ok(destination_proto(&d, &health))
    }
}

#[tonic::async_trait]
impl DestinationService for Destinations {
    async fn create_destination(
        &self,
        req: Request<pb::CreateDestinationRequest>,
    ) -> Result<Response<pb::CreateDestinationResponse>, Status> {
        let r = req.get_ref();
        let cx = self.0.cx(&req, &r.project_id, Access::Write).await?;
        let (id, mut spec) = resource::build::<DestinationSpec>(&cx, r.destination.as_ref())?;
        let input = r.destination.as_ref().expect("build checked presence");
        spec.signature_scheme = match pb::DestinationSignatureScheme::try_from(input.signature_scheme) {
            Ok(pb::DestinationSignatureScheme::Ed25519) => SignatureAlgorithm::Ed25519,
            // Unspecified: follow the key given, if any.
            Ok(pb::DestinationSignatureScheme::Unspecified) if input.secret.starts_with("whsk_") => {
                SignatureAlgorithm::Ed25519
            }
            Ok(_) => SignatureAlgorithm::HmacSha256,
            Err(_) => {
                return Err(ApiError::invalid(
                    "destination.signature_scheme",
                    ErrorReason::InvalidArgument,
                    "unknown scheme",
                )
                .into());
            }
        };
        let key = signing_key(&input.secret, spec.signature_scheme, "destination.secret")?;
        spec.public_key = key.public_key().map(|k| k.to_string());
        spec.keys = vec![SigningKey { secret: SealedSecret::seal(&cx.state.cipher, key.expose()), expire_time: None }];
        let d = resource::insert(&cx, id, spec).await?;
        let destination = Some(destination_proto(&d, &DestinationHealth::healthy(&d.id.to_string())));
        Ok(Response::new(pb::CreateDestinationResponse { destination, secret: key.expose().to_owned() }))
    }

    async fn get_destination(
        &self,
        req: Request<pb::GetDestinationRequest>,
    ) -> Result<Response<pb::GetDestinationResponse>, Status> {
        let cx = self.0.cx(&req, &req.get_ref().project_id, Access::Read).await?;
        let id = resource::parse_resource_id::<DestinationSpec>("destination_id", &req.get_ref().destination_id)?;
        let (d, health) = self
            .0
            .store
            .destination_with_health(cx.project, &id)
            .await
            .map_err(|e| ApiError::from_store(e, "destination", id.to_string()))?;
        Ok(Response::new(pb::GetDestinationResponse { destination: Some(destination_proto(&d, &health)) }))
    }

    async fn list_destinations(
        &self,
        req: Request<pb::ListDestinationsRequest>,
    ) -> Result<Response<pb::ListDestinationsResponse>, Status> {
        let r = req.get_ref();
        let cx = self.0.cx(&req, &r.project_id, Access::Read).await?;
        let page = Page::parse(r.page_size, &r.page_token)?;
        let state = match pb::DestinationState::try_from(r.state) {
            Ok(pb::DestinationState::Unspecified) => None,
            Ok(pb::DestinationState::Active) => Some("ACTIVE"),
            Ok(pb::DestinationState::Paused) => Some("PAUSED"),
            Ok(pb::DestinationState::Disabled) => Some("DISABLED"),
            Err(_) => return Err(ApiError::invalid("state", ErrorReason::InvalidArgument, "unknown state").into()),
        };
        let filter = DocumentFilter { state: state.map(str::to_owned), ..Default::default() };
        let (rows, next_page_token) = resource::list::<DestinationSpec>(&cx, &page, &filter).await?;
        let health = match rows.last() {
            Some(last) => self
                .0
                .store
                .destination_health_range(&cx.project.to_string(), page.after(), &last.id.to_string())
                .await
                .map_err(ApiError::from)?,
            None => Default::default(),
        };
        let destinations = rows
            .iter()
            .map(|d| {
                let id = d.id.to_string();
                destination_proto(d, health.get(&id).unwrap_or(&DestinationHealth::healthy(&id)))
            })
            .collect();
        Ok(Response::new(pb::ListDestinationsResponse { destinations, next_page_token }))
    }

    async fn update_destination(
        &self,
        req: Request<pb::UpdateDestinationRequest>,
    ) -> Result<Response<pb::UpdateDestinationResponse>, Status> {
        let r = req.get_ref();
        let cx = self.0.cx(&req, &r.project_id, Access::Write).await?;
        let d = resource::update::<DestinationSpec>(&cx, r.destination.as_ref(), r.update_mask.as_ref()).await?;
        Ok(Response::new(pb::UpdateDestinationResponse { destination: Some(self.respond(&d).await?) }))
    }

    async fn delete_destination(
        &self,
        req: Request<pb::DeleteDestinationRequest>,
    ) -> Result<Response<pb::DeleteDestinationResponse>, Status> {
        let cx = self.0.cx(&req, &req.get_ref().project_id, Access::Write).await?;
        resource::delete::<DestinationSpec>(&cx, "destination_id", &req.get_ref().destination_id).await?;
        Ok(Response::new(pb::DeleteDestinationResponse {}))
    }

    async fn pause_destination(
        &self,
        req: Request<pb::PauseDestinationRequest>,
    ) -> Result<Response<pb::PauseDestinationResponse>, Status> {
        let cx = self.0.cx(&req, &req.get_ref().project_id, Access::Write).await?;
        let destination = self.set_state(&cx, &req.get_ref().destination_id, "PAUSED", false).await?;
        Ok(Response::new(pb::PauseDestinationResponse { destination: Some(destination) }))
    }

    async fn resume_destination(
        &self,
        req: Request<pb::ResumeDestinationRequest>,
    ) -> Result<Response<pb::ResumeDestinationResponse>, Status> {
        let cx = self.0.cx(&req, &req.get_ref().project_id, Access::Write).await?;
        let destination = self.set_state(&cx, &req.get_ref().destination_id, "ACTIVE", true).await?;
        Ok(Response::new(pb::ResumeDestinationResponse { destination: Some(destination) }))
    }

    async fn rotate_destination_secret(
        &self,
        req: Request<pb::RotateDestinationSecretRequest>,
    ) -> Result<Response<pb::RotateDestinationSecretResponse>, Status> {
        let r = req.get_ref();
        let cx = self.0.cx(&req, &r.project_id, Access::Write).await?;
        let grace = match r.grace_period.as_ref().map(from_duration) {
            None => Duration::from_secs(DEFAULT_ROTATION_GRACE_SECS),
            Some(Some(g)) if g <= MAX_GRACE => g,
            Some(_) => {
                return Err(ApiError::invalid(
                    "grace_period",
                    ErrorReason::InvalidArgument,
                    "must be between 0 and 7 days",
                )
                .into());
            }
        };
        let id = resource::parse_resource_id::<DestinationSpec>("destination_id", &r.destination_id)?;
        let store = &self.0.store;
        let mut tx = store.begin().await.map_err(ApiError::from)?;
        let mut d = store
            .get_document_in::<DestinationSpec>(&mut tx, cx.project, &id)
            .await
            .map_err(|e| ApiError::from_store(e, "destination", id.to_string()))?;
        let key = signing_key(&r.secret, d.spec.signature_scheme, "secret")?;
        let now = now_micros();
        let expire = now + grace.as_micros() as i64;
        let mut keys = vec![SigningKey { secret: SealedSecret::seal(&self.0.cipher, key.expose()), expire_time: None }];
        // The old current key keeps signing until the grace period ends; older ones keep their
        // own expiry, and expired ones are dropped.
        keys.extend(
            d.spec
                .keys
                .drain(..)
                .map(|k| SigningKey { expire_time: Some(k.expire_time.map_or(expire, |t| t.min(expire))), ..k })
                .filter(|k| k.expire_time.is_some_and(|t| t > now)),
        );
        keys.truncate(MAX_KEYS);
        d.spec.keys = keys;
        d.spec.public_key = key.public_key().map(|k| k.to_string());
        d.update_time = now;
        store.update_document(&mut tx, &d).await.map_err(ApiError::from)?;
        let health = store.destination_health_in(&mut tx, &id.to_string()).await.map_err(ApiError::from)?;
        cx.audit(&mut tx, "destination", &id.to_string(), Change::Updated(&["secret"])).await?;
        tx.commit().await.map_err(ApiError::from)?;
        Ok(Response::new(pb::RotateDestinationSecretResponse {
            destination: Some(destination_proto(&d, &health)),
            secret: key.expose().to_owned(),
        }))
    }

    async fn get_destination_secret(
        &self,
        req: Request<pb::GetDestinationSecretRequest>,
    ) -> Result<Response<pb::GetDestinationSecretResponse>, Status> {
        let cx = self.0.cx(&req, &req.get_ref().project_id, Access::ReadSecret).await?;
        let d = resource::get::<DestinationSpec>(&cx, "destination_id", &req.get_ref().destination_id).await?;
        let now = now_micros();
        let open = |k: &SigningKey| k.secret.open(&self.0.cipher).map_err(ApiError::internal);
        let mut live = d.spec.live_keys(now);
        let secret = live.next().map(open).transpose()?.unwrap_or_default();
        let previous_secrets = live
            .map(|k| Ok(pb::PreviousSecret { secret: open(k)?, expire_time: k.expire_time.map(to_timestamp) }))
            .collect::<ApiResult<_>>()?;
        Ok(Response::new(pb::GetDestinationSecretResponse {
            secret,
            previous_secrets,
            public_key: d.spec.public_key.clone().unwrap_or_default(),
        }))
    }

    async fn test_destination(
        &self,
        req: Request<pb::TestDestinationRequest>,
    ) -> Result<Response<pb::TestDestinationResponse>, Status> {
        let r = req.get_ref();
        let cx = self.0.cx(&req, &r.project_id, Access::Write).await?;
        let d = resource::get::<DestinationSpec>(&cx, "destination_id", &r.destination_id).await?;
        let event_type = if r.event_type.is_empty() { "loft.ping".to_owned() } else { r.event_type.clone() };
        crate::routing::pattern::EventTypeName::parse(&event_type)
            .map_err(|e| ApiError::invalid("event_type", ErrorReason::InvalidArgument, e))?;
        let (_, delivery) = self
            .0
            .intake
            .accept_test(cx.project, &d.id.to_string(), &event_type)
            .await
            .map_err(super::events::intake_error)?;
        let attempt = self.0.dispatcher.test_send(&delivery).await.map_err(ApiError::from)?;
        let a = self.0.store.get_attempt(&cx.project.to_string(), &attempt).await.map_err(ApiError::from)?;
        Ok(Response::new(pb::TestDestinationResponse { attempt: Some(super::deliveries::attempt_proto(&a, true)) }))
    }
}
