//! Standard Webhooks signing, shared by every signed request Belfry makes
//! (the chat channel's generic webhooks, the producer webhooks of
//! `/v1/webhooks`): secrets are `whsec_` and base64 bytes; a request
//! carries `webhook-id`, `webhook-timestamp` (Unix seconds) and
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`
//! keyed with the secret's decoded bytes. The HMAC is aws-lc-rs's, the
//! crypto provider of the whole tree (the `standardwebhooks` crate would add
//! a second HMAC implementation for a dozen lines).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use secrecy::{ExposeSecret as _, SecretString};

/// The prefix of a webhook signing secret (Standard Webhooks).
pub const SECRET_PREFIX: &str = "whsec_";

/// A new webhook signing secret: `whsec_` and 24 random bytes, base64.
pub fn new_webhook_secret() -> SecretString {
    let mut bytes = [0u8; 24];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system's random generator works");
    SecretString::from(format!("{SECRET_PREFIX}{}", B64.encode(bytes)))
}

/// The `webhook-signature` value of `body` sent as `id` at `timestamp`
/// (Unix seconds) with `secret` (`whsec_<base64>`): `v1,<base64 HMAC>`.
pub fn sign(secret: &SecretString, id: &str, timestamp: u64, body: &str) -> Result<String, String> {
    let text = secret.expose_secret();
    let key = B64
        .decode(text.strip_prefix(SECRET_PREFIX).unwrap_or(text))
        .map_err(|_| "the webhook secret is not whsec_ and base64".to_string())?;
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &key);
    let tag = aws_lc_rs::hmac::sign(&key, format!("{id}.{timestamp}.{body}").as_bytes());
    Ok(format!("v1,{}", B64.encode(tag.as_ref())))
}

/// The three Standard Webhooks headers of one signed request.
pub fn headers(
    secret: &SecretString,
    id: &str,
    timestamp: u64,
    body: &str,
) -> Result<[(&'static str, String); 3], String> {
    Ok([
        ("webhook-id", id.to_string()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", sign(secret, id, timestamp, body)?),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_follow_standard_webhooks() {
        // The example of the Standard Webhooks reference libraries.
        let secret = SecretString::from("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).unwrap(),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        let fresh = new_webhook_secret();
        let text = fresh.expose_secret();
        assert!(text.starts_with("whsec_"));
        assert_eq!(B64.decode(&text[6..]).unwrap().len(), 24);
        assert!(!format!("{fresh:?}").contains(&text[6..]));
        let h = headers(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).unwrap();
        assert_eq!(h[0], ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek".into()));
        assert_eq!(h[1], ("webhook-timestamp", "1614265330".into()));
        assert_eq!(h[2].1, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }
}
