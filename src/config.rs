//! The event configuration: what is sold, at what price, how long a hold lasts.
//!
//! Loaded once at start (TOML or JSON, or the built-in default that equals the reference demo),
//! validated once, then shared read-only. Everything downstream may assume a valid `Config`.

use std::path::Path;

use anyhow::{bail, ensure, Context};
use serde::{Deserialize, Serialize};

/// A ticket class id is packed into the low 64 bits of its TigerBeetle account ids,
/// so it is at most 8 bytes of `[A-Za-z0-9_-]`.
pub const CLASS_ID_LEN_MAX: usize = 8;
pub const CLASS_COUNT_MAX: usize = 16;
/// A sanity bound, far above any venue: TigerBeetle amounts are u128, but a typo should not fund
/// an account with 10^30 tickets.
pub const CAPACITY_MAX: u64 = 1_000_000_000;
pub const HOLD_TIMEOUT_S_MAX: u32 = 24 * 60 * 60;
/// A configured admin password shorter than this is refused at load (`""` most likely meant
/// "generate one", which is leaving the field out).
pub const ADMIN_PASSWORD_LEN_MIN: usize = 8;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Shown on the landing page.
    #[serde(default = "default_event_name")]
    pub event_name: String,
    #[serde(default)]
    pub event_date: String,
    #[serde(default)]
    pub event_tagline: String,
    /// The TigerBeetle ledger of this event. Account ids embed it, so two events (or two test
    /// runs) can share one cluster without seeing each other's accounts.
    #[serde(default = "default_ledger")]
    pub ledger: u32,
    /// ISO 4217 code; amounts are in its minor unit (cents).
    #[serde(default = "default_currency")]
    pub currency: String,
    pub classes: Vec<TicketClass>,
    /// Goodies go to the first `goodie_limit` orders (held at checkout, kept when paid).
    #[serde(default = "default_goodie_limit")]
    pub goodie_limit: u64,
    /// How long a checkout holds its ticket before TigerBeetle releases it.
    #[serde(default = "default_hold_timeout_s")]
    pub hold_timeout_s: u32,
    /// MockPay signs webhook bodies with this secret (HMAC-SHA256).
    #[serde(default = "default_webhook_secret")]
    pub webhook_secret: String,
    #[serde(default = "default_admin_user")]
    pub admin_user: String,
    /// `None`: the appliance generates one on first start and keeps it in the data dir.
    #[serde(default)]
    pub admin_password: Option<String>,
    /// Serve `/api/accounting/reserve` and `/commit` (the bare accounting path, for
    /// benchmarks). Anyone can use them to take tickets without an order: turn them off at a
    /// real event.
    #[serde(default = "default_true")]
    pub accounting_endpoints: bool,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketClass {
    pub id: String,
    pub name: String,
    pub price_cents: u64,
    pub capacity: u64,
}

fn default_event_name() -> String {
    "TigerFans Live".to_string()
}
fn default_ledger() -> u32 {
    1
}
fn default_currency() -> String {
    "EUR".to_string()
}
fn default_goodie_limit() -> u64 {
    100
}
fn default_hold_timeout_s() -> u32 {
    300
}
fn default_webhook_secret() -> String {
    "mockpay-demo-secret".to_string()
}
fn default_admin_user() -> String {
    "admin".to_string()
}

impl Default for Config {
    /// The reference demo's event: Premium (A) at 65.00 EUR, Standard (B) at 35.00 EUR,
    /// capacities large enough for benchmarks, goodies for the first 100 paid orders.
    fn default() -> Self {
        Config {
            event_name: default_event_name(),
            event_date: "2026-12-31".to_string(),
            event_tagline: "Oasis-scale ticketing on a Raspberry Pi".to_string(),
            ledger: default_ledger(),
            currency: default_currency(),
            classes: vec![
                TicketClass {
                    id: "A".to_string(),
                    name: "Premium".to_string(),
                    price_cents: 6500,
                    capacity: 1_000_000,
                },
                TicketClass {
                    id: "B".to_string(),
                    name: "Standard".to_string(),
                    price_cents: 3500,
                    capacity: 10_000_000,
                },
            ],
            goodie_limit: default_goodie_limit(),
            hold_timeout_s: default_hold_timeout_s(),
            webhook_secret: default_webhook_secret(),
            admin_user: default_admin_user(),
            admin_password: None,
            accounting_endpoints: true,
        }
    }
}

impl Config {
    /// Reads a TOML (`.toml`) or JSON (anything else starting with `{`) file and validates it.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
        let config = Config::parse(&text, path.extension().and_then(|e| e.to_str()))
            .with_context(|| format!("in config file {}", path.display()))?;
        Ok(config)
    }

    pub fn parse(text: &str, extension: Option<&str>) -> anyhow::Result<Config> {
        let is_json = match extension {
            Some("json") => true,
            Some("toml") => false,
            _ => text.trim_start().starts_with('{'),
        };
        let config: Config = if is_json {
            serde_json::from_str(text).context("invalid JSON config")?
        } else {
            toml::from_str(text).context("invalid TOML config")?
        };
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(self.ledger != 0, "ledger must not be 0 (TigerBeetle reserves it)");
        ensure!(
            self.currency.len() == 3 && self.currency.bytes().all(|b| b.is_ascii_uppercase()),
            "currency must be a 3-letter ISO 4217 code in capitals, got {:?}",
            self.currency
        );
        ensure!(!self.classes.is_empty(), "at least one ticket class is required");
        ensure!(
            self.classes.len() <= CLASS_COUNT_MAX,
            "at most {CLASS_COUNT_MAX} ticket classes, got {}",
            self.classes.len()
        );
        for (i, class) in self.classes.iter().enumerate() {
            if !is_valid_class_id(&class.id) {
                bail!("class id {:?} must be 1 to {CLASS_ID_LEN_MAX} characters of A-Z a-z 0-9 _ -", class.id);
            }
            if self.classes[..i].iter().any(|other| other.id == class.id) {
                bail!("class id {:?} appears twice", class.id);
            }
            ensure!(!class.name.trim().is_empty(), "class {:?} needs a name", class.id);
            ensure!(class.price_cents > 0, "class {:?}: price_cents must be > 0", class.id);
            ensure!(
                class.capacity <= CAPACITY_MAX,
                "class {:?}: capacity {} is over the limit {CAPACITY_MAX}",
                class.id,
                class.capacity
            );
        }
        ensure!(
            self.goodie_limit <= CAPACITY_MAX,
            "goodie_limit {} is over the limit {CAPACITY_MAX}",
            self.goodie_limit
        );
        ensure!(
            self.hold_timeout_s >= 1 && self.hold_timeout_s <= HOLD_TIMEOUT_S_MAX,
            "hold_timeout_s must be between 1 and {HOLD_TIMEOUT_S_MAX}, got {}",
            self.hold_timeout_s
        );
        ensure!(self.webhook_secret.len() >= 8, "webhook_secret must be at least 8 bytes");
        ensure!(!self.admin_user.is_empty(), "admin_user must not be empty");
        ensure!(
            self.admin_password.as_ref().map_or(true, |p| p.len() >= ADMIN_PASSWORD_LEN_MIN),
            "admin_password must be at least {ADMIN_PASSWORD_LEN_MIN} bytes (leave it out to have one generated)"
        );
        Ok(())
    }

    pub fn class(&self, id: &str) -> Option<&TicketClass> {
        self.classes.iter().find(|c| c.id == id)
    }
}

pub fn is_valid_class_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= CLASS_ID_LEN_MAX
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_matches_reference() {
        let config = Config::default();
        config.validate().unwrap();
        assert_eq!(config.class("A").unwrap().price_cents, 6500);
        assert_eq!(config.class("B").unwrap().price_cents, 3500);
        assert_eq!(config.currency, "EUR");
        assert_eq!(config.goodie_limit, 100);
        assert_eq!(config.hold_timeout_s, 300);
    }

    #[test]
    fn toml_and_json_parse() {
        let toml = r#"
            ledger = 7
            hold_timeout_s = 2
            [[classes]]
            id = "VIP"
            name = "Very"
            price_cents = 100
            capacity = 5
        "#;
        let config = Config::parse(toml, Some("toml")).unwrap();
        assert_eq!(config.ledger, 7);
        assert_eq!(config.classes[0].id, "VIP");
        let json = r#"{"classes": [{"id": "A", "name": "a", "price_cents": 1, "capacity": 1}]}"#;
        let config = Config::parse(json, None).unwrap();
        assert_eq!(config.hold_timeout_s, 300);
    }

    #[test]
    fn invalid_configs_are_refused() {
        let base = r#"{"classes": [{"id": "A", "name": "a", "price_cents": 1, "capacity": 1}]"#;
        for extra in [
            r#", "ledger": 0"#,
            r#", "currency": "eur""#,
            r#", "hold_timeout_s": 0"#,
            r#", "webhook_secret": "short""#,
            r#", "admin_password": """#,
            r#", "admin_password": "1234567""#,
            r#", "unknown_field": 1"#,
        ] {
            let text = format!("{base}{extra}}}");
            assert!(Config::parse(&text, None).is_err(), "accepted {text}");
        }
        let bad_class = r#"{"classes": [{"id": "TOO-LONG-ID", "name": "a", "price_cents": 1, "capacity": 1}]}"#;
        assert!(Config::parse(bad_class, None).is_err());
        let dup = r#"{"classes": [{"id": "A", "name": "a", "price_cents": 1, "capacity": 1},
                                  {"id": "A", "name": "b", "price_cents": 1, "capacity": 1}]}"#;
        assert!(Config::parse(dup, None).is_err());
        assert!(Config::parse(r#"{"classes": []}"#, None).is_err());
    }
}
