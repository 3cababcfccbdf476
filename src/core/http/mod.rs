//! The HTTP primitives every handler uses: `ApiError` and the problem document, the JSON body
//! extractor, the request id. The lowest layer of core: it imports no other capability (the
//! application's router is assembled in `core::server::app`).

pub mod error;
pub mod json;
pub mod problem;
pub mod request_id;
pub mod tls;

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

/// The position encoded in a `cursor` of a list ordered by (time, id), newest first
/// (`<created_at in microseconds>_<id>`, made by [`time_cursor_of`]); absent: the first page.
pub fn time_cursor(
    cursor: Option<&str>,
) -> Result<Option<(chrono::DateTime<chrono::Utc>, uuid::Uuid)>, ApiError> {
    let Some(c) = cursor else {
        return Ok(None);
    };
    c.split_once('_')
        .and_then(|(t, id)| {
            Some((
                chrono::DateTime::from_timestamp_micros(t.parse().ok()?)?,
                id.parse().ok()?,
            ))
        })
        .map(Some)
        .ok_or_else(|| ApiError::invalid("cursor", "is not a cursor from this list"))
}

/// The cursor of the page after the item at (`at`, `id`) (see [`time_cursor`]).
pub fn time_cursor_of(at: chrono::DateTime<chrono::Utc>, id: uuid::Uuid) -> String {
    format!("{}_{id}", at.timestamp_micros())
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

/// A page of a list: the API's one list shape, `{"items", "next_cursor"}`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// `?limit=&cursor=` of a list whose rows the server pages by a unique key.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^([0-9a-f]{2}){1,512}$")]
    pub cursor: Option<String>,
}

/// A page of `items` ordered by `key` (unique per item), starting after `query.cursor`: a
/// keyset cursor (the last key, encoded), so a row added or removed between two pages neither
/// repeats nor skips another. For lists read whole (configuration lists of at most some
/// hundreds of rows, and what the server keeps in memory).
pub fn keyset_page<T>(
    mut items: Vec<T>,
    key: impl Fn(&T) -> String,
    query: &PageQuery,
) -> Result<Page<T>, ApiError> {
    let limit = page_limit(query.limit, 100, 500)?;
    let after = match query.cursor.as_deref() {
        // Any hex is a place in the list (the page after it), as the document promises.
        Some(cursor) => Some(
            hex::decode(cursor)
                .ok()
                .filter(|bytes| !bytes.is_empty())
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                .ok_or_else(|| ApiError::invalid("cursor", "is not a cursor from this list"))?,
        ),
        None => None,
    };
    items.sort_by_cached_key(&key);
    let start = after.map_or(0, |after| items.partition_point(|item| key(item) <= after));
    let rest: Vec<T> = items.into_iter().skip(start).collect();
    let (items, next_cursor) = page(rest, limit, |last| hex::encode(key(last)));
    Ok(Page { items, next_cursor })
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

    #[test]
    fn keyset_pages_walk_the_list_once_and_refuse_foreign_cursors() {
        let items: Vec<u32> = (1..=7).rev().collect();
        let key = |n: &u32| format!("{n:03}");
        let mut query = PageQuery {
            limit: Some(3),
            cursor: None,
        };
        let mut seen = Vec::new();
        loop {
            let page = keyset_page(items.clone(), key, &query).unwrap();
            seen.extend(page.items);
            match page.next_cursor {
                Some(next) => query.cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, (1..=7).collect::<Vec<_>>());
        query.cursor = Some("zz".to_owned());
        assert!(keyset_page(items.clone(), key, &query).is_err());
        query.limit = Some(501);
        query.cursor = None;
        assert!(keyset_page(items, key, &query).is_err());
    }
}
