//! Access for people without an account (C9): the ES256 key pair that signs
//! access tokens (a JWT per external contact and entity, checked online by
//! `POST /v1/access-tokens/verify` or offline with the JWKS), and the
//! HS256 tokens of one-click unsubscribe links (RFC 8058), which only
//! Belfry reads.
//!
//! Access tokens and unsubscribe tokens are signed with different keys and
//! algorithms on purpose: a host application that verifies access tokens
//! with the JWKS can never be handed an unsubscribe token as one.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use belfry_core::{Category, EmailAddress, EntityRef, Millis, UserId};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// Default lifetime of an access token, in days.
pub const DEFAULT_TTL_DAYS: i64 = 14;
/// Longest lifetime of an access token, in days.
pub const MAX_TTL_DAYS: i64 = belfry_core::MAX_ACCESS_TOKEN_TTL_DAYS;

/// The P-256 key pair that signs access tokens. The private half never
/// appears in `Debug` output or logs.
pub struct AccessKey {
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// The JWK thumbprint (RFC 7638): the `kid` of tokens and of the JWKS.
    kid: String,
    x: String,
    y: String,
}

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKey")
            .field("kid", &self.kid)
            .field("private", &"[REDACTED]")
            .finish()
    }
}

impl AccessKey {
    /// From configuration: the 32-byte private scalar, base64url.
    pub fn from_base64url(private: &SecretString) -> Result<AccessKey, String> {
        crate::p256key::from_base64url(
            private,
            "is not base64url; give the 32-byte P-256 private key as base64url",
        )
        .and_then(AccessKey::from_pair)
    }

    /// A key derived from a stored random secret (the same on every node
    /// that shares the database).
    pub fn derive(seed: &[u8]) -> AccessKey {
        crate::p256key::derive(
            b"belfry access-token p-256 key\0",
            seed,
            AccessKey::from_pair,
        )
    }

    fn from_pair(pair: crate::p256key::Keypair) -> Result<AccessKey, String> {
        let point = &pair.public;
        let x = B64.encode(&point[1..33]);
        let y = B64.encode(&point[33..65]);
        // RFC 7638: the required members in lexicographic order, no spaces.
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = B64.encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            canonical.as_bytes(),
        ));
        let decoding = DecodingKey::from_ec_components(&x, &y)
            .map_err(|_| "has no usable public key".to_string())?;
        Ok(AccessKey {
            encoding: pair.encoding,
            decoding,
            kid,
            x,
            y,
        })
    }

    /// The key id (`kid`).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK (for `/.well-known/jwks.json`).
    pub fn jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "EC",
            "crv": "P-256",
            "x": self.x,
            "y": self.y,
            "kid": self.kid,
            "use": "sig",
            "alg": "ES256",
        })
    }
}

/// The entity claim of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityClaim {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Belfry's public URL.
    pub iss: String,
    /// The contact's email address.
    pub sub: String,
    pub entity: EntityClaim,
    /// Seconds, as JWT has it.
    pub iat: i64,
    /// Milliseconds: revocations compare to the millisecond.
    pub iat_ms: i64,
    pub exp: i64,
    /// The token's id (revocable on its own).
    pub jti: String,
}

/// A token as minted.
#[derive(Debug, Clone)]
pub struct MintedToken {
    pub token: String,
    pub id: String,
    pub expires_at: Millis,
}

/// A genuine access token, not expired (revocation is checked separately,
/// against the store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessGrant {
    pub id: String,
    pub email: EmailAddress,
    pub entity: EntityRef,
    pub issued_at: Millis,
    pub expires_at: Millis,
}

/// Why a token is refused (before revocation is asked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessError {
    /// Malformed, not signed by this server, or not an access token.
    Invalid,
    Expired,
}

/// Mints and checks access tokens with the [`AccessKey`].
#[derive(Debug, Clone)]
pub struct AccessTokens {
    key: std::sync::Arc<AccessKey>,
    issuer: String,
}

impl AccessTokens {
    pub fn new(key: std::sync::Arc<AccessKey>, issuer: impl Into<String>) -> Self {
        // Selects the aws-lc-rs backend; a second call finds it installed.
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
        Self {
            key,
            issuer: issuer.into(),
        }
    }

    pub fn key(&self) -> &AccessKey {
        &self.key
    }

    /// A token for `email` to open `entity`, issued at `now`, valid for
    /// `ttl_days` (1..=365; the caller validates it).
    pub fn mint(
        &self,
        email: &EmailAddress,
        entity: &EntityRef,
        now: Millis,
        ttl_days: i64,
    ) -> MintedToken {
        let iat = now.0.div_euclid(1000);
        let exp = iat + ttl_days * 86_400;
        let mut id_bytes = [0u8; 16];
        aws_lc_rs::rand::fill(&mut id_bytes).expect("the system random source works");
        let id = format!("at_{}", B64.encode(id_bytes));
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            sub: email.to_string(),
            entity: EntityClaim {
                kind: entity.kind.clone(),
                id: entity.id.clone(),
            },
            iat,
            iat_ms: now.0,
            exp,
            jti: id.clone(),
        };
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.key.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.key.encoding)
            .expect("ES256 signing with a valid key cannot fail");
        MintedToken {
            token,
            id,
            expires_at: Millis(exp * 1000),
        }
    }

    /// The token, if genuine and not expired at `now`.
    pub fn check(&self, token: &str, now: Millis) -> Result<AccessGrant, AccessError> {
        let mut validation = Validation::new(Algorithm::ES256);
        // Expiry is checked against Belfry's clock below, not the system's.
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        // The issuer is not compared: the key decides. Nodes behind one
        // public URL share it; a node reached at another address (tests,
        // a changed URL) still accepts the links already sent.
        let data = jsonwebtoken::decode::<AccessClaims>(token, &self.key.decoding, &validation)
            .map_err(|_| AccessError::Invalid)?;
        let c = data.claims;
        let email = EmailAddress::parse(&c.sub).map_err(|_| AccessError::Invalid)?;
        let entity =
            EntityRef::parse(&c.entity.kind, &c.entity.id).map_err(|_| AccessError::Invalid)?;
        if c.exp * 1000 <= now.0 {
            return Err(AccessError::Expired);
        }
        Ok(AccessGrant {
            id: c.jti,
            email,
            entity,
            issued_at: Millis(c.iat_ms),
            expires_at: Millis(c.exp * 1000),
        })
    }
}

/// What a one-click unsubscribe link ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsubscribe {
    /// An external contact's subscription to an entity.
    Contact {
        email: EmailAddress,
        entity: EntityRef,
    },
    /// A user's email for one category, or (without one) their email
    /// channel, switched off in their preferences.
    User {
        user: UserId,
        category: Option<Category>,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct UnsubscribeClaims {
    /// Always "unsubscribe".
    purpose: String,
    /// `contact` or `user`.
    kind: String,
    /// The contact's address or the user's id.
    sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    entity: Option<EntityClaim>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    category: Option<String>,
    /// The language of the email, for the pages the link leads to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lang: Option<String>,
    /// An answer link's notification and action (purpose "answer").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    action: Option<String>,
    iat: i64,
}

/// What a one-click answer link in an email answers (I7): a user's answer
/// to a callback action without a form. The page it opens asks first (a
/// GET changes nothing, so link scanners answer nothing); its POST answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerLink {
    pub user: UserId,
    /// The notification's public id.
    pub notification: String,
    /// The action's id.
    pub action: String,
}

/// Signs and reads unsubscribe tokens (HS256 with a secret kept in the
/// store). They do not expire: an unsubscribe link must keep working for
/// as long as the email is kept.
#[derive(Clone)]
pub struct UnsubscribeTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for UnsubscribeTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UnsubscribeTokens(HS256, [REDACTED])")
    }
}

impl UnsubscribeTokens {
    pub fn new(secret: &[u8]) -> Self {
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
        }
    }

    /// A token for `what`, from an email in `language` (`de`, `en`).
    pub fn sign(&self, what: &Unsubscribe, language: &str, now: Millis) -> String {
        let (kind, sub, entity, category) = match what {
            Unsubscribe::Contact { email, entity } => (
                "contact",
                email.to_string(),
                Some(EntityClaim {
                    kind: entity.kind.clone(),
                    id: entity.id.clone(),
                }),
                None,
            ),
            Unsubscribe::User { user, category } => (
                "user",
                user.to_string(),
                None,
                category.as_ref().map(|c| c.to_string()),
            ),
        };
        let claims = UnsubscribeClaims {
            purpose: "unsubscribe".into(),
            kind: kind.into(),
            sub,
            entity,
            category,
            lang: Some(language.to_string()),
            nid: None,
            action: None,
            iat: now.0.div_euclid(1000),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing cannot fail")
    }

    /// A token for a one-click answer link (same key, its own purpose: an
    /// answer link is never an unsubscribe link, nor the other way round).
    pub fn sign_answer(&self, link: &AnswerLink, language: &str, now: Millis) -> String {
        let claims = UnsubscribeClaims {
            purpose: "answer".into(),
            kind: "user".into(),
            sub: link.user.to_string(),
            entity: None,
            category: None,
            lang: Some(language.to_string()),
            nid: Some(link.notification.clone()),
            action: Some(link.action.clone()),
            iat: now.0.div_euclid(1000),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing cannot fail")
    }

    /// What an answer link answers, and its email's language.
    pub fn read_answer(&self, token: &str) -> Option<(AnswerLink, String)> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        let c = jsonwebtoken::decode::<UnsubscribeClaims>(token, &self.decoding, &validation)
            .ok()?
            .claims;
        if c.purpose != "answer" {
            return None;
        }
        Some((
            AnswerLink {
                user: UserId::parse(&c.sub).ok()?,
                notification: c.nid?,
                action: c.action?,
            },
            c.lang.unwrap_or_else(|| "en".into()),
        ))
    }

    /// What the token ends and the language of its email (`en` when it
    /// names none); None when it is not one Belfry signed.
    pub fn read(&self, token: &str) -> Option<(Unsubscribe, String)> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        let c = jsonwebtoken::decode::<UnsubscribeClaims>(token, &self.decoding, &validation)
            .ok()?
            .claims;
        if c.purpose != "unsubscribe" {
            return None;
        }
        let lang = c.lang.unwrap_or_else(|| "en".into());
        let what = match c.kind.as_str() {
            "contact" => {
                let e = c.entity?;
                Some(Unsubscribe::Contact {
                    email: EmailAddress::parse(&c.sub).ok()?,
                    entity: EntityRef::parse(&e.kind, &e.id).ok()?,
                })
            }
            "user" => Some(Unsubscribe::User {
                user: UserId::parse(&c.sub).ok()?,
                category: match c.category {
                    Some(cat) => Some(Category::parse(&cat).ok()?),
                    None => None,
                },
            }),
            _ => None,
        }?;
        Some((what, lang))
    }
}

/// Puts `token` where a URL pattern says `{token}`, and the entity where
/// it says `{entity_type}` / `{entity_id}` (each percent-encoded).
pub fn fill_pattern(pattern: &str, entity: &EntityRef, token: &str) -> String {
    pattern
        .replace("{entity_type}", &encode_component(&entity.kind))
        .replace("{entity_id}", &encode_component(&entity.id))
        .replace("{token}", &encode_component(token))
}

/// `url` with `access_token=<token>` added to its query (before any
/// fragment).
pub fn with_access_token(url: &str, token: &str) -> String {
    let (base, fragment) = match url.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (url, None),
    };
    let sep = if base.contains('?') { '&' } else { '?' };
    let mut out = format!("{base}{sep}access_token={}", encode_component(token));
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn encode_component(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Checks a contact link pattern (`BELFRY_CONTACT_LINK_URL`): an http(s)
/// URL with `{token}` in it.
pub fn check_link_pattern(pattern: &str) -> Result<(), String> {
    let lower = pattern.to_ascii_lowercase();
    if !(lower.starts_with("https://") || lower.starts_with("http://")) {
        return Err("must be an http(s) URL".into());
    }
    if !pattern.contains("{token}") {
        return Err(
            "must contain {token} (and may contain {entity_type} and {entity_id}), e.g. \
             https://desk.example.com/portal/tickets/{entity_id}?access_token={token}"
                .into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email(s: &str) -> EmailAddress {
        EmailAddress::parse(s).unwrap()
    }

    fn ticket(id: &str) -> EntityRef {
        EntityRef::parse("ticket", id).unwrap()
    }

    #[test]
    fn mints_checks_and_expires() {
        let tokens = AccessTokens::new(
            std::sync::Arc::new(AccessKey::derive(b"seed")),
            "https://belfry.example.com",
        );
        let now = Millis(1_800_000_000_123);
        let t = tokens.mint(&email("erika@example.org"), &ticket("9"), now, 14);
        let g = tokens.check(&t.token, now).unwrap();
        assert_eq!(g.email, email("erika@example.org"));
        assert_eq!(g.entity, ticket("9"));
        assert_eq!(g.id, t.id);
        assert_eq!(g.issued_at, now);
        assert_eq!(g.expires_at, Millis((now.0 / 1000 + 14 * 86_400) * 1000));
        assert_eq!(
            tokens.check(&t.token, g.expires_at),
            Err(AccessError::Expired)
        );
        // Another key does not accept it.
        let other = AccessTokens::new(
            std::sync::Arc::new(AccessKey::derive(b"other")),
            "https://belfry.example.com",
        );
        assert_eq!(other.check(&t.token, now), Err(AccessError::Invalid));
        assert!(!format!("{:?}", tokens.key()).contains(&tokens.key().x));
    }

    #[test]
    fn key_from_configuration() {
        let k = AccessKey::from_base64url(&SecretString::from(
            "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE",
        ))
        .unwrap();
        assert_eq!(k.kid().len(), 43);
        assert!(AccessKey::from_base64url(&SecretString::from("abc")).is_err());
        assert!(AccessKey::from_base64url(&SecretString::from("!!")).is_err());
        assert_eq!(AccessKey::derive(b"a").kid(), AccessKey::derive(b"a").kid());
    }

    #[test]
    fn unsubscribe_tokens_round_trip_and_refuse_others() {
        let u = UnsubscribeTokens::new(b"secret");
        let what = Unsubscribe::Contact {
            email: email("erika@example.org"),
            entity: ticket("9"),
        };
        let t = u.sign(&what, "de", Millis(0));
        assert_eq!(u.read(&t), Some((what, "de".to_string())));
        let user = Unsubscribe::User {
            user: UserId::parse("ana").unwrap(),
            category: Some(Category::parse("mention").unwrap()),
        };
        assert_eq!(
            u.read(&u.sign(&user, "en", Millis(0))),
            Some((user, "en".to_string()))
        );
        assert_eq!(UnsubscribeTokens::new(b"other").read(&t), None);
        assert_eq!(u.read("x.y.z"), None);
    }

    #[test]
    fn links() {
        assert_eq!(
            with_access_token("https://a.example/t/9", "x.y"),
            "https://a.example/t/9?access_token=x.y"
        );
        assert_eq!(
            with_access_token("https://a.example/t?x=1#top", "t"),
            "https://a.example/t?x=1&access_token=t#top"
        );
        assert_eq!(
            fill_pattern(
                "https://d.example/p/{entity_type}/{entity_id}?access_token={token}",
                &EntityRef::parse("ticket", "a+b").unwrap(),
                "t.t"
            ),
            "https://d.example/p/ticket/a%2Bb?access_token=t.t"
        );
        assert!(check_link_pattern("https://d.example/{token}").is_ok());
        assert!(check_link_pattern("https://d.example/").is_err());
        assert!(check_link_pattern("ftp://d.example/{token}").is_err());
    }
}
