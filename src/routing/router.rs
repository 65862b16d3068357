//! Which subscriptions an event goes to, and in what shape.
//!
//! Each project's routing table (its subscriptions with compiled patterns, filters and
//! templates, plus its event type catalog) is loaded once and cached, so routing an event costs
//! no database read. A change made through this node invalidates the table at once; changes
//! made on other nodes are seen within [`CACHE_TTL`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::domain::event_type::EventTypeSpec;
use crate::domain::project::ProjectSpec;
use crate::domain::subscription::{SubscriptionSpec, Transform};
use crate::domain::template::{DEFAULT_CONTENT_TYPE, TemplateSpec};
use crate::ids::ProjectId;
use crate::routing::filter::{Filter, FilterContext, FilterInput};
use crate::routing::pattern::PatternSet;
use crate::routing::template::{Template, TemplateContext};
use crate::store::{Document, DocumentFilter, Store, StoreError, Stored};

pub const CACHE_TTL: Duration = Duration::from_secs(2);

/// One subscription, compiled.
pub struct Route {
    pub subscription_id: String,
    pub destination_id: String,
    /// As text, the form events carry it in.
    source_id: Option<String>,
    patterns: PatternSet,
    filter: Option<Filter>,
    transform: Option<(Template, String)>,
    forward_headers: bool,
}

/// A project's settings, catalog and routes.
pub struct ProjectRoutes {
    pub project: ProjectSpec,
    pub routes: Vec<Route>,
    /// Event types in the catalog, with their compiled payload schemas.
    pub event_types: HashMap<String, Option<Arc<jsonschema::Validator>>>,
}

/// An event as routing sees it.
pub struct RouteInput<'a> {
    pub event_id: &'a str,
    pub event_type: &'a str,
    pub source_id: Option<&'a str>,
    pub headers: &'a BTreeMap<String, String>,
    pub body: &'a serde_json::Value,
    pub labels: &'a BTreeMap<String, String>,
    pub receive_time: &'a str,
}

/// A match: where the event goes, and the body to send when a template reshapes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Routed {
    pub subscription_id: String,
    pub destination_id: String,
    pub body: Option<Vec<u8>>,
    pub content_type: Option<String>,
    pub forward_headers: bool,
}

impl ProjectRoutes {
    /// Whether some route reads an event's content (a filter or a template), so routing needs
    /// the event's headers, body and time.
    pub fn inspects_content(&self) -> bool {
        self.routes.iter().any(|r| r.filter.is_some() || r.transform.is_some())
    }

    pub fn route(&self, e: &RouteInput<'_>) -> Vec<Routed> {
        let source = e.source_id.unwrap_or("");
        let ctx = FilterContext {
            type_: e.event_type,
            source_id: source,
            headers: e.headers,
            body: e.body,
            labels: e.labels,
        };
        // Converted to CEL values once, and only when some route has a filter.
        let mut input: Option<FilterInput> = None;
        let mut out = Vec::new();
        for r in &self.routes {
            if r.source_id.as_deref().is_some_and(|s| e.source_id != Some(s)) || !r.patterns.matches(e.event_type) {
                continue;
            }
            if let Some(filter) = &r.filter {
                let input = input.get_or_insert_with(|| FilterInput::new(&ctx));
                match filter.matches_input(input) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(err) => {
                        tracing::debug!(subscription = %r.subscription_id, error = %err, "filter did not evaluate to true");
                        continue;
                    }
                }
            }
            let (body, content_type) = match &r.transform {
                None => (None, None),
                Some((template, content_type)) => {
                    let tctx = TemplateContext {
                        type_: e.event_type,
                        source_id: source,
                        headers: e.headers,
                        body: e.body,
                        labels: e.labels,
                        event_id: e.event_id,
                        receive_time: e.receive_time,
                    };
                    match template.render(&tctx) {
                        Ok(rendered) => (Some(rendered.into_bytes()), Some(content_type.clone())),
                        Err(err) => {
                            metrics::counter!("loft_template_render_failures_total").increment(1);
                            tracing::warn!(subscription = %r.subscription_id, error = %err, "template failed to render; event not routed there");
                            continue;
                        }
                    }
                }
            };
            out.push(Routed {
                subscription_id: r.subscription_id.clone(),
                destination_id: r.destination_id.clone(),
                body,
                content_type,
                forward_headers: r.forward_headers,
            });
        }
        out
    }
}

/// A table and when it was loaded.
type Cached = (Instant, Arc<ProjectRoutes>);

/// Loads and caches routing tables.
#[derive(Clone)]
pub struct Router {
    store: Store,
    cache: Arc<Mutex<HashMap<ProjectId, Cached>>>,
}

impl Router {
    pub fn new(store: Store) -> Self {
        Self { store, cache: Arc::default() }
    }

    /// Forgets a project's table after its subscriptions, templates, event types or settings
    /// changed.
    pub fn invalidate(&self, project: ProjectId) {
        self.cache.lock().expect("routing cache poisoned").remove(&project);
    }

    pub async fn routes(&self, project: ProjectId) -> Result<Arc<ProjectRoutes>, StoreError> {
        if let Some((at, table)) = self.cache.lock().expect("routing cache poisoned").get(&project)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(table.clone());
        }
        let table = Arc::new(self.load(project).await?);
        self.cache.lock().expect("routing cache poisoned").insert(project, (Instant::now(), table.clone()));
        Ok(table)
    }

    async fn load(&self, project: ProjectId) -> Result<ProjectRoutes, StoreError> {
        let record = self.store.get_project(project).await?;
        let spec: ProjectSpec = serde_json::from_str(&record.spec)?;
        let templates: HashMap<String, TemplateSpec> =
            all::<TemplateSpec>(&self.store, project).await?.into_iter().map(|t| (t.id.to_string(), t.spec)).collect();
        let mut routes = Vec::new();
        for sub in all::<SubscriptionSpec>(&self.store, project).await? {
            if !sub.spec.enabled {
                continue;
            }
            match compile(&sub, &templates) {
                Ok(route) => routes.push(route),
                // Stored specs were checked when written; this only happens if a newer version
                // wrote something this one cannot read.
                Err(e) => {
                    tracing::error!(subscription = %sub.id, error = %e, "subscription skipped: it does not compile")
                }
            }
        }
        let event_types = all::<EventTypeSpec>(&self.store, project)
            .await?
            .into_iter()
            .map(|t| {
                let validator = t.spec.schema.as_ref().and_then(|s| jsonschema::validator_for(s).ok()).map(Arc::new);
                (t.id.to_string(), validator)
            })
            .collect();
        Ok(ProjectRoutes { project: spec, routes, event_types })
    }
}

fn compile(sub: &Stored<SubscriptionSpec>, templates: &HashMap<String, TemplateSpec>) -> Result<Route, String> {
    let s = &sub.spec;
    let transform = match &s.transform {
        None => None,
        Some(Transform::Inline(body)) => {
            Some((Template::compile(body).map_err(|e| e.to_string())?, s.content_type.clone()))
        }
        Some(Transform::Template(id)) => {
            let t = templates.get(&id.to_string()).ok_or_else(|| format!("template {id} is missing"))?;
            // The subscription's content type wins when it is set to something else than the
            // default; otherwise the template's own applies.
            let content_type =
                if s.content_type != DEFAULT_CONTENT_TYPE { s.content_type.clone() } else { t.content_type.clone() };
            Some((Template::compile(&t.body).map_err(|e| e.to_string())?, content_type))
        }
    };
    Ok(Route {
        subscription_id: sub.id.to_string(),
        destination_id: s.destination_id.map(|d| d.to_string()).ok_or("no destination")?,
        source_id: s.source_id.map(|id| id.to_string()),
        patterns: PatternSet::parse(&s.event_types).map_err(|e| e.to_string())?,
        filter: s.filter.as_deref().map(Filter::compile).transpose().map_err(|e| e.to_string())?,
        forward_headers: s.forwards_headers(),
        transform,
    })
}

/// Every document of a kind in a project, page by page.
async fn all<D: Document>(store: &Store, project: ProjectId) -> Result<Vec<Stored<D>>, StoreError> {
    const PAGE: u32 = 1000;
    let mut out: Vec<Stored<D>> = Vec::new();
    loop {
        let after = out.last().map(|d| d.id.to_string());
        let page = store.list_documents::<D>(project, after.as_deref(), PAGE, &DocumentFilter::default()).await?;
        let done = page.len() < PAGE as usize;
        out.extend(page);
        if done {
            return Ok(out);
        }
    }
}
