//! The one table from error kinds to gRPC codes and HTTP statuses.
//!
//! Every client-facing error carries a `google.rpc.ErrorInfo` whose `reason` is an
//! `ErrorReason` value without its `ERROR_REASON_` prefix (so clients match on constants), plus
//! `BadRequest` field violations for invalid arguments and `ResourceInfo` for missing resources.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::proto::ErrorReason;
use crate::store::StoreError;

/// The `ErrorInfo.domain` of every error Loft returns.
pub const ERROR_DOMAIN: &str = "loft.v1";

/// One invalid field: its path in the request (`destination.url`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid argument")]
    InvalidArgument { reason: ErrorReason, violations: Vec<FieldViolation> },
    /// Also answered for another tenant's resources, so that nothing leaks across projects.
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    #[error("{kind} {id} already exists")]
    AlreadyExists { kind: &'static str, id: String },
    #[error("{message}")]
    FailedPrecondition { reason: ErrorReason, message: String },
    #[error("{message}")]
    OutOfRange { reason: ErrorReason, message: String },
    #[error("{message}")]
    Unauthenticated { reason: ErrorReason, message: &'static str },
    #[error("{0}")]
    PermissionDenied(String),
    #[error("the database is unavailable")]
    Unavailable,
    /// Logged with its context; the client sees a generic message.
    #[error("internal error: {0:#}")]
    Internal(anyhow::Error),
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// One invalid field.
    pub fn invalid(field: impl Into<String>, reason: ErrorReason, description: impl std::fmt::Display) -> Self {
        ApiError::InvalidArgument {
            reason,
            violations: vec![FieldViolation { field: field.into(), description: description.to_string() }],
        }
    }

    pub fn not_found(kind: &'static str, id: impl Into<String>) -> Self {
        ApiError::NotFound { kind, id: id.into() }
    }

    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        ApiError::Internal(e.into())
    }

    /// The table: gRPC code, HTTP status and reason of each kind of error.
    pub fn classify(&self) -> (Code, u16, ErrorReason) {
        use ErrorReason as R;
        match self {
            ApiError::InvalidArgument { reason, .. } => (Code::InvalidArgument, 400, *reason),
            ApiError::NotFound { .. } => (Code::NotFound, 404, R::ResourceNotFound),
            ApiError::AlreadyExists { .. } => (Code::AlreadyExists, 409, R::ResourceAlreadyExists),
            ApiError::FailedPrecondition { reason, .. } => (Code::FailedPrecondition, 409, *reason),
            ApiError::OutOfRange { reason, .. } => (Code::OutOfRange, 400, *reason),
            ApiError::Unauthenticated { reason, .. } => (Code::Unauthenticated, 401, *reason),
            ApiError::PermissionDenied(_) => (Code::PermissionDenied, 403, R::PermissionDenied),
            ApiError::Unavailable => (Code::Unavailable, 503, R::DatabaseUnavailable),
            ApiError::Internal(_) => (Code::Internal, 500, R::Internal),
        }
    }

    /// Maps a store error met while handling `kind` `id`.
    pub fn from_store(e: StoreError, kind: &'static str, id: impl Into<String>) -> Self {
        match e {
            StoreError::NotFound => ApiError::not_found(kind, id),
            StoreError::AlreadyExists => ApiError::AlreadyExists { kind, id: id.into() },
            StoreError::Reference => ApiError::FailedPrecondition {
                reason: ErrorReason::ResourceInUse,
                message: format!("{kind} {} is referenced by another resource", id.into()),
            },
            other => other.into(),
        }
    }
}

/// The proto message name of a resource kind, for `ResourceInfo.resource_type`.
pub fn resource_type(kind: &str) -> String {
    let name: String = kind.split(' ').map(|w| w[..1].to_ascii_uppercase() + &w[1..]).collect();
    format!("loft.v1.{name}")
}

/// The wire form of a reason: the enum value's name without `ERROR_REASON_`.
pub fn reason_name(reason: ErrorReason) -> &'static str {
    let full = reason.as_str_name();
    full.strip_prefix("ERROR_REASON_").unwrap_or(full)
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => ApiError::Unavailable,
            StoreError::NotFound => ApiError::Internal(anyhow::anyhow!("unexpected missing row")),
            other => ApiError::Internal(other.into()),
        }
    }
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Self {
        let (code, _, reason) = e.classify();
        let mut details = ErrorDetails::new();
        details.set_error_info(reason_name(reason), ERROR_DOMAIN, std::collections::HashMap::new());
        let message = match &e {
            ApiError::InvalidArgument { violations, .. } => {
                for v in violations {
                    details.add_bad_request_violation(v.field.clone(), v.description.clone());
                }
                violations.iter().map(|v| format!("{}: {}", v.field, v.description)).collect::<Vec<_>>().join("; ")
            }
            ApiError::NotFound { kind, id } => {
                details.set_resource_info(resource_type(kind), id.clone(), "", format!("{kind} {id} does not exist"));
                e.to_string()
            }
            ApiError::Internal(err) => {
                tracing::error!(error = format!("{err:#}"), "internal error");
                "internal error".to_owned()
            }
            ApiError::Unavailable => {
                tracing::warn!("request failed: database unavailable");
                e.to_string()
            }
            _ => e.to_string(),
        };
        Status::with_error_details(code, message, details)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_types_are_message_names() {
        assert_eq!(resource_type("api key"), "loft.v1.ApiKey");
        assert_eq!(resource_type("destination"), "loft.v1.Destination");
    }

    #[test]
    fn reasons_drop_their_prefix() {
        assert_eq!(reason_name(ErrorReason::DestinationUrlForbidden), "DESTINATION_URL_FORBIDDEN");
    }

    #[test]
    fn invalid_argument_carries_field_violations_and_reason() {
        let status: Status =
            ApiError::invalid("destination.url", ErrorReason::DestinationUrlForbidden, "loopback address").into();
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        assert_eq!(details.error_info().unwrap().reason, "DESTINATION_URL_FORBIDDEN");
        let v = &details.bad_request().unwrap().field_violations[0];
        assert_eq!((v.field.as_str(), v.description.as_str()), ("destination.url", "loopback address"));
    }
}
