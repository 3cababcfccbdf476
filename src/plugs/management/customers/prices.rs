//! A customer group's prices as sales apply them: the rules of its live price lists, a category
//! rule spread over the categories below it (see [`super::rules`] for which rule wins).

use sqlx::PgConnection;

use super::rules::GroupPrices;
use super::store;
use crate::plugs::management::api::catalog;

/// The rules of `group`'s live price lists.
pub async fn read(conn: &mut PgConnection, group: &str) -> Result<GroupPrices, sqlx::Error> {
    let mut prices = GroupPrices::default();
    for r in store::group_rules(&mut *conn, group).await? {
        if let Some(product) = r.product_id {
            prices.by_product.entry(product).or_default().push(r.rule);
        } else if let Some(category) = r.category_id {
            for (below, depth) in catalog::category_tree_depths(&mut *conn, category).await? {
                let depth = u32::try_from(depth).unwrap_or(u32::MAX);
                prices
                    .by_category
                    .entry(below)
                    .or_default()
                    .push((depth, r.rule.clone()));
            }
        }
    }
    Ok(prices)
}
