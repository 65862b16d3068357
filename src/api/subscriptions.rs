//! `SubscriptionService`.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::paging::Page;
use super::resource::{self, Cx, Fields, Resource};
use super::{AppState, Violations, parse_id};
use crate::auth::Access;
use crate::domain::destination::DestinationSpec;
use crate::domain::source::SourceSpec;
use crate::domain::subscription::{MAX_EVENT_TYPES, SubscriptionSpec, Transform};
use crate::domain::template::{TemplateSpec, parse_content_type};
use crate::domain::{parse_description, parse_name};
use crate::error::{ApiError, ApiResult};
use crate::ids::{DestinationId, SourceId, SubscriptionId, TemplateId};
use crate::proto::subscription_service_server::SubscriptionService;
use crate::proto::{self as pb, ErrorReason};
use crate::routing::filter::Filter;
use crate::routing::pattern::EventTypePattern;
use crate::routing::template::Template;
use crate::store::{Document, DocumentFilter, StoreError, Stored, Tx};
use crate::timeutil::to_timestamp;

pub struct Subscriptions(pub Arc<AppState>);

const MAX_FILTER_LEN: usize = 4096;

impl Fields for SubscriptionSpec {
    type Proto = pb::Subscription;
    const FIELD: &'static str = "subscription";
    const PATHS: &'static [&'static str] = &[
        "name",
        "description",
        "destination_id",
        "source_id",
        "event_types",
        "filter",
        "template_id",
        "template",
        "content_type",
        "forward_headers",
        "enabled",
    ];

    fn apply(&mut self, s: &pb::Subscription, path: &str, _cx: &Cx<'_>, v: &mut Violations) {
        let field = format!("subscription.{path}");
        match path {
            "name" => match parse_name(&s.name, false) {
                Ok(n) => self.name = n,
                Err(e) => v.invalid(field, e),
            },
            "description" => match parse_description(&s.description) {
                Ok(d) => self.description = d,
                Err(e) => v.invalid(field, e),
            },
            "destination_id" => match s.destination_id.parse::<DestinationId>() {
                Ok(d) => self.destination_id = Some(d),
                Err(e) => v.invalid(field, e),
            },
            "source_id" if s.source_id.is_empty() => self.source_id = None,
            "source_id" => match s.source_id.parse::<SourceId>() {
                Ok(id) => self.source_id = Some(id),
                Err(e) => v.invalid(field, e),
            },
            "event_types" => {
                if s.event_types.len() > MAX_EVENT_TYPES {
                    v.invalid(field, format!("at most {MAX_EVENT_TYPES} patterns"));
                    return;
                }
                let mut ok = true;
                for (i, p) in s.event_types.iter().enumerate() {
                    if let Err(e) = EventTypePattern::parse(p) {
                        v.invalid(format!("{field}[{i}]"), e);
                        ok = false;
                    }
                }
                if ok {
                    self.event_types = s.event_types.clone();
                }
            }
            "filter" if s.filter.trim().is_empty() => self.filter = None,
            "filter" if s.filter.len() > MAX_FILTER_LEN => {
                v.add(field, ErrorReason::InvalidFilter, format!("must be at most {MAX_FILTER_LEN} bytes"))
            }
            "filter" => match Filter::compile(&s.filter) {
                Ok(_) => self.filter = Some(s.filter.clone()),
                Err(e) => v.add(field, ErrorReason::InvalidFilter, e),
            },
            // The transform oneof: each path sets its member when the request holds it, and
            // clears it when the request holds the other member or none.
            "template_id" => {
                use pb::subscription::Transform as T;
                match &s.transform {
                    Some(T::TemplateId(id)) => match id.parse::<TemplateId>() {
                        Ok(id) => self.transform = Some(Transform::Template(id)),
                        Err(e) => v.invalid(field, e),
                    },
                    _ if matches!(self.transform, Some(Transform::Template(_))) => self.transform = None,
                    _ => {}
                }
            }
            "template" => {
                use pb::subscription::Transform as T;
                match &s.transform {
                    Some(T::Template(body)) => match Template::compile(body) {
                        Ok(_) => self.transform = Some(Transform::Inline(body.clone())),
                        Err(e) => v.add(field, ErrorReason::InvalidTemplate, e),
                    },
                    _ if matches!(self.transform, Some(Transform::Inline(_))) => self.transform = None,
                    _ => {}
                }
            }
            "content_type" => match parse_content_type(&s.content_type) {
                Ok(c) => self.content_type = c,
                Err(e) => v.invalid(field, e),
            },
            "forward_headers" => self.forward_headers = s.forward_headers,
            "enabled" => self.enabled = s.enabled.unwrap_or(true),
            _ => unreachable!("unlisted path {path}"),
        }
    }

    fn check_complete(&self, v: &mut Violations) {
        if self.destination_id.is_none() {
            v.invalid("subscription.destination_id", "is required");
        }
    }
}

impl Resource for SubscriptionSpec {
    const KIND: &'static str = "subscription";

    fn new_id(_: &pb::Subscription) -> Result<SubscriptionId, String> {
        Ok(SubscriptionId::generate())
    }

    fn named_id(input: &pb::Subscription) -> (&str, &'static str) {
        (&input.id, "id")
    }

    /// The destination, source and template must exist in the request's project; another
    /// project's resource is reported exactly as a missing one.
    async fn check_references(&self, cx: &Cx<'_>, tx: &mut Tx) -> ApiResult<()> {
        async fn exists<D: Document>(cx: &Cx<'_>, tx: &mut Tx, id: &D::Id, kind: &'static str) -> ApiResult<()> {
            match cx.state.store.get_document_in::<D>(tx, cx.project, id).await {
                Ok(_) => Ok(()),
                Err(StoreError::NotFound) => Err(ApiError::not_found(kind, id.to_string())),
                Err(e) => Err(e.into()),
            }
        }
        if let Some(d) = &self.destination_id {
            exists::<DestinationSpec>(cx, tx, d, "destination").await?;
        }
        if let Some(s) = &self.source_id {
            exists::<SourceSpec>(cx, tx, s, "source").await?;
        }
        if let Some(Transform::Template(t)) = &self.transform {
            exists::<TemplateSpec>(cx, tx, t, "template").await?;
        }
        Ok(())
    }
}

fn subscription_proto(d: &Stored<SubscriptionSpec>) -> pb::Subscription {
    use pb::subscription::Transform as T;
    let s = &d.spec;
    pb::Subscription {
        id: d.id.to_string(),
        project_id: d.project_id.to_string(),
        name: s.name.clone(),
        description: s.description.clone(),
        destination_id: s.destination_id.map(|id| id.to_string()).unwrap_or_default(),
        source_id: s.source_id.map(|id| id.to_string()).unwrap_or_default(),
        event_types: s.event_types.clone(),
        filter: s.filter.clone().unwrap_or_default(),
        transform: s.transform.as_ref().map(|t| match t {
            Transform::Template(id) => T::TemplateId(id.to_string()),
            Transform::Inline(body) => T::Template(body.clone()),
        }),
        content_type: s.content_type.clone(),
        forward_headers: Some(s.forwards_headers()),
        enabled: Some(s.enabled),
        create_time: Some(to_timestamp(d.create_time)),
        update_time: Some(to_timestamp(d.update_time)),
    }
}

#[tonic::async_trait]
impl SubscriptionService for Subscriptions {
    async fn create_subscription(
        &self,
        req: Request<pb::CreateSubscriptionRequest>,
    ) -> Result<Response<pb::CreateSubscriptionResponse>, Status> {
        let cx = self.0.cx(&req, &req.get_ref().project_id, Access::Write).await?;
        let d = resource::create::<SubscriptionSpec>(&cx, req.get_ref().subscription.as_ref()).await?;
        Ok(Response::new(pb::CreateSubscriptionResponse { subscription: Some(subscription_proto(&d)) }))
    }

    async fn get_subscription(
        &self,
        req: Request<pb::GetSubscriptionRequest>,
    ) -> Result<Response<pb::GetSubscriptionResponse>, Status> {
        let cx = self.0.cx(&req, &req.get_ref().project_id, Access::Read).await?;
        let d = resource::get::<SubscriptionSpec>(&cx, "subscription_id", &req.get_ref().subscription_id).await?;
        Ok(Response::new(pb::GetSubscriptionResponse { subscription: Some(subscription_proto(&d)) }))
    }

    async fn list_subscriptions(
        &self,
        req: Request<pb::ListSubscriptionsRequest>,
    ) -> Result<Response<pb::ListSubscriptionsResponse>, Status> {
        let r = req.get_ref();
        let cx = self.0.cx(&req, &r.project_id, Access::Read).await?;
        let page = Page::parse(r.page_size, &r.page_token)?;
        let filter = DocumentFilter {
            destination_id: (!r.destination_id.is_empty())
                .then(|| parse_id::<DestinationId>("destination_id", &r.destination_id).map(|d| d.to_string()))
                .transpose()?,
            source_id: (!r.source_id.is_empty())
                .then(|| parse_id::<SourceId>("source_id", &r.source_id).map(|s| s.to_string()))
                .transpose()?,
            state: None,
        };
        let (rows, next_page_token) = resource::list::<SubscriptionSpec>(&cx, &page, &filter).await?;
        Ok(Response::new(pb::ListSubscriptionsResponse {
            subscriptions: rows.iter().map(subscription_proto).collect(),
            next_page_token,
        }))
    }

    async fn update_subscription(
        &self,
        req: Request<pb::UpdateSubscriptionRequest>,
    ) -> Result<Response<pb::UpdateSubscriptionResponse>, Status> {
        let r = req.get_ref();
        let cx = self.0.cx(&req, &r.project_id, Access::Write).await?;
        let d = resource::update::<SubscriptionSpec>(&cx, r.subscription.as_ref(), r.update_mask.as_ref()).await?;
        Ok(Response::new(pb::UpdateSubscriptionResponse { subscription: Some(subscription_proto(&d)) }))
    }

    async fn delete_subscription(
        &self,
        req: Request<pb::DeleteSubscriptionRequest>,
    ) -> Result<Response<pb::DeleteSubscriptionResponse>, Status> {
        let cx = self.0.cx(&req, &req.get_ref().project_id, Access::Write).await?;
        resource::delete::<SubscriptionSpec>(&cx, "subscription_id", &req.get_ref().subscription_id).await?;
        Ok(Response::new(pb::DeleteSubscriptionResponse {}))
    }
}
