//! `ApiJson<T>`: the JSON body extractor whose every failure is a problem document.
//!
//! Wrong content type is 415, a body over the limit 413, broken JSON 400 `request.malformed_json`,
//! and JSON of the wrong shape 422 `validation.failed` naming the field.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use crate::core::http::error::ApiError;
use crate::core::http::problem::FieldError;

/// A JSON request body of type `T`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers().get(header::CONTENT_TYPE)) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge
            } else {
                ApiError::MalformedJson(rejection.body_text())
            }
        })?;
        parse(&bytes).map(ApiJson)
    }
}

/// `application/json` or any `application/*+json`, with optional parameters.
fn is_json(value: Option<&axum::http::HeaderValue>) -> bool {
    let Some(value) = value.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// For `#[serde(default, deserialize_with = "present")]` on an `Option<Option<T>>` field of a
/// patch: absent stays `None` (keep the value), `null` becomes `Some(None)` (clear it).
pub fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(deserializer).map(Some)
}

/// Parses `bytes` as `T`, telling syntax errors (400) from shape errors (422, with the field path).
/// A string holding a NUL character (`\u0000`, which no text column can store) is a 422 naming it.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.windows(6).any(|w| w.eq_ignore_ascii_case(b"\\u0000"))
        && let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes)
        && let Some(field) = nul_in(&value, "")
    {
        return Err(ApiError::Validation(vec![FieldError::new(
            if field.is_empty() {
                "body".to_owned()
            } else {
                field
            },
            "holds a NUL character (\\u0000), which text cannot store",
        )]));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let field = if path == "." { "body".to_owned() } else { path };
                ApiError::Validation(vec![FieldError::new(
                    field,
                    strip_position(&inner.to_string()),
                )])
            }
            _ => ApiError::MalformedJson(inner.to_string()),
        }
    })?;
    de.end()
        .map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    Ok(value)
}

/// Converts an already parsed body into `T` (422 naming the field on a shape error), for
/// handlers that also need the raw JSON (to hash it for idempotency, say).
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "body".to_owned() } else { path };
        ApiError::Validation(vec![FieldError::new(
            field,
            strip_position(&e.into_inner().to_string()),
        )])
    })
}

/// The path (`lines[2].name`) of the first string in `value` holding a NUL character, if any.
fn nul_in(value: &serde_json::Value, path: &str) -> Option<String> {
    use serde_json::Value;
    match value {
        Value::String(s) if s.contains('\0') => Some(path.to_owned()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| nul_in(v, &format!("{path}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            if k.contains('\0') {
                return Some(path.to_owned());
            }
            let child = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            nul_in(v, &child)
        }),
        _ => None,
    }
}

/// serde_json appends " at line 1 column 42" to data errors; the field path says more.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)] // Fields are read by serde only.
    struct Body {
        inner: Inner,
    }
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)] // Fields are read by serde only.
    struct Inner {
        n: u32,
    }

    #[test]
    fn shape_errors_name_the_field() {
        let err = parse::<Body>(br#"{"inner":{"n":"x"}}"#).unwrap_err();
        let ApiError::Validation(errors) = err else {
            panic!("{err:?}")
        };
        assert_eq!(errors[0].field, "inner.n");
    }

    #[test]
    fn a_nul_character_is_refused_naming_its_field() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)] // Fields are read by serde only.
        struct Named {
            lines: Vec<String>,
        }
        let err = parse::<Named>(br#"{"lines":["ok","a\u0000b"]}"#).unwrap_err();
        let ApiError::Validation(errors) = err else {
            panic!("{err:?}")
        };
        assert_eq!(errors[0].field, "lines[1]");
        assert!(
            parse::<Named>(br#"{"lines":["a\\u0000b"]}"#).is_ok(),
            "an escaped backslash is text"
        );
    }

    #[test]
    fn syntax_errors_are_malformed() {
        assert!(matches!(
            parse::<Body>(br#"{"inner":"#),
            Err(ApiError::MalformedJson(_))
        ));
        assert!(matches!(
            parse::<Body>(br#"{"inner":{"n":1}} x"#),
            Err(ApiError::MalformedJson(_))
        ));
    }

    #[test]
    fn json_content_types() {
        let v = |s: &'static str| axum::http::HeaderValue::from_static(s);
        assert!(is_json(Some(&v("application/json; charset=utf-8"))));
        assert!(is_json(Some(&v("application/merge-patch+json"))));
        assert!(!is_json(Some(&v("text/plain"))));
        assert!(!is_json(None));
    }
}
