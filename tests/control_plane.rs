//! The control plane end to end, on SQLite and PostgreSQL: every resource's RPCs, validation,
//! tenant isolation, roles, pagination, field masks and write-only secrets.

mod common;

use common::{Clients, TestServer, assert_error, captured_logs, violation_fields};
use loft::proto as pb;
use prost_types::FieldMask;
use tonic::Code;

on_both_backends!(
    projects_crud_and_cascade,
    project_validation_stores_nothing,
    api_key_lifecycle,
    roles_are_enforced,
    tenant_isolation_for_every_resource,
    concurrent_reads_across_projects_see_only_their_own,
    sources_crud_secrets_and_rotation,
    source_validation,
    destinations_crud_secrets_and_rotation,
    destination_validation,
    destination_pause_resume_and_state_filter,
    subscriptions_validate_and_reference,
    event_types_and_templates,
    pagination_is_stable_and_tokens_are_checked,
    field_masks_touch_only_named_fields,
);

async fn project(admin: &Clients, name: &str) -> pb::Project {
    let req = pb::CreateProjectRequest { project: Some(pb::Project { name: name.into(), ..Default::default() }) };
    admin.projects.clone().create_project(req).await.expect("create project").into_inner().project.unwrap()
}

/// A key of `role` in `project`; returns its secret.
async fn project_key(admin: &Clients, project: &str, role: pb::ApiKeyRole) -> String {
    let key = pb::ApiKey { project_id: project.into(), name: "test".into(), role: role as i32, ..Default::default() };
    admin
        .keys
        .clone()
        .create_api_key(pb::CreateApiKeyRequest { api_key: Some(key) })
        .await
        .expect("create key")
        .into_inner()
        .secret
}

fn destination(url: &str) -> pb::Destination {
    pb::Destination { name: "receiver".into(), url: url.into(), ..Default::default() }
}

async fn create_destination(c: &Clients, project: &str, d: pb::Destination) -> pb::CreateDestinationResponse {
    c.destinations
        .clone()
        .create_destination(pb::CreateDestinationRequest { project_id: project.into(), destination: Some(d) })
        .await
        .expect("create destination")
        .into_inner()
}

async fn projects_crud_and_cascade(server: TestServer) {
    let admin = server.admin().await;
    let p = project(&admin, "Billing").await;
    assert!(p.id.starts_with("prj_"));
    assert_eq!(p.retention.as_ref().unwrap().seconds, 30 * 24 * 3600, "default retention is 30 days");
    let schedule = match p.default_retry_policy.unwrap().policy.unwrap() {
        pb::retry_policy::Policy::Schedule(s) => s.delays.iter().map(|d| d.seconds).collect::<Vec<_>>(),
        other => panic!("default policy is a schedule, got {other:?}"),
    };
    assert_eq!(schedule, vec![5, 300, 1800, 7200, 18000, 36000, 36000], "Standard Webhooks schedule");

    let got = admin
        .projects
        .clone()
        .get_project(pb::GetProjectRequest { project_id: p.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.project.unwrap().name, "Billing");

    let update = pb::UpdateProjectRequest {
        project: Some(pb::Project { id: p.id.clone(), strict_event_types: true, ..Default::default() }),
        update_mask: Some(FieldMask { paths: vec!["strict_event_types".into()] }),
    };
    let updated = admin.projects.clone().update_project(update).await.unwrap().into_inner().project.unwrap();
    assert!(updated.strict_event_types);
    assert_eq!(updated.name, "Billing", "name untouched by the mask");

    // Deleting cascades to everything the project owns, its keys included.
    let key = project_key(&admin, &p.id, pb::ApiKeyRole::Editor).await;
    let dst = create_destination(&admin, &p.id, destination("https://example.com/hook")).await.destination.unwrap();
    let sub = pb::Subscription { destination_id: dst.id.clone(), ..Default::default() };
    admin
        .subscriptions
        .clone()
        .create_subscription(pb::CreateSubscriptionRequest { project_id: p.id.clone(), subscription: Some(sub) })
        .await
        .unwrap();
    admin.projects.clone().delete_project(pb::DeleteProjectRequest { project_id: p.id.clone() }).await.unwrap();
    assert_error(
        admin.projects.clone().get_project(pb::GetProjectRequest { project_id: p.id.clone() }).await,
        Code::NotFound,
        "RESOURCE_NOT_FOUND",
    );
    let gone = server.clients(&key).await;
    assert_error(
        gone.destinations.clone().list_destinations(pb::ListDestinationsRequest::default()).await,
        Code::Unauthenticated,
        "API_KEY_INVALID",
    );
    let listed = admin.projects.clone().list_projects(pb::ListProjectsRequest::default()).await.unwrap().into_inner();
    assert!(listed.projects.iter().all(|x| x.id != p.id));
}

async fn project_validation_stores_nothing(server: TestServer) {
    let admin = server.admin().await;
    let bad = pb::CreateProjectRequest {
        project: Some(pb::Project {
            name: "".into(),
            retention: Some(prost_types::Duration { seconds: 60, nanos: 0 }),
            ..Default::default()
        }),
    };
    let status =
        assert_error(admin.projects.clone().create_project(bad).await, Code::InvalidArgument, "INVALID_ARGUMENT");
    let fields = violation_fields(&status);
    assert!(
        fields.contains(&"project.name".to_owned()) && fields.contains(&"project.retention".to_owned()),
        "{fields:?}"
    );
    let listed = admin.projects.clone().list_projects(pb::ListProjectsRequest::default()).await.unwrap().into_inner();
    assert!(listed.projects.is_empty(), "nothing stored");
    assert_error(
        admin.projects.clone().get_project(pb::GetProjectRequest { project_id: "prj_nope".into() }).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
}

async fn api_key_lifecycle(server: TestServer) {
    let admin = server.admin().await;
    let p = project(&admin, "A").await;
    let created = admin
        .keys
        .clone()
        .create_api_key(pb::CreateApiKeyRequest {
            api_key: Some(pb::ApiKey {
                project_id: p.id.clone(),
                name: "ci".into(),
                role: pb::ApiKeyRole::Editor as i32,
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let secret = created.secret.clone();
    let key = created.api_key.unwrap();
    assert!(secret.starts_with("loft_") && secret.len() == 37, "loft_ + 32 base62");
    assert!(secret.starts_with(&key.prefix) && key.prefix.len() < 20);
    assert_eq!(key.project_id, p.id);

    // The key works, defaults to its project, and its use is recorded.
    let editor = server.clients(&secret).await;
    let dst = create_destination(&editor, "", destination("https://example.com/a")).await.destination.unwrap();
    assert_eq!(dst.project_id, p.id);
    let mut seen = None;
    for _ in 0..50 {
        let k = admin
            .keys
            .clone()
            .get_api_key(pb::GetApiKeyRequest { api_key_id: key.id.clone() })
            .await
            .unwrap()
            .into_inner()
            .api_key
            .unwrap();
        if k.last_used_time.is_some() {
            seen = k.last_used_time;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(seen.is_some(), "last_used_time recorded");
    // Get/List never show the secret or its hash.
    let listed = admin
        .keys
        .clone()
        .list_api_keys(pb::ListApiKeysRequest { project_id: p.id.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert!(!format!("{listed:?}").contains(&secret[12..]));

    // Renaming touches only the name.
    let renamed = admin
        .keys
        .clone()
        .update_api_key(pb::UpdateApiKeyRequest {
            api_key: Some(pb::ApiKey { id: key.id.clone(), name: "renamed".into(), ..Default::default() }),
            update_mask: Some(FieldMask { paths: vec!["name".into()] }),
        })
        .await
        .unwrap()
        .into_inner()
        .api_key
        .unwrap();
    assert_eq!((renamed.name.as_str(), renamed.role), ("renamed", pb::ApiKeyRole::Editor as i32));
    assert_error(
        admin
            .keys
            .clone()
            .update_api_key(pb::UpdateApiKeyRequest {
                api_key: Some(pb::ApiKey {
                    id: key.id.clone(),
                    role: pb::ApiKeyRole::Admin as i32,
                    ..Default::default()
                }),
                update_mask: Some(FieldMask { paths: vec!["role".into()] }),
            })
            .await,
        Code::InvalidArgument,
        "INVALID_UPDATE_MASK",
    );

    // Revoked keys stop working at once.
    let revoked = admin
        .keys
        .clone()
        .revoke_api_key(pb::RevokeApiKeyRequest { api_key_id: key.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert!(revoked.api_key.unwrap().revoke_time.is_some());
    assert_error(
        editor.destinations.clone().list_destinations(pb::ListDestinationsRequest::default()).await,
        Code::Unauthenticated,
        "API_KEY_REVOKED",
    );

    // Expired keys too.
    let soon = std::time::SystemTime::now() + std::time::Duration::from_millis(1500);
    let short = admin
        .keys
        .clone()
        .create_api_key(pb::CreateApiKeyRequest {
            api_key: Some(pb::ApiKey {
                project_id: p.id.clone(),
                role: pb::ApiKeyRole::Viewer as i32,
                expire_time: Some(soon.into()),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let viewer = server.clients(&short.secret).await;
    viewer
        .destinations
        .clone()
        .list_destinations(pb::ListDestinationsRequest::default())
        .await
        .expect("valid before expiry");
    tokio::time::sleep(std::time::Duration::from_millis(2600)).await;
    assert_error(
        viewer.destinations.clone().list_destinations(pb::ListDestinationsRequest::default()).await,
        Code::Unauthenticated,
        "API_KEY_EXPIRED",
    );
    let past = admin
        .keys
        .clone()
        .create_api_key(pb::CreateApiKeyRequest {
            api_key: Some(pb::ApiKey {
                project_id: p.id.clone(),
                role: pb::ApiKeyRole::Viewer as i32,
                expire_time: Some(std::time::SystemTime::UNIX_EPOCH.into()),
                ..Default::default()
            }),
        })
        .await;
    assert_eq!(
        violation_fields(&assert_error(past, Code::InvalidArgument, "INVALID_ARGUMENT")),
        vec!["api_key.expire_time"]
    );

    // Missing and malformed keys.
    let anonymous = server.clients("").await;
    assert_error(
        anonymous.projects.clone().list_projects(pb::ListProjectsRequest::default()).await,
        Code::Unauthenticated,
        "API_KEY_MISSING",
    );
    let forged = server.clients("loft_0000000000000000000000000000000X").await;
    assert_error(
        forged.projects.clone().list_projects(pb::ListProjectsRequest::default()).await,
        Code::Unauthenticated,
        "API_KEY_INVALID",
    );

    // Deleting removes it from the list.
    admin.keys.clone().delete_api_key(pb::DeleteApiKeyRequest { api_key_id: key.id.clone() }).await.unwrap();
    assert_error(
        admin.keys.clone().get_api_key(pb::GetApiKeyRequest { api_key_id: key.id.clone() }).await,
        Code::NotFound,
        "RESOURCE_NOT_FOUND",
    );
    assert!(!captured_logs().contains(&secret[5..]), "key secret never logged");
}

async fn roles_are_enforced(server: TestServer) {
    let admin = server.admin().await;
    let p = project(&admin, "Roles").await;
    let viewer = server.clients(&project_key(&admin, &p.id, pb::ApiKeyRole::Viewer).await).await;
    let publisher = server.clients(&project_key(&admin, &p.id, pb::ApiKeyRole::Publisher).await).await;
    let editor = server.clients(&project_key(&admin, &p.id, pb::ApiKeyRole::Editor).await).await;
    let dst = create_destination(&editor, "", destination("https://example.com/x")).await.destination.unwrap();

    // VIEWER reads but does not write or read secrets.
    viewer
        .destinations
        .clone()
        .get_destination(pb::GetDestinationRequest { destination_id: dst.id.clone(), ..Default::default() })
        .await
        .unwrap();
    let denied = viewer
        .destinations
        .clone()
        .create_destination(pb::CreateDestinationRequest {
            destination: Some(destination("https://example.com/y")),
            ..Default::default()
        })
        .await;
    assert_error(denied, Code::PermissionDenied, "PERMISSION_DENIED");
    assert_error(
        viewer
            .destinations
            .clone()
            .get_destination_secret(pb::GetDestinationSecretRequest {
                destination_id: dst.id.clone(),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    // VIEWER may render templates (read-only).
    viewer
        .templates
        .clone()
        .render_template(pb::RenderTemplateRequest {
            template: Some(pb::render_template_request::Template::Body("{{ type }}".into())),
            input: Some(pb::render_template_request::Input::Sample(pb::TemplateSample {
                r#type: "a.b".into(),
                json: None,
            })),
            ..Default::default()
        })
        .await
        .unwrap();
    // PUBLISHER may only publish.
    assert_error(
        publisher
            .destinations
            .clone()
            .get_destination(pb::GetDestinationRequest { destination_id: dst.id.clone(), ..Default::default() })
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    // EDITOR reads secrets, but creates no projects and no admin keys.
    editor
        .destinations
        .clone()
        .get_destination_secret(pb::GetDestinationSecretRequest {
            destination_id: dst.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_error(
        editor
            .projects
            .clone()
            .create_project(pb::CreateProjectRequest {
                project: Some(pb::Project { name: "x".into(), ..Default::default() }),
            })
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    let admin_key = pb::ApiKey { role: pb::ApiKeyRole::Admin as i32, ..Default::default() };
    assert_error(
        editor.keys.clone().create_api_key(pb::CreateApiKeyRequest { api_key: Some(admin_key) }).await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    // EDITOR manages its own project's keys.
    let k = pb::ApiKey { role: pb::ApiKeyRole::Viewer as i32, ..Default::default() };
    let made =
        editor.keys.clone().create_api_key(pb::CreateApiKeyRequest { api_key: Some(k) }).await.unwrap().into_inner();
    assert_eq!(made.api_key.unwrap().project_id, p.id);
    // An ADMIN key must name the project of project-scoped calls.
    let status = assert_error(
        admin.destinations.clone().list_destinations(pb::ListDestinationsRequest::default()).await,
        Code::InvalidArgument,
        "PROJECT_REQUIRED",
    );
    assert_eq!(violation_fields(&status), vec!["project_id"]);
    let status = assert_error(
        admin
            .destinations
            .clone()
            .list_destinations(pb::ListDestinationsRequest {
                project_id: "prj_01J00000000000000000000000".into(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "RESOURCE_NOT_FOUND",
    );
    let details = tonic_types::StatusExt::get_error_details(&status);
    assert_eq!(details.resource_info().expect("ResourceInfo detail").resource_type, "loft.v1.Project");
}

/// Many `GetDestination` calls at once, from three projects, each asking for its own and for the
/// others' destinations. On PostgreSQL concurrent reads share queries (`pg_readers::Batched`):
/// every answer must still be the caller's own row, and a foreign id NOT_FOUND.
async fn concurrent_reads_across_projects_see_only_their_own(server: TestServer) {
    let admin = server.admin().await;
    let mut tenants = Vec::new();
    for name in ["A", "B", "C"] {
        let p = project(&admin, name).await;
        let editor = server.clients(&project_key(&admin, &p.id, pb::ApiKeyRole::Editor).await).await;
        let url = format!("https://example.com/{name}");
        let d = create_destination(&editor, "", destination(&url)).await.destination.unwrap();
        tenants.push((editor, d));
    }
    let mut calls = tokio::task::JoinSet::new();
    for round in 0..20 {
        for (caller, (clients, own)) in tenants.iter().enumerate() {
            let (_, asked) = &tenants[(caller + round) % tenants.len()];
            let (mut destinations, own, asked) = (clients.destinations.clone(), own.clone(), asked.clone());
            calls.spawn(async move {
                let got = destinations
                    .get_destination(pb::GetDestinationRequest {
                        destination_id: asked.id.clone(),
                        ..Default::default()
                    })
                    .await;
                (own, asked, got)
            });
        }
    }
    let (mut found, mut refused) = (0, 0);
    while let Some(done) = calls.join_next().await {
        let (own, asked, got) = done.unwrap();
        if asked.id == own.id {
            let d = got.expect("own destination").into_inner().destination.unwrap();
            assert_eq!((d.id, d.url, d.project_id), (own.id, own.url, own.project_id));
            found += 1;
        } else {
            let status = got.expect_err("another project's destination");
            assert_eq!(status.code(), Code::NotFound, "{status:?}");
            refused += 1;
        }
    }
    assert_eq!((found, refused), (21, 39));
}

async fn tenant_isolation_for_every_resource(server: TestServer) {
    let admin = server.admin().await;
    let a = project(&admin, "A").await;
    let b = project(&admin, "B").await;
    let a_editor = server.clients(&project_key(&admin, &a.id, pb::ApiKeyRole::Editor).await).await;
    let b_editor = server.clients(&project_key(&admin, &b.id, pb::ApiKeyRole::Editor).await).await;

    let dst = create_destination(&b_editor, "", destination("https://example.com/b")).await.destination.unwrap();
    let src = b_editor
        .sources
        .clone()
        .create_source(pb::CreateSourceRequest {
            source: Some(pb::Source { name: "b".into(), ..Default::default() }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .source
        .unwrap();
    let tpl = b_editor
        .templates
        .clone()
        .create_template(pb::CreateTemplateRequest {
            template: Some(pb::Template { body: "{}".into(), ..Default::default() }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .template
        .unwrap();
    let sub = b_editor
        .subscriptions
        .clone()
        .create_subscription(pb::CreateSubscriptionRequest {
            subscription: Some(pb::Subscription { destination_id: dst.id.clone(), ..Default::default() }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .subscription
        .unwrap();
    let et = b_editor
        .event_types
        .clone()
        .create_event_type(pb::CreateEventTypeRequest {
            event_type: Some(pb::EventType { name: "invoice.paid".into(), ..Default::default() }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .event_type
        .unwrap();

    let nf = |r: Result<_, tonic::Status>| {
        let s = assert_error(r.map(|_: tonic::Response<()>| ()), Code::NotFound, "RESOURCE_NOT_FOUND");
        s.message().to_owned()
    };
    // A's key sees none of B's resources: the same NOT_FOUND as for a missing id.
    let c = a_editor.clone();
    let m = nf(c
        .destinations
        .clone()
        .get_destination(pb::GetDestinationRequest { destination_id: dst.id.clone(), ..Default::default() })
        .await
        .map(|_| tonic::Response::new(())));
    assert!(m.contains(&dst.id));
    nf(c.sources
        .clone()
        .get_source(pb::GetSourceRequest { source_id: src.id.clone(), ..Default::default() })
        .await
        .map(|_| tonic::Response::new(())));
    nf(c.templates
        .clone()
        .get_template(pb::GetTemplateRequest { template_id: tpl.id.clone(), ..Default::default() })
        .await
        .map(|_| tonic::Response::new(())));
    nf(c.subscriptions
        .clone()
        .get_subscription(pb::GetSubscriptionRequest { subscription_id: sub.id.clone(), ..Default::default() })
        .await
        .map(|_| tonic::Response::new(())));
    nf(c.event_types
        .clone()
        .get_event_type(pb::GetEventTypeRequest { event_type_name: et.name.clone(), ..Default::default() })
        .await
        .map(|_| tonic::Response::new(())));
    nf(c.destinations
        .clone()
        .delete_destination(pb::DeleteDestinationRequest { destination_id: dst.id.clone(), ..Default::default() })
        .await
        .map(|_| tonic::Response::new(())));
    nf(c.sources
        .clone()
        .delete_source(pb::DeleteSourceRequest { source_id: src.id.clone(), ..Default::default() })
        .await
        .map(|_| tonic::Response::new(())));
    nf(c.subscriptions
        .clone()
        .delete_subscription(pb::DeleteSubscriptionRequest { subscription_id: sub.id.clone(), ..Default::default() })
        .await
        .map(|_| tonic::Response::new(())));
    nf(c.templates
        .clone()
        .delete_template(pb::DeleteTemplateRequest { template_id: tpl.id.clone(), ..Default::default() })
        .await
        .map(|_| tonic::Response::new(())));
    nf(c.event_types
        .clone()
        .delete_event_type(pb::DeleteEventTypeRequest { event_type_name: et.name.clone(), ..Default::default() })
        .await
        .map(|_| tonic::Response::new(())));
    nf(c.destinations
        .clone()
        .update_destination(pb::UpdateDestinationRequest {
            destination: Some(pb::Destination { id: dst.id.clone(), name: "hijacked".into(), ..Default::default() }),
            ..Default::default()
        })
        .await
        .map(|_| tonic::Response::new(())));
    nf(c.destinations
        .clone()
        .pause_destination(pb::PauseDestinationRequest { destination_id: dst.id.clone(), ..Default::default() })
        .await
        .map(|_| tonic::Response::new(())));
    nf(c.destinations
        .clone()
        .get_destination_secret(pb::GetDestinationSecretRequest {
            destination_id: dst.id.clone(),
            ..Default::default()
        })
        .await
        .map(|_| tonic::Response::new(())));
    nf(c.destinations
        .clone()
        .rotate_destination_secret(pb::RotateDestinationSecretRequest {
            destination_id: dst.id.clone(),
            ..Default::default()
        })
        .await
        .map(|_| tonic::Response::new(())));
    nf(c.sources
        .clone()
        .rotate_source_secret(pb::RotateSourceSecretRequest { source_id: src.id.clone(), ..Default::default() })
        .await
        .map(|_| tonic::Response::new(())));
    // Naming B's project explicitly is NOT_FOUND too.
    nf(c.destinations
        .clone()
        .list_destinations(pb::ListDestinationsRequest { project_id: b.id.clone(), ..Default::default() })
        .await
        .map(|_| tonic::Response::new(())));
    nf(c.projects
        .clone()
        .get_project(pb::GetProjectRequest { project_id: b.id.clone() })
        .await
        .map(|_| tonic::Response::new(())));
    nf(c.keys
        .clone()
        .list_api_keys(pb::ListApiKeysRequest { project_id: b.id.clone(), ..Default::default() })
        .await
        .map(|_| tonic::Response::new(())));
    // Cross-project references: A's subscription cannot point at B's destination, source or template.
    for s in [
        pb::Subscription { destination_id: dst.id.clone(), ..Default::default() },
        pb::Subscription {
            destination_id: create_destination(&a_editor, "", destination("https://example.com/a"))
                .await
                .destination
                .unwrap()
                .id,
            source_id: src.id.clone(),
            transform: Some(pb::subscription::Transform::TemplateId(tpl.id.clone())),
            ..Default::default()
        },
    ] {
        nf(c.subscriptions
            .clone()
            .create_subscription(pb::CreateSubscriptionRequest { subscription: Some(s), ..Default::default() })
            .await
            .map(|_| tonic::Response::new(())));
    }
    // Lists show only A's own.
    let listed =
        c.destinations.clone().list_destinations(pb::ListDestinationsRequest::default()).await.unwrap().into_inner();
    assert_eq!(listed.destinations.len(), 1);
    assert!(listed.destinations.iter().all(|d| d.project_id == a.id));
    let projects = c.projects.clone().list_projects(pb::ListProjectsRequest::default()).await.unwrap().into_inner();
    assert_eq!(projects.projects.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), vec![a.id.as_str()]);
    // B's resources are intact.
    let d = b_editor
        .destinations
        .clone()
        .get_destination(pb::GetDestinationRequest { destination_id: dst.id.clone(), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(d.into_inner().destination.unwrap().name, "receiver");
}

async fn sources_crud_secrets_and_rotation(server: TestServer) {
    let admin = server.admin().await;
    let p = project(&admin, "S").await;
    let c = server.clients(&project_key(&admin, &p.id, pb::ApiKeyRole::Editor).await).await;
    let source = pb::Source {
        name: "stripe".into(),
        auth: Some(pb::SourceAuth {
            method: Some(pb::source_auth::Method::Signature(pb::SignatureAuth {
                scheme: pb::SignatureScheme::Stripe as i32,
                secret: "whsec_stripeProvidedSecretValue123".into(),
                ..Default::default()
            })),
        }),
        event_type_from: Some(pb::EventTypeFrom { from: Some(pb::event_type_from::From::JsonPointer("/type".into())) }),
        allowed_methods: vec!["post".into(), "PUT".into()],
        ..Default::default()
    };
    let created = c
        .sources
        .clone()
        .create_source(pb::CreateSourceRequest { source: Some(source), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.secret, "whsec_stripeProvidedSecretValue123", "create reveals the secret once");
    let s = created.source.unwrap();
    assert_eq!(s.ingest_url, format!("{}/in/{}", server.http_url(), s.id));
    assert_eq!(s.allowed_methods, vec!["POST", "PUT"]);
    assert_eq!(s.max_body_bytes, 10 * 1024 * 1024);
    let sig = |s: &pb::Source| match s.auth.clone().unwrap().method.unwrap() {
        pb::source_auth::Method::Signature(sig) => sig,
        other => panic!("{other:?}"),
    };
    assert_eq!(sig(&s).secret, "", "write-only");
    assert_eq!(sig(&s).secret_hint, "whsec_…e123");
    assert_eq!(sig(&s).tolerance.unwrap().seconds, 300);

    let got = c
        .sources
        .clone()
        .get_source(pb::GetSourceRequest { source_id: s.id.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .source
        .unwrap();
    assert_eq!(got, s);
    let listed = c.sources.clone().list_sources(pb::ListSourcesRequest::default()).await.unwrap().into_inner();
    assert!(!format!("{listed:?}").contains("stripeProvidedSecret"));

    // Changing only the tolerance keeps the stored secret.
    let mut auth = sig(&s);
    auth.tolerance = Some(prost_types::Duration { seconds: 60, nanos: 0 });
    auth.secret_hint = String::new();
    let updated = c
        .sources
        .clone()
        .update_source(pb::UpdateSourceRequest {
            source: Some(pb::Source {
                id: s.id.clone(),
                auth: Some(pb::SourceAuth { method: Some(pb::source_auth::Method::Signature(auth)) }),
                ..Default::default()
            }),
            update_mask: Some(FieldMask { paths: vec!["auth".into()] }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .source
        .unwrap();
    assert_eq!((sig(&updated).tolerance.unwrap().seconds, sig(&updated).secret_hint.as_str()), (60, "whsec_…e123"));

    // Rotation replaces the secret; Standard Webhooks sources get a generated one.
    let rotated = c
        .sources
        .clone()
        .rotate_source_secret(pb::RotateSourceSecretRequest {
            source_id: s.id.clone(),
            secret: "whsec_rotatedStripeSecretValue999".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rotated.secret, "whsec_rotatedStripeSecretValue999");
    assert_eq!(sig(&rotated.source.unwrap()).secret_hint, "whsec_…e999");
    let sw = pb::Source {
        auth: Some(pb::SourceAuth {
            method: Some(pb::source_auth::Method::Signature(pb::SignatureAuth {
                scheme: pb::SignatureScheme::StandardWebhooks as i32,
                ..Default::default()
            })),
        }),
        ..Default::default()
    };
    let generated = c
        .sources
        .clone()
        .create_source(pb::CreateSourceRequest { source: Some(sw), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert!(generated.secret.starts_with("whsec_"), "generated Standard Webhooks secret");
    loft::signing::SigningSecret::parse(&generated.secret).expect("a valid whsec_ secret");
    let none = c
        .sources
        .clone()
        .create_source(pb::CreateSourceRequest { source: Some(pb::Source::default()), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_error(
        c.sources
            .clone()
            .rotate_source_secret(pb::RotateSourceSecretRequest {
                source_id: none.source.unwrap().id,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );

    c.sources
        .clone()
        .delete_source(pb::DeleteSourceRequest { source_id: s.id.clone(), ..Default::default() })
        .await
        .unwrap();
    assert_error(
        c.sources.clone().get_source(pb::GetSourceRequest { source_id: s.id.clone(), ..Default::default() }).await,
        Code::NotFound,
        "RESOURCE_NOT_FOUND",
    );
    let logs = captured_logs();
    for secret in ["stripeProvidedSecretValue123", "rotatedStripeSecretValue999", &generated.secret[6..]] {
        assert!(!logs.contains(secret), "secret in logs");
    }
}

async fn source_validation(server: TestServer) {
    let admin = server.admin().await;
    let p = project(&admin, "V").await;
    let c = server.clients(&project_key(&admin, &p.id, pb::ApiKeyRole::Editor).await).await;
    let sig = |scheme: pb::SignatureScheme, secret: &str, header: &str| pb::SourceAuth {
        method: Some(pb::source_auth::Method::Signature(pb::SignatureAuth {
            scheme: scheme as i32,
            secret: secret.into(),
            header: header.into(),
            ..Default::default()
        })),
    };
    let cases: Vec<(pb::Source, &str, &str)> = vec![
        (
            pb::Source {
                auth: Some(sig(pb::SignatureScheme::StandardWebhooks, "whsec_!!notbase64", "")),
                ..Default::default()
            },
            "source.auth.signature.secret",
            "INVALID_SECRET",
        ),
        (
            pb::Source { auth: Some(sig(pb::SignatureScheme::HmacSha256Hex, "s3cret", "")), ..Default::default() },
            "source.auth.signature.header",
            "INVALID_ARGUMENT",
        ),
        (
            pb::Source { auth: Some(sig(pb::SignatureScheme::Github, "", "")), ..Default::default() },
            "source.auth.signature.secret",
            "INVALID_ARGUMENT",
        ),
        (
            pb::Source { auth: Some(sig(pb::SignatureScheme::Unspecified, "x", "")), ..Default::default() },
            "source.auth.signature.scheme",
            "INVALID_ARGUMENT",
        ),
        (
            pb::Source {
                event_type_from: Some(pb::EventTypeFrom {
                    from: Some(pb::event_type_from::From::JsonPointer("type".into())),
                }),
                ..Default::default()
            },
            "source.event_type_from",
            "INVALID_ARGUMENT",
        ),
        (
            pb::Source {
                event_type_from: Some(pb::EventTypeFrom {
                    from: Some(pb::event_type_from::From::StaticType("bad..type".into())),
                }),
                ..Default::default()
            },
            "source.event_type_from",
            "INVALID_ARGUMENT",
        ),
        (pb::Source { max_body_bytes: 1 << 40, ..Default::default() }, "source.max_body_bytes", "INVALID_ARGUMENT"),
        (
            pb::Source { allowed_methods: vec!["TRACE".into()], ..Default::default() },
            "source.allowed_methods[0]",
            "INVALID_ARGUMENT",
        ),
        (
            pb::Source { rate_limit: Some(pb::RateLimit { per_second: 0, burst: 5 }), ..Default::default() },
            "source.rate_limit",
            "INVALID_ARGUMENT",
        ),
        (
            pb::Source {
                response: Some(pb::SourceResponse { status_code: 500, ..Default::default() }),
                ..Default::default()
            },
            "source.response.status_code",
            "INVALID_ARGUMENT",
        ),
        (
            pb::Source { json_schema: loft_json_struct(serde_json::json!({"type": "nonsense"})), ..Default::default() },
            "source.json_schema",
            "INVALID_JSON_SCHEMA",
        ),
    ];
    for (source, field, reason) in cases {
        let status = assert_error(
            c.sources
                .clone()
                .create_source(pb::CreateSourceRequest { source: Some(source), ..Default::default() })
                .await,
            Code::InvalidArgument,
            reason,
        );
        assert_eq!(violation_fields(&status), vec![field], "{status:?}");
    }
    let listed = c.sources.clone().list_sources(pb::ListSourcesRequest::default()).await.unwrap().into_inner();
    assert!(listed.sources.is_empty(), "no invalid source stored");
}

fn loft_json_struct(j: serde_json::Value) -> Option<prost_types::Struct> {
    let serde_json::Value::Object(map) = j else { return None };
    fn value(j: &serde_json::Value) -> prost_types::Value {
        use prost_types::value::Kind;
        prost_types::Value {
            kind: Some(match j {
                serde_json::Value::Null => Kind::NullValue(0),
                serde_json::Value::Bool(b) => Kind::BoolValue(*b),
                serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap()),
                serde_json::Value::String(s) => Kind::StringValue(s.clone()),
                serde_json::Value::Array(a) => {
                    Kind::ListValue(prost_types::ListValue { values: a.iter().map(value).collect() })
                }
                serde_json::Value::Object(o) => Kind::StructValue(prost_types::Struct {
                    fields: o.iter().map(|(k, v)| (k.clone(), value(v))).collect(),
                }),
            }),
        }
    }
    Some(prost_types::Struct { fields: map.iter().map(|(k, v)| (k.clone(), value(v))).collect() })
}

async fn destinations_crud_secrets_and_rotation(server: TestServer) {
    let admin = server.admin().await;
    let p = project(&admin, "D").await;
    let c = server.clients(&project_key(&admin, &p.id, pb::ApiKeyRole::Editor).await).await;
    let created = create_destination(
        &c,
        "",
        pb::Destination {
            name: "orders".into(),
            url: "https://example.com/hooks".into(),
            headers: vec![pb::Header { name: "X-Team".into(), value: "billing".into() }],
            auth: Some(pb::DestinationAuth {
                method: Some(pb::destination_auth::Method::Bearer(pb::BearerAuth {
                    token: "tok-abcdef-123456".into(),
                    ..Default::default()
                })),
            }),
            ordering: pb::DestinationOrdering::Ordered as i32,
            retry_policy: Some(pb::RetryPolicy {
                policy: Some(pb::retry_policy::Policy::Exponential(pb::ExponentialRetryPolicy {
                    max_attempts: 5,
                    initial_backoff: Some(prost_types::Duration { seconds: 1, nanos: 0 }),
                    multiplier: 2.0,
                    max_backoff: Some(prost_types::Duration { seconds: 60, nanos: 0 }),
                })),
            }),
            ..Default::default()
        },
    )
    .await;
    let secret = created.secret.clone();
    let d = created.destination.unwrap();
    loft::signing::SigningSecret::parse(&secret).expect("generated whsec_ secret");
    assert_eq!(d.secret, "");
    assert_eq!(d.secret_hint, format!("whsec_…{}", &secret[secret.len() - 4..]));
    assert_eq!((d.http_method.as_str(), d.timeout.unwrap().seconds, d.max_in_flight), ("POST", 30, 16), "defaults");
    assert_eq!(d.state, pb::DestinationState::Active as i32);
    assert_eq!(d.circuit, pb::CircuitState::Closed as i32);
    assert_eq!(d.headers, vec![pb::Header { name: "x-team".into(), value: "billing".into() }]);
    match d.auth.clone().unwrap().method.unwrap() {
        pb::destination_auth::Method::Bearer(b) => assert_eq!((b.token.as_str(), b.token_hint.as_str()), ("", "…3456")),
        other => panic!("{other:?}"),
    }
    let got = c
        .destinations
        .clone()
        .get_destination(pb::GetDestinationRequest { destination_id: d.id.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .destination
        .unwrap();
    assert_eq!(got, d);
    let shown = c
        .destinations
        .clone()
        .get_destination_secret(pb::GetDestinationSecretRequest { destination_id: d.id.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(shown.secret, secret);
    assert!(shown.previous_secrets.is_empty());

    // Rotation: the old secret keeps signing through the grace period.
    let rotated = c
        .destinations
        .clone()
        .rotate_destination_secret(pb::RotateDestinationSecretRequest {
            destination_id: d.id.clone(),
            grace_period: Some(prost_types::Duration { seconds: 3600, nanos: 0 }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_ne!(rotated.secret, secret);
    let shown = c
        .destinations
        .clone()
        .get_destination_secret(pb::GetDestinationSecretRequest { destination_id: d.id.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(shown.secret, rotated.secret);
    assert_eq!(shown.previous_secrets.len(), 1);
    assert_eq!(shown.previous_secrets[0].secret, secret);
    let expiry = shown.previous_secrets[0].expire_time.unwrap().seconds
        - std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!((3590..=3600).contains(&expiry), "grace period honoured: {expiry}");
    // A zero grace period retires the old secret at once.
    c.destinations
        .clone()
        .rotate_destination_secret(pb::RotateDestinationSecretRequest {
            destination_id: d.id.clone(),
            secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
            grace_period: Some(prost_types::Duration::default()),
            ..Default::default()
        })
        .await
        .unwrap();
    let shown = c
        .destinations
        .clone()
        .get_destination_secret(pb::GetDestinationSecretRequest { destination_id: d.id.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(shown.secret, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    assert!(shown.previous_secrets.is_empty());

    // Ed25519 destinations publish their public key.
    let ed = create_destination(
        &c,
        "",
        pb::Destination {
            url: "https://example.com/ed".into(),
            signature_scheme: pb::DestinationSignatureScheme::Ed25519 as i32,
            ..Default::default()
        },
    )
    .await;
    assert!(ed.secret.starts_with("whsk_"));
    let ed_dst = ed.destination.unwrap();
    assert!(ed_dst.public_key.starts_with("whpk_"));
    assert_eq!(ed_dst.signature_scheme, pb::DestinationSignatureScheme::Ed25519 as i32);

    c.destinations
        .clone()
        .delete_destination(pb::DeleteDestinationRequest { destination_id: d.id.clone(), ..Default::default() })
        .await
        .unwrap();
    assert_error(
        c.destinations
            .clone()
            .get_destination(pb::GetDestinationRequest { destination_id: d.id.clone(), ..Default::default() })
            .await,
        Code::NotFound,
        "RESOURCE_NOT_FOUND",
    );
    let logs = captured_logs();
    assert!(
        !logs.contains(&secret[6..]) && !logs.contains(&rotated.secret[6..]) && !logs.contains("tok-abcdef-123456"),
        "secrets never logged"
    );
}

async fn destination_validation(server: TestServer) {
    // A server with the production URL policy (no --dev), admitting one internal network.
    let server = TestServer::start_with(server.backend, |c| {
        c.dev = false;
        c.allow_destination_cidrs = vec!["10.1.0.0/16".parse().unwrap()];
    })
    .await;
    let admin = server.admin().await;
    let p = project(&admin, "P").await;
    let c = server.clients(&project_key(&admin, &p.id, pb::ApiKeyRole::Editor).await).await;
    let refused = [
        ("http://example.com/x", "DESTINATION_URL_FORBIDDEN"),
        ("https://127.0.0.1/x", "DESTINATION_URL_FORBIDDEN"),
        ("https://[::1]/x", "DESTINATION_URL_FORBIDDEN"),
        ("https://10.0.0.5/x", "DESTINATION_URL_FORBIDDEN"),
        ("https://192.168.1.1/x", "DESTINATION_URL_FORBIDDEN"),
        ("https://169.254.169.254/latest/meta-data", "DESTINATION_URL_FORBIDDEN"),
        ("https://100.64.0.1/x", "DESTINATION_URL_FORBIDDEN"),
        ("https://[::ffff:127.0.0.1]/x", "DESTINATION_URL_FORBIDDEN"),
        ("https://localhost/x", "DESTINATION_URL_FORBIDDEN"),
        ("https://user:pw@example.com/x", "DESTINATION_URL_FORBIDDEN"),
        ("not a url", "DESTINATION_URL_FORBIDDEN"),
    ];
    for (url, reason) in refused {
        let status = assert_error(
            c.destinations
                .clone()
                .create_destination(pb::CreateDestinationRequest {
                    destination: Some(destination(url)),
                    ..Default::default()
                })
                .await,
            Code::InvalidArgument,
            reason,
        );
        assert_eq!(violation_fields(&status), vec!["destination.url"], "{url}");
    }
    // The allow-listed network is admitted; public hosts are.
    create_destination(&c, "", destination("https://10.1.2.3/hook")).await;
    create_destination(&c, "", destination("https://example.com/hook")).await;

    let header = |name: &str| pb::Destination {
        headers: vec![pb::Header { name: name.into(), value: "v".into() }],
        ..destination("https://example.com/h")
    };
    for name in [
        "Authorization",
        "Host",
        "Content-Type",
        "Content-Length",
        "Connection",
        "webhook-id",
        "X-Loft-Attempt",
        "X-Api-Key",
        "X-Secret-Thing",
        "Cookie",
    ] {
        let status = assert_error(
            c.destinations
                .clone()
                .create_destination(pb::CreateDestinationRequest {
                    destination: Some(header(name)),
                    ..Default::default()
                })
                .await,
            Code::InvalidArgument,
            "HEADER_FORBIDDEN",
        );
        assert_eq!(violation_fields(&status), vec!["destination.headers"], "{name}");
    }
    let secret = |s: &str| pb::Destination { secret: s.into(), ..destination("https://example.com/s") };
    for bad in ["whsec_short", "whsec_@@@@", "nope_abc", "whsk_AAAA"] {
        let status = assert_error(
            c.destinations
                .clone()
                .create_destination(pb::CreateDestinationRequest {
                    destination: Some(secret(bad)),
                    ..Default::default()
                })
                .await,
            Code::InvalidArgument,
            "INVALID_SECRET",
        );
        assert_eq!(violation_fields(&status), vec!["destination.secret"], "{bad}");
    }
    let others = [
        (
            pb::Destination {
                timeout: Some(prost_types::Duration { seconds: 600, nanos: 0 }),
                ..destination("https://example.com/t")
            },
            "destination.timeout",
        ),
        (
            pb::Destination { max_in_flight: 100_000, ..destination("https://example.com/t") },
            "destination.max_in_flight",
        ),
        (
            pb::Destination { http_method: "GET".into(), ..destination("https://example.com/t") },
            "destination.http_method",
        ),
        (
            pb::Destination {
                retry_policy: Some(pb::RetryPolicy {
                    policy: Some(pb::retry_policy::Policy::Exponential(pb::ExponentialRetryPolicy {
                        max_attempts: 0,
                        ..Default::default()
                    })),
                }),
                ..destination("https://example.com/t")
            },
            "destination.retry_policy",
        ),
        (pb::Destination { url: String::new(), ..destination("") }, "destination.url"),
    ];
    for (d, field) in others {
        let status = c
            .destinations
            .clone()
            .create_destination(pb::CreateDestinationRequest { destination: Some(d), ..Default::default() })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(violation_fields(&status), vec![field]);
    }
    let listed =
        c.destinations.clone().list_destinations(pb::ListDestinationsRequest::default()).await.unwrap().into_inner();
    assert_eq!(listed.destinations.len(), 2, "only the two valid destinations were stored");
}

async fn destination_pause_resume_and_state_filter(server: TestServer) {
    let admin = server.admin().await;
    let p = project(&admin, "P").await;
    let c = server.clients(&project_key(&admin, &p.id, pb::ApiKeyRole::Editor).await).await;
    let a = create_destination(&c, "", destination("https://example.com/a")).await.destination.unwrap();
    let b = create_destination(&c, "", destination("https://example.com/b")).await.destination.unwrap();
    let paused = c
        .destinations
        .clone()
        .pause_destination(pb::PauseDestinationRequest { destination_id: a.id.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(paused.destination.unwrap().state, pb::DestinationState::Paused as i32);
    let only = |state: pb::DestinationState| {
        let mut c = c.destinations.clone();
        async move {
            c.list_destinations(pb::ListDestinationsRequest { state: state as i32, ..Default::default() })
                .await
                .unwrap()
                .into_inner()
                .destinations
                .into_iter()
                .map(|d| d.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(only(pb::DestinationState::Paused).await, vec![a.id.clone()]);
    assert_eq!(only(pb::DestinationState::Active).await, vec![b.id.clone()]);
    let resumed = c
        .destinations
        .clone()
        .resume_destination(pb::ResumeDestinationRequest { destination_id: a.id.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resumed.destination.unwrap().state, pb::DestinationState::Active as i32);
    assert_eq!(only(pb::DestinationState::Active).await.len(), 2);
    assert!(only(pb::DestinationState::Paused).await.is_empty());
}

async fn subscriptions_validate_and_reference(server: TestServer) {
    let admin = server.admin().await;
    let p = project(&admin, "Subs").await;
    let c = server.clients(&project_key(&admin, &p.id, pb::ApiKeyRole::Editor).await).await;
    let dst = create_destination(&c, "", destination("https://example.com/a")).await.destination.unwrap();
    let tpl = c
        .templates
        .clone()
        .create_template(pb::CreateTemplateRequest {
            template: Some(pb::Template { body: r#"{"t": "{{ type }}"}"#.into(), ..Default::default() }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .template
        .unwrap();
    let good = pb::Subscription {
        name: "paid invoices".into(),
        destination_id: dst.id.clone(),
        event_types: vec!["invoice.*".into(), "customer".into()],
        filter: r#"type == "invoice.paid" && body.amount > 100"#.into(),
        transform: Some(pb::subscription::Transform::TemplateId(tpl.id.clone())),
        ..Default::default()
    };
    let sub = c
        .subscriptions
        .clone()
        .create_subscription(pb::CreateSubscriptionRequest { subscription: Some(good), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .subscription
        .unwrap();
    assert_eq!(
        (sub.enabled, sub.forward_headers, sub.content_type.as_str()),
        (Some(true), Some(false), "application/json"),
        "defaults"
    );

    let base = || pb::Subscription { destination_id: dst.id.clone(), ..Default::default() };
    let cases: Vec<(pb::Subscription, &str, &str)> = vec![
        (pb::Subscription { filter: "type == ".into(), ..base() }, "subscription.filter", "INVALID_FILTER"),
        (pb::Subscription { filter: "foo == 1".into(), ..base() }, "subscription.filter", "INVALID_FILTER"),
        (pb::Subscription { filter: "1 + 2".into(), ..base() }, "subscription.filter", "INVALID_FILTER"),
        (
            pb::Subscription { transform: Some(pb::subscription::Transform::Template("{% if %}".into())), ..base() },
            "subscription.template",
            "INVALID_TEMPLATE",
        ),
        (
            pb::Subscription { event_types: vec!["ok".into(), "a.*.b".into()], ..base() },
            "subscription.event_types[1]",
            "INVALID_ARGUMENT",
        ),
        (
            pb::Subscription { destination_id: String::new(), ..base() },
            "subscription.destination_id",
            "INVALID_ARGUMENT",
        ),
        (
            pb::Subscription { destination_id: "src_01J00000000000000000000000".into(), ..base() },
            "subscription.destination_id",
            "INVALID_ARGUMENT",
        ),
    ];
    for (s, field, reason) in cases {
        let status = assert_error(
            c.subscriptions
                .clone()
                .create_subscription(pb::CreateSubscriptionRequest { subscription: Some(s), ..Default::default() })
                .await,
            Code::InvalidArgument,
            reason,
        );
        assert_eq!(violation_fields(&status), vec![field], "{status:?}");
    }
    // A CEL syntax error says where.
    let status = c
        .subscriptions
        .clone()
        .create_subscription(pb::CreateSubscriptionRequest {
            subscription: Some(pb::Subscription { filter: "type == ".into(), ..base() }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(status.message().contains("1:"), "position in {:?}", status.message());
    // A missing destination is NOT_FOUND.
    let missing = pb::Subscription { destination_id: "dst_01J00000000000000000000000".into(), ..Default::default() };
    assert_error(
        c.subscriptions
            .clone()
            .create_subscription(pb::CreateSubscriptionRequest { subscription: Some(missing), ..Default::default() })
            .await,
        Code::NotFound,
        "RESOURCE_NOT_FOUND",
    );

    // What a subscription uses cannot be deleted under it.
    assert_error(
        c.templates
            .clone()
            .delete_template(pb::DeleteTemplateRequest { template_id: tpl.id.clone(), ..Default::default() })
            .await,
        Code::FailedPrecondition,
        "RESOURCE_IN_USE",
    );
    assert_error(
        c.destinations
            .clone()
            .delete_destination(pb::DeleteDestinationRequest { destination_id: dst.id.clone(), ..Default::default() })
            .await,
        Code::FailedPrecondition,
        "RESOURCE_IN_USE",
    );
    let by_destination = c
        .subscriptions
        .clone()
        .list_subscriptions(pb::ListSubscriptionsRequest { destination_id: dst.id.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_destination.subscriptions.len(), 1);
    assert_eq!(by_destination.subscriptions[0], sub);
    c.subscriptions
        .clone()
        .delete_subscription(pb::DeleteSubscriptionRequest { subscription_id: sub.id.clone(), ..Default::default() })
        .await
        .unwrap();
    c.templates
        .clone()
        .delete_template(pb::DeleteTemplateRequest { template_id: tpl.id.clone(), ..Default::default() })
        .await
        .unwrap();
    c.destinations
        .clone()
        .delete_destination(pb::DeleteDestinationRequest { destination_id: dst.id.clone(), ..Default::default() })
        .await
        .unwrap();
}

async fn event_types_and_templates(server: TestServer) {
    let admin = server.admin().await;
    let p = project(&admin, "Catalog").await;
    let c = server.clients(&project_key(&admin, &p.id, pb::ApiKeyRole::Editor).await).await;
    let schema = loft_json_struct(
        serde_json::json!({"type": "object", "required": ["amount"], "properties": {"amount": {"type": "integer"}}}),
    );
    let et = c
        .event_types
        .clone()
        .create_event_type(pb::CreateEventTypeRequest {
            event_type: Some(pb::EventType {
                name: "invoice.paid".into(),
                description: "An invoice was paid".into(),
                schema: schema.clone(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .event_type
        .unwrap();
    assert_eq!(et.schema, schema);
    let dup = c
        .event_types
        .clone()
        .create_event_type(pb::CreateEventTypeRequest {
            event_type: Some(pb::EventType { name: "invoice.paid".into(), ..Default::default() }),
            ..Default::default()
        })
        .await;
    assert_error(dup, Code::AlreadyExists, "RESOURCE_ALREADY_EXISTS");
    for (name, schema, field, reason) in [
        ("bad name!", None, "event_type.name", "INVALID_ARGUMENT"),
        ("ok.name", loft_json_struct(serde_json::json!({"type": 12})), "event_type.schema", "INVALID_JSON_SCHEMA"),
    ] {
        let status = assert_error(
            c.event_types
                .clone()
                .create_event_type(pb::CreateEventTypeRequest {
                    event_type: Some(pb::EventType { name: name.into(), schema, ..Default::default() }),
                    ..Default::default()
                })
                .await,
            Code::InvalidArgument,
            reason,
        );
        assert_eq!(violation_fields(&status), vec![field]);
    }
    let updated = c
        .event_types
        .clone()
        .update_event_type(pb::UpdateEventTypeRequest {
            event_type: Some(pb::EventType { name: "invoice.paid".into(), deprecated: true, ..Default::default() }),
            update_mask: Some(FieldMask { paths: vec!["deprecated".into()] }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .event_type
        .unwrap();
    assert!(updated.deprecated);
    assert_eq!(updated.description, "An invoice was paid");

    // Templates: stored, rendered against a sample, refused when they do not compile.
    let tpl = c
        .templates
        .clone()
        .create_template(pb::CreateTemplateRequest {
            template: Some(pb::Template {
                name: "slack".into(),
                body: r#"{"text": "{{ type }}: {{ body.amount }} for {{ body.customer.name }}", "raw": {{ body | tojson }}}"#.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .template
        .unwrap();
    let sample = serde_json::json!({"amount": 250, "customer": {"name": "Ada"}});
    let rendered = c
        .templates
        .clone()
        .render_template(pb::RenderTemplateRequest {
            template: Some(pb::render_template_request::Template::TemplateId(tpl.id.clone())),
            input: Some(pb::render_template_request::Input::Sample(pb::TemplateSample {
                r#type: "invoice.paid".into(),
                json: Some(prost_types::Value {
                    kind: Some(prost_types::value::Kind::StructValue(loft_json_struct(sample.clone()).unwrap())),
                }),
            })),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rendered.content_type, "application/json");
    let out: serde_json::Value = serde_json::from_str(&rendered.rendered).expect("rendered JSON");
    assert_eq!(out, serde_json::json!({"text": "invoice.paid: 250 for Ada", "raw": sample}));
    let status = assert_error(
        c.templates
            .clone()
            .create_template(pb::CreateTemplateRequest {
                template: Some(pb::Template { body: "line one\n{{ oops".into(), ..Default::default() }),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "INVALID_TEMPLATE",
    );
    assert_eq!(violation_fields(&status), vec!["template.body"]);
    assert!(status.message().contains("line 2"), "{}", status.message());
    let listed = c.templates.clone().list_templates(pb::ListTemplatesRequest::default()).await.unwrap().into_inner();
    assert_eq!(listed.templates, vec![tpl]);
    c.event_types
        .clone()
        .delete_event_type(pb::DeleteEventTypeRequest { event_type_name: "invoice.paid".into(), ..Default::default() })
        .await
        .unwrap();
    assert!(
        c.event_types
            .clone()
            .list_event_types(pb::ListEventTypesRequest::default())
            .await
            .unwrap()
            .into_inner()
            .event_types
            .is_empty()
    );
}

async fn pagination_is_stable_and_tokens_are_checked(server: TestServer) {
    let admin = server.admin().await;
    let p = project(&admin, "Pages").await;
    let c = server.clients(&project_key(&admin, &p.id, pb::ApiKeyRole::Editor).await).await;
    let mut made = Vec::new();
    for i in 0..7 {
        let s = pb::Source { name: format!("s{i}"), ..Default::default() };
        made.push(
            c.sources
                .clone()
                .create_source(pb::CreateSourceRequest { source: Some(s), ..Default::default() })
                .await
                .unwrap()
                .into_inner()
                .source
                .unwrap()
                .id,
        );
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = c
            .sources
            .clone()
            .list_sources(pb::ListSourcesRequest { page_size: 3, page_token: token.clone(), ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(page.sources.len() <= 3);
        seen.extend(page.sources.into_iter().map(|s| s.id));
        // A source created mid-way appears on a later page, never twice nor instead of another.
        if pages == 1 {
            let s = pb::Source { name: "late".into(), ..Default::default() };
            made.push(
                c.sources
                    .clone()
                    .create_source(pb::CreateSourceRequest { source: Some(s), ..Default::default() })
                    .await
                    .unwrap()
                    .into_inner()
                    .source
                    .unwrap()
                    .id,
            );
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, made, "every source once, in creation order");
    for bad in ["garbage", "djE6", "%%%"] {
        let status = assert_error(
            c.sources
                .clone()
                .list_sources(pb::ListSourcesRequest { page_token: bad.into(), ..Default::default() })
                .await,
            Code::InvalidArgument,
            "INVALID_PAGE_TOKEN",
        );
        assert_eq!(violation_fields(&status), vec!["page_token"]);
    }
    assert_error(
        c.sources.clone().list_sources(pb::ListSourcesRequest { page_size: -1, ..Default::default() }).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    let keys = admin
        .keys
        .clone()
        .list_api_keys(pb::ListApiKeysRequest { page_size: 1, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(keys.api_keys.len(), 1);
    assert!(!keys.next_page_token.is_empty());
}

async fn field_masks_touch_only_named_fields(server: TestServer) {
    let admin = server.admin().await;
    let p = project(&admin, "Masks").await;
    let c = server.clients(&project_key(&admin, &p.id, pb::ApiKeyRole::Editor).await).await;
    let d = create_destination(
        &c,
        "",
        pb::Destination {
            name: "before".into(),
            description: "kept".into(),
            url: "https://example.com/before".into(),
            rate_limit: Some(pb::RateLimit { per_second: 10, burst: 20 }),
            ..Default::default()
        },
    )
    .await
    .destination
    .unwrap();
    // The mask names `name`; the url in the request is ignored.
    let updated = c
        .destinations
        .clone()
        .update_destination(pb::UpdateDestinationRequest {
            destination: Some(pb::Destination {
                id: d.id.clone(),
                name: "after".into(),
                url: "https://example.com/ignored".into(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask { paths: vec!["name".into()] }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .destination
        .unwrap();
    assert_eq!(
        (updated.name.as_str(), updated.url.as_str(), updated.description.as_str()),
        ("after", "https://example.com/before", "kept")
    );
    assert_eq!(updated.rate_limit, Some(pb::RateLimit { per_second: 10, burst: 20 }));
    let micros = |t: &Option<prost_types::Timestamp>| {
        t.as_ref().map(|t| t.seconds * 1_000_000 + i64::from(t.nanos) / 1000).unwrap()
    };
    assert!(micros(&updated.update_time) >= micros(&d.update_time) && updated.create_time == d.create_time);
    // With no mask, the populated fields are applied and the rest kept.
    let implied = c
        .destinations
        .clone()
        .update_destination(pb::UpdateDestinationRequest {
            destination: Some(pb::Destination {
                id: d.id.clone(),
                url: "https://example.com/new".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .destination
        .unwrap();
    assert_eq!((implied.name.as_str(), implied.url.as_str()), ("after", "https://example.com/new"));
    assert_eq!(implied.rate_limit, Some(pb::RateLimit { per_second: 10, burst: 20 }));
    // `*` replaces every updatable field.
    let replaced = c
        .destinations
        .clone()
        .update_destination(pb::UpdateDestinationRequest {
            destination: Some(pb::Destination {
                id: d.id.clone(),
                url: "https://example.com/star".into(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask { paths: vec!["*".into()] }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .destination
        .unwrap();
    assert_eq!((replaced.name.as_str(), replaced.description.as_str(), replaced.rate_limit), ("", "", None));
    // Unknown and non-updatable paths are refused, and nothing changes.
    for path in ["nope", "secret", "state", "id"] {
        let status = assert_error(
            c.destinations
                .clone()
                .update_destination(pb::UpdateDestinationRequest {
                    destination: Some(pb::Destination { id: d.id.clone(), name: "x".into(), ..Default::default() }),
                    update_mask: Some(FieldMask { paths: vec!["name".into(), path.into()] }),
                    ..Default::default()
                })
                .await,
            Code::InvalidArgument,
            "INVALID_UPDATE_MASK",
        );
        assert_eq!(violation_fields(&status), vec!["update_mask.paths[1]"]);
    }
    // An invalid value in a masked field stores nothing.
    let status = assert_error(
        c.destinations
            .clone()
            .update_destination(pb::UpdateDestinationRequest {
                destination: Some(pb::Destination {
                    id: d.id.clone(),
                    name: "y".into(),
                    max_in_flight: 99_999,
                    ..Default::default()
                }),
                update_mask: Some(FieldMask { paths: vec!["name".into(), "max_in_flight".into()] }),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violation_fields(&status), vec!["destination.max_in_flight"]);
    let now = c
        .destinations
        .clone()
        .get_destination(pb::GetDestinationRequest { destination_id: d.id.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .destination
        .unwrap();
    assert_eq!(now.name, "");
    // Updating a missing resource is NOT_FOUND.
    assert_error(
        c.destinations
            .clone()
            .update_destination(pb::UpdateDestinationRequest {
                destination: Some(pb::Destination {
                    id: "dst_01J00000000000000000000000".into(),
                    name: "x".into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "RESOURCE_NOT_FOUND",
    );
}
