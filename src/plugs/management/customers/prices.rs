//! A customer group's prices as sales apply them: the rules of its live price lists, a category
//! rule spread over the categories below it (see [`super::rules`] for which rule wins).

use std::collections::HashMap;

use sqlx::PgConnection;
use uuid::Uuid;

use super::rules::{GroupPrices, Rule};
use super::store;
use crate::plugs::management::api::catalog;

/// The rules of `group`'s live price lists (two queries, however many rules).
pub async fn read(conn: &mut PgConnection, group: &str) -> Result<GroupPrices, sqlx::Error> {
    let mut prices = GroupPrices::default();
    let mut by_root: HashMap<Uuid, Vec<Rule>> = HashMap::new();
    for r in store::group_rules(&mut *conn, group).await? {
        if let Some(product) = r.product_id {
            prices.by_product.entry(product).or_default().push(r.rule);
        } else if let Some(category) = r.category_id {
            by_root.entry(category).or_default().push(r.rule);
        }
    }
    let roots: Vec<Uuid> = by_root.keys().copied().collect();
    for (root, below, depth) in catalog::category_tree_depths(&mut *conn, &roots).await? {
        let depth = u32::try_from(depth).unwrap_or(u32::MAX);
        for rule in by_root.get(&root).into_iter().flatten() {
            prices
                .by_category
                .entry(below)
                .or_default()
                .push((depth, rule.clone()));
        }
    }
    Ok(prices)
}
