//! The HTTP primitives every handler uses: `ApiError` and the problem document, the JSON body
//! extractor, the request id. The lowest layer of core: it imports no other capability (the
//! application's router is assembled in `core::server::app`).

pub mod error;
pub mod json;
pub mod problem;
pub mod request_id;

pub use error::ApiError;
pub use json::ApiJson;

/// Offsets past this are no page of a real list (a million pages of ten): refusing them keeps
/// `offset + limit` far from overflowing and a search from reading that many rows.
const MAX_OFFSET: i64 = 10_000_000;

/// The offset encoded in a `cursor` of an offset-paged list (absent: the first page).
pub fn offset_cursor(cursor: Option<&str>) -> Result<i64, ApiError> {
    match cursor {
        Some(c) => c
            .parse()
            .ok()
            .filter(|o: &i64| (0..=MAX_OFFSET).contains(o))
            .ok_or_else(|| ApiError::invalid("cursor", "is not a cursor from this list")),
        None => Ok(0),
    }
}

/// A list request's `limit`: `default` when absent, refused (naming the field) outside `1..=max`.
pub fn page_limit(limit: Option<i64>, default: i64, max: i64) -> Result<i64, ApiError> {
    let limit = limit.unwrap_or(default);
    if !(1..=max).contains(&limit) {
        return Err(ApiError::invalid("limit", format!("must be 1 to {max}")));
    }
    Ok(limit)
}

/// One page of a list read with one row more than `limit` (that row says another page follows):
/// the first `limit` rows, and the next page's cursor, made by `next` from the last row kept,
/// when there is more.
pub fn page<T>(
    mut rows: Vec<T>,
    limit: i64,
    next: impl FnOnce(&T) -> String,
) -> (Vec<T>, Option<String>) {
    let limit = usize::try_from(limit).unwrap_or(0);
    if rows.len() <= limit {
        return (rows, None);
    }
    rows.truncate(limit);
    let cursor = rows.last().map(next);
    (rows, cursor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_keeps_its_limit_and_says_where_the_next_starts() {
        assert_eq!(
            page(vec![1, 2, 3], 2, |n| n.to_string()),
            (vec![1, 2], Some("2".to_owned()))
        );
        assert_eq!(page(vec![1, 2], 2, |n| n.to_string()), (vec![1, 2], None));
        assert_eq!(page_limit(None, 50, 200).unwrap(), 50);
        assert!(page_limit(Some(0), 50, 200).is_err());
        assert!(page_limit(Some(201), 50, 200).is_err());
    }
}
