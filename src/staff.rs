//! Staff accounts: who may scan at the door, sell at the box office, or run the event. Pure
//! rules and the password hash; the store keeps the records, `admin` signs the sessions.
//!
//! The configured admin (`admin_user`/`admin_password`) is staff number 1 with the admin role;
//! the accounts the admin creates get the next numbers, never reused (a removed account's
//! record stays, marked removed, so an old admission or sale still names who made it, and a
//! new account of the same name cannot inherit its sessions).

use serde::{Deserialize, Serialize};

/// The configured admin's staff number.
pub const ADMIN_NUMBER: u32 = 1;
pub const NAME_LEN_MAX: usize = 32;
/// Bytes; Argon2 takes any length, the limit bounds the work a login can ask for.
pub const PASSWORD_LEN_MIN: usize = 8;
pub const PASSWORD_LEN_MAX: usize = 128;
/// Accounts at most, removed ones included.
pub const STAFF_MAX: usize = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    BoxOffice,
    Door,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "box_office" => Some(Role::BoxOffice),
            "door" => Some(Role::Door),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::BoxOffice => "box_office",
            Role::Door => "door",
        }
    }

    /// The admin may do everything a door or box-office account may.
    pub fn may(self, needed: Role) -> bool {
        self == Role::Admin || self == needed
    }

    /// Where a login of this role lands.
    pub fn home(self) -> &'static str {
        match self {
            Role::Admin => "/admin",
            Role::BoxOffice => "/box-office",
            Role::Door => "/door",
        }
    }
}

/// A staff account as the store keeps it (JSON; field names are the on-disk format).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StaffRecord {
    pub name: String,
    pub role: Role,
    pub number: u32,
    /// Argon2id, PHC string format.
    pub password_hash: String,
    pub created_at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed_at_ms: Option<u64>,
    /// Sessions issued before this end (the account's logout).
    #[serde(default)]
    pub sessions_since_ms: u64,
}

/// One line of the activity log: who did what (scan, sale, refund, account change) and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityEntry {
    pub at_ms: u64,
    pub staff: String,
    pub action: String,
    pub detail: String,
}

/// Who is signed in: a staff session's name, number and role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffMember {
    pub name: String,
    pub number: u32,
    pub role: Role,
    /// The session's cookie value (its CSRF token derives from it).
    pub session: String,
}

pub fn is_valid_name(name: &str) -> bool {
    (1..=NAME_LEN_MAX).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Hashes a new password (Argon2id with the crate's default cost: 19 MiB, 2 passes).
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    let hash = argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))?;
    Ok(hash.to_string())
}

/// Whether `password` matches a stored hash; a hash that does not parse matches nothing.
pub fn verify_password(password: &str, hash: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    match PasswordHash::new(hash) {
        Ok(parsed) => argon2::Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// A hash of a password nobody has: checked when a login names no account, so that an unknown
/// name costs as long as a wrong password (names cannot be probed by timing).
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password(&crate::secrets::random_hex(16)).expect("hashing works"))
}

/// Why a new account is refused, if it is.
pub fn check_new_account(name: &str, password: &str, admin_user: &str) -> Result<(), String> {
    if !is_valid_name(name) {
        return Err(format!("a staff name is 1 to {NAME_LEN_MAX} characters of A-Z, a-z, 0-9, '.', '_', '-'"));
    }
    if name == admin_user {
        return Err("that name is the configured admin's".into());
    }
    if password.len() < PASSWORD_LEN_MIN || password.len() > PASSWORD_LEN_MAX {
        return Err(format!("a password is {PASSWORD_LEN_MIN} to {PASSWORD_LEN_MAX} bytes"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_and_passwords() {
        assert!(Role::Admin.may(Role::Door) && Role::Door.may(Role::Door) && !Role::Door.may(Role::BoxOffice));
        assert!(!Role::BoxOffice.may(Role::Admin));
        for role in [Role::Admin, Role::BoxOffice, Role::Door] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("correct horsE", &hash));
        assert!(!verify_password("x", "not a hash"));
        assert_ne!(hash, hash_password("correct horse").unwrap(), "salted");
        assert!(!verify_password("", dummy_hash()));
        assert!(check_new_account("alice", "12345678", "admin").is_ok());
        assert!(check_new_account("alice", "1234567", "admin").is_err());
        assert!(check_new_account("admin", "12345678", "admin").is_err());
        assert!(check_new_account("a b", "12345678", "admin").is_err());
        assert!(check_new_account("", "12345678", "admin").is_err());
    }
}
