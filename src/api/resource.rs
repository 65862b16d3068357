//! The shared create/get/list/update/delete flow of configuration resources.
//!
//! A resource says how each field-mask path of its proto message applies to its domain spec
//! ([`Resource::apply`]). Create applies every path to a default spec; update applies the
//! paths of the `update_mask` (or, per AIP-134, every populated path when the mask is empty) to
//! the stored spec. So one function validates a field for both, and an update touches nothing
//! it was not asked to.

use std::fmt::Display;
use std::str::FromStr;

use prost_types::FieldMask;

use super::audit::{self, Change};
use super::paging::Page;
use super::{AppState, Violations};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::ids::ProjectId;
use crate::proto::ErrorReason;
use crate::store::{Document, DocumentFilter, Stored, Tx};
use crate::timeutil::now_micros;

/// What a conversion needs: the server's settings and the project the request acts on.
#[derive(Clone)]
pub struct Cx<'a> {
    pub state: &'a AppState,
    pub project: ProjectId,
    /// The caller, for audit.
    pub principal: Principal,
    /// Whether fields are applied to a new resource (secrets may then be generated) rather
    /// than to a stored one.
    pub creating: bool,
}

impl Cx<'_> {
    /// Records a change to `kind` `id` in the project's feed, inside `tx`.
    pub async fn audit(&self, tx: &mut Tx, kind: &str, id: &str, change: Change<'_>) -> ApiResult<()> {
        let item = audit::activity(kind, id, change, Some(&self.principal.key_id));
        audit::record(&self.state.store, tx, &self.project.to_string(), &[item]).await
    }

    /// After a change to what routes events (subscriptions, templates, the catalog, project
    /// settings, destinations): this node's routing table is rebuilt and destination settings
    /// are reloaded on next use.
    pub fn routing_changed(&self) {
        self.state.intake.router().invalidate(self.project);
        self.state.ingest.invalidate();
        self.state.dispatcher.forget();
    }
}

/// A spec whose fields are set from a proto message, path by path.
pub trait Fields: Default + PartialEq + Clone {
    type Proto: Default + Send + Sync;
    /// The request field holding the message, prefix of violation paths, e.g. `"destination"`.
    const FIELD: &'static str;
    /// Field-mask paths an update may name (create applies them all).
    const PATHS: &'static [&'static str];

    /// Applies one field of `input` to the spec, recording what is invalid.
    fn apply(&mut self, input: &Self::Proto, path: &str, cx: &Cx<'_>, v: &mut Violations);
    /// Checks what create requires beyond each field being valid.
    fn check_complete(&self, _v: &mut Violations) {}
}

/// A configuration resource stored as a document.
pub trait Resource: Document + Fields {
    /// The resource's name in errors, e.g. `"destination"`.
    const KIND: &'static str;

    /// The id of a new resource: generated, or taken from the input (event type names).
    fn new_id(input: &Self::Proto) -> Result<Self::Id, String>;
    /// The id an update names, and the path it is read from.
    fn named_id(input: &Self::Proto) -> (&str, &'static str);

    /// Checks referenced resources exist in the same project, inside the write transaction.
    #[allow(async_fn_in_trait)]
    async fn check_references(&self, _cx: &Cx<'_>, _tx: &mut Tx) -> ApiResult<()> {
        Ok(())
    }
}

fn required(field: &str) -> ApiError {
    ApiError::invalid(field, ErrorReason::InvalidArgument, "is required")
}

/// Parses an id from a request, as `field`.
pub fn parse_resource_id<R: Resource>(field: &str, value: &str) -> ApiResult<R::Id>
where
    <R::Id as FromStr>::Err: Display,
{
    if value.is_empty() {
        return Err(required(field));
    }
    value
        .parse()
        .map_err(|e: <R::Id as FromStr>::Err| ApiError::invalid(field, ErrorReason::InvalidArgument, e.to_string()))
}

/// Validates `input` into a new spec; the caller may adjust it before [`insert`].
pub fn build<R: Resource>(cx: &Cx<'_>, input: Option<&R::Proto>) -> ApiResult<(R::Id, R)> {
    let input = input.ok_or_else(|| required(R::FIELD))?;
    let cx = &Cx { creating: true, ..cx.clone() };
    let mut v = Violations::default();
    let id = R::new_id(input).map_err(|e| v.invalid(format!("{}.{}", R::FIELD, R::named_id(input).1), e)).ok();
    let spec = new_spec::<R>(cx, input, v)?;
    Ok((id.expect("a failed id is a violation"), spec))
}

/// Applies every field of `input` to a default spec; `v` may already hold violations.
pub fn new_spec<F: Fields>(cx: &Cx<'_>, input: &F::Proto, mut v: Violations) -> ApiResult<F> {
    let mut spec = F::default();
    for path in F::PATHS {
        spec.apply(input, path, cx, &mut v);
    }
    if v.is_empty() {
        spec.check_complete(&mut v);
    }
    v.finish()?;
    Ok(spec)
}

/// Applies the fields an update names to `spec`.
pub fn apply_update<F: Fields>(cx: &Cx<'_>, spec: &mut F, input: &F::Proto, paths: &[&'static str]) -> ApiResult<()> {
    let mut v = Violations::default();
    for path in paths {
        spec.apply(input, path, cx, &mut v);
    }
    v.finish()
}

/// Stores a spec built by [`build`].
pub async fn insert<R: Resource>(cx: &Cx<'_>, id: R::Id, spec: R) -> ApiResult<Stored<R>> {
    let now = now_micros();
    let doc = Stored { id, project_id: cx.project, spec, create_time: now, update_time: now };
    let store = &cx.state.store;
    let mut tx = store.begin().await?;
    doc.spec.check_references(cx, &mut tx).await?;
    store.insert_document(&mut tx, &doc).await.map_err(|e| ApiError::from_store(e, R::KIND, doc.id.to_string()))?;
    cx.audit(&mut tx, R::KIND, &doc.id.to_string(), Change::Created).await?;
    tx.commit().await?;
    cx.routing_changed();
    Ok(doc)
}

pub async fn create<R: Resource>(cx: &Cx<'_>, input: Option<&R::Proto>) -> ApiResult<Stored<R>> {
    let (id, spec) = build::<R>(cx, input)?;
    insert(cx, id, spec).await
}

pub async fn get<R: Resource>(cx: &Cx<'_>, field: &str, id: &str) -> ApiResult<Stored<R>>
where
    <R::Id as FromStr>::Err: Display,
{
    let id = parse_resource_id::<R>(field, id)?;
    cx.state
        .store
        .get_document::<R>(cx.project, &id)
        .await
        .map_err(|e| ApiError::from_store(e, R::KIND, id.to_string()))
}

pub async fn list<R: Resource>(
    cx: &Cx<'_>,
    page: &Page,
    filter: &DocumentFilter,
) -> ApiResult<(Vec<Stored<R>>, String)> {
    let mut rows = cx.state.store.list_documents::<R>(cx.project, page.after(), page.fetch(), filter).await?;
    let next = page.finish(&mut rows, |d| d.id.to_string());
    Ok((rows, next))
}

pub async fn delete<R: Resource>(cx: &Cx<'_>, field: &str, id: &str) -> ApiResult<()>
where
    <R::Id as FromStr>::Err: Display,
{
    let id = parse_resource_id::<R>(field, id)?;
    let store = &cx.state.store;
    let mut tx = store.begin().await?;
    store
        .delete_document::<R>(&mut tx, cx.project, &id)
        .await
        .map_err(|e| ApiError::from_store(e, R::KIND, id.to_string()))?;
    cx.audit(&mut tx, R::KIND, &id.to_string(), Change::Deleted).await?;
    tx.commit().await?;
    cx.routing_changed();
    Ok(())
}

/// Applies the named (or populated) fields of `input` to the stored resource.
pub async fn update<R: Resource>(
    cx: &Cx<'_>,
    input: Option<&R::Proto>,
    mask: Option<&FieldMask>,
) -> ApiResult<Stored<R>>
where
    <R::Id as FromStr>::Err: Display,
{
    let input = input.ok_or_else(|| required(R::FIELD))?;
    let (named, id_path) = R::named_id(input);
    let id = parse_resource_id::<R>(&format!("{}.{id_path}", R::FIELD), named)?;
    let paths = update_paths::<R>(cx, input, mask)?;
    let store = &cx.state.store;
    let mut tx = store.begin().await?;
    let mut doc = store
        .get_document_in::<R>(&mut tx, cx.project, &id)
        .await
        .map_err(|e| ApiError::from_store(e, R::KIND, id.to_string()))?;
    let before = doc.spec.clone();
    apply_update(cx, &mut doc.spec, input, &paths)?;
    doc.spec.check_references(cx, &mut tx).await?;
    doc.update_time = now_micros();
    store.update_document(&mut tx, &doc).await.map_err(|e| ApiError::from_store(e, R::KIND, id.to_string()))?;
    let changed = changed_paths(cx, &before, input, &paths);
    cx.audit(&mut tx, R::KIND, &id.to_string(), Change::Updated(&changed)).await?;
    tx.commit().await?;
    cx.routing_changed();
    Ok(doc)
}

/// Which of the applied `paths` changed the stored spec `before`.
pub fn changed_paths<F: Fields>(
    cx: &Cx<'_>,
    before: &F,
    input: &F::Proto,
    paths: &[&'static str],
) -> Vec<&'static str> {
    paths
        .iter()
        .copied()
        .filter(|path| {
            let mut probe = before.clone();
            probe.apply(input, path, cx, &mut Violations::default());
            probe != *before
        })
        .collect()
}

/// The paths an update applies: the mask's, each checked against `R::PATHS`; or, with no mask,
/// every path the request populated — those where applying the request's field gives another
/// result than applying an empty message's (or fails, so an invalid value is still reported).
pub fn update_paths<F: Fields>(
    cx: &Cx<'_>,
    input: &F::Proto,
    mask: Option<&FieldMask>,
) -> ApiResult<Vec<&'static str>> {
    let empty = F::Proto::default();
    update_mask_paths(F::PATHS, mask, |path| {
        let (mut base, mut probe) = (F::default(), F::default());
        let mut v = Violations::default();
        base.apply(&empty, path, cx, &mut Violations::default());
        probe.apply(input, path, cx, &mut v);
        !v.is_empty() || probe != base
    })
}

/// Checks a field mask against the updatable `paths`; with no mask, keeps those `populated`.
fn update_mask_paths(
    paths: &'static [&'static str],
    mask: Option<&FieldMask>,
    populated: impl Fn(&str) -> bool,
) -> ApiResult<Vec<&'static str>> {
    match mask {
        // AIP-134: `*` replaces every updatable field, set or not.
        Some(m) if m.paths.len() == 1 && m.paths[0] == "*" => Ok(paths.to_vec()),
        Some(m) if !m.paths.is_empty() => {
            let mut out = Vec::with_capacity(m.paths.len());
            let mut v = Violations::default();
            for (i, p) in m.paths.iter().enumerate() {
                match paths.iter().find(|known| **known == p.as_str()) {
                    Some(known) => out.push(*known),
                    None => v.add(
                        format!("update_mask.paths[{i}]"),
                        ErrorReason::InvalidUpdateMask,
                        format!("`{p}` is not an updatable field (updatable: {})", paths.join(", ")),
                    ),
                }
            }
            v.finish()?;
            Ok(out)
        }
        _ => Ok(paths.iter().copied().filter(|p| populated(p)).collect()),
    }
}
