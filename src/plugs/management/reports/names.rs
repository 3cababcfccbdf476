//! What a report's id cells name: a product's SKU and name, a cashier's username, a register's
//! code and name... read in one query per kind, as they are now (a renamed product shows its new
//! name; the sale lines keep the old one).

use std::collections::{HashMap, HashSet};

use sqlx::PgConnection;
use uuid::Uuid;

use crate::core::reports::{Cell, Column, ColumnKind, RefKind};
use crate::plugs::administration::api::places;
use crate::plugs::management::api::{catalog, customers};

/// The names of every id in `rows` (by the kind of its column).
pub async fn of(
    conn: &mut PgConnection,
    columns: &[Column],
    rows: &[Vec<Cell>],
) -> Result<HashMap<(RefKind, Uuid), String>, sqlx::Error> {
    let mut wanted: HashMap<RefKind, HashSet<Uuid>> = HashMap::new();
    for row in rows {
        for (column, cell) in columns.iter().zip(row) {
            if let (ColumnKind::Ref(kind), Cell::Ref(id)) = (column.kind, cell) {
                wanted.entry(kind).or_default().insert(*id);
            }
        }
    }
    let mut names = HashMap::new();
    for (kind, ids) in wanted {
        let ids: Vec<Uuid> = ids.into_iter().collect();
        let found = match kind {
            RefKind::Product => catalog::product_labels(conn, &ids).await?,
            RefKind::Category => catalog::category_labels(conn, &ids).await?,
            RefKind::User => crate::core::rbac::store::usernames(conn, &ids).await?,
            RefKind::Register => places::register_labels(conn, &ids).await?,
            RefKind::Customer => customers::customer_names(conn, &ids).await?,
            RefKind::Location => places::location_labels(conn, &ids).await?,
        };
        names.extend(found.into_iter().map(|(id, name)| ((kind, id), name)));
    }
    Ok(names)
}

/// What an empty id cell of `kind` says.
pub fn none(kind: RefKind) -> &'static str {
    match kind {
        RefKind::Category => "(no category)",
        RefKind::Customer => "(no customer)",
        _ => "(none)",
    }
}
