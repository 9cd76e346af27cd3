//! Authentication and authorisation: secret keys (random, stored as SHA-256,
//! scoped `send` or `admin`), short-lived user tokens (HS256 JWTs signed with
//! a secret kept in the store) and their revocations, and the extractors
//! that demand them.
//!
//! Checking a user token costs no database query: the signature and `exp`
//! are checked, and its `iat` (in milliseconds) against the node's
//! in-memory [`Revocations`], which every node keeps up to date from the
//! store's `TokensRevoked` events.

use crate::AppState;
use crate::error::ApiError;
use aws_lc_rs::digest;
use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::header;
use axum::http::request::Parts;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use belfry_core::{Millis, UserId};
use belfry_store::{ApiKeyInfo, NewApiKey, Scope};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// Every secret key starts with this, so that it is recognisable in logs
/// and by secret scanners.
pub const KEY_PREFIX: &str = "bfy_sk_";

/// SHA-256 of a secret key, as stored.
pub fn hash_key(secret: &str) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, secret.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    aws_lc_rs::rand::fill(&mut buf).expect("the system random source works");
    buf
}

/// A new random key id such as `key_8f3a…`.
fn new_key_id() -> String {
    let bytes: [u8; 8] = random_bytes();
    format!(
        "key_{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// A key to store, built from its secret.
pub fn key_record(secret: &str, name: &str, scopes: Vec<Scope>) -> NewApiKey {
    NewApiKey {
        id: new_key_id(),
        name: name.to_string(),
        scopes,
        prefix: secret.chars().take(KEY_PREFIX.len() + 6).collect(),
        hash: hash_key(secret),
        source: None,
    }
}

/// Generates a new secret key; returns the secret (shown once) and what to store.
pub fn generate_key(name: &str, scopes: Vec<Scope>) -> (String, NewApiKey) {
    let secret = format!(
        "{KEY_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(random_bytes::<32>())
    );
    let record = key_record(&secret, name, scopes);
    (secret, record)
}

/// Checks a key given by an operator (`BELFRY_ADMIN_KEY`).
pub fn validate_operator_key(secret: &str) -> Result<(), String> {
    if !secret.starts_with(KEY_PREFIX) {
        return Err(format!(
            "must start with {KEY_PREFIX} (generate one with `belfry keys generate`)"
        ));
    }
    if secret.len() < KEY_PREFIX.len() + 32 {
        return Err("is too short: use at least 32 random characters after the prefix".into());
    }
    if !secret.chars().all(|c| c.is_ascii_graphic()) {
        return Err("may only contain printable ASCII characters".into());
    }
    Ok(())
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    iat: i64,
    /// When it was issued, in milliseconds (revocations are compared to the
    /// millisecond; `iat` is in seconds, as JWT has it). Tokens issued
    /// before this claim existed count as `iat * 1000`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat_ms: Option<i64>,
    exp: i64,
    /// Always "user": these tokens reach one user's inbox only.
    scope: String,
}

/// A genuine, unexpired user token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserToken {
    pub user: UserId,
    pub issued_at: Millis,
    pub expires_at: Millis,
}

/// Issues and checks user tokens.
#[derive(Clone)]
pub struct TokenSigner {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

/// The keys hold the signing secret: never printed.
impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSigner(HS256, [REDACTED])")
    }
}

impl TokenSigner {
    pub fn new(secret: &[u8]) -> Self {
        // Selects the aws-lc-rs backend; a second call finds it installed.
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
        }
    }

    /// A token for `user` issued at `issued_at` (see
    /// [`Revocations::issue_time`]), valid for `ttl_secs` from then.
    pub fn issue(&self, user: &UserId, issued_at: Millis, ttl_secs: i64) -> (String, Millis) {
        let iat = issued_at.0 / 1000;
        let exp = iat + ttl_secs;
        let claims = Claims {
            sub: user.to_string(),
            iat,
            iat_ms: Some(issued_at.0),
            exp,
            scope: "user".into(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing cannot fail");
        (token, Millis(exp * 1000))
    }

    /// The token, if it is genuine and not expired at `now` (revocations
    /// are checked by [`Revocations`]).
    pub fn verify(&self, token: &str, now: Millis) -> Result<UserToken, String> {
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry is checked against Belfry's clock below, not the system's.
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).map_err(|_| {
                "the token is not valid (malformed or not signed by this server)".to_string()
            })?;
        if data.claims.scope != "user" {
            return Err("the token is not a user token".into());
        }
        if data.claims.exp * 1000 <= now.0 {
            return Err("the token has expired; ask the host application for a new one".into());
        }
        let user = UserId::parse(&data.claims.sub)
            .map_err(|_| "the token names no valid user".to_string())?;
        Ok(UserToken {
            user,
            issued_at: Millis(data.claims.iat_ms.unwrap_or(data.claims.iat * 1000)),
            expires_at: Millis(data.claims.exp * 1000),
        })
    }
}

/// The token revocations this node knows: per user, the moment up to which
/// (inclusive) their tokens are refused. Loaded from the store on start and
/// after events may have been missed, updated by `TokensRevoked` events from
/// every node (and at once by the node that revoked). A revocation older
/// than the longest token lifetime refuses nothing unexpired, so it is
/// dropped: the map holds at most the revocations of the last 30 days.
#[derive(Debug, Default)]
pub struct Revocations {
    users: RwLock<HashMap<UserId, Millis>>,
}

impl Revocations {
    const KEEP_MS: i64 = belfry_core::MAX_USER_TOKEN_TTL_SECS * 1000;

    /// Tokens of `user` issued at or before `after` are revoked.
    pub fn record(&self, user: &UserId, after: Millis, now: Millis) {
        let mut users = self.users.write().expect("revocations");
        let horizon = now.0 - Self::KEEP_MS;
        users.retain(|_, a| a.0 >= horizon);
        if after.0 >= horizon {
            let entry = users.entry(user.clone()).or_insert(after);
            *entry = (*entry).max(after);
        }
    }

    /// Adds revocations read from the store.
    pub fn load(&self, list: Vec<(UserId, Millis)>, now: Millis) {
        for (user, after) in list {
            self.record(&user, after, now);
        }
    }

    /// The strict rule: a token issued in the revoking millisecond is revoked.
    pub fn is_revoked(&self, token: &UserToken) -> bool {
        self.users
            .read()
            .expect("revocations")
            .get(&token.user)
            .is_some_and(|after| token.issued_at <= *after)
    }

    /// When a token issued now says it was issued: `now`, or just after a
    /// revocation made in this same millisecond (or, with clocks apart, a
    /// later one), so that a token asked for after a revocation works.
    pub fn issue_time(&self, user: &UserId, now: Millis) -> Millis {
        match self.users.read().expect("revocations").get(user) {
            Some(after) if after.0 >= now.0 => Millis(after.0 + 1),
            _ => now,
        }
    }

    /// Users with a revocation in memory.
    pub fn len(&self) -> usize {
        self.users.read().expect("revocations").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Recently checked keys, so that most requests do not query the store.
/// Revocations made through this node take effect at once; those made
/// elsewhere (another node, the CLI) within [`KeyCache::TTL`].
#[derive(Default)]
pub struct KeyCache {
    entries: RwLock<HashMap<[u8; 32], (ApiKeyInfo, Instant)>>,
}

impl KeyCache {
    pub const TTL: Duration = Duration::from_secs(10);

    fn get(&self, hash: &[u8; 32]) -> Option<ApiKeyInfo> {
        let entries = self.entries.read().expect("key cache");
        entries
            .get(hash)
            .filter(|(_, at)| at.elapsed() < Self::TTL)
            .map(|(k, _)| k.clone())
    }

    fn put(&self, hash: [u8; 32], key: ApiKeyInfo) {
        let mut entries = self.entries.write().expect("key cache");
        if entries.len() > 10_000 {
            entries.retain(|_, (_, at)| at.elapsed() < Self::TTL);
        }
        entries.insert(hash, (key, Instant::now()));
    }

    /// Forgets a key (after it was revoked).
    pub fn forget(&self, id: &str) {
        self.entries
            .write()
            .expect("key cache")
            .retain(|_, (k, _)| k.id != id);
    }
}

/// Who is calling.
#[derive(Debug, Clone)]
pub enum Principal {
    Key(ApiKeyInfo),
    User(UserToken),
}

/// Checks a user token: genuine, unexpired, not revoked. No database query.
fn user_token(token: &str, state: &AppState) -> Result<UserToken, ApiError> {
    let t = state
        .tokens
        .verify(token, state.clock.now())
        .map_err(ApiError::Unauthorized)?;
    if state.hub.revocations.is_revoked(&t) {
        return Err(ApiError::Unauthorized(
            "the token has been revoked; ask the host application for a new one".into(),
        ));
    }
    Ok(t)
}

/// What a secret key in a URL gets: keys belong in a header, because URLs
/// end up in proxy and server logs, browser history and referrers.
pub const KEY_IN_QUERY: &str = "a secret key was sent in the query string; secret keys belong in the \
Authorization header ('Authorization: Bearer bfy_sk_…'). URLs end up in logs: revoke this key if \
the URL may have been recorded";

/// The bearer token of the `Authorization` header. Credentials are taken
/// from the header only; the stream endpoints alone also accept `?token=`
/// (see [`authenticate_stream`]).
fn bearer(parts: &Parts) -> Option<String> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

/// The `token` query parameter, if any.
fn query_token(parts: &Parts) -> Option<String> {
    parts.uri.query().and_then(|q| {
        serde_urlencoded::from_str::<Vec<(String, String)>>(q)
            .ok()?
            .into_iter()
            .find(|(name, _)| name == "token")
            .map(|(_, value)| value)
    })
}

/// Authenticates the request: a bearer key or token; without one, a
/// console session cookie (an admin credential, see [`crate::admin`]).
pub async fn authenticate(parts: &Parts, state: &AppState) -> Result<Principal, ApiError> {
    let Some(token) = bearer(parts) else {
        if crate::admin::session_cookie(parts).is_some() {
            return crate::admin::session_principal(parts, state).await;
        }
        return Err(ApiError::Unauthorized(
            "send a secret key or user token as 'Authorization: Bearer <token>'".into(),
        ));
    };
    if token.starts_with(KEY_PREFIX) {
        let hash = hash_key(&token);
        let key = match state.keys.get(&hash) {
            Some(k) => k,
            None => {
                let k = state
                    .store
                    .find_api_key(hash)
                    .await?
                    .ok_or_else(|| ApiError::Unauthorized("unknown secret key".into()))?;
                state.keys.put(hash, k.clone());
                k
            }
        };
        if key.revoked_at.is_some() {
            return Err(ApiError::Unauthorized(
                "this secret key has been revoked".into(),
            ));
        }
        if let Some(limiter) = &state.rate_limit
            && let Err(retry_after) = limiter.check(&key.id, state.clock.now())
        {
            return Err(ApiError::RateLimited { retry_after });
        }
        Ok(Principal::Key(key))
    } else {
        user_token(&token, state).map(Principal::User)
    }
}

/// Authenticates a stream request (`/v1/me/stream`, `/v1/me/ws`): a user
/// token in the `Authorization` header, or as `?token=` for clients that
/// cannot set headers (EventSource, browser WebSockets). Secret keys never
/// open streams, and are refused outright in a URL.
pub async fn authenticate_stream(parts: &Parts, state: &AppState) -> Result<UserToken, ApiError> {
    let principal = if parts.headers.contains_key(header::AUTHORIZATION) {
        authenticate(parts, state).await?
    } else {
        let token = query_token(parts).ok_or_else(|| {
            ApiError::Unauthorized(
                "send a user token as 'Authorization: Bearer <token>' (or ?token=<token> where \
                 headers cannot be set)"
                    .into(),
            )
        })?;
        if token.starts_with(KEY_PREFIX) {
            return Err(ApiError::Unauthorized(KEY_IN_QUERY.into()));
        }
        user_token(&token, state).map(Principal::User)?
    };
    match principal {
        Principal::User(user) => Ok(user),
        Principal::Key(_) => Err(ApiError::Forbidden(
            "streams are for browsers: connect with a user token (Authorization: Bearer or ?token=)"
                .into(),
        )),
    }
}

/// A secret key with the `send` (or `admin`) scope.
pub struct SendKey(pub ApiKeyInfo);

/// A secret key with the `admin` scope.
pub struct AdminKey(pub ApiKeyInfo);

const USER_TOKEN_FORBIDDEN: &str =
    "a user token reaches only /v1/me/...; this endpoint needs a secret key";

impl FromRequestParts<AppState> for SendKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match authenticate(parts, state).await? {
            Principal::Key(k) if k.allows(Scope::Send) => Ok(SendKey(k)),
            Principal::Key(_) => Err(ApiError::Forbidden("this key may not send".into())),
            Principal::User(_) => Err(ApiError::Forbidden(USER_TOKEN_FORBIDDEN.into())),
        }
    }
}

impl FromRequestParts<AppState> for AdminKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match authenticate(parts, state).await? {
            Principal::Key(k) if k.allows(Scope::Admin) => Ok(AdminKey(k)),
            Principal::Key(_) => Err(ApiError::Forbidden(
                "this endpoint needs a key with the admin scope; this key has only send".into(),
            )),
            Principal::User(_) => Err(ApiError::Forbidden(USER_TOKEN_FORBIDDEN.into())),
        }
    }
}

/// Whose inbox a request is about: the token's user on `/v1/me/...`, or the
/// `{user_id}` of `/v1/users/{user_id}/...` for an admin key.
pub struct InboxOwner(pub UserId);

impl FromRequestParts<AppState> for InboxOwner {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let principal = authenticate(parts, state).await?;
        let path_user = RawPathParams::from_request_parts(parts, state)
            .await
            .ok()
            .and_then(|params| {
                params
                    .iter()
                    .find(|(name, _)| *name == "user_id")
                    .map(|(_, v)| v.to_string())
            });
        match (principal, path_user) {
            (Principal::User(token), None) => Ok(InboxOwner(token.user)),
            (Principal::User(_), Some(_)) => Err(ApiError::Forbidden(
                "a user token reaches only its own inbox under /v1/me/...".into(),
            )),
            (Principal::Key(k), Some(user)) if k.allows(Scope::Admin) => UserId::parse(&user)
                .map(InboxOwner)
                .map_err(|e| ApiError::bad_request("invalid_path", e)),
            (Principal::Key(_), Some(_)) => Err(ApiError::Forbidden(
                "reading a user's inbox needs a key with the admin scope".into(),
            )),
            (Principal::Key(_), None) => Err(ApiError::Forbidden(
                "/v1/me/... needs a user token; with a secret key use /v1/users/{user_id}/..."
                    .into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_prefixed_and_hashed() {
        let (a, rec_a) = generate_key("a", vec![Scope::Send]);
        let (b, _) = generate_key("b", vec![Scope::Send]);
        assert_ne!(a, b);
        assert!(a.starts_with(KEY_PREFIX));
        assert!(validate_operator_key(&a).is_ok());
        assert_eq!(rec_a.hash, hash_key(&a));
        assert!(a.starts_with(&rec_a.prefix));
        assert!(validate_operator_key("secret").is_err());
    }

    #[test]
    fn tokens_expire_by_the_given_clock_and_resist_tampering() {
        let signer = TokenSigner::new(b"0123456789abcdef0123456789abcdef");
        let user = UserId::parse("u-1").unwrap();
        let now = Millis(1_800_000_000_000);
        let (token, exp) = signer.issue(&user, now, 60);
        assert_eq!(exp, now.plus_secs(60));
        let verified = signer.verify(&token, now).unwrap();
        assert_eq!(verified.user, user);
        assert_eq!(verified.issued_at, now);
        assert_eq!(verified.expires_at, exp);
        assert!(signer.verify(&token, now.plus_secs(60)).is_err());
        let other = TokenSigner::new(b"another secret of 32 bytes......");
        assert!(!format!("{signer:?}").contains("0123456789"));
        assert!(other.verify(&token, now).is_err());
        let mut tampered = token.clone();
        tampered.insert(token.len() - 5, 'x');
        assert!(signer.verify(&tampered, now).is_err());
    }

    #[test]
    fn a_revocation_refuses_tokens_up_to_its_millisecond_and_no_later() {
        let user = UserId::parse("u-1").unwrap();
        let other = UserId::parse("u-2").unwrap();
        let now = Millis(1_800_000_000_123);
        let token = |issued_at: Millis| UserToken {
            user: user.clone(),
            issued_at,
            expires_at: issued_at.plus_secs(60),
        };
        let r = Revocations::default();
        assert!(!r.is_revoked(&token(now)));
        assert_eq!(r.issue_time(&user, now), now);
        r.record(&user, now, now);
        assert!(r.is_revoked(&token(Millis(now.0 - 1))));
        assert!(r.is_revoked(&token(now)), "the same millisecond: revoked");
        assert!(!r.is_revoked(&token(Millis(now.0 + 1))));
        // A token asked for in the revoking millisecond is issued just after it.
        assert_eq!(r.issue_time(&user, now), Millis(now.0 + 1));
        assert_eq!(r.issue_time(&other, now), now);
        // A later clock issues at its own time; an older revocation never
        // lowers the recorded one.
        assert_eq!(r.issue_time(&user, now.plus_secs(1)), now.plus_secs(1));
        r.record(&user, Millis(now.0 - 500), now);
        assert!(r.is_revoked(&token(now)));
        // Older than the longest token lifetime: forgotten.
        let later = Millis(now.0 + Revocations::KEEP_MS + 1);
        r.record(&other, later, later);
        assert_eq!(r.len(), 1, "u-1's revocation was dropped");
        r.record(&user, now, later);
        assert_eq!(r.len(), 1, "too old to record");
    }

    #[test]
    fn tokens_without_milliseconds_count_from_their_second() {
        let signer = TokenSigner::new(b"0123456789abcdef0123456789abcdef");
        let claims = Claims {
            sub: "u-1".into(),
            iat: 1_800_000_000,
            iat_ms: None,
            exp: 1_800_000_060,
            scope: "user".into(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &signer.encoding)
            .unwrap();
        let t = signer.verify(&token, Millis(1_800_000_000_500)).unwrap();
        assert_eq!(t.issued_at, Millis(1_800_000_000_000));
    }
}
