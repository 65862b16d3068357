//! API keys and what each role may do.
//!
//! A key is `loft_` + 32 base62 characters. Only its SHA-256 hash and a display prefix are
//! stored. Every RPC names the access it needs; [`Principal::scope`] turns the request's
//! `project_id` into the project it acts on, answering `NOT_FOUND` for any project the key does
//! not belong to, exactly as for a project that does not exist.

mod keys;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use keys::{ApiKeySecret, KeyFormatError};

use crate::error::{ApiError, ApiResult};
use crate::ids::{ApiKeyId, ProjectId};
use crate::proto::ErrorReason;
use crate::store::{ApiKeyRecord, Store, StoreError};
use crate::timeutil::{Micros, now_micros};

/// A key's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything, in every project; must name the project in project-scoped requests.
    Admin,
    /// Reads and writes one project's resources, including its non-admin keys.
    Editor,
    /// Reads one project's resources; no secrets.
    Viewer,
    /// Publishes events to one project; nothing else.
    Publisher,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "ADMIN",
            Role::Editor => "EDITOR",
            Role::Viewer => "VIEWER",
            Role::Publisher => "PUBLISHER",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ADMIN" => Role::Admin,
            "EDITOR" => Role::Editor,
            "VIEWER" => Role::Viewer,
            "PUBLISHER" => Role::Publisher,
            _ => return None,
        })
    }

    fn allows(self, access: Access) -> bool {
        match self {
            Role::Admin => true,
            Role::Editor => access != Access::Admin,
            Role::Viewer => access == Access::Read,
            Role::Publisher => access == Access::Publish,
        }
    }
}

/// What an RPC needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    Publish,
    /// Reading a plaintext secret back (`GetDestinationSecret`).
    ReadSecret,
    /// Creating or deleting projects, managing admin keys.
    Admin,
}

/// The caller, as established by its API key.
#[derive(Debug, Clone)]
pub struct Principal {
    pub key_id: ApiKeyId,
    /// `None` for admin keys.
    pub project: Option<ProjectId>,
    pub role: Role,
}

impl Principal {
    /// Checks `access` without a project (project-less RPCs such as `CreateProject`).
    pub fn require(&self, access: Access) -> ApiResult<()> {
        if self.role.allows(access) {
            Ok(())
        } else {
            Err(ApiError::PermissionDenied(format!("a {} key may not do this", self.role.as_str())))
        }
    }

    /// The project a project-scoped request acts on. The project's existence is checked by the
    /// caller (`Authenticator::scope`) for admin keys; a project key's project exists as long as
    /// the key does.
    fn resolve_project(&self, requested: &str) -> ApiResult<ProjectId> {
        let project = if requested.is_empty() {
            self.project.ok_or_else(|| {
                ApiError::invalid("project_id", ErrorReason::ProjectRequired, "an ADMIN key must name the project")
            })?
        } else {
            let id: ProjectId = requested
                .parse()
                .map_err(|e| ApiError::invalid("project_id", ErrorReason::InvalidArgument, format!("{e}")))?;
            if self.project.is_some_and(|own| own != id) {
                return Err(ApiError::not_found("project", requested));
            }
            id
        };
        Ok(project)
    }
}

/// A request's resolved tenant and caller.
#[derive(Debug, Clone)]
pub struct Scope {
    pub project: ProjectId,
    pub principal: Principal,
}

/// How long a looked-up key is trusted before it is read again. Revocation on this node takes
/// effect at once (the cache is cleared); on other nodes within this time.
const CACHE_TTL: Duration = Duration::from_secs(2);
/// `last_used_time` is written at most this often per key.
const TOUCH_EVERY: Micros = 60_000_000;

/// Checks bearer keys against the store, with a short cache so the hot paths (publish) do not
/// read the key table on every call.
#[derive(Clone)]
pub struct Authenticator {
    store: Store,
    cache: Arc<Mutex<HashMap<String, Cached>>>,
    /// Projects an ADMIN key named that were found to exist, and when: an admin key's calls
    /// then cost no project read each. Cleared with the keys (a project delete on this node
    /// invalidates); other nodes see a deleted project within [`CACHE_TTL`], as with keys.
    projects: Arc<Mutex<HashMap<ProjectId, Instant>>>,
}

#[derive(Clone)]
struct Cached {
    at: Instant,
    record: ApiKeyRecord,
    touched: Micros,
}

impl Authenticator {
    pub fn new(store: Store) -> Self {
        Self { store, cache: Arc::default(), projects: Arc::default() }
    }

    /// Forgets every cached key, after a key was revoked, deleted or changed.
    pub fn invalidate(&self) {
        self.cache.lock().expect("auth cache poisoned").clear();
        self.projects.lock().expect("auth cache poisoned").clear();
    }

    /// The caller behind `authorization: Bearer loft_…`.
    pub async fn authenticate(&self, metadata: &tonic::metadata::MetadataMap) -> ApiResult<Principal> {
        let header = metadata.get("authorization").and_then(|v| v.to_str().ok()).ok_or(ApiError::Unauthenticated {
            reason: ErrorReason::ApiKeyMissing,
            message: "missing `authorization: Bearer <api key>`",
        })?;
        let token =
            header.strip_prefix("Bearer ").or_else(|| header.strip_prefix("bearer ")).map(str::trim).unwrap_or("");
        self.authenticate_token(token).await
    }

    pub async fn authenticate_token(&self, token: &str) -> ApiResult<Principal> {
        let invalid = ApiError::Unauthenticated { reason: ErrorReason::ApiKeyInvalid, message: "invalid API key" };
        let secret = ApiKeySecret::parse(token).map_err(|_| invalid)?;
        let hash = secret.hash();
        let now = now_micros();
        let cached = {
            let cache = self.cache.lock().expect("auth cache poisoned");
            cache.get(&hash).filter(|c| c.at.elapsed() < CACHE_TTL).cloned()
        };
        let mut entry = match cached {
            Some(c) => c,
            None => {
                let record = match self.store.api_key_by_hash(&hash).await {
                    Ok(r) => r,
                    Err(StoreError::NotFound) => {
                        return Err(ApiError::Unauthenticated {
                            reason: ErrorReason::ApiKeyInvalid,
                            message: "invalid API key",
                        });
                    }
                    Err(e) => return Err(e.into()),
                };
                let touched = record.last_used_time.unwrap_or(0);
                Cached { at: Instant::now(), record, touched }
            }
        };
        let r = &entry.record;
        if r.revoke_time.is_some() {
            return Err(ApiError::Unauthenticated {
                reason: ErrorReason::ApiKeyRevoked,
                message: "API key was revoked",
            });
        }
        if r.expire_time.is_some_and(|t| t <= now) {
            return Err(ApiError::Unauthenticated {
                reason: ErrorReason::ApiKeyExpired,
                message: "API key has expired",
            });
        }
        let principal = principal_of(r).map_err(ApiError::internal)?;
        if now - entry.touched > TOUCH_EVERY {
            entry.touched = now;
            let (store, id) = (self.store.clone(), r.id.clone());
            tokio::spawn(async move {
                if let Err(e) = store.touch_api_key(&id, now).await {
                    tracing::warn!(error = %e, "could not record API key use");
                }
            });
        }
        self.cache.lock().expect("auth cache poisoned").insert(hash, entry);
        Ok(principal)
    }

    fn known_project(&self, project: ProjectId) -> bool {
        self.projects.lock().expect("auth cache poisoned").get(&project).is_some_and(|at| at.elapsed() < CACHE_TTL)
    }

    /// Authenticates and resolves the project a project-scoped request acts on.
    pub async fn scope<T>(
        &self,
        request: &tonic::Request<T>,
        requested_project: &str,
        access: Access,
    ) -> ApiResult<Scope> {
        let principal = self.authenticate(request.metadata()).await?;
        let project = principal.resolve_project(requested_project)?;
        if principal.project.is_none() && !self.known_project(project) {
            // Admin keys may name any project id; one that does not exist is NOT_FOUND here,
            // before any write could trip over a foreign key.
            match self.store.get_project(project).await {
                Ok(_) => {
                    self.projects.lock().expect("auth cache poisoned").insert(project, Instant::now());
                }
                Err(StoreError::NotFound) => return Err(ApiError::not_found("project", project.to_string())),
                Err(e) => return Err(e.into()),
            }
        }
        principal.require(access)?;
        Ok(Scope { project, principal })
    }
}

fn principal_of(r: &ApiKeyRecord) -> anyhow::Result<Principal> {
    Ok(Principal {
        key_id: r.id.parse().map_err(|e| anyhow::anyhow!("stored key id {}: {e}", r.id))?,
        project: r
            .project_id
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e| anyhow::anyhow!("stored key project: {e}"))?,
        role: Role::parse(&r.role).ok_or_else(|| anyhow::anyhow!("stored key role {}", r.role))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(project: Option<ProjectId>, role: Role) -> Principal {
        Principal { key_id: ApiKeyId::generate(), project, role }
    }

    #[test]
    fn roles() {
        use Access::*;
        assert!(Role::Editor.allows(Write) && Role::Editor.allows(ReadSecret) && !Role::Editor.allows(Admin));
        assert!(Role::Viewer.allows(Read) && !Role::Viewer.allows(Write) && !Role::Viewer.allows(ReadSecret));
        assert!(Role::Publisher.allows(Publish) && !Role::Publisher.allows(Read));
        assert!(Role::Admin.allows(Admin));
    }

    #[test]
    fn project_keys_see_only_their_project() {
        let own = ProjectId::generate();
        let p = principal(Some(own), Role::Editor);
        assert_eq!(p.resolve_project("").unwrap(), own);
        assert_eq!(p.resolve_project(&own.to_string()).unwrap(), own);
        let other = ProjectId::generate().to_string();
        assert!(matches!(p.resolve_project(&other), Err(ApiError::NotFound { kind: "project", .. })));
        let admin = principal(None, Role::Admin);
        assert!(matches!(
            admin.resolve_project(""),
            Err(ApiError::InvalidArgument { reason: ErrorReason::ProjectRequired, .. })
        ));
    }
}
