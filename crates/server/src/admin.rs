//! Console administrators (issue 17): passwords (argon2id), console
//! sessions in an `HttpOnly`, `SameSite=Strict` cookie, and the CSRF rules
//! for requests that the cookie authenticates.
//!
//! A session is just another admin credential: [`session_principal`] turns
//! a valid cookie into the same [`Principal::Key`] an admin key gives, so
//! the console goes through the public handlers. Every request it
//! authenticates whose method changes something must carry the session's
//! CSRF token in `X-CSRF-Token`, and an `Origin` header, when present, must
//! be this server's own origin. A bearer credential, when present, wins.

use crate::AppState;
use crate::auth::{Principal, hash_key, random_bytes};
use crate::error::ApiError;
use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Argon2, PasswordHash, PasswordVerifier};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use belfry_core::Millis;
use belfry_store::{AdminSession, ApiKeyInfo, NewAdmin, Scope};
use std::sync::OnceLock;

/// The session cookie's name.
pub const COOKIE: &str = "belfry_admin";
/// The header that carries the session's CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Shortest password accepted, in characters.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longest password accepted, in bytes (hashing cost stays bounded).
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Failed sign-ins for one address within [`LOCKOUT_WINDOW_MS`] that lock it.
pub const LOCKOUT_FAILURES: usize = 5;
pub const LOCKOUT_WINDOW_MS: i64 = 15 * 60 * 1000;
/// A session ends this long after it started, however active.
pub const SESSION_MAX_SECS: i64 = 7 * 24 * 3600;
/// A session's idle expiry is moved on at most this often (one write).
const TOUCH_EVERY_MS: i64 = 60 * 1000;

/// A new admin id such as `adm_8f3a…`.
pub fn new_admin_id() -> String {
    let bytes: [u8; 8] = random_bytes();
    format!(
        "adm_{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// 32 random bytes, base64url: cookie values and CSRF tokens.
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

/// The argon2id hash (PHC string) of a password.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::encode_b64(&random_bytes::<16>()).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `password` matches the stored hash; a hash that cannot be read
/// matches nothing.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A hash to check passwords against when the address is unknown, so that
/// an unknown address costs the same time as a wrong password.
pub fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| hash_password(&random_token()).expect("hashing a random password"))
}

/// What a new admin must be; every problem at once.
pub fn validate_new_admin(
    email: Option<&str>,
    name: Option<&str>,
    password: Option<&str>,
) -> Result<NewAdminFields, belfry_core::ValidationErrors> {
    let mut e = belfry_core::ValidationErrors::new();
    let email = match email {
        None => {
            e.add("email", "is required");
            None
        }
        Some(v) => e.take("email", belfry_core::EmailAddress::parse(v)),
    };
    let name = match name.map(str::trim) {
        None => {
            e.add("name", "is required");
            None
        }
        Some("") => {
            e.add("name", "must not be empty");
            None
        }
        Some(n) if n.chars().count() > 200 => {
            e.add("name", "is longer than 200 characters");
            None
        }
        Some(n) if n.chars().any(char::is_control) => {
            e.add("name", "must not contain control characters");
            None
        }
        Some(n) => Some(n.to_string()),
    };
    let password = match password {
        None => {
            e.add("password", "is required");
            None
        }
        Some(p) => match check_password(p) {
            Ok(()) => Some(p.to_string()),
            Err(m) => {
                e.add("password", m);
                None
            }
        },
    };
    e.finish(())?;
    Ok(NewAdminFields {
        email: email.expect("checked").as_str().to_string(),
        name: name.expect("checked"),
        password: password.expect("checked"),
    })
}

/// A new admin's fields, validated (the password still in clear).
pub struct NewAdminFields {
    pub email: String,
    pub name: String,
    pub password: String,
}

impl NewAdminFields {
    /// Hashes the password (slow on purpose: run it off the async threads).
    pub fn into_record(self) -> Result<NewAdmin, String> {
        Ok(NewAdmin {
            id: new_admin_id(),
            email: self.email,
            name: self.name,
            password_hash: hash_password(&self.password)?,
        })
    }
}

/// The password rules: at least 12 characters, at most 1024 bytes.
pub fn check_password(p: &str) -> Result<(), String> {
    if p.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!(
            "must be at least {MIN_PASSWORD_CHARS} characters long"
        ));
    }
    if p.len() > MAX_PASSWORD_BYTES {
        return Err(format!("must be at most {MAX_PASSWORD_BYTES} bytes long"));
    }
    Ok(())
}

/// The session cookie's value, if the request has one.
pub fn session_cookie(parts: &Parts) -> Option<String> {
    cookie(&parts.headers, COOKIE)
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Whether the request reached Belfry over https (directly behind a
/// proxy that says so, or a public URL that is https).
pub fn is_https(headers: &HeaderMap, state: &AppState) -> bool {
    let forwarded = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    forwarded
        || state
            .config
            .public_url
            .as_deref()
            .is_some_and(|u| u.to_ascii_lowercase().starts_with("https://"))
}

/// `scheme://host[:port]` of a URL.
fn origin_of(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    Some(u.origin().ascii_serialization())
}

/// Whether an `Origin` header names this server: the public URL's origin,
/// or the scheme and `Host` the request came with.
pub fn same_origin(headers: &HeaderMap, state: &AppState, origin: &str) -> bool {
    let Some(origin) = origin_of(origin) else {
        return false;
    };
    if let Some(public) = state.config.public_url.as_deref().and_then(origin_of)
        && public == origin
    {
        return true;
    }
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let scheme = if is_https(headers, state) {
        "https"
    } else {
        "http"
    };
    origin_of(&format!("{scheme}://{host}")).is_some_and(|own| own == origin)
}

fn csrf_failed(detail: &str) -> ApiError {
    ApiError::Status {
        status: StatusCode::FORBIDDEN,
        code: "csrf_failed",
        detail: detail.to_string(),
        retry_after: None,
    }
}

/// A cross-site request is refused: an `Origin` that is not this server's.
pub fn check_origin(headers: &HeaderMap, state: &AppState) -> Result<(), ApiError> {
    match headers.get(header::ORIGIN) {
        None => Ok(()),
        Some(o) => match o.to_str() {
            Ok(o) if same_origin(headers, state, o) => Ok(()),
            _ => Err(csrf_failed(
                "the request comes from another origin than this server's; the console's \
                 session works only on its own pages",
            )),
        },
    }
}

/// Constant-time equality of two tokens.
fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The CSRF rules for a request the session cookie authenticates.
pub fn check_csrf(
    method: &Method,
    headers: &HeaderMap,
    state: &AppState,
    session: &AdminSession,
) -> Result<(), ApiError> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let token = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !same_token(token, &session.csrf_token) {
        return Err(csrf_failed(
            "a change made with the console's session needs the session's csrf_token in the \
             X-CSRF-Token header (GET /v1/admin/session returns it)",
        ));
    }
    check_origin(headers, state)
}

/// The live session the cookie names, its idle expiry moved on.
pub async fn live_session(
    headers: &HeaderMap,
    state: &AppState,
) -> Result<Option<([u8; 32], AdminSession)>, ApiError> {
    let Some(value) = cookie(headers, COOKIE) else {
        return Ok(None);
    };
    let hash = hash_key(&value);
    let now = state.clock.now();
    let Some(mut session) = state.store.admin_session(hash, now).await? else {
        return Ok(None);
    };
    if now.0 - session.last_seen_at.0 >= TOUCH_EVERY_MS {
        let expires_at = idle_expiry(state, session.created_at, now);
        state
            .store
            .touch_admin_session(hash, now, expires_at)
            .await?;
        session.last_seen_at = now;
        session.expires_at = expires_at;
    }
    Ok(Some((hash, session)))
}

/// When a session used at `now` ends: after the idle time, and at most
/// [`SESSION_MAX_SECS`] after it started.
pub fn idle_expiry(state: &AppState, started: Millis, now: Millis) -> Millis {
    let idle = now.plus_secs(state.config.admin_session_idle_secs);
    idle.min(started.plus_secs(SESSION_MAX_SECS))
}

/// A request authenticated by the console's session cookie: an admin
/// credential, after the CSRF rules.
pub async fn session_principal(parts: &Parts, state: &AppState) -> Result<Principal, ApiError> {
    let (_, session) = live_session(&parts.headers, state).await?.ok_or_else(|| {
        ApiError::Unauthorized(
            "the console session has ended (signed out or idle too long); sign in again".into(),
        )
    })?;
    check_csrf(&parts.method, &parts.headers, state, &session)?;
    Ok(Principal::Key(session_key(&session)))
}

/// What the handlers see of a session: an admin key named after the admin
/// (its id is the admin's, so a notification's `sender` names who sent it).
pub fn session_key(session: &AdminSession) -> ApiKeyInfo {
    ApiKeyInfo {
        id: session.admin.id.clone(),
        name: format!("console session of {}", session.admin.email),
        scopes: vec![Scope::Admin],
        prefix: String::new(),
        created_at: session.created_at,
        revoked_at: None,
        source: None,
    }
}

/// `Set-Cookie` for a new session.
pub fn set_cookie(value: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={SESSION_MAX_SECS}{}",
        if secure { "; Secure" } else { "" }
    )
}

/// `Set-Cookie` that removes the session cookie.
pub fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("correct horse batterY", &h));
        assert!(!verify_password("x", "not a hash"));
        assert_ne!(h, hash_password("correct horse battery").unwrap(), "salted");
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            "a=1; belfry_admin=xyz; b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&h, COOKIE).as_deref(), Some("xyz"));
        assert_eq!(cookie(&h, "c"), None);
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, "belfry_admin=".parse().unwrap());
        assert_eq!(cookie(&h, COOKIE), None);
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", "ab"));
        assert!(!same_token("", "a"));
    }

    #[test]
    fn new_admins_are_checked_all_at_once() {
        let e = validate_new_admin(Some("nope"), Some(" "), Some("short"))
            .err()
            .unwrap();
        let fields: Vec<&str> = e.0.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["email", "name", "password"]);
        let ok = validate_new_admin(Some("Ana@Example.com"), Some(" Ana "), Some("twelve chars"))
            .ok()
            .unwrap();
        assert_eq!(ok.email, "ana@example.com");
        assert_eq!(ok.name, "Ana");
    }
}
