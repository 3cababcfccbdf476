//! The HTTP primitives every handler uses: `ApiError` and the problem document, the JSON body
//! extractor, the request id. The lowest layer of core: it imports no other capability (the
//! application's router is assembled in `core::server::app`).

pub mod error;
pub mod json;
pub mod problem;
pub mod request_id;

pub use error::ApiError;
pub use json::ApiJson;

/// The offset encoded in a `cursor` of an offset-paged list (absent: the first page).
pub fn offset_cursor(cursor: Option<&str>) -> Result<i64, ApiError> {
    match cursor {
        Some(c) => c
            .parse()
            .ok()
            .filter(|o: &i64| *o >= 0)
            .ok_or_else(|| ApiError::invalid("cursor", "is not a cursor from this list")),
        None => Ok(0),
    }
}
