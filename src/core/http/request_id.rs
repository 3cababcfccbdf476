//! The request id: kept from an incoming `X-Request-Id` (if sane) or generated, echoed in the
//! response, recorded on the request's tracing span (so on every log line) and put into every
//! problem document.

use axum::http::HeaderMap;

use crate::shared::ids::new_id;

/// The header that carries the id both ways.
pub const HEADER: &str = "x-request-id";
const MAX_LEN: usize = 128;

tokio::task_local! {
    static CURRENT: String;
}

/// The id of the request being handled on this task, if any.
pub fn current() -> Option<String> {
    CURRENT.try_with(Clone::clone).ok()
}

/// Runs `future` with `id` as the current request id.
pub async fn scope<F: Future>(id: String, future: F) -> F::Output {
    CURRENT.scope(id, future).await
}

/// The client's id when it is at most 128 bytes of letters, digits and `._:-`, starting with a
/// letter or digit (it ends up in logs, audit records and their CSV exports, so anything else is
/// replaced), otherwise a new UUID v7.
pub fn from_headers(headers: &HeaderMap) -> String {
    headers
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            v.len() <= MAX_LEN
                && v.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| new_id().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_sane_id_and_replaces_others() {
        let mut headers = HeaderMap::new();
        headers.insert(HEADER, "till-3:req-42".parse().unwrap());
        assert_eq!(from_headers(&headers), "till-3:req-42");
        headers.insert(HEADER, "x".repeat(129).parse().unwrap());
        assert_ne!(from_headers(&headers), "x".repeat(129));
        headers.insert(HEADER, "has space".parse().unwrap());
        assert_eq!(from_headers(&headers).len(), 36);
        headers.insert(HEADER, "=cmd|calc".parse().unwrap());
        assert_ne!(from_headers(&headers), "=cmd|calc", "a formula is not kept");
        headers.insert(HEADER, "@x".parse().unwrap());
        assert_eq!(from_headers(&headers).len(), 36);
    }
}
