//! Belfry's HTTP application: the axum router with every `/v1` resource,
//! authentication, problem+json errors, metrics and the OpenAPI document,
//! and the [`Application`] that serves it until told to stop.
#![forbid(unsafe_code)]

pub mod admin;
pub mod auth;
pub mod categories;
pub mod compiled;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod openapi;
pub mod ratelimit;
pub mod realtime;
mod routes;
pub mod rulebook;
pub mod serve;

use crate::auth::{KeyCache, TokenSigner};
use anyhow::Context as _;
use axum::Router;
use belfry_core::Clock;
use belfry_store::{Scope, SharedStore};
use secrecy::{ExposeSecret as _, SecretSlice, SecretString};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Settings of the HTTP application (the binary builds them from flags,
/// environment and file). Secrets are [`SecretString`]s: `Debug` prints
/// them redacted.
#[derive(Debug, Clone)]
pub struct Config {
    /// Base URL under which clients reach this server (used in links).
    pub public_url: Option<String>,
    /// Largest accepted request body, in bytes.
    pub body_limit: usize,
    /// Origins allowed to call the API from a browser; empty: any origin.
    pub cors_origins: Vec<String>,
    /// An admin key given by the operator (`BELFRY_ADMIN_KEY`), ensured to exist.
    pub admin_key: Option<SecretString>,
    /// Lifetime of user tokens when the request names none, in seconds.
    pub token_ttl_secs: i64,
    /// Longest lifetime a user token may be issued for, in seconds; at most
    /// [`belfry_core::MAX_USER_TOKEN_TTL_SECS`] (revocations are kept that long).
    pub token_max_ttl_secs: i64,
    /// Most named recipients (users plus emails, summed over a batch) in one
    /// send request; groups and `all` are stored once and do not count.
    pub max_recipients: usize,
    /// Real-time streams: heartbeat interval, queue per connection.
    pub streams: realtime::HubConfig,
    /// The job workers: concurrency, retries, leases.
    pub delivery: belfry_delivery::EngineConfig,
    /// Outgoing email: From, the host application's URL for relative links.
    pub email: belfry_delivery::EmailSettings,
    /// SMTP server URL (may carry a password); none keeps emails in the
    /// development mailbox.
    pub smtp_url: Option<SecretString>,
    /// Whether this process runs job workers.
    pub run_workers: bool,
    /// Demo mode: the fictional help desk at `/` with its demo users and
    /// sample notifications (for trying Belfry, never for production).
    pub demo: bool,
    /// A send naming an unknown category creates it instead of being
    /// refused (`BELFRY_AUTO_CATEGORIES`).
    pub auto_categories: bool,
    /// Requests per second each secret key may make on this node
    /// (`BELFRY_RATE_LIMIT`); 0: no limit.
    pub rate_limit: u32,
    /// NATS server joining this node to a cluster; none: a single node.
    pub nats_url: Option<String>,
    /// The NATS subject of this cluster's events.
    pub nats_subject: String,
    /// Web push: the VAPID contact, the TTL, the request timeout.
    pub web_push: belfry_delivery::WebPushSettings,
    /// The VAPID private key from configuration (`BELFRY_VAPID_PRIVATE_KEY`);
    /// none: a key pair is generated on first start and kept in the
    /// database (the same on every node).
    pub vapid_private_key: Option<SecretString>,
    /// Push subscriptions kept per user; posting one more drops the least
    /// recently posted.
    pub push_subscriptions_per_user: usize,
    /// Which non-public destinations outgoing requests (web push) may
    /// reach (`BELFRY_OUTBOUND_ALLOW`); by default none.
    pub outbound: belfry_delivery::OutboundPolicy,
    /// The P-256 private key of access tokens (`BELFRY_ACCESS_TOKEN_PRIVATE_KEY`,
    /// base64url); none: a key pair is generated on first start and kept
    /// in the database (the same on every node).
    pub access_token_private_key: Option<SecretString>,
    /// Where an external contact's email links to
    /// (`BELFRY_CONTACT_LINK_URL`): an http(s) URL with `{token}` and
    /// optionally `{entity_type}`, `{entity_id}`; none: the notification's
    /// `url` with `access_token=<token>` added.
    pub contact_link_url: Option<String>,
    /// Producer webhooks: timeout, retry schedule, when a failing one is
    /// disabled (the outbound policy is `outbound`).
    pub webhooks: belfry_delivery::WebhookSettings,
    /// Mobile push (C6): FCM and APNs credentials and base URLs; a
    /// platform left out refuses device registrations (422
    /// `mobile_push_unavailable`). Devices kept per user: as many as
    /// `push_subscriptions_per_user`.
    pub mobile: belfry_delivery::MobileSettings,
    /// Install the built-in starter rules and templates (English and
    /// German) into a database that never had them
    /// (`BELFRY_STARTER_RULES`; the `belfry` command's default is true,
    /// this struct's false so that tests start without rules).
    pub starter_rules: bool,
    /// Console sessions end after this long without a request, in seconds
    /// (`BELFRY_ADMIN_SESSION_IDLE_SECS`, default 12 hours).
    pub admin_session_idle_secs: i64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            public_url: None,
            body_limit: 256 * 1024,
            cors_origins: Vec::new(),
            admin_key: None,
            token_ttl_secs: 3600,
            token_max_ttl_secs: belfry_core::MAX_USER_TOKEN_TTL_SECS,
            max_recipients: 10_000,
            streams: realtime::HubConfig::default(),
            delivery: belfry_delivery::EngineConfig::default(),
            email: belfry_delivery::EmailSettings::default(),
            smtp_url: None,
            run_workers: true,
            demo: false,
            auto_categories: false,
            rate_limit: 0,
            nats_url: None,
            nats_subject: "belfry.events".into(),
            web_push: belfry_delivery::WebPushSettings::default(),
            vapid_private_key: None,
            push_subscriptions_per_user: 20,
            outbound: belfry_delivery::OutboundPolicy::default(),
            access_token_private_key: None,
            contact_link_url: None,
            webhooks: belfry_delivery::WebhookSettings::default(),
            mobile: belfry_delivery::MobileSettings::default(),
            starter_rules: false,
            admin_session_idle_secs: 12 * 3600,
        }
    }
}

/// What every handler can reach: one reference to the [`Shared`] parts.
/// axum clones the state for each route, extractor and layer of every
/// request, so a clone is one reference count (and a drop one), not one per
/// field: with a count per field, cloning and dropping the state was 6-9 %
/// of the server's CPU when accepting notifications one per request.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The server's shared parts. The fields are `Arc`s of their own where
/// background tasks keep one beyond a request.
pub struct Shared {
    pub store: SharedStore,
    pub clock: Arc<dyn Clock>,
    pub tokens: Arc<TokenSigner>,
    pub keys: Arc<KeyCache>,
    pub config: Arc<Config>,
    pub hub: Arc<realtime::Hub>,
    pub engine: Arc<belfry_delivery::Engine>,
    /// The categories, cached (see [`categories`]).
    pub categories: Arc<categories::Categories>,
    /// The per-key request rate; None: no limit.
    pub rate_limit: Option<Arc<ratelimit::KeyLimiter>>,
    /// The VAPID key pair of web push.
    pub vapid: Arc<belfry_delivery::VapidKey>,
    /// Mints and checks access tokens of external contacts (C9).
    pub access: Arc<belfry_delivery::AccessTokens>,
    /// Signs and reads one-click unsubscribe tokens.
    pub unsubscribe: Arc<belfry_delivery::UnsubscribeTokens>,
    /// The rules and compiled templates events use.
    pub rules: Arc<compiled::RuleCache>,
}

/// The name of the signing secret of user tokens in the store.
pub const TOKEN_SECRET: &str = "user-token-hs256";

/// Builds the token signer from the store's secret (the same on every node).
pub async fn token_signer(store: &SharedStore) -> anyhow::Result<TokenSigner> {
    let secret: SecretSlice<u8> = store
        .secret(TOKEN_SECRET)
        .await
        .context("reading the user-token secret")?
        .into();
    Ok(TokenSigner::new(secret.expose_secret()))
}

/// The name of the seed of the generated VAPID key pair in the store.
pub const VAPID_SECRET: &str = "vapid-p256";

/// The VAPID key pair: from configuration, else derived from a secret
/// generated on first start and kept in the database (the same on every
/// node, and after restarts, so browsers' subscriptions stay valid).
pub async fn vapid_key(
    store: &SharedStore,
    configured: Option<&SecretString>,
) -> anyhow::Result<belfry_delivery::VapidKey> {
    match configured {
        Some(key) => belfry_delivery::VapidKey::from_base64url(key)
            .map_err(|e| anyhow::anyhow!("BELFRY_VAPID_PRIVATE_KEY {e}")),
        None => {
            let seed: SecretSlice<u8> = store
                .secret(VAPID_SECRET)
                .await
                .context("reading the VAPID key")?
                .into();
            Ok(belfry_delivery::VapidKey::derive(seed.expose_secret()))
        }
    }
}

/// The name of the seed of the generated access-token key pair in the store.
pub const ACCESS_KEY_SECRET: &str = "access-token-p256";

/// The name of the signing secret of unsubscribe links in the store.
pub const UNSUBSCRIBE_SECRET: &str = "unsubscribe-hs256";

/// The access-token key pair: from configuration, else derived from a
/// secret generated on first start and kept in the database (the same on
/// every node and after restarts, so links already sent stay valid).
pub async fn access_key(
    store: &SharedStore,
    configured: Option<&SecretString>,
) -> anyhow::Result<belfry_delivery::AccessKey> {
    match configured {
        Some(key) => belfry_delivery::AccessKey::from_base64url(key)
            .map_err(|e| anyhow::anyhow!("BELFRY_ACCESS_TOKEN_PRIVATE_KEY {e}")),
        None => {
            let seed: SecretSlice<u8> = store
                .secret(ACCESS_KEY_SECRET)
                .await
                .context("reading the access-token key")?
                .into();
            Ok(belfry_delivery::AccessKey::derive(seed.expose_secret()))
        }
    }
}

/// Makes sure an admin key exists. With `BELFRY_ADMIN_KEY` set, that key is
/// stored if missing. Otherwise, on a database without any key, an admin key
/// is generated and returned so that the caller can show it once.
pub async fn bootstrap_admin_key(
    store: &SharedStore,
    clock: &dyn Clock,
    operator_key: Option<&SecretString>,
) -> anyhow::Result<Option<String>> {
    if let Some(secret) = operator_key {
        let secret = secret.expose_secret();
        auth::validate_operator_key(secret).map_err(|e| anyhow::anyhow!("BELFRY_ADMIN_KEY {e}"))?;
        let record = auth::key_record(secret, "admin (BELFRY_ADMIN_KEY)", vec![Scope::Admin]);
        store.ensure_api_key(record, clock.now()).await?;
        return Ok(None);
    }
    let (secret, record) = auth::generate_key("admin", vec![Scope::Admin]);
    if store.create_first_api_key(record, clock.now()).await? {
        Ok(Some(secret))
    } else {
        Ok(None)
    }
}

/// The delivery engine with the email channel (SMTP when configured,
/// otherwise the development mailbox), web push, mobile push and chat, and
/// producer webhooks.
fn build_engine(
    config: &Config,
    store: &SharedStore,
    clock: &Arc<dyn Clock>,
    vapid: Arc<belfry_delivery::VapidKey>,
    links: belfry_delivery::AccessLinks,
) -> anyhow::Result<belfry_delivery::Engine> {
    let mailer: Arc<dyn belfry_delivery::Mailer> = match &config.smtp_url {
        Some(url) => Arc::new(
            belfry_delivery::SmtpMailer::from_url(url, std::time::Duration::from_secs(30))
                .map_err(anyhow::Error::msg)?,
        ),
        None => Arc::new(belfry_delivery::MailboxMailer::new(
            store.clone(),
            clock.clone(),
        )),
    };
    let email = belfry_delivery::EmailAdapter::new(config.email.clone(), mailer).with_access(links);
    let mut push = config.web_push.clone();
    push.outbound = config.outbound.clone();
    if push.app_url.is_none() {
        push.app_url = config.email.app_url.clone();
    }
    let web_push = belfry_delivery::WebPushAdapter::new(store.clone(), vapid, push);
    let chat = belfry_delivery::ChatAdapter::new(
        store.clone(),
        belfry_delivery::ChatSettings {
            app_url: config.email.app_url.clone(),
            outbound: config.outbound.clone(),
            ..Default::default()
        },
    );
    let mut mobile = config.mobile.clone();
    mobile.outbound = config.outbound.clone();
    if mobile.app_url.is_none() {
        mobile.app_url = config.email.app_url.clone();
    }
    let mobile = belfry_delivery::MobileAdapter::new(store.clone(), mobile);
    Ok(
        belfry_delivery::Engine::new(store.clone(), clock.clone(), config.delivery.clone())
            .with_adapter(Arc::new(email))
            .with_adapter(Arc::new(web_push))
            .with_adapter(Arc::new(mobile))
            .with_adapter(Arc::new(chat))
            .with_webhooks(belfry_delivery::WebhookSender::new(
                store.clone(),
                belfry_delivery::WebhookSettings {
                    outbound: config.outbound.clone(),
                    ..config.webhooks.clone()
                },
            )),
    )
}

/// A bound, ready-to-run Belfry server.
pub struct Application {
    listener: TcpListener,
    router: Router,
    hub: Arc<realtime::Hub>,
    engine: Arc<belfry_delivery::Engine>,
    run_workers: bool,
    /// The admin key generated on this start (first start on an empty database).
    pub generated_admin_key: Option<String>,
}

impl Application {
    /// Prepares the application on an already bound listener (port 0 in tests).
    pub async fn build(
        config: Config,
        store: SharedStore,
        clock: Arc<dyn Clock>,
        listener: TcpListener,
    ) -> anyhow::Result<Application> {
        // Install the metrics recorder before anything is counted.
        let _ = metrics::handle();
        anyhow::ensure!(
            config.token_max_ttl_secs <= belfry_core::MAX_USER_TOKEN_TTL_SECS,
            "token_max_ttl_secs may be at most {} (revocations are kept that long)",
            belfry_core::MAX_USER_TOKEN_TTL_SECS
        );
        let generated_admin_key =
            bootstrap_admin_key(&store, clock.as_ref(), config.admin_key.as_ref()).await?;
        if config.demo {
            routes::demo::setup(&store, clock.as_ref())
                .await
                .context("creating the demo users")?;
        }
        if config.starter_rules {
            rulebook::install_starter(&store, clock.now())
                .await
                .context("installing the starter rules")?;
        }
        let hub = realtime::Hub::new(store.clone(), clock.clone(), config.streams.clone());
        let bus: Arc<dyn realtime::Bus> = match &config.nats_url {
            Some(url) => realtime::NatsBus::connect(url, &config.nats_subject).await?,
            None => realtime::LocalBus::new(),
        };
        realtime::start(&store, bus, hub.clone());
        // After subscribing: a revocation committed from now on arrives as
        // an event, one committed before is read here.
        hub.load_revocations()
            .await
            .context("reading the token revocations")?;
        let vapid = Arc::new(vapid_key(&store, config.vapid_private_key.as_ref()).await?);
        if let Some(pattern) = &config.contact_link_url {
            belfry_delivery::access::check_link_pattern(pattern)
                .map_err(|e| anyhow::anyhow!("BELFRY_CONTACT_LINK_URL {e}"))?;
        }
        // Belfry's own URL: the issuer of access tokens and the base of
        // unsubscribe links.
        let public_url = config.public_url.clone().unwrap_or_else(|| {
            format!(
                "http://{}",
                listener
                    .local_addr()
                    .expect("a bound listener has an address")
            )
        });
        let access = belfry_delivery::AccessTokens::new(
            Arc::new(access_key(&store, config.access_token_private_key.as_ref()).await?),
            public_url.trim_end_matches('/'),
        );
        let unsubscribe_secret: SecretSlice<u8> = store
            .secret(UNSUBSCRIBE_SECRET)
            .await
            .context("reading the unsubscribe secret")?
            .into();
        let unsubscribe =
            belfry_delivery::UnsubscribeTokens::new(unsubscribe_secret.expose_secret());
        let links = belfry_delivery::AccessLinks {
            tokens: access.clone(),
            unsubscribe: unsubscribe.clone(),
            public_url: public_url.clone(),
            contact_link_url: config.contact_link_url.clone(),
            ttl_days: belfry_delivery::access::DEFAULT_TTL_DAYS,
            clock: clock.clone(),
        };
        let engine = Arc::new(build_engine(&config, &store, &clock, vapid.clone(), links)?);
        if config.delivery.retention.is_some() {
            let now = clock.now();
            store
                .ensure_retention_job(now, now)
                .await
                .context("queueing the retention job")?;
        }
        let run_workers = config.run_workers;
        let categories = Arc::new(
            categories::Categories::load(store.clone())
                .await
                .context("reading the categories")?,
        );
        let state = AppState::new(Shared {
            categories,
            rate_limit: ratelimit::KeyLimiter::new(config.rate_limit).map(Arc::new),
            tokens: Arc::new(token_signer(&store).await?),
            store,
            clock,
            keys: Arc::new(KeyCache::default()),
            config: Arc::new(config),
            hub: hub.clone(),
            engine: engine.clone(),
            vapid,
            access: Arc::new(access),
            unsubscribe: Arc::new(unsubscribe),
            rules: Arc::default(),
        });
        let router = routes::router(state);
        Ok(Application {
            listener,
            router,
            hub,
            engine,
            run_workers,
            generated_admin_key,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The real-time hub (open connections, for metrics and tests).
    pub fn hub(&self) -> Arc<realtime::Hub> {
        self.hub.clone()
    }

    /// The delivery engine (tests drain its queue with `run_due`).
    pub fn engine(&self) -> Arc<belfry_delivery::Engine> {
        self.engine.clone()
    }

    /// Serves until `shutdown` is cancelled, then stops accepting, closes
    /// the streams (clients reconnect elsewhere) and lets requests in flight
    /// finish.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let hub = self.hub.clone();
        let signal = shutdown.clone();
        tokio::spawn(async move {
            signal.cancelled().await;
            hub.shut_down();
        });
        let workers = self
            .run_workers
            .then(|| tokio::spawn(self.engine.clone().run(shutdown.clone())));
        serve::serve(self.listener, self.router, shutdown).await;
        self.hub.shut_down();
        if let Some(w) = workers {
            let _ = w.await;
        }
        Ok(())
    }
}
