//! Mobile push (C6) end to end: devices registered through the API, and
//! deliveries to an FCM stand-in and an APNs stand-in on 127.0.0.1 that
//! speak the real wire formats and check every request as the services
//! do. The FCM stand-in issues OAuth access tokens only for a JWT-bearer
//! assertion whose RS256 signature verifies with the service account's
//! public key (generated here) and whose claims are right, and takes
//! `messages:send` only with such a token; the APNs stand-in speaks
//! HTTP/2 only (h2c) and checks the ES256 provider token against the
//! `.p8` key's public half, and the APNs headers. Both answer with the
//! services' real error bodies. Only FCM and APNs are stand-ins: the
//! server, database and engine are real.

use crate::helpers::*;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode as AxumStatus, Version};
use axum::response::IntoResponse;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
use belfry_core::Millis;
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

const PROJECT: &str = "belfry-test";
const CLIENT_EMAIL: &str = "belfry@belfry-test.iam.gserviceaccount.com";
const KEY_ID: &str = "ABCDE12345";
const TEAM_ID: &str = "TEAM123456";
const BUNDLE: &str = "com.example.desk";

fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// Key material made for one test: the service account's RSA key and the
/// APNs P-256 key, with the public halves the stand-ins verify with.
struct Keys {
    rsa_pkcs8_pem: String,
    rsa_public: Vec<u8>,
    p8: String,
    ec_public: Vec<u8>,
}

impl Keys {
    fn new() -> Keys {
        use aws_lc_rs::encoding::AsDer as _;
        use aws_lc_rs::signature::KeyPair as _;
        let rsa = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let rsa_der = rsa.as_der().unwrap();
        let ec = aws_lc_rs::signature::EcdsaKeyPair::generate(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        )
        .unwrap();
        Keys {
            rsa_pkcs8_pem: pem("PRIVATE KEY", rsa_der.as_ref()),
            rsa_public: rsa.public_key().as_ref().to_vec(),
            p8: pem("PRIVATE KEY", ec.to_pkcs8v1().unwrap().as_ref()),
            ec_public: ec.public_key().as_ref().to_vec(),
        }
    }

    fn service_account(&self, token_uri: &str) -> String {
        json!({
            "type": "service_account",
            "project_id": PROJECT,
            "private_key_id": "0123456789abcdef",
            "private_key": self.rsa_pkcs8_pem,
            "client_email": CLIENT_EMAIL,
            "client_id": "1234567890",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": token_uri,
        })
        .to_string()
    }
}

/// One `messages:send` the FCM stand-in received.
#[derive(Debug, Clone)]
struct FcmReceived {
    body: Value,
    status: u16,
}

#[derive(Default)]
struct FcmState {
    token_uri: String,
    rsa_public: Vec<u8>,
    /// Access tokens issued (and not revoked).
    issued: HashSet<String>,
    token_requests: usize,
    /// Why an assertion or a send was refused, if ever.
    refusals: Vec<String>,
    /// Answers to give (status, body, Retry-After); then 200.
    script: VecDeque<(u16, Value, Option<&'static str>)>,
    received: Vec<FcmReceived>,
}

#[derive(Clone)]
struct FcmService {
    state: Arc<Mutex<FcmState>>,
    base: String,
}

fn fcm_error(code: u16, status: &str, message: &str, error_code: &str) -> Value {
    json!({"error": {"code": code, "message": message, "status": status, "details": [
        {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": error_code}
    ]}})
}

impl FcmService {
    async fn start(keys: &Keys) -> FcmService {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(FcmState {
            token_uri: format!("{base}/token"),
            rsa_public: keys.rsa_public.clone(),
            ..Default::default()
        }));
        let app = axum::Router::new()
            .route("/token", axum::routing::post(fcm_oauth))
            .route(
                "/v1/projects/{project}/{action}",
                axum::routing::post(fcm_send),
            )
            .with_state(state.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FcmService { state, base }
    }

    fn token_uri(&self) -> String {
        self.state.lock().unwrap().token_uri.clone()
    }

    fn answer(&self, status: u16, body: Value, retry_after: Option<&'static str>) {
        self.state
            .lock()
            .unwrap()
            .script
            .push_back((status, body, retry_after));
    }

    /// Revokes the access tokens issued so far (the next send meets 401).
    fn revoke_tokens(&self) {
        self.state.lock().unwrap().issued.clear();
    }

    fn received(&self) -> Vec<FcmReceived> {
        self.state.lock().unwrap().received.clone()
    }

    fn token_requests(&self) -> usize {
        self.state.lock().unwrap().token_requests
    }

    fn refusals(&self) -> Vec<String> {
        self.state.lock().unwrap().refusals.clone()
    }
}

/// Google's OAuth token endpoint: the JWT-bearer grant.
async fn fcm_oauth(
    State(state): State<Arc<Mutex<FcmState>>>,
    headers: HeaderMap,
    body: String,
) -> axum::response::Response {
    let mut st = state.lock().unwrap();
    st.token_requests += 1;
    let checked = (|| -> Result<(), String> {
        let ctype = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if ctype != "application/x-www-form-urlencoded" {
            return Err(format!("content-type {ctype}"));
        }
        let form: std::collections::HashMap<String, String> =
            url::form_urlencoded::parse(body.as_bytes())
                .into_owned()
                .collect();
        if form.get("grant_type").map(String::as_str)
            != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
        {
            return Err(format!("grant_type {:?}", form.get("grant_type")));
        }
        let assertion = form.get("assertion").ok_or("no assertion")?;
        let header = jsonwebtoken::decode_header(assertion).map_err(|e| e.to_string())?;
        if header.alg != jsonwebtoken::Algorithm::RS256 {
            return Err(format!("alg {:?}", header.alg));
        }
        let key = jsonwebtoken::DecodingKey::from_rsa_der(&st.rsa_public);
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        v.set_audience(&[st.token_uri.as_str()]);
        v.set_issuer(&[CLIENT_EMAIL]);
        v.set_required_spec_claims(&["exp", "iat", "aud", "iss"]);
        let claims = jsonwebtoken::decode::<Value>(assertion, &key, &v)
            .map_err(|e| format!("assertion: {e}"))?
            .claims;
        if claims["scope"] != "https://www.googleapis.com/auth/firebase.messaging" {
            return Err(format!("scope {}", claims["scope"]));
        }
        let lifetime = claims["exp"].as_i64().unwrap_or(0) - claims["iat"].as_i64().unwrap_or(0);
        if !(1..=3600).contains(&lifetime) {
            return Err(format!("lifetime {lifetime}"));
        }
        Ok(())
    })();
    match checked {
        Ok(()) => {
            let token = format!("ya29.test-{}", st.token_requests);
            st.issued.insert(token.clone());
            axum::Json(json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer"}))
                .into_response()
        }
        Err(e) => {
            st.refusals.push(e);
            (
                AxumStatus::BAD_REQUEST,
                axum::Json(json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."})),
            )
                .into_response()
        }
    }
}

/// FCM HTTP v1 `messages:send`.
async fn fcm_send(
    State(state): State<Arc<Mutex<FcmState>>>,
    Path((project, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: String,
) -> axum::response::Response {
    let mut st = state.lock().unwrap();
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_string();
    if !st.issued.contains(&bearer) {
        return (
            AxumStatus::UNAUTHORIZED,
            axum::Json(json!({"error": {"code": 401, "message": "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.", "status": "UNAUTHENTICATED"}})),
        )
            .into_response();
    }
    let body: Value = serde_json::from_str(&body).unwrap_or_default();
    let m = &body["message"];
    let shape_ok = project == PROJECT
        && action == "messages:send"
        && m["token"].is_string()
        && m["notification"]["title"].is_string()
        && m["notification"].get("body").is_none_or(Value::is_string)
        && m["data"]["notification_id"].is_string()
        && m["data"]
            .as_object()
            .is_some_and(|d| d.values().all(Value::is_string))
        && m["android"]["collapse_key"].is_string();
    let (status, answer, retry_after) = if !shape_ok {
        st.refusals.push(format!("shape of {body}"));
        (
            400,
            fcm_error(
                400,
                "INVALID_ARGUMENT",
                "Invalid JSON payload received.",
                "INVALID_ARGUMENT",
            ),
            None,
        )
    } else {
        st.script.pop_front().unwrap_or((
            200,
            json!({"name": format!("projects/{PROJECT}/messages/0:1500415314455276%31bd1c9631bd1c96")}),
            None,
        ))
    };
    st.received.push(FcmReceived {
        body: body.clone(),
        status,
    });
    let mut response = (AxumStatus::from_u16(status).unwrap(), axum::Json(answer)).into_response();
    if let Some(after) = retry_after {
        response
            .headers_mut()
            .insert("retry-after", after.parse().unwrap());
    }
    response
}

/// One request the APNs stand-in received.
#[derive(Debug, Clone)]
struct ApnsReceived {
    device: String,
    headers: HeaderMap,
    body: Value,
    version: Version,
    /// The provider token's problem, if any.
    jwt: Result<(), String>,
    status: u16,
}

#[derive(Default)]
struct ApnsState {
    ec_public: Vec<u8>,
    /// Answers to give (status, reason, Retry-After); then 200.
    script: VecDeque<(u16, &'static str, Option<&'static str>)>,
    received: Vec<ApnsReceived>,
}

#[derive(Clone)]
struct ApnsService {
    state: Arc<Mutex<ApnsState>>,
    base: String,
}

impl ApnsService {
    /// An HTTP/2-only server (h2c): an HTTP/1.1 request gets nowhere.
    async fn start(keys: &Keys) -> ApnsService {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(ApnsState {
            ec_public: keys.ec_public.clone(),
            ..Default::default()
        }));
        let app = axum::Router::new()
            .route("/3/device/{token}", axum::routing::post(apns_push))
            .with_state(state.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(app.clone());
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http2::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
                });
            }
        });
        ApnsService { state, base }
    }

    fn answer(&self, status: u16, reason: &'static str, retry_after: Option<&'static str>) {
        self.state
            .lock()
            .unwrap()
            .script
            .push_back((status, reason, retry_after));
    }

    fn received(&self) -> Vec<ApnsReceived> {
        self.state.lock().unwrap().received.clone()
    }
}

fn check_provider_token(headers: &HeaderMap, public: &[u8]) -> Result<(), String> {
    let jwt = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bearer "))
        .ok_or("no authorization: bearer")?;
    let header = jsonwebtoken::decode_header(jwt).map_err(|e| e.to_string())?;
    if header.alg != jsonwebtoken::Algorithm::ES256 || header.kid.as_deref() != Some(KEY_ID) {
        return Err(format!("header {header:?}"));
    }
    let key = jsonwebtoken::DecodingKey::from_ec_components(
        &B64.encode(&public[1..33]),
        &B64.encode(&public[33..]),
    )
    .map_err(|e| e.to_string())?;
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_issuer(&[TEAM_ID]);
    v.set_required_spec_claims(&["iss"]);
    v.validate_exp = false;
    let claims = jsonwebtoken::decode::<Value>(jwt, &key, &v)
        .map_err(|e| format!("signature or claims: {e}"))?
        .claims;
    let iat = claims["iat"].as_i64().ok_or("no iat")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    if (now - iat).abs() > 3600 {
        return Err(format!("iat {iat} is not recent"));
    }
    Ok(())
}

/// APNs `POST /3/device/{token}`.
async fn apns_push(
    State(state): State<Arc<Mutex<ApnsState>>>,
    Path(device): Path<String>,
    version: Version,
    headers: HeaderMap,
    body: String,
) -> axum::response::Response {
    let mut st = state.lock().unwrap();
    let jwt = check_provider_token(&headers, &st.ec_public);
    let body: Value = serde_json::from_str(&body).unwrap_or_default();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let headers_ok = header("apns-topic").is_some()
        && header("apns-push-type") == Some("alert")
        && matches!(header("apns-priority"), Some("5" | "10"))
        && header("apns-expiration").is_some_and(|e| e.parse::<u64>().is_ok())
        && header("apns-collapse-id").is_some_and(|c| c.len() <= 64)
        && body["aps"]["alert"]["title"].is_string()
        && body["aps"]["alert"]
            .get("body")
            .is_none_or(Value::is_string);
    let (status, reason, retry_after) = if jwt.is_err() {
        (403, "InvalidProviderToken", None)
    } else if !headers_ok {
        (400, "BadRequest", None)
    } else if header("apns-topic") != Some(BUNDLE) {
        (400, "DeviceTokenNotForTopic", None)
    } else {
        st.script.pop_front().unwrap_or((200, "", None))
    };
    st.received.push(ApnsReceived {
        device,
        headers: headers.clone(),
        body,
        version,
        jwt,
        status,
    });
    let mut response = if status == 200 {
        AxumStatus::OK.into_response()
    } else if status == 410 {
        (
            AxumStatus::GONE,
            axum::Json(json!({"reason": reason, "timestamp": 1_764_000_000_000_i64})),
        )
            .into_response()
    } else {
        (
            AxumStatus::from_u16(status).unwrap(),
            axum::Json(json!({"reason": reason})),
        )
            .into_response()
    };
    response.headers_mut().insert(
        "apns-id",
        "EC1BF194-B3B2-424A-89A7-7C16B1C0E2A4".parse().unwrap(),
    );
    if let Some(after) = retry_after {
        response
            .headers_mut()
            .insert("retry-after", after.parse().unwrap());
    }
    response
}

/// The stand-ins and an app configured for both.
struct Setup {
    app: TestApp,
    fcm: FcmService,
    apns: ApnsService,
}

async fn setup() -> Setup {
    setup_with(None, None).await
}

/// With a per-recipient rate limit, and APNs at another base URL.
async fn setup_with(
    limit: Option<belfry_delivery::RecipientLimit>,
    apns_base: Option<&str>,
) -> Setup {
    let keys = Keys::new();
    let fcm = FcmService::start(&keys).await;
    let apns = ApnsService::start(&keys).await;
    let mut c = belfry_server::Config {
        run_workers: false,
        ..Default::default()
    };
    c.email.app_url = Some("https://desk.example.com".into());
    c.delivery.retry_base = std::time::Duration::from_secs(10);
    c.delivery.recipient_limit = limit;
    let account = SecretString::from(keys.service_account(&fcm.token_uri()));
    c.mobile.fcm = Some(belfry_delivery::FcmSettings {
        credentials: Arc::new(belfry_delivery::FcmCredentials::from_json(&account).unwrap()),
        base_url: fcm.base.parse().unwrap(),
    });
    let p8 = SecretString::from(keys.p8.clone());
    c.mobile.apns = Some(belfry_delivery::ApnsSettings {
        credentials: Arc::new(
            belfry_delivery::ApnsCredentials::from_p8(&p8, KEY_ID, TEAM_ID).unwrap(),
        ),
        base_url: apns_base.unwrap_or(&apns.base).parse().unwrap(),
    });
    // No BELFRY_OUTBOUND_ALLOW: the configured base URLs are trusted.
    let app = spawn_app_with(c).await;
    Setup { app, fcm, apns }
}

fn apns_token(n: u8) -> String {
    format!("{:02x}", n).repeat(32)
}

fn fcm_token(n: u8) -> String {
    format!("f{n}Xc9:APA91bH{}", "k".repeat(140))
}

/// (recipient, status, error, reason) of a notification's mobile push lines.
async fn mobile_log(
    app: &TestApp,
    id: &str,
) -> Vec<(String, String, Option<String>, Option<String>)> {
    let r = app
        .admin(
            Method::GET,
            &format!("/v1/notifications/{id}/deliveries"),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["channel"] == "mobile_push")
        .map(|i| {
            (
                i["recipient"].as_str().unwrap().to_string(),
                i["status"].as_str().unwrap().to_string(),
                i["error"].as_str().map(String::from),
                i["reason"].as_str().map(String::from),
            )
        })
        .collect()
}

#[tokio::test]
async fn without_credentials_a_platform_is_refused_naming_the_setting() {
    let app = spawn_app().await;
    app.users(&["ana"]).await;
    let token = app.token("ana").await;
    for (platform, token_value, setting) in [
        ("fcm", fcm_token(1), "BELFRY_FCM_SERVICE_ACCOUNT"),
        ("apns", apns_token(1), "BELFRY_APNS_KEY"),
    ] {
        let r = app
            .me(
                Method::POST,
                "/push-subscriptions",
                &token,
                Some(json!({"platform": platform, "token": token_value, "app_id": BUNDLE})),
            )
            .await;
        let p = assert_problem(
            r,
            StatusCode::UNPROCESSABLE_ENTITY,
            "mobile_push_unavailable",
        )
        .await;
        assert!(p["detail"].as_str().unwrap().contains(setting), "{p}");
    }
    assert!(
        subscriptions(&app, &token).await.is_empty(),
        "nothing stored"
    );
}

#[tokio::test]
async fn devices_are_registered_validated_listed_and_removed() {
    let Setup { app, .. } = setup().await;
    app.users(&["ana", "bo"]).await;
    let token = app.token("ana").await;
    let apns = subscribe(
        &app,
        &token,
        json!({"platform": "apns", "token": apns_token(7).to_uppercase(), "app_id": BUNDLE}),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(apns["kind"], "mobile");
    assert_eq!(apns["platform"], "apns");
    assert_eq!(apns["token"], apns_token(7), "hex kept in lower case");
    assert_eq!(apns["app_id"], BUNDLE);
    assert!(apns.get("endpoint").is_none());
    // The same token again (the app starts again): updated, not doubled.
    let again = subscribe(
        &app,
        &token,
        json!({"platform": "apns", "token": apns_token(7), "app_id": BUNDLE}),
        StatusCode::OK,
    )
    .await;
    assert_eq!(again["id"], apns["id"]);
    app.clock.advance_secs(1);
    let fcm = subscribe(
        &app,
        &token,
        json!({"platform": "fcm", "token": fcm_token(1), "app_id": "com.example.desk.android"}),
        StatusCode::CREATED,
    )
    .await;
    let items = subscriptions(&app, &token).await;
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["id"], fcm["id"], "most recently posted first");
    assert_eq!(items[1]["kind"], "mobile");

    // Every field is checked; the errors name what to fix.
    for (body, field) in [
        (
            json!({"platform": "apns", "token": "xyz", "app_id": BUNDLE}),
            "token",
        ),
        (
            json!({"platform": "apns", "token": "ab".repeat(16), "app_id": BUNDLE}),
            "token",
        ),
        (
            json!({"platform": "fcm", "token": "short", "app_id": BUNDLE}),
            "token",
        ),
        (
            json!({"platform": "fcm", "token": format!("{}/x", fcm_token(2)), "app_id": BUNDLE}),
            "token",
        ),
        (json!({"platform": "fcm", "app_id": BUNDLE}), "token"),
        (
            json!({"platform": "apns", "token": apns_token(2), "app_id": "desk"}),
            "app_id",
        ),
        (
            json!({"platform": "apns", "token": apns_token(2), "app_id": "com..desk"}),
            "app_id",
        ),
        (
            json!({"platform": "apns", "token": apns_token(2)}),
            "app_id",
        ),
        (
            json!({"platform": "apns", "token": apns_token(2), "app_id": BUNDLE, "endpoint": "https://x.example/1"}),
            "endpoint",
        ),
        (
            json!({"platform": "pigeon", "token": apns_token(2), "app_id": BUNDLE}),
            "platform",
        ),
    ] {
        let r = app
            .me(
                Method::POST,
                "/push-subscriptions",
                &token,
                Some(body.clone()),
            )
            .await;
        let p = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
        assert_eq!(p["errors"][0]["field"], field, "{body}: {p}");
    }
    assert_eq!(subscriptions(&app, &token).await.len(), 2);

    // The admin mirror.
    let r = app
        .admin(Method::GET, "/v1/users/ana/push-subscriptions", None)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["items"].as_array().unwrap().len(), 2);
    let r = app
        .admin(
            Method::POST,
            "/v1/users/bo/push-subscriptions",
            Some(json!({"platform": "apns", "token": apns_token(7), "app_id": BUNDLE})),
        )
        .await;
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "the token moved to bo's account"
    );
    assert_eq!(subscriptions(&app, &token).await.len(), 1);

    // Removed by id; an unknown id is 404.
    let id = fcm["id"].as_str().unwrap();
    let r = app
        .me(
            Method::DELETE,
            &format!("/push-subscriptions/{id}"),
            &token,
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = app
        .me(
            Method::DELETE,
            &format!("/push-subscriptions/{id}"),
            &token,
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(subscriptions(&app, &token).await.is_empty());

    // The cap keeps the most recently posted devices.
    for n in 0..22 {
        app.clock.advance_secs(1);
        subscribe(
            &app,
            &token,
            json!({"platform": "apns", "token": apns_token(100 + n), "app_id": BUNDLE}),
            StatusCode::CREATED,
        )
        .await;
    }
    let items = subscriptions(&app, &token).await;
    assert_eq!(items.len(), 20);
    assert_eq!(items[0]["token"], apns_token(121));

    // Deleting the user removes their devices.
    let r = app.admin(Method::DELETE, "/v1/users/ana", None).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    app.users(&["ana"]).await;
    let r = app
        .admin(Method::GET, "/v1/users/ana/push-subscriptions", None)
        .await;
    let v: Value = r.json().await.unwrap();
    assert!(v["items"].as_array().unwrap().is_empty(), "{v}");
}

#[tokio::test]
async fn a_notification_reaches_fcm_and_apns_devices() {
    let Setup { app, fcm, apns } = setup().await;
    app.users(&["ana", "bo"]).await;
    let token = app.token("ana").await;
    subscribe(
        &app,
        &token,
        json!({"platform": "fcm", "token": fcm_token(1), "app_id": "com.example.desk"}),
        StatusCode::CREATED,
    )
    .await;
    subscribe(
        &app,
        &token,
        json!({"platform": "apns", "token": apns_token(1), "app_id": BUNDLE}),
        StatusCode::CREATED,
    )
    .await;

    let sent = app
        .send_ok(json!({
            "to": {"users": ["ana", "bo"]},
            "channels": ["in_app", "mobile_push"],
            "title": "Ticket #123 assigned to you",
            "body": "Printer on floor 3 is jammed",
            "url": "/tickets/123",
            "stack_key": "ticket:123",
            "sticky": true
        }))
        .await;
    let id = sent["id"].as_str().unwrap();
    app.run_due_jobs().await;

    assert!(fcm.refusals().is_empty(), "{:?}", fcm.refusals());
    assert_eq!(fcm.token_requests(), 1);
    let got = fcm.received();
    assert_eq!(got.len(), 1);
    let m = &got[0].body["message"];
    assert_eq!(m["token"], fcm_token(1));
    assert_eq!(m["notification"]["title"], "Ticket #123 assigned to you");
    assert_eq!(m["notification"]["body"], "Printer on floor 3 is jammed");
    assert_eq!(m["data"]["notification_id"], id);
    assert_eq!(m["data"]["url"], "https://desk.example.com/tickets/123");
    assert_eq!(m["android"]["collapse_key"], "ticket:123");
    assert_eq!(m["android"]["priority"], "high", "sticky");

    let got = apns.received();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.version, Version::HTTP_2);
    assert_eq!(r.jwt, Ok(()));
    assert_eq!(r.device, apns_token(1));
    assert_eq!(r.headers["apns-topic"], BUNDLE);
    assert_eq!(r.headers["apns-push-type"], "alert");
    assert_eq!(r.headers["apns-priority"], "10");
    assert_eq!(r.headers["apns-collapse-id"], "ticket:123");
    assert_eq!(
        r.body["aps"]["alert"]["title"],
        "Ticket #123 assigned to you"
    );
    assert_eq!(r.body["aps"]["thread-id"], "ticket:123");
    assert_eq!(r.body["notification_id"], id);
    assert_eq!(r.status, 200);

    let log = mobile_log(&app, id).await;
    assert_eq!(
        log.iter()
            .map(|l| (l.0.as_str(), l.1.as_str()))
            .collect::<Vec<_>>(),
        vec![("user:ana", "queued"), ("user:ana", "sent")],
        "bo has no device: no job"
    );

    // The access token and the provider token are reused.
    let second = app
        .send_ok(json!({"to": {"users": ["ana"]}, "channels": ["mobile_push"], "title": "Again"}))
        .await;
    app.run_due_jobs().await;
    assert_eq!(fcm.token_requests(), 1, "cached");
    let got = apns.received();
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0].headers["authorization"], got[1].headers["authorization"],
        "the same provider token"
    );
    assert_eq!(got[1].headers["apns-priority"], "5");
    assert_eq!(
        got[1].headers["apns-collapse-id"],
        second["id"].as_str().unwrap(),
        "without a stack key, the id"
    );

    // A revoked access token (401) is replaced once, and the send goes.
    fcm.revoke_tokens();
    let third = app
        .send_ok(json!({"to": {"users": ["ana"]}, "channels": ["mobile_push"], "title": "Third"}))
        .await;
    app.run_due_jobs().await;
    assert_eq!(fcm.token_requests(), 2);
    assert_eq!(fcm.received().last().unwrap().status, 200);
    // An expired provider token (403) is signed again once.
    apns.answer(403, "ExpiredProviderToken", None);
    let fourth = app
        .send_ok(json!({"to": {"users": ["ana"]}, "channels": ["mobile_push"], "title": "Fourth"}))
        .await;
    app.run_due_jobs().await;
    let got = apns.received();
    let n = got.len();
    assert_eq!((got[n - 2].status, got[n - 1].status), (403, 200));
    assert_ne!(
        got[n - 2].headers["authorization"],
        got[n - 1].headers["authorization"]
    );
    for id in [&third, &fourth] {
        let log = mobile_log(&app, id["id"].as_str().unwrap()).await;
        assert_eq!(log.last().unwrap().1, "sent", "{log:?}");
    }

    // A broadcast reaches members with a device only.
    app.admin(
        Method::PUT,
        "/v1/groups/desk",
        Some(json!({"name": "Desk"})),
    )
    .await;
    for user in ["ana", "bo"] {
        app.put_user(user, json!({"groups": ["desk"]})).await;
    }
    let before = fcm.received().len();
    let all = app
        .send_ok(
            json!({"to": {"groups": ["desk"]}, "channels": ["mobile_push"], "title": "All hands"}),
        )
        .await;
    app.run_due_jobs().await;
    assert_eq!(fcm.received().len(), before + 1);
    let log = mobile_log(&app, all["id"].as_str().unwrap()).await;
    assert!(log.iter().all(|l| l.0 != "user:bo"), "{log:?}");
    assert_eq!(
        log.last().unwrap(),
        &("user:ana".to_string(), "sent".to_string(), None, None)
    );
}

#[tokio::test]
async fn invalid_tokens_are_removed_and_busy_services_retried_after_retry_after() {
    let Setup { app, fcm, apns } = setup().await;
    app.users(&["ana"]).await;
    let token = app.token("ana").await;
    for body in [
        json!({"platform": "fcm", "token": fcm_token(1), "app_id": "com.example.desk"}),
        json!({"platform": "apns", "token": apns_token(1), "app_id": BUNDLE}),
        json!({"platform": "apns", "token": apns_token(2), "app_id": BUNDLE}),
    ] {
        subscribe(&app, &token, body, StatusCode::CREATED).await;
    }
    // FCM: UNREGISTERED; APNs: one BadDeviceToken, the other takes it.
    fcm.answer(
        404,
        fcm_error(
            404,
            "NOT_FOUND",
            "Requested entity was not found.",
            "UNREGISTERED",
        ),
        None,
    );
    apns.answer(400, "BadDeviceToken", None);
    let sent = app
        .send_ok(json!({"to": {"users": ["ana"]}, "channels": ["mobile_push"], "title": "Hello"}))
        .await;
    app.run_due_jobs().await;
    assert_eq!(fcm.received().len(), 1);
    assert_eq!(
        apns.received().len(),
        2,
        "one failing device does not stop the other"
    );
    let log = mobile_log(&app, sent["id"].as_str().unwrap()).await;
    assert_eq!(log.last().unwrap().1, "sent", "{log:?}");
    let left = subscriptions(&app, &token).await;
    assert_eq!(left.len(), 1, "{left:?}");
    let bad = apns
        .received()
        .into_iter()
        .find(|r| r.status == 400)
        .unwrap()
        .device;
    assert_ne!(left[0]["token"], bad.as_str());
    assert_eq!(left[0]["platform"], "apns");

    // 429 with Retry-After: one hour, for one of two devices. The
    // back-off alone would retry after about 10 s; the job waits for the
    // hour, and then sends to that device only.
    subscribe(
        &app,
        &token,
        json!({"platform": "apns", "token": apns_token(3), "app_id": BUNDLE}),
        StatusCode::CREATED,
    )
    .await;
    apns.answer(429, "TooManyRequests", Some("3600"));
    let busy = app
        .send_ok(json!({"to": {"users": ["ana"]}, "channels": ["mobile_push"], "title": "Busy"}))
        .await;
    let busy = busy["id"].as_str().unwrap();
    app.run_due_jobs().await;
    let log = mobile_log(&app, busy).await;
    assert_eq!(log[1].1, "failed", "{log:?}");
    let error = log[1].2.as_ref().unwrap();
    assert!(
        error.contains("429") && error.contains("TooManyRequests"),
        "{error}"
    );
    assert!(error.contains("retrying at"), "{error}");
    assert!(error.contains("1 of 2 delivered"), "{error}");
    let count = apns.received().len();
    let busy_device = apns
        .received()
        .into_iter()
        .find(|r| r.status == 429)
        .unwrap()
        .device;
    app.clock.advance_secs(3590);
    assert_eq!(app.run_due_jobs().await, 0, "not before Retry-After");
    assert_eq!(apns.received().len(), count);
    app.clock.advance_secs(20);
    assert_eq!(app.run_due_jobs().await, 1);
    assert_eq!(
        apns.received().len(),
        count + 1,
        "not again to the device that took it"
    );
    assert_eq!(apns.received().last().unwrap().device, busy_device);
    assert_eq!(mobile_log(&app, busy).await.last().unwrap().1, "sent");

    // FCM INVALID_ARGUMENT about the token also removes it.
    subscribe(
        &app,
        &token,
        json!({"platform": "fcm", "token": fcm_token(3), "app_id": "com.example.desk"}),
        StatusCode::CREATED,
    )
    .await;
    fcm.answer(
        400,
        fcm_error(
            400,
            "INVALID_ARGUMENT",
            "The registration token is not a valid FCM registration token",
            "INVALID_ARGUMENT",
        ),
        None,
    );
    // 410 Unregistered: the app was removed from the devices.
    apns.answer(410, "Unregistered", None);
    apns.answer(410, "Unregistered", None);
    let gone = app
        .send_ok(json!({"to": {"users": ["ana"]}, "channels": ["mobile_push"], "title": "Gone"}))
        .await;
    app.run_due_jobs().await;
    assert!(subscriptions(&app, &token).await.is_empty());
    let log = mobile_log(&app, gone["id"].as_str().unwrap()).await;
    assert_eq!(log.last().unwrap().1, "skipped", "{log:?}");
    assert!(
        log.last().unwrap().2.as_ref().unwrap().contains("invalid"),
        "{log:?}"
    );
    // With no device left, a new send makes no mobile push job at all.
    let (f, a) = (fcm.received().len(), apns.received().len());
    let none = app
        .send_ok(json!({"to": {"users": ["ana"]}, "channels": ["mobile_push"], "title": "None"}))
        .await;
    app.run_due_jobs().await;
    assert_eq!((fcm.received().len(), apns.received().len()), (f, a));
    assert!(
        mobile_log(&app, none["id"].as_str().unwrap())
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn preferences_and_quiet_hours_govern_mobile_push() {
    let Setup { app, apns, .. } = setup().await;
    app.put_user("ana", json!({"timezone": "Europe/Berlin"}))
        .await;
    let token = app.token("ana").await;
    subscribe(
        &app,
        &token,
        json!({"platform": "apns", "token": apns_token(1), "app_id": BUNDLE}),
        StatusCode::CREATED,
    )
    .await;
    let prefs = |body: Value| {
        let app = &app;
        async move {
            let r = app
                .admin(Method::PUT, "/v1/users/ana/preferences", Some(body))
                .await;
            assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        }
    };
    // The built-in categories push to phones by default (defaults.mobile_push).
    let by_default = app
        .send_ok(json!({"to": {"users": ["ana"]}, "title": "Mentioned", "category": "mention"}))
        .await;
    app.run_due_jobs().await;
    assert_eq!(apns.received().len(), 1);
    assert_eq!(
        mobile_log(&app, by_default["id"].as_str().unwrap())
            .await
            .last()
            .unwrap()
            .1,
        "sent"
    );

    // Switched off: suppressed, nothing sent.
    prefs(json!({"channels": {"mobile_push": false}})).await;
    let off = app
        .send_ok(json!({"to": {"users": ["ana"]}, "channels": ["mobile_push"], "title": "Off"}))
        .await;
    app.run_due_jobs().await;
    let last = mobile_log(&app, off["id"].as_str().unwrap())
        .await
        .pop()
        .unwrap();
    assert_eq!(
        (last.1.as_str(), last.3.as_deref()),
        ("suppressed", Some("channel_off"))
    );
    assert_eq!(apns.received().len(), 1);

    // Quiet hours hold it until they end (07:00 in Berlin).
    prefs(json!({"channels": {"mobile_push": true}, "quiet_hours": {"start": "22:00", "end": "07:00"}})).await;
    app.clock
        .set(Millis::parse_rfc3339("2026-01-14T22:30:00Z").unwrap());
    let quiet = app
        .send_ok(json!({"to": {"users": ["ana"]}, "channels": ["mobile_push"], "title": "Late"}))
        .await;
    let quiet = quiet["id"].as_str().unwrap();
    app.run_due_jobs().await;
    assert_eq!(mobile_log(&app, quiet).await.last().unwrap().1, "held");
    assert_eq!(apns.received().len(), 1);
    app.clock
        .set(Millis::parse_rfc3339("2026-01-15T06:00:00Z").unwrap());
    app.run_due_jobs().await;
    assert_eq!(mobile_log(&app, quiet).await.last().unwrap().1, "sent");
    assert_eq!(apns.received().len(), 2);
    assert_eq!(apns.received()[1].body["aps"]["alert"]["title"], "Late");
}

async fn counter(app: &TestApp, line: &str) -> f64 {
    let text = app.text("/metrics").await;
    text.lines()
        .find_map(|l| l.strip_prefix(line))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn above_the_rate_limit_pushes_are_held_and_summarised_in_one_push() {
    let Setup { app, fcm, .. } = setup_with(
        Some(belfry_delivery::RecipientLimit {
            max: 2,
            window: std::time::Duration::from_secs(60),
        }),
        None,
    )
    .await;
    app.clock
        .set(Millis::parse_rfc3339("2026-01-14T10:00:10Z").unwrap());
    app.users(&["ana"]).await;
    let token = app.token("ana").await;
    subscribe(
        &app,
        &token,
        json!({"platform": "fcm", "token": fcm_token(1), "app_id": "com.example.desk"}),
        StatusCode::CREATED,
    )
    .await;
    let sent_line = "belfry_deliveries_total{channel=\"mobile_push\",status=\"sent\"} ";
    let sent_before = counter(&app, sent_line).await;
    let mut ids = Vec::new();
    for n in 1..=4 {
        let sent = app
            .send_ok(
                json!({"to": {"users": ["ana"]}, "channels": ["mobile_push"],
                            "title": format!("m{n}"), "url": format!("/t/{n}")}),
            )
            .await;
        ids.push(sent["id"].as_str().unwrap().to_string());
        app.clock.advance_secs(1);
        if n == 2 {
            // (Workers send a batch in any order: this fixes which are held.)
            app.run_due_jobs().await;
        }
    }
    app.run_due_jobs().await;
    assert_eq!(fcm.received().len(), 2, "two within the limit");
    let held = mobile_log(&app, &ids[3]).await.pop().unwrap();
    assert_eq!(
        (held.1.as_str(), held.3.as_deref()),
        ("held", Some("rate_limited"))
    );
    assert!(counter(&app, sent_line).await >= sent_before + 2.0);

    // When the window ends: one push that sums the held ones up.
    app.clock
        .set(Millis::parse_rfc3339("2026-01-14T10:01:00Z").unwrap());
    assert_eq!(app.run_due_jobs().await, 1, "one summary job");
    let got = fcm.received();
    assert_eq!(got.len(), 3, "{:?}", mobile_log(&app, &ids[3]).await);
    let m = &got[2].body["message"];
    assert_eq!(m["notification"]["title"], "2 more notifications");
    assert_eq!(m["notification"]["body"], "m4\nm3");
    assert_eq!(m["data"]["url"], "https://desk.example.com/t/4");
}

#[tokio::test]
async fn an_unreachable_service_is_retried_and_the_log_shows_no_token() {
    // A port nothing listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let Setup { app, .. } = setup_with(None, Some(&closed)).await;
    app.users(&["ana"]).await;
    let token = app.token("ana").await;
    subscribe(
        &app,
        &token,
        json!({"platform": "apns", "token": apns_token(9), "app_id": BUNDLE}),
        StatusCode::CREATED,
    )
    .await;
    let sent = app
        .send_ok(json!({"to": {"users": ["ana"]}, "channels": ["mobile_push"], "title": "Hello"}))
        .await;
    app.run_due_jobs().await;
    let log = mobile_log(&app, sent["id"].as_str().unwrap()).await;
    let (_, status, error, _) = log.last().unwrap();
    assert_eq!(status, "failed");
    let error = error.as_ref().unwrap();
    assert!(
        error.contains("could not be reached") && error.contains("retrying at"),
        "{error}"
    );
    assert!(!error.contains(&apns_token(9)), "{error}");
    assert_eq!(subscriptions(&app, &token).await.len(), 1, "kept");
}
