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
/// A price beyond this (a million in the currency's major unit) is a typo, and keeps every sum
/// of prices far from overflowing.
pub const PRICE_CENTS_MAX: u64 = 100_000_000;
/// Names in `allowed_hosts` at most.
pub const ALLOWED_HOSTS_MAX: usize = 32;
/// A config file larger than this is not one (16 classes fit in a few KiB).
pub const CONFIG_FILE_BYTES_MAX: u64 = 1024 * 1024;
/// Bytes of a text shown on the pages (names, the date, the tagline, the admin user).
pub const TEXT_LEN_MAX: usize = 200;

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
    /// MockPay signs webhook bodies with this secret (HMAC-SHA256). `None`: the appliance
    /// generates one on first start and keeps it in the data dir (`secrets::webhook_secret`);
    /// a default known to everyone would let anyone sign "payment succeeded" for their order.
    #[serde(default)]
    pub webhook_secret: Option<String>,
    #[serde(default = "default_admin_user")]
    pub admin_user: String,
    /// `None`: the appliance generates one on first start and keeps it in the data dir.
    #[serde(default)]
    pub admin_password: Option<String>,
    /// Serve `/api/accounting/reserve` and `/commit` (the bare accounting path the reference's
    /// benchmark calls). They change state on GET and anyone can use them to take tickets
    /// without an order (a cross-site `<img>` could place holds): off unless asked for, here
    /// or with `serve --accounting-endpoints`.
    #[serde(default)]
    pub accounting_endpoints: bool,
    /// Per client address (an IPv6 /64): checkouts begun per minute, and tickets on hold at
    /// once (`throttle`); 0 turns a limit off. 127.0.0.1 and ::1 (the kiosk, a benchmark on the
    /// appliance itself) are not limited.
    #[serde(default = "default_checkouts_per_minute_per_client")]
    pub checkouts_per_minute_per_client: u32,
    #[serde(default = "default_holds_per_client")]
    pub holds_per_client: u32,
    /// Host names the appliance answers to besides its addresses, `localhost` and the machine's
    /// own name (`http::hosts`): the name the venue gives it, e.g. `tickets.venue.lan`.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// The demo payment provider: its page, its buttons, and online checkout. With it on,
    /// anyone can mark their own order paid (a demo, a kiosk, the Ticket Challenge). A real
    /// event sets it false: online sales close (403) and tickets are sold at the box office.
    #[serde(default = "default_mockpay")]
    pub mockpay: bool,
    /// Exit scans: a ticket that leaves may come in once more (up to `accounting::ENTRIES_MAX`
    /// entries); the ledger still holds at most one unit inside per ticket. Off: one entry.
    #[serde(default)]
    pub re_entry: bool,
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
fn default_checkouts_per_minute_per_client() -> u32 {
    30
}
fn default_holds_per_client() -> u32 {
    20
}
fn default_mockpay() -> bool {
    true
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
            webhook_secret: None,
            admin_user: default_admin_user(),
            admin_password: None,
            accounting_endpoints: false,
            checkouts_per_minute_per_client: default_checkouts_per_minute_per_client(),
            holds_per_client: default_holds_per_client(),
            allowed_hosts: Vec::new(),
            mockpay: default_mockpay(),
            re_entry: false,
        }
    }
}

impl Config {
    /// Reads a TOML (`.toml`) or JSON (anything else starting with `{`) file and validates it.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let bytes = std::fs::metadata(path).with_context(|| format!("reading config file {}", path.display()))?.len();
        ensure!(bytes <= CONFIG_FILE_BYTES_MAX, "config file {} is over {CONFIG_FILE_BYTES_MAX} bytes", path.display());
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
            check_text(&format!("class {:?}: name", class.id), &class.name)?;
            ensure!(
                class.price_cents > 0 && class.price_cents <= PRICE_CENTS_MAX,
                "class {:?}: price_cents must be between 1 and {PRICE_CENTS_MAX}, got {}",
                class.id,
                class.price_cents
            );
            ensure!(
                class.capacity >= 1 && class.capacity <= CAPACITY_MAX,
                "class {:?}: capacity must be between 1 and {CAPACITY_MAX}, got {}",
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
        for (field, text) in
            [("event_name", &self.event_name), ("event_date", &self.event_date), ("event_tagline", &self.event_tagline)]
        {
            check_text(field, text)?;
        }
        if let Some(secret) = &self.webhook_secret {
            check_secret("webhook_secret", secret, 8)?;
        }
        ensure!(self.allowed_hosts.len() <= ALLOWED_HOSTS_MAX, "at most {ALLOWED_HOSTS_MAX} allowed_hosts");
        for host in &self.allowed_hosts {
            let valid = !host.is_empty()
                && host.len() <= 253
                && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            ensure!(valid, "allowed_hosts: {host:?} is not a host name");
        }
        ensure!(!self.admin_user.trim().is_empty(), "admin_user must not be empty or blank");
        check_text("admin_user", &self.admin_user)?;
        if let Some(password) = &self.admin_password {
            check_secret("admin_password", password, ADMIN_PASSWORD_LEN_MIN)
                .context("leave admin_password out to have one generated")?;
        }
        Ok(())
    }

    pub fn class(&self, id: &str) -> Option<&TicketClass> {
        self.classes.iter().find(|c| c.id == id)
    }
}

/// A text the pages show: bounded, and without control characters (a NUL, a right-to-left
/// override that turns a name around on the screen, a line break in a log line).
fn check_text(field: &str, text: &str) -> anyhow::Result<()> {
    ensure!(text.len() <= TEXT_LEN_MAX, "{field} is {} bytes, more than {TEXT_LEN_MAX}", text.len());
    let control = text.chars().find(|c| c.is_control() || is_bidi_control(*c));
    ensure!(control.is_none(), "{field} contains the control character {:?}", control.unwrap_or_default());
    Ok(())
}

/// Unicode's explicit direction controls (embeddings, overrides, isolates, marks).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// A secret: long enough, not blank, and not a placeholder left unfilled (the bundle's
/// `__GENERATED_WEBHOOK_SECRET__` used as the secret would make it public).
fn check_secret(field: &str, secret: &str, len_min: usize) -> anyhow::Result<()> {
    ensure!(secret.len() >= len_min, "{field} must be at least {len_min} bytes");
    ensure!(!secret.trim().is_empty(), "{field} must not be blank");
    ensure!(
        !(secret.starts_with("__") && secret.ends_with("__")),
        "{field} is the placeholder {secret:?}: put a secret there (install.sh generates one)"
    );
    check_text(field, secret)
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
            r#", "webhook_secret": "__GENERATED_WEBHOOK_SECRET__""#,
            r#", "admin_password": """#,
            r#", "admin_password": "1234567""#,
            r#", "admin_password": "        ""#,
            r#", "admin_password": "__GENERATED_ADMIN_PASSWORD__""#,
            r#", "admin_user": " ""#,
            r#", "event_name": "a\u0000b""#,
            r#", "event_name": "evil\u202etxt.exe""#,
            r#", "event_tagline": "line\nbreak""#,
            r#", "unknown_field": 1"#,
        ] {
            let text = format!("{base}{extra}}}");
            assert!(Config::parse(&text, None).is_err(), "accepted {text}");
        }
        let bad_class = r#"{"classes": [{"id": "TOO-LONG-ID", "name": "a", "price_cents": 1, "capacity": 1}]}"#;
        assert!(Config::parse(bad_class, None).is_err());
        for class in [
            r#"{"id": "A", "name": "a", "price_cents": 1, "capacity": 0}"#,
            r#"{"id": "A", "name": "a", "price_cents": 18446744073709551615, "capacity": 1}"#,
            r#"{"id": "A", "name": "a\u202e", "price_cents": 1, "capacity": 1}"#,
        ] {
            let text = format!(r#"{{"classes": [{class}]}}"#);
            assert!(Config::parse(&text, None).is_err(), "accepted {text}");
        }
        let huge = format!(r#"{{"event_tagline": "{}", {}"#, "x".repeat(60 << 20), &base[1..]);
        let refused = format!("{:#}", Config::parse(&format!("{huge}}}"), None).unwrap_err());
        assert!(refused.contains("event_tagline is 62914560 bytes"), "{refused}");
        let dup = r#"{"classes": [{"id": "A", "name": "a", "price_cents": 1, "capacity": 1},
                                  {"id": "A", "name": "b", "price_cents": 1, "capacity": 1}]}"#;
        assert!(Config::parse(dup, None).is_err());
        assert!(Config::parse(r#"{"classes": []}"#, None).is_err());
    }
}
