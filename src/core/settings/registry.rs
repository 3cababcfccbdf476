//! The typed settings registry: every business setting is declared, with its type, default,
//! constraints, description, the permissions to see and to change it, and whether a change needs
//! a reason, by the module that reads it (core's own below, a plug's in its manifest through
//! `Module::settings`). Only declared keys can be stored, and a value is stored only once it fits
//! its declaration ([`Setting::check`]). Pure: no SQL, no state.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde_json::{Value, json};

/// Seeing the business settings.
pub const READ: &str = "administration.settings.read";
/// Changing the business settings (each setting may ask for another permission).
pub const MANAGE: &str = "administration.settings.manage";

/// A setting's type, with its constraints.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SettingType {
    /// `true` or `false`. Booleans that turn a behaviour on or off are the feature switches.
    Bool,
    /// A whole number in `min..=max`.
    Integer { min: i64, max: i64 },
    /// An amount of money in the business currency, stored as a string (`"0.05"`): no more
    /// decimals than the currency has, at most `max`; `positive`: at least its smallest unit.
    Amount {
        positive: bool,
        max: Option<&'static str>,
    },
    /// Text of 1 to `max_chars` characters, without control characters.
    Text { max_chars: usize },
    /// A list of at most `max_items` distinct names (`[a-z][a-z0-9_]*`).
    Names { max_items: usize },
    /// A list of objects whose shape the setting's own rule checks ([`Setting::rule`]).
    Objects { max_items: usize },
    /// Printed lines: a list of at most `max_items` texts of 1 to `max_chars` characters
    /// without control characters (a receipt's address).
    Lines { max_items: usize, max_chars: usize },
}

impl SettingType {
    /// Its name in the API (`bool`, `integer`, `amount`, `text`, `names`, `objects`, `lines`).
    pub fn name(self) -> &'static str {
        match self {
            SettingType::Bool => "bool",
            SettingType::Integer { .. } => "integer",
            SettingType::Amount { .. } => "amount",
            SettingType::Text { .. } => "text",
            SettingType::Names { .. } => "names",
            SettingType::Objects { .. } => "objects",
            SettingType::Lines { .. } => "lines",
        }
    }

    /// Its constraints as the API shows them.
    pub fn constraints(self) -> Value {
        match self {
            SettingType::Bool => json!({}),
            SettingType::Integer { min, max } => json!({"min": min, "max": max}),
            SettingType::Amount { positive, max } => {
                json!({"min": if positive { "the currency's smallest unit" } else { "0" }, "max": max})
            }
            SettingType::Text { max_chars } => json!({"min_chars": 1, "max_chars": max_chars}),
            SettingType::Lines {
                max_items,
                max_chars,
            } => json!({"max_items": max_items, "max_chars": max_chars}),
            SettingType::Names { max_items } | SettingType::Objects { max_items } => {
                json!({"max_items": max_items})
            }
        }
    }
}

/// A setting's default.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DefaultValue {
    Bool(bool),
    Integer(i64),
    Decimal(&'static str),
    Text(&'static str),
    EmptyList,
    /// Not set (`null`): the setting may be left unset, and set back to `null` (a tax id).
    Unset,
    /// The business currency's smallest unit (`"0.01"` for EUR, `"1"` for JPY).
    MinorUnit,
}

impl DefaultValue {
    /// The default as a stored value, for a currency with `currency_scale` decimals.
    pub fn value(self, currency_scale: u32) -> Value {
        match self {
            DefaultValue::Bool(b) => json!(b),
            DefaultValue::Integer(n) => json!(n),
            DefaultValue::Decimal(d) | DefaultValue::Text(d) => json!(d),
            DefaultValue::EmptyList => json!([]),
            DefaultValue::Unset => Value::Null,
            DefaultValue::MinorUnit => json!(Decimal::new(1, currency_scale).to_string()),
        }
    }
}

/// A setting's rule beyond its type: why a value is refused.
pub type Rule = fn(&Value) -> Result<(), String>;

/// One declared setting.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// `<area>.<name>`, lowercase (`numbering.receipt_format`).
    pub key: &'static str,
    pub value_type: SettingType,
    pub default: DefaultValue,
    /// What it does, for the settings list and the API description.
    pub description: &'static str,
    /// Seeing it needs this permission.
    pub read: &'static str,
    /// Changing it needs this permission; `None`: fixed at setup, never changed through the API.
    pub write: Option<&'static str>,
    /// A change must say why (`reason`), kept in the audit record.
    pub needs_reason: bool,
    /// A rule beyond the type (a receipt format must contain `{number}`): why a value is refused.
    pub rule: Option<Rule>,
}

impl Setting {
    /// A setting anyone with [`READ`] sees and anyone with [`MANAGE`] changes, without reason.
    pub const fn new(
        key: &'static str,
        value_type: SettingType,
        default: DefaultValue,
        description: &'static str,
    ) -> Setting {
        Setting {
            key,
            value_type,
            default,
            description,
            read: READ,
            write: Some(MANAGE),
            needs_reason: false,
            rule: None,
        }
    }

    /// Changing it needs `reason`.
    pub const fn with_reason(mut self) -> Setting {
        self.needs_reason = true;
        self
    }

    /// Seen with `read`, changed with `write`.
    pub const fn guarded(mut self, read: &'static str, write: &'static str) -> Setting {
        self.read = read;
        self.write = Some(write);
        self
    }

    /// Fixed at setup.
    pub const fn fixed(mut self) -> Setting {
        self.write = None;
        self
    }

    /// Checked by `rule` besides its type.
    pub const fn with_rule(mut self, rule: Rule) -> Setting {
        self.rule = Some(rule);
        self
    }

    /// `value` as it is stored if it fits the declaration, else why not (one sentence), for a
    /// business whose currency has `currency_scale` decimals. Amounts may come as numbers or
    /// strings and are stored as strings.
    pub fn check(&self, value: &Value, currency_scale: u32) -> Result<Value, String> {
        if value.is_null() && matches!(self.default, DefaultValue::Unset) {
            return Ok(Value::Null);
        }
        let stored = match self.value_type {
            SettingType::Bool if value.is_boolean() => Ok(value.clone()),
            SettingType::Bool => Err("must be true or false".to_owned()),
            SettingType::Integer { min, max } => match value.as_i64() {
                Some(n) if (min..=max).contains(&n) => Ok(value.clone()),
                _ => Err(format!("must be a whole number from {min} to {max}")),
            },
            SettingType::Amount { positive, max } => amount(value, positive, max, currency_scale),
            SettingType::Text { max_chars } => match value.as_str() {
                Some(s)
                    if !s.trim().is_empty()
                        && s.chars().count() <= max_chars
                        && !s.chars().any(char::is_control) =>
                {
                    Ok(value.clone())
                }
                _ => Err(format!(
                    "must be text of 1 to {max_chars} characters without control characters"
                )),
            },
            SettingType::Names { max_items } => names(value, max_items),
            SettingType::Objects { max_items } => match value.as_array() {
                Some(items) if items.len() <= max_items && items.iter().all(Value::is_object) => {
                    Ok(value.clone())
                }
                _ => Err(format!("must be a list of at most {max_items} objects")),
            },
            SettingType::Lines {
                max_items,
                max_chars,
            } => match value.as_array() {
                Some(items)
                    if items.len() <= max_items
                        && items.iter().all(|i| {
                            i.as_str().is_some_and(|s| {
                                !s.trim().is_empty()
                                    && s.chars().count() <= max_chars
                                    && !s.chars().any(char::is_control)
                            })
                        }) =>
                {
                    Ok(value.clone())
                }
                _ => Err(format!(
                    "must be a list of at most {max_items} lines of 1 to {max_chars} characters without control characters"
                )),
            },
        }?;
        if let Some(rule) = self.rule {
            rule(&stored)?;
        }
        Ok(stored)
    }
}

/// An amount's text, whether it came as a JSON string or number.
fn decimal_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

fn amount(
    value: &Value,
    positive: bool,
    max: Option<&str>,
    currency_scale: u32,
) -> Result<Value, String> {
    let text = decimal_text(value);
    let smallest = Decimal::new(1, currency_scale);
    let min = if positive { smallest } else { Decimal::ZERO };
    let max_d = max.and_then(|m| m.parse::<Decimal>().ok());
    match text.parse::<Decimal>() {
        Ok(d)
            if d >= min
                && max_d.is_none_or(|m| d <= m)
                && d.normalize().scale() <= currency_scale
                && text.len() <= 24 =>
        {
            Ok(json!(d.normalize().to_string()))
        }
        _ => {
            let up_to = max.map(|m| format!(" up to {m}")).unwrap_or_default();
            Err(format!(
                "must be an amount from {min}{up_to} with at most {currency_scale} decimals, like \"{smallest}\""
            ))
        }
    }
}

fn names(value: &Value, max_items: usize) -> Result<Value, String> {
    let names: Option<Vec<&str>> = value
        .as_array()
        .and_then(|items| items.iter().map(Value::as_str).collect());
    match names {
        Some(names)
            if names.len() <= max_items
                && names.iter().all(|n| is_name(n))
                && names
                    .iter()
                    .enumerate()
                    .all(|(i, n)| !names[..i].contains(n)) =>
        {
            Ok(value.clone())
        }
        _ => Err(format!(
            "must be a list of at most {max_items} distinct names (lowercase letters, digits, _)"
        )),
    }
}

fn is_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && s.len() <= 64
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The declared settings, by key, each with the module that declared it.
#[derive(Debug, Clone)]
pub struct Registry {
    settings: BTreeMap<&'static str, (&'static str, Setting)>,
}

impl Registry {
    /// The registry of `declared` (module id, its settings). A key declared twice is a
    /// programming error: the second declaration is refused loudly.
    pub fn new<'a>(
        declared: impl IntoIterator<Item = (&'static str, &'a [Setting])>,
    ) -> Result<Registry, String> {
        let mut settings = BTreeMap::new();
        for (module, list) in declared {
            for setting in list {
                let well_formed = setting.key.split('.').count() >= 2
                    && setting.key.split('.').all(is_name)
                    && setting.check(&setting.default.value(2), 2).is_ok();
                if !well_formed {
                    return Err(format!(
                        "setting `{}` of {module} has a malformed key or a default that does not fit it",
                        setting.key
                    ));
                }
                if let Some((first, _)) = settings.insert(setting.key, (module, *setting)) {
                    return Err(format!(
                        "setting `{}` is declared by {first} and {module}",
                        setting.key
                    ));
                }
            }
        }
        Ok(Registry { settings })
    }

    /// The setting `key` and its module.
    pub fn get(&self, key: &str) -> Option<(&'static str, &Setting)> {
        self.settings.get(key).map(|(m, s)| (*m, s))
    }

    /// Every setting, by key.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &Setting)> {
        self.settings.values().map(|(m, s)| (*m, s))
    }
}

/// The settings core reads itself (the business's money and numbering rules are declared by the
/// plugs that apply them).
pub const CORE: &[Setting] = &[
    Setting::new(
        "business.currency_scale",
        SettingType::Integer { min: 0, max: 4 },
        DefaultValue::Integer(2),
        "Decimals of the business currency's smallest unit; fixed at setup from the currency.",
    )
    .fixed(),
    Setting::new(
        "security.mfa_required_roles",
        SettingType::Names { max_items: 50 },
        DefaultValue::EmptyList,
        "Roles whose users must use two-factor authentication: they are asked to enrol at their next login.",
    )
    .guarded(READ, "administration.roles.manage")
    .with_reason(),
    Setting::new(
        "support.log_days",
        SettingType::Integer { min: 1, max: 30 },
        DefaultValue::Integer(3),
        "Days of logs the support bundle includes (plugpos support-bundle, POST /api/v1/support-bundle).",
    ),
    Setting::new(
        "sync.outbox_retention_days",
        SettingType::Integer { min: 1, max: 365 },
        DefaultValue::Integer(30),
        "Days the change feed keeps a change for a till that has not pulled it: a till away longer must take a new snapshot (410 sync.cursor_expired).",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn amount() -> Setting {
        Setting::new(
            "cash.threshold",
            SettingType::Amount {
                positive: false,
                max: Some("1000"),
            },
            DefaultValue::Decimal("0"),
            "x",
        )
    }

    #[test]
    fn values_are_checked_against_their_type() {
        assert_eq!(amount().check(&json!("5.50"), 2).unwrap(), json!("5.5"));
        assert_eq!(amount().check(&json!(2), 2).unwrap(), json!("2"));
        for bad in [
            json!("-1"),
            json!("1000.01"),
            json!("abc"),
            json!(true),
            json!("0.001"),
        ] {
            assert!(amount().check(&bad, 2).is_err(), "{bad}");
        }
        let scale = CORE[0];
        assert!(scale.check(&json!(4), 2).is_ok());
        assert_eq!(
            scale.check(&json!(5), 2).unwrap_err(),
            "must be a whole number from 0 to 4"
        );
        assert!(scale.check(&json!("4"), 2).is_err());
        let roles = CORE[1];
        assert!(roles.check(&json!(["manager", "super_admin"]), 2).is_ok());
        assert!(roles.check(&json!(["Manager"]), 2).is_err());
        assert!(roles.check(&json!(["a", "a"]), 2).is_err());
        let rounding = Setting::new(
            "payment.cash_rounding",
            SettingType::Amount {
                positive: true,
                max: Some("100"),
            },
            DefaultValue::MinorUnit,
            "x",
        );
        assert_eq!(rounding.check(&json!("0.05"), 2).unwrap(), json!("0.05"));
        assert_eq!(
            rounding.check(&json!("0.001"), 2).unwrap_err(),
            "must be an amount from 0.01 up to 100 with at most 2 decimals, like \"0.01\""
        );
        assert!(
            rounding.check(&json!("0.5"), 0).is_err(),
            "yen have no decimals"
        );
        assert!(rounding.check(&json!("0"), 2).is_err());
    }

    #[test]
    fn a_key_is_declared_once() {
        assert!(Registry::new([("core", CORE), ("cash", &[amount()][..])]).is_ok());
        let twice = Registry::new([("core", CORE), ("other", &CORE[..1])]).unwrap_err();
        assert_eq!(
            twice,
            "setting `business.currency_scale` is declared by core and other"
        );
    }
}
