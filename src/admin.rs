//! The admin's credentials, sessions, CSRF tokens and login rate limit.
//!
//! Sessions are stateless: the cookie carries its expiry and a nonce, signed with HMAC-SHA256
//! under a per-install secret (`DATA_DIR/admin-secret`, made on first start) and the current
//! session generation (`DATA_DIR/admin-sessions`, a random token): logging out draws a new one,
//! which ends every session issued before, a copied cookie included (there is one admin account).
//! Random rather than a counter, so that no later generation can ever equal an ended one (a
//! counter written back by a failed write and a restart would bring old sessions back).
//! Cookies are HttpOnly and SameSite=Strict; forms also carry a CSRF token derived from the
//! session.
//! Credentials are compared in constant time, and failed logins are limited per client address.
//! With no password in the config, the appliance generates one on first start, stores it in
//! `DATA_DIR/admin-password` (mode 0600) and prints it once in the log: there is no default.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use anyhow::Context;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::secrets::{create_private, hex, random_hex, read_or_create};
use crate::slots::{self, Slot};

pub const COOKIE_NAME: &str = "tf_admin";
pub const SESSION_TTL_MS: u64 = 12 * 60 * 60 * 1000;
/// Failed logins allowed per client address within a window; then it is locked until the window ends.
pub const LOGIN_FAILURES_MAX: u32 = 5;
pub const LOGIN_WINDOW_MS: u64 = 60_000;
/// Past `LOGIN_FAILURES_MAX` failures in a window, every attempt from that address waits this
/// long before its password is checked, doubling with each further failure up to the maximum.
/// Slowed, never locked: behind one NAT the owner shares the attacker's address, and the right
/// password still signs in (after the wait).
pub const LOGIN_DELAY_MS_MIN: u64 = 1_000;
pub const LOGIN_DELAY_MS_MAX: u64 = 8_000;
/// Slowed attempts waiting at once, from all addresses; more are refused at once ("busy"), so
/// a flood of parallel guesses cannot multiply the attempts a delay allows.
pub const LOGINS_DELAYED_MAX: usize = 8;
/// Addresses tracked by the limiter at most (oldest windows are dropped first).
pub const LIMITER_ADDRESSES_MAX: usize = 4096;
const LOGIN_CSRF_BUCKET_MS: u64 = 60 * 60 * 1000;

type HmacSha256 = Hmac<Sha256>;

/// When a session (already checked valid) was issued: its expiry less the session's lifetime.
pub fn session_issued_at_ms(session: &str) -> u64 {
    let expiry = session.split('.').nth(1).and_then(|e| e.parse::<u64>().ok()).unwrap_or(0);
    expiry.saturating_sub(SESSION_TTL_MS)
}

pub struct Admin {
    user_digest: [u8; 32],
    password_digest: [u8; 32],
    secret: Vec<u8>,
    failures: Mutex<HashMap<IpAddr, (u32, u64)>>,
    /// Slowed login attempts waiting now.
    delayed_logins: std::sync::atomic::AtomicUsize,
    /// Sessions of other generations are over (see the module's doc). Its write lock also
    /// serializes logouts' writes of the file.
    generation: RwLock<String>,
    /// Where the generation is kept across restarts; `None` in unit tests.
    generation_file: Option<PathBuf>,
    /// Bumped at every logout: the live views' streams end at once.
    logouts: tokio::sync::watch::Sender<u64>,
}

impl Admin {
    /// Loads the install's secret and the admin password (from the config, else the data dir,
    /// else newly generated and logged once).
    pub fn load_or_create(data_dir: &Path, user: &str, password: Option<&str>) -> anyhow::Result<Admin> {
        let (secret, _) = read_or_create(&data_dir.join("admin-secret"), || random_hex(32))?;
        let password = match password {
            Some(p) => p.to_string(),
            None => {
                let path = data_dir.join("admin-password");
                let (password, created) = read_or_create(&path, || random_hex(10))?;
                if created {
                    tracing::warn!(
                        user,
                        password = %password,
                        file = %path.display(),
                        "generated the admin password (shown once; it is kept in the file)"
                    );
                }
                password
            }
        };
        let generation_file = data_dir.join("admin-sessions");
        let (generation, _) = read_or_create(&generation_file, || random_hex(16))?;
        let admin = Admin::new(user, &password, secret.as_bytes());
        Ok(Admin { generation: RwLock::new(generation), generation_file: Some(generation_file), ..admin })
    }

    pub fn new(user: &str, password: &str, secret: &[u8]) -> Admin {
        assert!(!secret.is_empty());
        Admin {
            user_digest: Sha256::digest(user.as_bytes()).into(),
            password_digest: Sha256::digest(password.as_bytes()).into(),
            secret: secret.to_vec(),
            failures: Mutex::new(HashMap::new()),
            delayed_logins: std::sync::atomic::AtomicUsize::new(0),
            generation: RwLock::new(String::new()),
            generation_file: None,
            logouts: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Changes at every logout.
    pub fn logouts(&self) -> tokio::sync::watch::Receiver<u64> {
        self.logouts.subscribe()
    }

    fn session_mac(&self, number: &str, expiry: &str, nonce: &str) -> String {
        let generation = self.generation.read().expect("generation lock");
        // The generation is the configured admin's: its logout ends every admin session. A
        // staff account's logout ends its own sessions (`staff::StaffRecord::sessions_since_ms`),
        // not everyone's at the doors.
        let generation = if number == "1" { generation.as_str() } else { "staff" };
        self.mac(&["session", generation, number, expiry, nonce])
    }

    /// Ends every session issued so far (logout). The new generation is kept in the data dir, so
    /// a restart does not bring old sessions back; if it cannot be written, they stay ended until
    /// the next restart, and the error says so.
    pub fn end_all_sessions(&self) -> anyhow::Result<()> {
        let mut generation = self.generation.write().expect("generation lock");
        *generation = random_hex(16);
        self.logouts.send_modify(|n| *n += 1);
        let Some(path) = &self.generation_file else { return Ok(()) };
        let temporary = path.with_extension("tmp");
        let _ = std::fs::remove_file(&temporary);
        create_private(&temporary, &format!("{generation}\n"))?;
        std::fs::rename(&temporary, path).with_context(|| format!("renaming onto {}", path.display()))?;
        // The rename is durable once the directory is.
        let directory = path.parent().expect("a file in the data dir");
        std::fs::File::open(directory)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("syncing {}", directory.display()))
    }

    fn mac(&self, parts: &[&str]) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.secret).expect("any key length");
        for part in parts {
            mac.update(part.as_bytes());
            mac.update(b"\x00");
        }
        hex(&mac.finalize().into_bytes())
    }

    /// Constant time in the inputs: both digests are always compared in full.
    pub fn credentials_match(&self, user: &str, password: &str) -> bool {
        let user_ok = Sha256::digest(user.as_bytes()).ct_eq(&self.user_digest);
        let password_ok = Sha256::digest(password.as_bytes()).ct_eq(&self.password_digest);
        (user_ok & password_ok).into()
    }

    /// A new session cookie value for staff member `number` (`staff::ADMIN_NUMBER` for the
    /// configured admin): `number.expiry.nonce.mac`.
    pub fn new_session(&self, now_ms: u64, number: u32) -> String {
        let (number, expiry) = (number.to_string(), (now_ms + SESSION_TTL_MS).to_string());
        let nonce = random_hex(16);
        let mac = self.session_mac(&number, &expiry, &nonce);
        format!("{number}.{expiry}.{nonce}.{mac}")
    }

    /// The session in a `Cookie` header and its staff number, if it is ours, intact, of this
    /// generation and not expired (whether that staff account still exists is the caller's).
    pub fn session_from_cookies(&self, cookie_header: Option<&str>, now_ms: u64) -> Option<(String, u32)> {
        let value = cookie_header?
            .split(';')
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == COOKIE_NAME)?
            .1;
        self.session_number(value, now_ms).map(|number| (value.to_string(), number))
    }

    /// Whether a session value is ours, intact, of this generation and not expired (checked
    /// again by long-lived streams: a logout or the expiry ends them).
    pub fn session_still_valid(&self, session: &str, now_ms: u64) -> bool {
        self.session_number(session, now_ms).is_some()
    }

    /// The staff number of a valid session.
    fn session_number(&self, session: &str, now_ms: u64) -> Option<u32> {
        let mut parts = session.splitn(4, '.');
        let (Some(number), Some(expiry), Some(nonce), Some(mac)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let expected = self.session_mac(number, expiry, nonce);
        let valid = bool::from(expected.as_bytes().ct_eq(mac.as_bytes()))
            && expiry.parse::<u64>().is_ok_and(|expiry| expiry > now_ms);
        valid.then(|| number.parse().ok()).flatten()
    }

    pub fn session_cookie(value: &str) -> String {
        format!("{COOKIE_NAME}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}", SESSION_TTL_MS / 1000)
    }

    pub fn clear_cookie() -> String {
        format!("{COOKIE_NAME}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
    }

    /// The CSRF token for a session's forms, or for the login form (bound to the hour).
    pub fn csrf_token(&self, session: Option<&str>, now_ms: u64) -> String {
        match session {
            Some(session) => self.mac(&["csrf", session]),
            None => self.mac(&["csrf-login", &(now_ms / LOGIN_CSRF_BUCKET_MS).to_string()]),
        }
    }

    pub fn csrf_valid(&self, session: Option<&str>, token: &str, now_ms: u64) -> bool {
        let candidates = match session {
            Some(session) => vec![self.mac(&["csrf", session])],
            None => {
                let bucket = now_ms / LOGIN_CSRF_BUCKET_MS;
                vec![
                    self.mac(&["csrf-login", &bucket.to_string()]),
                    self.mac(&["csrf-login", &bucket.saturating_sub(1).to_string()]),
                ]
            }
        };
        candidates.iter().fold(false, |ok, c| ok | bool::from(c.as_bytes().ct_eq(token.as_bytes())))
    }

    /// How long an attempt from this address waits before its password is checked (0: not
    /// slowed).
    pub fn login_delay_ms(&self, address: IpAddr, now_ms: u64) -> u64 {
        let failures = self.failures.lock().expect("limiter lock");
        match failures.get(&address) {
            Some((count, since)) if now_ms < since + LOGIN_WINDOW_MS && *count >= LOGIN_FAILURES_MAX => {
                let doublings = (count - LOGIN_FAILURES_MAX).min(16);
                (LOGIN_DELAY_MS_MIN << doublings).min(LOGIN_DELAY_MS_MAX)
            }
            _ => 0,
        }
    }

    /// A place among the `LOGINS_DELAYED_MAX` slowed attempts, held until it is dropped.
    pub fn delayed_login_slot(&self) -> Option<Slot<'_>> {
        slots::take(&self.delayed_logins, LOGINS_DELAYED_MAX)
    }

    pub fn login_failed(&self, address: IpAddr, now_ms: u64) {
        let mut failures = self.failures.lock().expect("limiter lock");
        if failures.len() >= LIMITER_ADDRESSES_MAX && !failures.contains_key(&address) {
            failures.retain(|_, (_, since)| now_ms < *since + LOGIN_WINDOW_MS);
            if failures.len() >= LIMITER_ADDRESSES_MAX {
                // Under a flood of addresses, forget the oldest window rather than grow.
                if let Some(oldest) = failures.iter().min_by_key(|(_, (_, since))| *since).map(|(a, _)| *a) {
                    failures.remove(&oldest);
                }
            }
        }
        let entry = failures.entry(address).or_insert((0, now_ms));
        if now_ms >= entry.1 + LOGIN_WINDOW_MS {
            *entry = (0, now_ms);
        }
        entry.0 += 1;
    }

    pub fn login_succeeded(&self, address: IpAddr) {
        self.failures.lock().expect("limiter lock").remove(&address);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin() -> Admin {
        Admin::new("admin", "s3cret-pass", b"install-secret")
    }

    #[test]
    fn credentials() {
        let a = admin();
        assert!(a.credentials_match("admin", "s3cret-pass"));
        assert!(!a.credentials_match("admin", "s3cret-pas"));
        assert!(!a.credentials_match("root", "s3cret-pass"));
        assert!(!a.credentials_match("", ""));
    }

    #[test]
    fn sessions_are_signed_and_expire() {
        let a = admin();
        let s = a.new_session(1_000, 7);
        let header = format!("other=1; {COOKIE_NAME}={s}");
        assert_eq!(a.session_from_cookies(Some(&header), 2_000), Some((s.clone(), 7)));
        let other_staff = s.replacen("7.", "8.", 1);
        assert!(!a.session_still_valid(&other_staff, 2_000), "the number is signed");
        assert_eq!(a.session_from_cookies(Some(&header), 1_000 + SESSION_TTL_MS), None, "expired");
        let forged = s.replacen("7.4", "7.5", 1);
        assert_ne!(forged, s);
        assert_eq!(a.session_from_cookies(Some(&format!("{COOKIE_NAME}={forged}")), 2_000), None);
        let other_install = Admin::new("admin", "s3cret-pass", b"another-secret");
        assert_eq!(other_install.session_from_cookies(Some(&header), 2_000), None);
        assert_eq!(a.session_from_cookies(None, 0), None);
        assert!(Admin::session_cookie(&s).contains("HttpOnly; SameSite=Strict"));
        assert!(a.session_still_valid(&s, 2_000));
        assert!(!a.session_still_valid(&forged, 2_000));
    }

    #[test]
    fn logging_out_ends_every_session_and_survives_a_restart() {
        let dir = std::env::temp_dir().join(format!("tigerfans-admin-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let a = Admin::load_or_create(&dir, "admin", Some("s3cret-pass")).unwrap();
        let (one, two) = (a.new_session(0, 1), a.new_session(0, 1));
        assert!(a.session_still_valid(&one, 1) && a.session_still_valid(&two, 1));
        a.end_all_sessions().unwrap();
        assert!(!a.session_still_valid(&one, 1) && !a.session_still_valid(&two, 1), "both ended");
        let three = a.new_session(0, 1);
        assert!(a.session_still_valid(&three, 1));
        // The same install after a restart: the ended ones stay ended, the new one lives.
        let restarted = Admin::load_or_create(&dir, "admin", Some("s3cret-pass")).unwrap();
        assert!(!restarted.session_still_valid(&one, 1));
        assert!(restarted.session_still_valid(&three, 1));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn csrf_tokens_bind_to_the_session() {
        let a = admin();
        let s = a.new_session(0, 1);
        let t = a.csrf_token(Some(&s), 0);
        assert!(a.csrf_valid(Some(&s), &t, 0));
        assert!(!a.csrf_valid(Some(&a.new_session(0, 1)), &t, 0));
        let login = a.csrf_token(None, 5);
        assert!(a.csrf_valid(None, &login, LOGIN_CSRF_BUCKET_MS + 5), "valid into the next hour");
        assert!(!a.csrf_valid(None, &login, 3 * LOGIN_CSRF_BUCKET_MS));
        assert!(!a.csrf_valid(None, "", 0));
    }

    #[test]
    fn failed_logins_are_limited_per_address() {
        let a = admin();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..LOGIN_FAILURES_MAX {
            assert_eq!(a.login_delay_ms(ip, 100), 0);
            a.login_failed(ip, 100);
        }
        assert_eq!(a.login_delay_ms(ip, 200), LOGIN_DELAY_MS_MIN, "slowed, not locked");
        a.login_failed(ip, 200);
        assert_eq!(a.login_delay_ms(ip, 300), 2 * LOGIN_DELAY_MS_MIN);
        for _ in 0..20 {
            a.login_failed(ip, 300);
        }
        assert_eq!(a.login_delay_ms(ip, 400), LOGIN_DELAY_MS_MAX);
        assert_eq!(a.login_delay_ms(other, 200), 0);
        assert_eq!(a.login_delay_ms(ip, 100 + LOGIN_WINDOW_MS), 0, "the window passes");
        let slots: Vec<_> = (0..LOGINS_DELAYED_MAX).map(|_| a.delayed_login_slot().unwrap()).collect();
        assert!(a.delayed_login_slot().is_none(), "at most {LOGINS_DELAYED_MAX} slowed attempts wait");
        drop(slots);
        assert!(a.delayed_login_slot().is_some());
    }
}
