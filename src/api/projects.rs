//! `ProjectService`.

use std::sync::Arc;
use std::time::Duration;

use tonic::{Request, Response, Status};

use super::audit::Change;
use super::convert::{parse_retry_policy, retry_policy_proto};
use super::paging::Page;
use super::resource::{self, Cx, Fields};
use super::{AppState, Violations, parse_id};
use crate::auth::Access;
use crate::domain::project::{ProjectSpec, parse_retention};
use crate::domain::{parse_description, parse_name};
use crate::error::{ApiError, ApiResult};
use crate::ids::ProjectId;
use crate::proto::project_service_server::ProjectService;
use crate::proto::{self as pb, ErrorReason};
use crate::store::{ProjectRecord, StoreError};
use crate::timeutil::{from_duration, now_micros, to_duration, to_timestamp};

pub struct Projects(pub Arc<AppState>);

impl Fields for ProjectSpec {
    type Proto = pb::Project;
    const FIELD: &'static str = "project";
    const PATHS: &'static [&'static str] =
        &["name", "description", "strict_event_types", "retention", "default_retry_policy"];

    fn apply(&mut self, p: &pb::Project, path: &str, _cx: &Cx<'_>, v: &mut Violations) {
        let field = format!("project.{path}");
        match path {
            "name" => match parse_name(&p.name, true) {
                Ok(n) => self.name = n,
                Err(e) => v.invalid(field, e),
            },
            "description" => match parse_description(&p.description) {
                Ok(d) => self.description = d,
                Err(e) => v.invalid(field, e),
            },
            "strict_event_types" => self.strict_event_types = p.strict_event_types,
            "retention" => {
                match p.retention.as_ref().map(from_duration).unwrap_or(Some(Duration::ZERO)).map(parse_retention) {
                    Some(Ok(r)) => self.retention_secs = r.as_secs(),
                    Some(Err(e)) => v.invalid(field, e),
                    None => v.invalid(field, "must not be negative"),
                }
            }
            "default_retry_policy" => match parse_retry_policy(p.default_retry_policy.as_ref()) {
                Ok(policy) => self.default_retry_policy = policy.unwrap_or_default(),
                Err(e) => v.invalid(field, e),
            },
            _ => unreachable!("unlisted path {path}"),
        }
    }
}

fn decode(r: &ProjectRecord) -> ApiResult<(ProjectId, ProjectSpec)> {
    let id = r.id.parse().map_err(|e| ApiError::internal(anyhow::anyhow!("stored project id {}: {e}", r.id)))?;
    let spec = serde_json::from_str(&r.spec).map_err(ApiError::internal)?;
    Ok((id, spec))
}

fn project_proto(id: ProjectId, s: &ProjectSpec, create_time: i64, update_time: i64) -> pb::Project {
    pb::Project {
        id: id.to_string(),
        name: s.name.clone(),
        description: s.description.clone(),
        strict_event_types: s.strict_event_types,
        retention: Some(to_duration(Duration::from_secs(s.retention_secs))),
        default_retry_policy: Some(retry_policy_proto(&s.default_retry_policy)),
        create_time: Some(to_timestamp(create_time)),
        update_time: Some(to_timestamp(update_time)),
    }
}

fn record_proto(r: &ProjectRecord) -> ApiResult<pb::Project> {
    let (id, spec) = decode(r)?;
    Ok(project_proto(id, &spec, r.create_time, r.update_time))
}

#[tonic::async_trait]
impl ProjectService for Projects {
    async fn create_project(
        &self,
        req: Request<pb::CreateProjectRequest>,
    ) -> Result<Response<pb::CreateProjectResponse>, Status> {
        let principal = self.0.auth.authenticate(req.metadata()).await?;
        principal.require(Access::Admin)?;
        let input = req
            .get_ref()
            .project
            .as_ref()
            .ok_or_else(|| ApiError::invalid("project", ErrorReason::InvalidArgument, "is required"))?;
        let id = ProjectId::generate();
        let cx = Cx { state: &self.0, project: id, principal, creating: true };
        let spec: ProjectSpec = resource::new_spec(&cx, input, Violations::default())?;
        let now = now_micros();
        let store = &self.0.store;
        let mut tx = store.begin().await.map_err(ApiError::from)?;
        store
            .insert_project(&mut tx, id, &serde_json::to_string(&spec).map_err(ApiError::internal)?, now)
            .await
            .map_err(ApiError::from)?;
        cx.audit(&mut tx, "project", &id.to_string(), Change::Created).await?;
        tx.commit().await.map_err(ApiError::from)?;
        Ok(Response::new(pb::CreateProjectResponse { project: Some(project_proto(id, &spec, now, now)) }))
    }

    async fn get_project(
        &self,
        req: Request<pb::GetProjectRequest>,
    ) -> Result<Response<pb::GetProjectResponse>, Status> {
        let r = req.get_ref();
        if r.project_id.is_empty() {
            // An empty id would otherwise mean "the key's project"; Get names its resource.
            parse_id::<ProjectId>("project_id", "")?;
        }
        let cx = self.0.cx(&req, &r.project_id, Access::Read).await?;
        let record = self
            .0
            .store
            .get_project(cx.project)
            .await
            .map_err(|e| ApiError::from_store(e, "project", cx.project.to_string()))?;
        Ok(Response::new(pb::GetProjectResponse { project: Some(record_proto(&record)?) }))
    }

    async fn list_projects(
        &self,
        req: Request<pb::ListProjectsRequest>,
    ) -> Result<Response<pb::ListProjectsResponse>, Status> {
        let principal = self.0.auth.authenticate(req.metadata()).await?;
        principal.require(Access::Read)?;
        let r = req.get_ref();
        let page = Page::parse(r.page_size, &r.page_token)?;
        // A project key lists only its own project.
        let mut rows =
            self.0.store.list_projects(page.after(), page.fetch(), principal.project).await.map_err(ApiError::from)?;
        let next_page_token = page.finish(&mut rows, |r| r.id.clone());
        let projects = rows.iter().map(record_proto).collect::<ApiResult<_>>()?;
        Ok(Response::new(pb::ListProjectsResponse { projects, next_page_token }))
    }

    async fn update_project(
        &self,
        req: Request<pb::UpdateProjectRequest>,
    ) -> Result<Response<pb::UpdateProjectResponse>, Status> {
        let r = req.get_ref();
        let input = r
            .project
            .as_ref()
            .ok_or_else(|| ApiError::invalid("project", ErrorReason::InvalidArgument, "is required"))?;
        parse_id::<ProjectId>("project.id", &input.id)?;
        let cx = self.0.cx(&req, &input.id, Access::Write).await?;
        let paths = resource::update_paths::<ProjectSpec>(&cx, input, r.update_mask.as_ref())?;
        let store = &self.0.store;
        let mut tx = store.begin().await.map_err(ApiError::from)?;
        let record = store
            .get_project_in(&mut tx, cx.project)
            .await
            .map_err(|e| ApiError::from_store(e, "project", cx.project.to_string()))?;
        let (id, mut spec) = decode(&record)?;
        let before = spec.clone();
        resource::apply_update(&cx, &mut spec, input, &paths)?;
        let changed = resource::changed_paths(&cx, &before, input, &paths);
        cx.audit(&mut tx, "project", &id.to_string(), Change::Updated(&changed)).await?;
        let now = now_micros();
        store
            .update_project(&mut tx, id, &serde_json::to_string(&spec).map_err(ApiError::internal)?, now)
            .await
            .map_err(ApiError::from)?;
        tx.commit().await.map_err(ApiError::from)?;
        cx.routing_changed();
        Ok(Response::new(pb::UpdateProjectResponse {
            project: Some(project_proto(id, &spec, record.create_time, now)),
        }))
    }

    async fn delete_project(
        &self,
        req: Request<pb::DeleteProjectRequest>,
    ) -> Result<Response<pb::DeleteProjectResponse>, Status> {
        let r = req.get_ref();
        let id: ProjectId = parse_id("project_id", &r.project_id)?;
        let cx = self.0.cx(&req, &r.project_id, Access::Admin).await?;
        let store = &self.0.store;
        let mut tx = store.begin().await.map_err(ApiError::from)?;
        match store.delete_project(&mut tx, cx.project).await {
            Ok(()) => {}
            Err(StoreError::NotFound) => return Err(ApiError::not_found("project", id.to_string()).into()),
            Err(e) => return Err(ApiError::from(e).into()),
        }
        tx.commit().await.map_err(ApiError::from)?;
        // Keys of the project went with it.
        self.0.auth.invalidate();
        Ok(Response::new(pb::DeleteProjectResponse {}))
    }
}
