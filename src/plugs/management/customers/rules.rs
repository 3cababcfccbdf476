//! The rules of customers and price lists, with no I/O.
//!
//! **Search.** A customer is found by their name, email or phone, case- and accent-insensitively
//! (as products are): the search text is the folded name, the folded email and the phone's
//! digits. Names that start with the text come first, then other matches, shortest names first.
//!
//! **Price lists.** A customer belongs to at most one group (`customer_group`); a price list
//! belongs to a group and is valid on the calendar dates (business timezone) `valid_from..=valid_to` (open ends when
//! absent). A rule of a list either fixes the price (`fixed_price`) or takes a percentage off the
//! catalog price (`percent_off`), for one product or for a category and every category below it.
//! Of the rules of the group's lists valid on the sale's calendar date, a product's own rule wins
//! over a category rule, a rule for a nearer category over one for a category further up; among
//! equally specific rules the lowest resulting price wins (then the lower rule id, so the choice is
//! always the same). The result is rounded half-up to the currency's minor unit.

use std::collections::HashMap;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::shared::money::round_half_up;
use crate::shared::text::fold;

/// The search text of a customer: what [`crate::shared::text::fold`] makes of their name and
/// email, and their phone's digits.
pub fn search_text(name: &str, email: Option<&str>, phone: Option<&str>) -> String {
    let mut parts = vec![fold(name)];
    if let Some(email) = email {
        parts.push(fold(email));
    }
    if let Some(digits) = phone.map(digits).filter(|d| !d.is_empty()) {
        parts.push(digits);
    }
    parts.join(" ")
}

/// The digits of a phone number (`+49 (30) 123-45` -> `493012345`).
pub fn digits(phone: &str) -> String {
    phone.chars().filter(char::is_ascii_digit).collect()
}

/// What a search text is matched as: folded, or, when it looks like a phone number (digits,
/// spaces, `+-/().`), its digits alone (`030 123-4` matches a phone stored as `030/1234`).
pub fn search_key(search: &str) -> String {
    let trimmed = search.trim();
    let phone_like = trimmed.chars().any(|c| c.is_ascii_digit())
        && trimmed
            .chars()
            .all(|c| c.is_ascii_digit() || " +-/().".contains(c));
    match phone_like {
        true => digits(trimmed),
        false => fold(trimmed),
    }
}

/// How a rule prices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// The price is the rule's value.
    FixedPrice,
    /// The catalog price less the rule's value in percent (0 to 100).
    PercentOff,
}

impl RuleKind {
    pub fn parse(text: &str) -> Option<RuleKind> {
        match text {
            "fixed_price" => Some(RuleKind::FixedPrice),
            "percent_off" => Some(RuleKind::PercentOff),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::FixedPrice => "fixed_price",
            RuleKind::PercentOff => "percent_off",
        }
    }
}

/// One rule with its list's name and validity.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub id: Uuid,
    pub price_list_id: Uuid,
    pub price_list: String,
    pub kind: RuleKind,
    pub value: Decimal,
    pub valid_from: Option<NaiveDate>,
    pub valid_to: Option<NaiveDate>,
}

impl Rule {
    fn valid_on(&self, date: NaiveDate) -> bool {
        self.valid_from.is_none_or(|f| f <= date) && self.valid_to.is_none_or(|t| date <= t)
    }

    /// The price this rule gives a product whose catalog price is `list_price`.
    pub fn price(&self, list_price: Decimal, scale: u32) -> Decimal {
        match self.kind {
            RuleKind::FixedPrice => round_half_up(self.value, scale),
            RuleKind::PercentOff => round_half_up(
                list_price * (Decimal::ONE_HUNDRED - self.value) / Decimal::ONE_HUNDRED,
                scale,
            ),
        }
    }
}

/// The rule a price came from, as a sale line shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AppliedRule {
    pub price_list_id: Uuid,
    pub price_list: String,
    pub rule_id: Uuid,
    pub kind: RuleKind,
    /// The fixed price, or the percent off.
    #[schema(example = "10")]
    pub value: String,
}

/// A price from a customer's price list.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub price: Decimal,
    pub rule: AppliedRule,
}

/// The rules of one customer group's lists, by what they price: a product, or a category with
/// the categories below it (each with its distance from the rule's category).
#[derive(Debug, Default)]
pub struct GroupPrices {
    pub by_product: HashMap<Uuid, Vec<Rule>>,
    pub by_category: HashMap<Uuid, Vec<(u32, Rule)>>,
}

impl GroupPrices {
    /// The price of a product (`product_id` in `category_id`, catalog price `list_price`) for this
    /// group on calendar date `on`, if a rule applies (the rules in the module doc).
    pub fn price(
        &self,
        product_id: Uuid,
        category_id: Option<Uuid>,
        list_price: Decimal,
        on: NaiveDate,
        scale: u32,
    ) -> Option<Applied> {
        fn best<'r>(
            rules: impl Iterator<Item = &'r Rule>,
            on: NaiveDate,
            list_price: Decimal,
            scale: u32,
        ) -> Option<(Decimal, &'r Rule)> {
            rules
                .filter(|r| r.valid_on(on))
                .map(|r| (r.price(list_price, scale), r))
                .min_by(|(pa, ra), (pb, rb)| pa.cmp(pb).then(ra.id.cmp(&rb.id)))
        }
        let own = self
            .by_product
            .get(&product_id)
            .and_then(|rules| best(rules.iter(), on, list_price, scale));
        let chosen = own.or_else(|| {
            let rules = self.by_category.get(&category_id?)?;
            let nearest = rules
                .iter()
                .filter(|(_, r)| r.valid_on(on))
                .map(|(d, _)| *d)
                .min()?;
            best(
                rules.iter().filter(|(d, _)| *d == nearest).map(|(_, r)| r),
                on,
                list_price,
                scale,
            )
        })?;
        let (price, rule) = chosen;
        Some(Applied {
            price,
            rule: AppliedRule {
                price_list_id: rule.price_list_id,
                price_list: rule.price_list.clone(),
                rule_id: rule.id,
                kind: rule.kind,
                value: rule.value.normalize().to_string(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(text: &str) -> Decimal {
        text.parse().unwrap()
    }

    fn rule(kind: RuleKind, value: &str, from: Option<&str>, to: Option<&str>) -> Rule {
        Rule {
            id: Uuid::now_v7(),
            price_list_id: Uuid::nil(),
            price_list: "staff".to_owned(),
            kind,
            value: dec(value),
            valid_from: from.map(|d| d.parse().unwrap()),
            valid_to: to.map(|d| d.parse().unwrap()),
        }
    }

    fn day(d: &str) -> NaiveDate {
        d.parse().unwrap()
    }

    #[test]
    fn a_products_own_rule_beats_its_categorys_and_the_nearer_category_wins() {
        let (product, child, parent) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let mut prices = GroupPrices::default();
        prices.by_category.insert(
            child,
            vec![
                (0, rule(RuleKind::PercentOff, "10", None, None)),
                (1, rule(RuleKind::PercentOff, "50", None, None)),
            ],
        );
        let _ = parent;
        let got = prices
            .price(product, Some(child), dec("10.00"), day("2026-12-07"), 2)
            .unwrap();
        assert_eq!(got.price, dec("9.00"), "the nearer category's 10 % off");
        prices.by_product.insert(
            product,
            vec![rule(RuleKind::FixedPrice, "9.50", None, None)],
        );
        let got = prices
            .price(product, Some(child), dec("10.00"), day("2026-12-07"), 2)
            .unwrap();
        assert_eq!(
            got.price,
            dec("9.50"),
            "the product's own rule, though dearer"
        );
        assert_eq!(got.rule.kind, RuleKind::FixedPrice);
        assert_eq!(got.rule.value, "9.5");
    }

    #[test]
    fn validity_dates_are_inclusive_and_the_cheapest_of_equals_wins() {
        let product = Uuid::now_v7();
        let mut prices = GroupPrices::default();
        prices.by_product.insert(
            product,
            vec![
                rule(
                    RuleKind::PercentOff,
                    "20",
                    Some("2026-12-01"),
                    Some("2026-12-07"),
                ),
                rule(RuleKind::PercentOff, "5", None, None),
            ],
        );
        let on = |d| {
            prices
                .price(product, None, dec("3.33"), day(d), 2)
                .map(|a| a.price)
        };
        assert_eq!(on("2026-11-30"), Some(dec("3.16")), "5 % off, half-up");
        assert_eq!(on("2026-12-01"), Some(dec("2.66")));
        assert_eq!(on("2026-12-07"), Some(dec("2.66")), "the last day counts");
        assert_eq!(on("2026-12-08"), Some(dec("3.16")));
        assert_eq!(
            prices.price(Uuid::now_v7(), None, dec("1"), day("2026-12-07"), 2),
            None,
            "no rule: the catalog price"
        );
    }

    #[test]
    fn a_customer_is_found_by_name_email_or_phone_digits() {
        assert_eq!(
            search_text(
                "Zoë Ångström",
                Some("Zoe@Example.org"),
                Some("+49 (30) 123-45")
            ),
            "zoe angstrom zoe@example.org 493012345"
        );
        assert_eq!(search_key(" 030 123 "), "030123");
        assert_eq!(search_key("Ångström"), "angstrom");
        assert_eq!(search_key("R2-D2"), "r2-d2", "letters: not a phone number");
    }
}
