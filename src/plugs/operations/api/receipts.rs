//! `operations.receipts` for other modules: how many receipt copies were made, as the Z report
//! counts them.

use sqlx::PgConnection;
use uuid::Uuid;

/// Receipt copies (renders after a document's first) made at `registers` among the renders
/// recorded after `after` up to `through` (see [`last_render`]).
pub async fn copies_between(
    conn: &mut PgConnection,
    registers: &[Uuid],
    after: i64,
    through: i64,
) -> Result<i64, sqlx::Error> {
    crate::plugs::operations::receipts::store::copies_between(conn, registers, after, through).await
}

/// Where the renders recorded so far end (0: none yet): what a closing that holds new ones back
/// (`lock_documents_for_closing`) counts up to.
pub async fn last_render(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    crate::plugs::operations::receipts::store::last_render(conn).await
}
