//! `SourceService`.

use std::sync::Arc;
use std::time::Duration;

use tonic::{Request, Response, Status};

use super::audit::Change;
use super::convert::{json_to_struct, parse_rate_limit, rate_limit_proto, struct_to_json};
use super::paging::Page;
use super::resource::{self, Cx, Fields, Resource};
use super::{AppState, Violations};
use crate::auth::Access;
use crate::domain::event_type::check_json_schema;
use crate::domain::secret::SealedSecret;
use crate::domain::source::{
    DEFAULT_TOLERANCE_SECS, Dedup, DedupKey, EventTypeFrom, SignatureScheme, SourceAuth, SourceResponse, SourceSpec,
    parse_header_name, parse_json_pointer, parse_method,
};
use crate::domain::template::parse_content_type;
use crate::domain::{parse_description, parse_name};
use crate::error::{ApiError, ApiResult};
use crate::ids::SourceId;
use crate::proto::source_service_server::SourceService;
use crate::proto::{self as pb, ErrorReason};
use crate::routing::pattern::EventTypeName;
use crate::signing::SigningSecret;
use crate::store::{DocumentFilter, Stored};
use crate::timeutil::{from_duration, now_micros, to_duration, to_timestamp};

pub struct Sources(pub Arc<AppState>);

const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(24 * 3600);
const MAX_DEDUP_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);
const MAX_TOLERANCE: Duration = Duration::from_secs(24 * 3600);
const MAX_RESPONSE_BODY: usize = 64 * 1024;
const MAX_SECRET_LEN: usize = 1024;

impl Fields for SourceSpec {
    type Proto = pb::Source;
    const FIELD: &'static str = "source";
    const PATHS: &'static [&'static str] = &[
        "name",
        "description",
        "auth",
        "event_type_from",
        "dedup",
        "rate_limit",
        "max_body_bytes",
        "allowed_methods",
        "json_schema",
        "response",
        "paused",
    ];

    fn apply(&mut self, s: &pb::Source, path: &str, cx: &Cx<'_>, v: &mut Violations) {
        let field = format!("source.{path}");
        match path {
            "name" => match parse_name(&s.name, false) {
                Ok(n) => self.name = n,
                Err(e) => v.invalid(field, e),
            },
            "description" => match parse_description(&s.description) {
                Ok(d) => self.description = d,
                Err(e) => v.invalid(field, e),
            },
            "auth" => match parse_auth(s.auth.as_ref(), &self.auth, cx) {
                Ok(a) => self.auth = a,
                Err((sub, reason, e)) => v.add(format!("{field}{sub}"), reason, e),
            },
            "event_type_from" => {
                use pb::event_type_from::From;
                let parsed = match s.event_type_from.as_ref().and_then(|e| e.from.as_ref()) {
                    None => Ok(None),
                    Some(From::StaticType(t)) => EventTypeName::parse(t)
                        .map(|_| Some(EventTypeFrom::Static(t.clone())))
                        .map_err(|e| e.to_string()),
                    Some(From::Header(h)) => {
                        parse_header_name(h).map(|h| Some(EventTypeFrom::Header(h))).map_err(str::to_owned)
                    }
                    Some(From::JsonPointer(p)) => {
                        parse_json_pointer(p).map(|p| Some(EventTypeFrom::JsonPointer(p))).map_err(str::to_owned)
                    }
                };
                match parsed {
                    Ok(e) => self.event_type_from = e,
                    Err(e) => v.invalid(field, e),
                }
            }
            "dedup" => match parse_dedup(s.dedup.as_ref()) {
                Ok(d) => self.dedup = d,
                Err(e) => v.invalid(field, e),
            },
            "rate_limit" => match parse_rate_limit(s.rate_limit.as_ref()) {
                Ok(r) => self.rate_limit = r,
                Err(e) => v.invalid(field, e),
            },
            "max_body_bytes" => match s.max_body_bytes {
                0 => self.max_body_bytes = cx.state.max_body_bytes,
                n if n <= cx.state.max_body_bytes => self.max_body_bytes = n,
                _ => v.invalid(field, format!("must be at most the server's limit, {} bytes", cx.state.max_body_bytes)),
            },
            "allowed_methods" => {
                let mut methods = Vec::new();
                for (i, m) in s.allowed_methods.iter().enumerate() {
                    match parse_method(m) {
                        Ok(m) if !methods.contains(&m) => methods.push(m),
                        Ok(_) => {}
                        Err(e) => v.invalid(format!("{field}[{i}]"), e),
                    }
                }
                self.allowed_methods = if methods.is_empty() { vec!["POST".to_owned()] } else { methods };
            }
            "json_schema" => match s.json_schema.as_ref().map(struct_to_json) {
                None => self.json_schema = None,
                Some(schema) => match check_json_schema(&schema) {
                    Ok(()) => self.json_schema = Some(schema),
                    Err(e) => v.add(field, ErrorReason::InvalidJsonSchema, e),
                },
            },
            "response" => match parse_response(s.response.as_ref()) {
                Ok(r) => self.response = r,
                Err((sub, e)) => v.invalid(format!("{field}{sub}"), e),
            },
            "paused" => self.paused = s.paused,
            _ => unreachable!("unlisted path {path}"),
        }
    }
}

impl Resource for SourceSpec {
    const KIND: &'static str = "source";

    fn new_id(_: &pb::Source) -> Result<SourceId, String> {
        Ok(SourceId::generate())
    }

    fn named_id(input: &pb::Source) -> (&str, &'static str) {
        (&input.id, "id")
    }
}

type AuthError = (&'static str, ErrorReason, String);

/// Parses the auth oneof, sealing secrets. On update, an empty secret keeps the stored one
/// when the method (and scheme) is unchanged, so a tolerance or header can change alone. A
/// Standard Webhooks secret is generated on create when none is given.
fn parse_auth(a: Option<&pb::SourceAuth>, current: &SourceAuth, cx: &Cx<'_>) -> Result<SourceAuth, AuthError> {
    use pb::source_auth::Method;
    let invalid = |sub: &'static str, e: &str| (sub, ErrorReason::InvalidArgument, e.to_owned());
    let secret = |given: &str, kept: Option<&SealedSecret>, sub: &'static str| -> Result<SealedSecret, AuthError> {
        if given.len() > MAX_SECRET_LEN {
            return Err(invalid(sub, "is too long"));
        }
        match (given.is_empty(), kept) {
            (false, _) => Ok(SealedSecret::seal(&cx.state.cipher, given)),
            (true, Some(k)) if !cx.creating => Ok(k.clone()),
            (true, _) => Err(invalid(sub, "is required")),
        }
    };
    Ok(match a.and_then(|a| a.method.as_ref()) {
        None | Some(Method::None(_)) => SourceAuth::None,
        Some(Method::Basic(b)) => {
            if b.username.is_empty() || b.username.contains(':') {
                return Err(invalid(".basic.username", "is required and must not contain `:`"));
            }
            let kept = match current {
                SourceAuth::Basic { password, .. } => Some(password),
                _ => None,
            };
            SourceAuth::Basic { username: b.username.clone(), password: secret(&b.password, kept, ".basic.password")? }
        }
        Some(Method::ApiKey(k)) => {
            let header = parse_header_name(&k.header).map_err(|e| invalid(".api_key.header", e))?;
            let kept = match current {
                SourceAuth::ApiKey { key, .. } => Some(key),
                _ => None,
            };
            SourceAuth::ApiKey { header, key: secret(&k.key, kept, ".api_key.key")? }
        }
        Some(Method::Signature(sig)) => {
            let scheme = match pb::SignatureScheme::try_from(sig.scheme) {
                Ok(pb::SignatureScheme::StandardWebhooks) => SignatureScheme::StandardWebhooks,
                Ok(pb::SignatureScheme::Github) => SignatureScheme::Github,
                Ok(pb::SignatureScheme::Stripe) => SignatureScheme::Stripe,
                Ok(pb::SignatureScheme::Shopify) => SignatureScheme::Shopify,
                Ok(pb::SignatureScheme::HmacSha256Hex) => SignatureScheme::HmacSha256Hex,
                Ok(pb::SignatureScheme::HmacSha256Base64) => SignatureScheme::HmacSha256Base64,
                _ => return Err(invalid(".signature.scheme", "is required")),
            };
            let header = match (scheme.needs_header(), sig.header.is_empty()) {
                (true, true) => return Err(invalid(".signature.header", "is required for the generic HMAC schemes")),
                (true, false) => Some(parse_header_name(&sig.header).map_err(|e| invalid(".signature.header", e))?),
                (false, true) => None,
                (false, false) => {
                    return Err(invalid(
                        ".signature.header",
                        "is only for the generic HMAC schemes; this scheme names its own header",
                    ));
                }
            };
            let tolerance_secs = match sig.tolerance.as_ref().map(from_duration) {
                None => DEFAULT_TOLERANCE_SECS,
                Some(Some(t)) if t.is_zero() => DEFAULT_TOLERANCE_SECS,
                Some(Some(t)) if t >= Duration::from_secs(1) && t <= MAX_TOLERANCE => t.as_secs(),
                Some(_) => return Err(invalid(".signature.tolerance", "must be between 1 s and 24 h")),
            };
            let kept = match current {
                SourceAuth::Signature { scheme: s, secret, .. } if *s == scheme => Some(secret),
                _ => None,
            };
            let sealed = if scheme == SignatureScheme::StandardWebhooks {
                if !sig.secret.is_empty() {
                    SigningSecret::parse(&sig.secret)
                        .map_err(|e| (".signature.secret", ErrorReason::InvalidSecret, e.to_string()))?;
                    SealedSecret::seal(&cx.state.cipher, &sig.secret)
                } else if let Some(k) = kept.filter(|_| !cx.creating) {
                    k.clone()
                } else {
                    SealedSecret::seal(&cx.state.cipher, SigningSecret::generate().expose())
                }
            } else {
                secret(&sig.secret, kept, ".signature.secret")?
            };
            SourceAuth::Signature { scheme, secret: sealed, header, tolerance_secs }
        }
    })
}

fn parse_dedup(d: Option<&pb::SourceDedup>) -> Result<Option<Dedup>, String> {
    use pb::source_dedup::Key;
    let Some(d) = d else { return Ok(None) };
    let key = match &d.key {
        None => return if d.window.is_some() { Err("set header or json_pointer".into()) } else { Ok(None) },
        Some(Key::Header(h)) => DedupKey::Header(parse_header_name(h)?),
        Some(Key::JsonPointer(p)) if !p.is_empty() => DedupKey::JsonPointer(parse_json_pointer(p)?),
        Some(Key::JsonPointer(_)) => return Err("json_pointer must not be empty".into()),
    };
    let window = match d.window.as_ref().map(from_duration) {
        None => DEFAULT_DEDUP_WINDOW,
        Some(Some(w)) if w.is_zero() => DEFAULT_DEDUP_WINDOW,
        Some(Some(w)) if w >= Duration::from_secs(1) && w <= MAX_DEDUP_WINDOW => w,
        Some(_) => return Err("window must be between 1 s and 7 days".into()),
    };
    Ok(Some(Dedup { key, window_secs: window.as_secs() }))
}

fn parse_response(r: Option<&pb::SourceResponse>) -> Result<Option<SourceResponse>, (&'static str, String)> {
    let Some(r) = r else { return Ok(None) };
    let status_code = match r.status_code {
        0 => 200,
        c @ 200..=299 => c as u16,
        _ => return Err((".status_code", "must be a 2xx status, so senders do not retry".into())),
    };
    let content_type = parse_content_type(&r.content_type).map_err(|e| (".content_type", e.to_owned()))?;
    if r.body.len() > MAX_RESPONSE_BODY {
        return Err((".body", format!("must be at most {MAX_RESPONSE_BODY} bytes")));
    }
    Ok(Some(SourceResponse { status_code, content_type, body: r.body.clone() }))
}

fn auth_proto(a: &SourceAuth) -> pb::SourceAuth {
    use pb::source_auth::Method;
    let method = match a {
        SourceAuth::None => Method::None(pb::NoAuth {}),
        SourceAuth::Basic { username, password } => Method::Basic(pb::BasicAuth {
            username: username.clone(),
            password: String::new(),
            password_hint: password.hint.clone(),
        }),
        SourceAuth::ApiKey { header, key } => {
            Method::ApiKey(pb::ApiKeyAuth { header: header.clone(), key: String::new(), key_hint: key.hint.clone() })
        }
        SourceAuth::Signature { scheme, secret, header, tolerance_secs } => Method::Signature(pb::SignatureAuth {
            scheme: match scheme {
                SignatureScheme::StandardWebhooks => pb::SignatureScheme::StandardWebhooks,
                SignatureScheme::Github => pb::SignatureScheme::Github,
                SignatureScheme::Stripe => pb::SignatureScheme::Stripe,
                SignatureScheme::Shopify => pb::SignatureScheme::Shopify,
                SignatureScheme::HmacSha256Hex => pb::SignatureScheme::HmacSha256Hex,
                SignatureScheme::HmacSha256Base64 => pb::SignatureScheme::HmacSha256Base64,
            } as i32,
            secret: String::new(),
            secret_hint: secret.hint.clone(),
            header: header.clone().unwrap_or_default(),
            tolerance: Some(to_duration(Duration::from_secs(*tolerance_secs))),
        }),
    };
    pb::SourceAuth { method: Some(method) }
}

fn source_proto(d: &Stored<SourceSpec>, state: &AppState) -> pb::Source {
    use pb::event_type_from::From;
    use pb::source_dedup::Key;
    let s = &d.spec;
    pb::Source {
        id: d.id.to_string(),
        project_id: d.project_id.to_string(),
        name: s.name.clone(),
        description: s.description.clone(),
        ingest_url: format!("{}/in/{}", state.public_url, d.id),
        auth: Some(auth_proto(&s.auth)),
        event_type_from: s.event_type_from.as_ref().map(|e| pb::EventTypeFrom {
            from: Some(match e {
                EventTypeFrom::Static(t) => From::StaticType(t.clone()),
                EventTypeFrom::Header(h) => From::Header(h.clone()),
                EventTypeFrom::JsonPointer(p) => From::JsonPointer(p.clone()),
            }),
        }),
        dedup: s.dedup.as_ref().map(|d| pb::SourceDedup {
            key: Some(match &d.key {
                DedupKey::Header(h) => Key::Header(h.clone()),
                DedupKey::JsonPointer(p) => Key::JsonPointer(p.clone()),
            }),
            window: Some(to_duration(Duration::from_secs(d.window_secs))),
        }),
        rate_limit: rate_limit_proto(s.rate_limit),
        max_body_bytes: s.max_body_bytes,
        allowed_methods: s.allowed_methods.clone(),
        json_schema: s.json_schema.as_ref().and_then(json_to_struct),
        response: s.response.as_ref().map(|r| pb::SourceResponse {
            status_code: u32::from(r.status_code),
            content_type: r.content_type.clone(),
            body: r.body.clone(),
        }),
        paused: s.paused,
        create_time: Some(to_timestamp(d.create_time)),
        update_time: Some(to_timestamp(d.update_time)),
    }
}

/// The plaintext of a source's secret, for the responses that reveal it once.
fn revealed_secret(spec: &mut SourceSpec, state: &AppState) -> ApiResult<String> {
    match spec.auth.secret_mut() {
        Some(s) => s.open(&state.cipher).map_err(ApiError::internal),
        None => Ok(String::new()),
    }
}

#[tonic::async_trait]
impl SourceService for Sources {
    async fn create_source(
        &self,
        req: Request<pb::CreateSourceRequest>,
    ) -> Result<Response<pb::CreateSourceResponse>, Status> {
        let cx = self.0.cx(&req, &req.get_ref().project_id, Access::Write).await?;
        let mut d = resource::create::<SourceSpec>(&cx, req.get_ref().source.as_ref()).await?;
        let secret = revealed_secret(&mut d.spec, &self.0)?;
        Ok(Response::new(pb::CreateSourceResponse { source: Some(source_proto(&d, &self.0)), secret }))
    }

    async fn get_source(&self, req: Request<pb::GetSourceRequest>) -> Result<Response<pb::GetSourceResponse>, Status> {
        let cx = self.0.cx(&req, &req.get_ref().project_id, Access::Read).await?;
        let d = resource::get::<SourceSpec>(&cx, "source_id", &req.get_ref().source_id).await?;
        Ok(Response::new(pb::GetSourceResponse { source: Some(source_proto(&d, &self.0)) }))
    }

    async fn list_sources(
        &self,
        req: Request<pb::ListSourcesRequest>,
    ) -> Result<Response<pb::ListSourcesResponse>, Status> {
        let r = req.get_ref();
        let cx = self.0.cx(&req, &r.project_id, Access::Read).await?;
        let page = Page::parse(r.page_size, &r.page_token)?;
        let (rows, next_page_token) = resource::list::<SourceSpec>(&cx, &page, &DocumentFilter::default()).await?;
        let sources = rows.iter().map(|d| source_proto(d, &self.0)).collect();
        Ok(Response::new(pb::ListSourcesResponse { sources, next_page_token }))
    }

    async fn update_source(
        &self,
        req: Request<pb::UpdateSourceRequest>,
    ) -> Result<Response<pb::UpdateSourceResponse>, Status> {
        let r = req.get_ref();
        let cx = self.0.cx(&req, &r.project_id, Access::Write).await?;
        let d = resource::update::<SourceSpec>(&cx, r.source.as_ref(), r.update_mask.as_ref()).await?;
        if !d.spec.paused {
            // Unpausing releases what the source captured meanwhile (a no-op otherwise).
            self.0.store.release_held(&d.id.to_string(), now_micros()).await.map_err(ApiError::from)?;
            self.0.wake.notify();
        }
        Ok(Response::new(pb::UpdateSourceResponse { source: Some(source_proto(&d, &self.0)) }))
    }

    async fn delete_source(
        &self,
        req: Request<pb::DeleteSourceRequest>,
    ) -> Result<Response<pb::DeleteSourceResponse>, Status> {
        let cx = self.0.cx(&req, &req.get_ref().project_id, Access::Write).await?;
        resource::delete::<SourceSpec>(&cx, "source_id", &req.get_ref().source_id).await?;
        Ok(Response::new(pb::DeleteSourceResponse {}))
    }

    async fn rotate_source_secret(
        &self,
        req: Request<pb::RotateSourceSecretRequest>,
    ) -> Result<Response<pb::RotateSourceSecretResponse>, Status> {
        let r = req.get_ref();
        let cx = self.0.cx(&req, &r.project_id, Access::Write).await?;
        let id = resource::parse_resource_id::<SourceSpec>("source_id", &r.source_id)?;
        let store = &self.0.store;
        let mut tx = store.begin().await.map_err(ApiError::from)?;
        let mut d = store
            .get_document_in::<SourceSpec>(&mut tx, cx.project, &id)
            .await
            .map_err(|e| ApiError::from_store(e, "source", id.to_string()))?;
        let generated = match &d.spec.auth {
            SourceAuth::None => {
                return Err(ApiError::invalid(
                    "source_id",
                    ErrorReason::InvalidArgument,
                    format!("source {id} has no auth secret to rotate"),
                )
                .into());
            }
            SourceAuth::Signature { scheme: SignatureScheme::StandardWebhooks, .. } if r.secret.is_empty() => {
                SigningSecret::generate().expose().to_owned()
            }
            SourceAuth::Signature { scheme: SignatureScheme::StandardWebhooks, .. } => {
                SigningSecret::parse(&r.secret)
                    .map_err(|e| ApiError::invalid("secret", ErrorReason::InvalidSecret, e.to_string()))?;
                r.secret.clone()
            }
            _ if r.secret.is_empty() => {
                return Err(ApiError::invalid(
                    "secret",
                    ErrorReason::InvalidArgument,
                    "is required: this provider issues the secret",
                )
                .into());
            }
            _ if r.secret.len() > MAX_SECRET_LEN => {
                return Err(ApiError::invalid("secret", ErrorReason::InvalidArgument, "is too long").into());
            }
            _ => r.secret.clone(),
        };
        *d.spec.auth.secret_mut().expect("checked: has a secret") = SealedSecret::seal(&self.0.cipher, &generated);
        d.update_time = now_micros();
        store.update_document(&mut tx, &d).await.map_err(ApiError::from)?;
        cx.audit(&mut tx, "source", &id.to_string(), Change::Updated(&["secret"])).await?;
        tx.commit().await.map_err(ApiError::from)?;
        Ok(Response::new(pb::RotateSourceSecretResponse { source: Some(source_proto(&d, &self.0)), secret: generated }))
    }
}
