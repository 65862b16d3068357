//! `EventTypeService`: the project's catalog of event types.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::convert::{json_to_struct, struct_to_json};
use super::paging::Page;
use super::resource::{self, Cx, Fields, Resource};
use super::{AppState, Violations};
use crate::auth::Access;
use crate::domain::event_type::{EventTypeSpec, check_json_schema};
use crate::domain::parse_description;
use crate::proto::event_type_service_server::EventTypeService;
use crate::proto::{self as pb, ErrorReason};
use crate::routing::pattern::EventTypeName;
use crate::store::{DocumentFilter, Stored};
use crate::timeutil::to_timestamp;

pub struct EventTypes(pub Arc<AppState>);

impl Fields for EventTypeSpec {
    type Proto = pb::EventType;
    const FIELD: &'static str = "event_type";
    const PATHS: &'static [&'static str] = &["description", "schema", "deprecated"];

    fn apply(&mut self, t: &pb::EventType, path: &str, _cx: &Cx<'_>, v: &mut Violations) {
        let field = format!("event_type.{path}");
        match path {
            "description" => match parse_description(&t.description) {
                Ok(d) => self.description = d,
                Err(e) => v.invalid(field, e),
            },
            "schema" => match t.schema.as_ref().map(struct_to_json) {
                None => self.schema = None,
                Some(schema) => match check_json_schema(&schema) {
                    Ok(()) => self.schema = Some(schema),
                    Err(e) => v.add(field, ErrorReason::InvalidJsonSchema, e),
                },
            },
            "deprecated" => self.deprecated = t.deprecated,
            _ => unreachable!("unlisted path {path}"),
        }
    }
}

impl Resource for EventTypeSpec {
    const KIND: &'static str = "event type";

    fn new_id(input: &pb::EventType) -> Result<EventTypeName, String> {
        EventTypeName::parse(&input.name).map_err(|e| e.to_string())
    }

    fn named_id(input: &pb::EventType) -> (&str, &'static str) {
        (&input.name, "name")
    }
}

fn event_type_proto(d: &Stored<EventTypeSpec>) -> pb::EventType {
    pb::EventType {
        name: d.id.to_string(),
        project_id: d.project_id.to_string(),
        description: d.spec.description.clone(),
        schema: d.spec.schema.as_ref().and_then(json_to_struct),
        deprecated: d.spec.deprecated,
        create_time: Some(to_timestamp(d.create_time)),
        update_time: Some(to_timestamp(d.update_time)),
    }
}

#[tonic::async_trait]
impl EventTypeService for EventTypes {
    async fn create_event_type(
        &self,
        req: Request<pb::CreateEventTypeRequest>,
    ) -> Result<Response<pb::CreateEventTypeResponse>, Status> {
        let cx = self.0.cx(&req, &req.get_ref().project_id, Access::Write).await?;
        let d = resource::create::<EventTypeSpec>(&cx, req.get_ref().event_type.as_ref()).await?;
        Ok(Response::new(pb::CreateEventTypeResponse { event_type: Some(event_type_proto(&d)) }))
    }

    async fn get_event_type(
        &self,
        req: Request<pb::GetEventTypeRequest>,
    ) -> Result<Response<pb::GetEventTypeResponse>, Status> {
        let cx = self.0.cx(&req, &req.get_ref().project_id, Access::Read).await?;
        let d = resource::get::<EventTypeSpec>(&cx, "event_type_name", &req.get_ref().event_type_name).await?;
        Ok(Response::new(pb::GetEventTypeResponse { event_type: Some(event_type_proto(&d)) }))
    }

    async fn list_event_types(
        &self,
        req: Request<pb::ListEventTypesRequest>,
    ) -> Result<Response<pb::ListEventTypesResponse>, Status> {
        let r = req.get_ref();
        let cx = self.0.cx(&req, &r.project_id, Access::Read).await?;
        let page = Page::parse(r.page_size, &r.page_token)?;
        let (rows, next_page_token) = resource::list::<EventTypeSpec>(&cx, &page, &DocumentFilter::default()).await?;
        Ok(Response::new(pb::ListEventTypesResponse {
            event_types: rows.iter().map(event_type_proto).collect(),
            next_page_token,
        }))
    }

    async fn update_event_type(
        &self,
        req: Request<pb::UpdateEventTypeRequest>,
    ) -> Result<Response<pb::UpdateEventTypeResponse>, Status> {
        let r = req.get_ref();
        let cx = self.0.cx(&req, &r.project_id, Access::Write).await?;
        let d = resource::update::<EventTypeSpec>(&cx, r.event_type.as_ref(), r.update_mask.as_ref()).await?;
        Ok(Response::new(pb::UpdateEventTypeResponse { event_type: Some(event_type_proto(&d)) }))
    }

    async fn delete_event_type(
        &self,
        req: Request<pb::DeleteEventTypeRequest>,
    ) -> Result<Response<pb::DeleteEventTypeResponse>, Status> {
        let cx = self.0.cx(&req, &req.get_ref().project_id, Access::Write).await?;
        resource::delete::<EventTypeSpec>(&cx, "event_type_name", &req.get_ref().event_type_name).await?;
        Ok(Response::new(pb::DeleteEventTypeResponse {}))
    }
}
