//! RFC 9457 problem documents: the one shape every error of the API takes.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::core::http::request_id;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error as the client sees it (RFC 9457).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem: `urn:plugpos:problem:<code>`.
    #[serde(rename = "type")]
    #[schema(example = "urn:plugpos:problem:validation.failed")]
    pub problem_type: String,
    /// Short, human-readable summary of the kind of problem.
    #[schema(example = "Validation failed")]
    pub title: String,
    /// The HTTP status code.
    #[schema(example = 422)]
    pub status: u16,
    /// What went wrong in this occurrence.
    pub detail: String,
    /// Stable, machine-readable code (`area.reason`) that clients switch on.
    #[schema(example = "validation.failed")]
    pub code: String,
    /// Per-field errors, for validation problems.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// The request's correlation id (also in the `X-Request-Id` header and in every log line).
    pub request_id: String,
}

/// One invalid field of a request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// Path of the field in the request body, e.g. `business.currency`.
    #[schema(example = "business.currency")]
    pub field: String,
    /// What is wrong with it.
    #[schema(example = "not an ISO 4217 currency code")]
    pub message: String,
}

impl FieldError {
    /// An error for `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The value of a field parsed at the edge (`Money::parse_in`, `Quantity::parse`, ...), or
    /// its error added to `errors`: a handler gathers every bad field before it answers.
    pub fn gather<T>(
        errors: &mut Vec<FieldError>,
        field: impl Into<String>,
        parsed: Result<T, String>,
    ) -> Option<T> {
        parsed
            .map_err(|why| errors.push(FieldError::new(field, why)))
            .ok()
    }
}

impl Problem {
    /// A problem for the current request (its id is taken from the request context).
    pub fn new(status: StatusCode, code: &str, title: &str, detail: impl Into<String>) -> Problem {
        Problem {
            problem_type: format!("urn:plugpos:problem:{code}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            code: code.to_owned(),
            errors: Vec::new(),
            request_id: request_id::current().unwrap_or_default(),
        }
    }

    /// Adds the per-field errors.
    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Problem {
        self.errors = errors;
        self
    }

    /// The problem that stands for a bare status code (a 404 from routing, a 408 from the timeout...).
    pub fn for_status(status: StatusCode) -> Problem {
        let (code, title, detail) = match status {
            StatusCode::NOT_FOUND => ("route.not_found", "Not found", "No such endpoint."),
            StatusCode::METHOD_NOT_ALLOWED => (
                "http.method_not_allowed",
                "Method not allowed",
                "This endpoint does not accept this HTTP method.",
            ),
            StatusCode::REQUEST_TIMEOUT => (
                "request.timeout",
                "Request timeout",
                "The request took too long and was abandoned.",
            ),
            StatusCode::PAYLOAD_TOO_LARGE => (
                "request.too_large",
                "Request body too large",
                "The request body is larger than the server accepts.",
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => (
                "request.unsupported_media_type",
                "Unsupported media type",
                "Send the request body as JSON with `Content-Type: application/json`.",
            ),
            StatusCode::BAD_REQUEST => (
                "request.bad",
                "Bad request",
                "The request could not be understood.",
            ),
            s if s.is_server_error() => (
                "internal",
                "Internal server error",
                "The server failed to handle the request; see its log.",
            ),
            _ => ("http.error", "Request failed", "The request failed."),
        };
        Problem::new(status, code, title, detail)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        response
    }
}
