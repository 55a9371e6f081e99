//! Errors of the HTTP layer and their AWS-style JSON rendering.
//!
//! Every response that is not a success has the body
//! `{"Error": {"Code": "...", "Message": "..."}}`, including failures that
//! happen before an action runs (authentication, malformed bodies, unknown
//! actions), so clients can always parse an error the same way.

use crate::api::types::{ErrorBody, ErrorResponse};
use crate::control::error::{bound_message, ApiError};
use crate::control::store::StoreError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Codes of errors raised by the HTTP layer itself (the model's codes come
/// from [`crate::control::ErrorCode`]).
pub mod codes {
    /// No `Authorization: Bearer` header.
    pub const MISSING_AUTH: &str = "MissingAuthenticationToken";
    /// A token that belongs to no account.
    pub const AUTH_FAILURE: &str = "AuthFailure";
    /// A required parameter (or the region header) is absent.
    pub const MISSING_PARAMETER: &str = "MissingParameter";
    /// The body is not JSON, or is not a JSON object.
    pub const MALFORMED_JSON: &str = "MalformedJson";
    /// A body field the action does not know.
    pub const UNKNOWN_PARAMETER: &str = "UnknownParameter";
    pub const INVALID_PARAMETER_VALUE: &str = "InvalidParameterValue";
    /// `POST /v1/{Action}` with an action that does not exist.
    pub const INVALID_ACTION: &str = "InvalidAction";
    /// A path outside the API, or the wrong method on an API path.
    pub const NOT_FOUND: &str = "NotFound";
    pub const METHOD_NOT_ALLOWED: &str = "MethodNotAllowed";
    pub const TOO_LARGE: &str = "RequestEntityTooLarge";
    pub const INTERNAL_ERROR: &str = "InternalError";
    /// The agent view endpoint is disabled or the token is not the agent's.
    pub const FORBIDDEN: &str = "UnauthorizedOperation";
    /// An account token on the gateway API.
    pub const GATEWAY_CREDENTIAL_REQUIRED: &str = "GatewayCredentialRequired";
    /// A gateway credential on an account action.
    pub const ACCOUNT_TOKEN_REQUIRED: &str = "AccountTokenRequired";
}

/// An error response: HTTP status, AWS error code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
}

impl Fault {
    /// A fault with `message` bounded by [`bound_message`]: it may echo a
    /// caller's value (an unknown field, a wrongly typed value, an action).
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Fault {
            status,
            code: code.to_owned(),
            message: bound_message(message.into()),
        }
    }

    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Fault::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// An unexpected server-side failure. The detail is logged, not sent:
    /// it may describe the host (paths, SQLite errors).
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Fault::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            codes::INTERNAL_ERROR,
            "An internal error has occurred",
        )
    }
}

impl From<ApiError> for Fault {
    fn from(e: ApiError) -> Self {
        let status =
            StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Fault::new(status, e.code(), e.message)
    }
}

impl From<StoreError> for Fault {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Api(e) => e.into(),
            other => Fault::internal(other),
        }
    }
}

impl IntoResponse for Fault {
    fn into_response(self) -> Response {
        let body = ErrorResponse {
            error: ErrorBody {
                code: self.code,
                message: self.message,
            },
        };
        json_response(self.status, &body)
    }
}

/// Serializes `body` as a JSON response with `status`.
pub fn json_response<T: serde::Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            let mut resp = (status, bytes).into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp
        }
        // Our response types always serialize; keep the server up anyway.
        Err(e) => {
            tracing::error!(error = %e, "response serialization failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}
