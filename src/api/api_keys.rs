//! `ApiKeyService`. Project keys manage their own project's non-admin keys; only an ADMIN key
//! creates ADMIN keys or sees keys across projects.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::audit::{self, Change};
use super::paging::Page;
use super::{AppState, parse_id};
use crate::auth::{Access, ApiKeySecret, Principal, Role};
use crate::domain::parse_name;
use crate::error::{ApiError, ApiResult};
use crate::ids::{ApiKeyId, ProjectId};
use crate::proto::api_key_service_server::ApiKeyService;
use crate::proto::{self as pb, ErrorReason};
use crate::store::{ApiKeyRecord, NewApiKey};
use crate::timeutil::{from_timestamp, now_micros, to_timestamp};

pub struct ApiKeys(pub Arc<AppState>);

fn role_proto(role: &str) -> pb::ApiKeyRole {
    match Role::parse(role) {
        Some(Role::Admin) => pb::ApiKeyRole::Admin,
        Some(Role::Editor) => pb::ApiKeyRole::Editor,
        Some(Role::Viewer) => pb::ApiKeyRole::Viewer,
        Some(Role::Publisher) => pb::ApiKeyRole::Publisher,
        None => pb::ApiKeyRole::Unspecified,
    }
}

fn key_proto(r: &ApiKeyRecord) -> pb::ApiKey {
    pb::ApiKey {
        id: r.id.clone(),
        project_id: r.project_id.clone().unwrap_or_default(),
        name: r.name.clone(),
        role: role_proto(&r.role) as i32,
        prefix: r.prefix.clone(),
        create_time: Some(to_timestamp(r.create_time)),
        last_used_time: r.last_used_time.map(to_timestamp),
        expire_time: r.expire_time.map(to_timestamp),
        revoke_time: r.revoke_time.map(to_timestamp),
    }
}

impl ApiKeys {
    /// The caller, allowed `access`, and the project its key operations are confined to
    /// (`None` for admin keys: every key).
    async fn caller<T>(&self, req: &Request<T>, access: Access) -> ApiResult<(Principal, Option<String>)> {
        let principal = self.0.auth.authenticate(req.metadata()).await?;
        principal.require(access)?;
        let confined = principal.project.map(|p| p.to_string());
        Ok((principal, confined))
    }

    /// Records a change to a project's key in that project's feed (ADMIN keys belong to none).
    /// The key's own statement has committed already; the record follows it.
    async fn audit(&self, record: &ApiKeyRecord, change: Change<'_>, by: &Principal) -> ApiResult<()> {
        let Some(project) = &record.project_id else { return Ok(()) };
        let item = audit::activity("api key", &record.id, change, Some(&by.key_id));
        audit::record_alone(&self.0.store, project, &[item]).await
    }

    async fn get_record(&self, id: &str, confined: Option<&str>) -> ApiResult<ApiKeyRecord> {
        let id: ApiKeyId = parse_id("api_key_id", id)?;
        self.0
            .store
            .get_api_key(&id.to_string(), confined)
            .await
            .map_err(|e| ApiError::from_store(e, "api key", id.to_string()))
    }
}

#[tonic::async_trait]
impl ApiKeyService for ApiKeys {
    async fn create_api_key(
        &self,
        req: Request<pb::CreateApiKeyRequest>,
    ) -> Result<Response<pb::CreateApiKeyResponse>, Status> {
        let input = req
            .get_ref()
            .api_key
            .as_ref()
            .ok_or_else(|| ApiError::invalid("api_key", ErrorReason::InvalidArgument, "is required"))?;
        let role = match pb::ApiKeyRole::try_from(input.role) {
            Ok(pb::ApiKeyRole::Admin) => Role::Admin,
            Ok(pb::ApiKeyRole::Editor) => Role::Editor,
            Ok(pb::ApiKeyRole::Viewer) => Role::Viewer,
            Ok(pb::ApiKeyRole::Publisher) => Role::Publisher,
            _ => return Err(ApiError::invalid("api_key.role", ErrorReason::InvalidArgument, "is required").into()),
        };
        let name = parse_name(&input.name, false)
            .map_err(|e| ApiError::invalid("api_key.name", ErrorReason::InvalidArgument, e))?;
        let now = now_micros();
        let expire_time = match input.expire_time.as_ref() {
            None => None,
            Some(t) => match from_timestamp(t) {
                Some(t) if t > now => Some(t),
                _ => {
                    return Err(ApiError::invalid(
                        "api_key.expire_time",
                        ErrorReason::InvalidArgument,
                        "must be in the future",
                    )
                    .into());
                }
            },
        };
        let (project, actor): (Option<ProjectId>, _) = if role == Role::Admin {
            let principal = self.0.auth.authenticate(req.metadata()).await?;
            principal.require(Access::Admin)?;
            if !input.project_id.is_empty() {
                return Err(ApiError::invalid(
                    "api_key.project_id",
                    ErrorReason::InvalidArgument,
                    "must be empty: an ADMIN key spans every project",
                )
                .into());
            }
            (None, principal.key_id)
        } else {
            let scope = self.0.auth.scope(&req, &input.project_id, Access::Write).await?;
            (Some(scope.project), scope.principal.key_id)
        };
        let secret = ApiKeySecret::generate();
        let id = ApiKeyId::generate().to_string();
        let project = project.map(|p| p.to_string());
        let store = &self.0.store;
        let mut tx = store.begin().await.map_err(ApiError::from)?;
        let hash = secret.hash();
        let new = NewApiKey {
            id: &id,
            project_id: project.as_deref(),
            name: &name,
            role: role.as_str(),
            prefix: secret.display_prefix(),
            key_hash: &hash,
            expire_time,
            now,
        };
        store.insert_api_key(&mut tx, &new).await.map_err(ApiError::from)?;
        if let Some(project) = &project {
            let item = audit::activity("api key", &id, Change::Created, Some(&actor));
            audit::record(store, &mut tx, project, &[item]).await?;
        }
        tx.commit().await.map_err(ApiError::from)?;
        let record = store.get_api_key(&id, None).await.map_err(ApiError::from)?;
        Ok(Response::new(pb::CreateApiKeyResponse {
            api_key: Some(key_proto(&record)),
            secret: secret.expose().to_owned(),
        }))
    }

    async fn get_api_key(&self, req: Request<pb::GetApiKeyRequest>) -> Result<Response<pb::GetApiKeyResponse>, Status> {
        let (_, confined) = self.caller(&req, Access::Read).await?;
        let record = self.get_record(&req.get_ref().api_key_id, confined.as_deref()).await?;
        Ok(Response::new(pb::GetApiKeyResponse { api_key: Some(key_proto(&record)) }))
    }

    async fn list_api_keys(
        &self,
        req: Request<pb::ListApiKeysRequest>,
    ) -> Result<Response<pb::ListApiKeysResponse>, Status> {
        let r = req.get_ref();
        let (_, confined) = self.caller(&req, Access::Read).await?;
        let filter = if r.project_id.is_empty() {
            confined
        } else {
            let asked: ProjectId = parse_id("project_id", &r.project_id)?;
            if confined.as_deref().is_some_and(|own| own != asked.to_string()) {
                return Err(ApiError::not_found("project", asked.to_string()).into());
            }
            Some(asked.to_string())
        };
        let page = Page::parse(r.page_size, &r.page_token)?;
        let mut rows =
            self.0.store.list_api_keys(filter.as_deref(), page.after(), page.fetch()).await.map_err(ApiError::from)?;
        let next_page_token = page.finish(&mut rows, |k| k.id.clone());
        Ok(Response::new(pb::ListApiKeysResponse { api_keys: rows.iter().map(key_proto).collect(), next_page_token }))
    }

    async fn update_api_key(
        &self,
        req: Request<pb::UpdateApiKeyRequest>,
    ) -> Result<Response<pb::UpdateApiKeyResponse>, Status> {
        let r = req.get_ref();
        let (principal, confined) = self.caller(&req, Access::Write).await?;
        let input = r
            .api_key
            .as_ref()
            .ok_or_else(|| ApiError::invalid("api_key", ErrorReason::InvalidArgument, "is required"))?;
        if let Some(mask) = &r.update_mask
            && let Some((i, p)) = mask.paths.iter().enumerate().find(|(_, p)| p.as_str() != "name")
        {
            return Err(ApiError::invalid(
                format!("update_mask.paths[{i}]"),
                ErrorReason::InvalidUpdateMask,
                format!("`{p}` is not updatable; only `name` is"),
            )
            .into());
        }
        let record = self.get_record(&input.id, confined.as_deref()).await.map_err(|e| match e {
            ApiError::InvalidArgument { reason, mut violations } => {
                violations.iter_mut().for_each(|v| v.field = "api_key.id".into());
                ApiError::InvalidArgument { reason, violations }
            }
            other => other,
        })?;
        let name = parse_name(&input.name, false)
            .map_err(|e| ApiError::invalid("api_key.name", ErrorReason::InvalidArgument, e))?;
        self.0
            .store
            .rename_api_key(&record.id, confined.as_deref(), &name, now_micros())
            .await
            .map_err(ApiError::from)?;
        self.audit(&record, Change::Updated(&["name"]), &principal).await?;
        let record = self.0.store.get_api_key(&record.id, None).await.map_err(ApiError::from)?;
        Ok(Response::new(pb::UpdateApiKeyResponse { api_key: Some(key_proto(&record)) }))
    }

    async fn revoke_api_key(
        &self,
        req: Request<pb::RevokeApiKeyRequest>,
    ) -> Result<Response<pb::RevokeApiKeyResponse>, Status> {
        let (principal, confined) = self.caller(&req, Access::Write).await?;
        let record = self.get_record(&req.get_ref().api_key_id, confined.as_deref()).await?;
        self.0.store.revoke_api_key(&record.id, confined.as_deref(), now_micros()).await.map_err(ApiError::from)?;
        self.0.auth.invalidate();
        self.audit(&record, Change::Updated(&["revoke_time"]), &principal).await?;
        let record = self.0.store.get_api_key(&record.id, None).await.map_err(ApiError::from)?;
        Ok(Response::new(pb::RevokeApiKeyResponse { api_key: Some(key_proto(&record)) }))
    }

    async fn delete_api_key(
        &self,
        req: Request<pb::DeleteApiKeyRequest>,
    ) -> Result<Response<pb::DeleteApiKeyResponse>, Status> {
        let (principal, confined) = self.caller(&req, Access::Write).await?;
        let record = self.get_record(&req.get_ref().api_key_id, confined.as_deref()).await?;
        self.0.store.delete_api_key(&record.id, confined.as_deref()).await.map_err(ApiError::from)?;
        self.0.auth.invalidate();
        self.audit(&record, Change::Deleted, &principal).await?;
        Ok(Response::new(pb::DeleteApiKeyResponse {}))
    }
}
