//! The cash module's SQL beyond the handlers' own: `cash_sessions`, `cash_movements`.

use rust_decimal::Decimal;
use sqlx::PgConnection;
use uuid::Uuid;

/// The open session of `register_id`, if any.
pub async fn open_session(
    conn: &mut PgConnection,
    register_id: Uuid,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM cash_sessions WHERE register_id = $1 AND status = 'open'")
        .bind(register_id)
        .fetch_optional(conn)
        .await
}

/// See [`crate::plugs::operations::api::cash::open_sessions_cte`].
pub fn open_sessions_cte(registers: usize) -> String {
    format!(
        "open AS (SELECT register_id, id AS session_id FROM cash_sessions WHERE register_id = ANY(${registers}) AND status = 'open' \
       ORDER BY register_id FOR SHARE)"
    )
}

/// A session's own cash flows: the opening float, cash put in and taken out.
#[derive(Debug, Default, Clone, Copy, sqlx::FromRow)]
pub struct DrawerFlows {
    pub opening_float: Decimal,
    pub cash_in: Decimal,
    pub cash_out: Decimal,
}

/// The drawer flows of session `id`.
pub async fn drawer_flows(conn: &mut PgConnection, id: Uuid) -> Result<DrawerFlows, sqlx::Error> {
    sqlx::query_as(
        "SELECT cs.opening_float, \
           COALESCE((SELECT sum(m.amount) FROM cash_movements m WHERE m.cash_session_id = cs.id AND m.kind = 'in'), 0) AS cash_in, \
           COALESCE((SELECT sum(m.amount) FROM cash_movements m WHERE m.cash_session_id = cs.id AND m.kind = 'out'), 0) AS cash_out \
         FROM cash_sessions cs WHERE cs.id = $1",
    )
    .bind(id)
    .fetch_one(conn)
    .await
}
