//! `TemplateService`.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::convert::value_to_json;
use super::paging::Page;
use super::resource::{self, Cx, Fields, Resource};
use super::{AppState, Violations};
use crate::auth::Access;
use crate::domain::template::{TemplateSpec, parse_content_type};
use crate::domain::{parse_description, parse_name};
use crate::error::ApiError;
use crate::ids::TemplateId;
use crate::intake::{InboundRequest, parse_json};
use crate::proto::template_service_server::TemplateService;
use crate::proto::{self as pb, ErrorReason};
use crate::routing::template::{Template, TemplateContext};
use crate::store::{DocumentFilter, Stored};
use crate::timeutil::to_timestamp;
use std::collections::BTreeMap;

pub struct Templates(pub Arc<AppState>);

impl Fields for TemplateSpec {
    type Proto = pb::Template;
    const FIELD: &'static str = "template";
    const PATHS: &'static [&'static str] = &["name", "description", "body", "content_type"];

    fn apply(&mut self, t: &pb::Template, path: &str, _cx: &Cx<'_>, v: &mut Violations) {
        let field = format!("template.{path}");
        match path {
            "name" => match parse_name(&t.name, false) {
                Ok(n) => self.name = n,
                Err(e) => v.invalid(field, e),
            },
            "description" => match parse_description(&t.description) {
                Ok(d) => self.description = d,
                Err(e) => v.invalid(field, e),
            },
            "body" => match Template::compile(&t.body) {
                Ok(_) => self.body = t.body.clone(),
                Err(e) => v.add(field, ErrorReason::InvalidTemplate, e),
            },
            "content_type" => match parse_content_type(&t.content_type) {
                Ok(c) => self.content_type = c,
                Err(e) => v.invalid(field, e),
            },
            _ => unreachable!("unlisted path {path}"),
        }
    }

    fn check_complete(&self, v: &mut Violations) {
        if self.body.is_empty() {
            v.invalid("template.body", "is required");
        }
    }
}

impl Resource for TemplateSpec {
    const KIND: &'static str = "template";

    fn new_id(_: &pb::Template) -> Result<TemplateId, String> {
        Ok(TemplateId::generate())
    }

    fn named_id(input: &pb::Template) -> (&str, &'static str) {
        (&input.id, "id")
    }
}

fn template_proto(d: &Stored<TemplateSpec>) -> pb::Template {
    pb::Template {
        id: d.id.to_string(),
        project_id: d.project_id.to_string(),
        name: d.spec.name.clone(),
        description: d.spec.description.clone(),
        body: d.spec.body.clone(),
        content_type: d.spec.content_type.clone(),
        create_time: Some(to_timestamp(d.create_time)),
        update_time: Some(to_timestamp(d.update_time)),
    }
}

#[tonic::async_trait]
impl TemplateService for Templates {
    async fn create_template(
        &self,
        req: Request<pb::CreateTemplateRequest>,
    ) -> Result<Response<pb::CreateTemplateResponse>, Status> {
        let cx = self.0.cx(&req, &req.get_ref().project_id, Access::Write).await?;
        let d = resource::create::<TemplateSpec>(&cx, req.get_ref().template.as_ref()).await?;
        Ok(Response::new(pb::CreateTemplateResponse { template: Some(template_proto(&d)) }))
    }

    async fn get_template(
        &self,
        req: Request<pb::GetTemplateRequest>,
    ) -> Result<Response<pb::GetTemplateResponse>, Status> {
        let cx = self.0.cx(&req, &req.get_ref().project_id, Access::Read).await?;
        let d = resource::get::<TemplateSpec>(&cx, "template_id", &req.get_ref().template_id).await?;
        Ok(Response::new(pb::GetTemplateResponse { template: Some(template_proto(&d)) }))
    }

    async fn list_templates(
        &self,
        req: Request<pb::ListTemplatesRequest>,
    ) -> Result<Response<pb::ListTemplatesResponse>, Status> {
        let r = req.get_ref();
        let cx = self.0.cx(&req, &r.project_id, Access::Read).await?;
        let page = Page::parse(r.page_size, &r.page_token)?;
        let (rows, next_page_token) = resource::list::<TemplateSpec>(&cx, &page, &DocumentFilter::default()).await?;
        let templates = rows.iter().map(template_proto).collect();
        Ok(Response::new(pb::ListTemplatesResponse { templates, next_page_token }))
    }

    async fn update_template(
        &self,
        req: Request<pb::UpdateTemplateRequest>,
    ) -> Result<Response<pb::UpdateTemplateResponse>, Status> {
        let r = req.get_ref();
        let cx = self.0.cx(&req, &r.project_id, Access::Write).await?;
        let d = resource::update::<TemplateSpec>(&cx, r.template.as_ref(), r.update_mask.as_ref()).await?;
        Ok(Response::new(pb::UpdateTemplateResponse { template: Some(template_proto(&d)) }))
    }

    async fn delete_template(
        &self,
        req: Request<pb::DeleteTemplateRequest>,
    ) -> Result<Response<pb::DeleteTemplateResponse>, Status> {
        let cx = self.0.cx(&req, &req.get_ref().project_id, Access::Write).await?;
        resource::delete::<TemplateSpec>(&cx, "template_id", &req.get_ref().template_id).await?;
        Ok(Response::new(pb::DeleteTemplateResponse {}))
    }

    async fn render_template(
        &self,
        req: Request<pb::RenderTemplateRequest>,
    ) -> Result<Response<pb::RenderTemplateResponse>, Status> {
        use pb::render_template_request::{Input, Template as Source};
        let r = req.get_ref();
        let cx = self.0.cx(&req, &r.project_id, Access::Read).await?;
        let (body, content_type) = match &r.template {
            Some(Source::TemplateId(id)) => {
                let d = resource::get::<TemplateSpec>(&cx, "template_id", id).await?;
                (d.spec.body, d.spec.content_type)
            }
            Some(Source::Body(body)) => (body.clone(), crate::domain::template::DEFAULT_CONTENT_TYPE.to_owned()),
            None => {
                return Err(
                    ApiError::invalid("template", ErrorReason::InvalidArgument, "set template_id or body").into()
                );
            }
        };
        let template =
            Template::compile(&body).map_err(|e| ApiError::invalid("body", ErrorReason::InvalidTemplate, e))?;
        // The variables of a stored event, or of a sample.
        let (event_type, source_id, headers, body_json, labels, event_id, receive_time) = match &r.input {
            Some(Input::Sample(sample)) => (
                sample.r#type.clone(),
                String::new(),
                BTreeMap::new(),
                sample.json.as_ref().map(value_to_json).unwrap_or(serde_json::Value::Null),
                BTreeMap::new(),
                "evt_sample".to_owned(),
                chrono::Utc::now().to_rfc3339(),
            ),
            Some(Input::EventId(id)) => {
                let id: crate::ids::EventId = super::parse_id("event_id", id)?;
                let e = self
                    .0
                    .store
                    .get_event(&cx.project.to_string(), &id.to_string())
                    .await
                    .map_err(|e| ApiError::from_store(e, "event", id.to_string()))?;
                let request: Option<InboundRequest> = e.request.as_deref().and_then(|r| serde_json::from_str(r).ok());
                // First value of each header, as routing sees them.
                let headers = request
                    .map(|r| r.headers.into_iter().rev().map(|(n, v)| (n.to_ascii_lowercase(), v)).collect())
                    .unwrap_or_default();
                let labels = serde_json::from_str(&e.labels).unwrap_or_default();
                let receive =
                    chrono::DateTime::<chrono::Utc>::from(crate::timeutil::from_micros(e.receive_time)).to_rfc3339();
                let body = parse_json(&e.content_type, &e.body).unwrap_or(serde_json::Value::Null);
                (e.event_type, e.source_id.unwrap_or_default(), headers, body, labels, e.id, receive)
            }
            None => {
                return Err(ApiError::invalid("input", ErrorReason::InvalidArgument, "set event_id or sample").into());
            }
        };
        let ctx = TemplateContext {
            type_: &event_type,
            source_id: &source_id,
            headers: &headers,
            body: &body_json,
            labels: &labels,
            event_id: &event_id,
            receive_time: &receive_time,
        };
        let rendered = template.render(&ctx).map_err(|e| ApiError::invalid("body", ErrorReason::InvalidTemplate, e))?;
        Ok(Response::new(pb::RenderTemplateResponse { rendered, content_type }))
    }
}
