//! `GET /v1/me/stream` (Server-Sent Events) and `GET /v1/me/ws` (WebSocket).
//!
//! Resume without gap or duplicate: the connection is registered with the
//! hub first (live events start queueing), then everything after the
//! client's cursor is replayed from the store, then the queue is drained,
//! skipping notifications the replay already sent (seq <= last sent).
//!
//! A stream lasts as long as its token: it ends at the token's `exp`, and
//! when the token is revoked (or its user deleted). It ends cleanly — the
//! SSE response ends; a WebSocket is closed with code 4001 (reason `token
//! expired` or `token revoked`) — so that the client gets a new token and
//! reconnects with its cursor, missing nothing.

use super::frame::{Frame, Kind, SSE_HEARTBEAT, WS_HEARTBEAT};
use super::hub::Connection;
use super::stop::Reason;
use super::wake::Flag;
use crate::AppState;
use crate::auth::{UserToken, authenticate_stream};
use crate::error::{ApiError, ApiResult, Problem};
use crate::serve::ConnectionHandle;
use axum::Extension;
use axum::body::Body;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use belfry_core::{Clock, UserId};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(sse))
        .routes(routes!(websocket))
}

/// The token of a stream: only user tokens open streams.
struct StreamUser(UserToken);

impl FromRequestParts<AppState> for StreamUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        authenticate_stream(parts, state).await.map(StreamUser)
    }
}

/// The WebSocket close code when the token expired or was revoked: get a
/// new token and reconnect with `?after=`.
pub const CLOSE_TOKEN_ENDED: u16 = 4001;

/// A stream's one timer: it fires for the next heartbeat, or when the
/// stream's token ends if that comes first. The token ends at its `exp` by
/// Belfry's clock at the time of connecting; the clock is asked again at
/// every heartbeat (in case it moved on otherwise). One timer instead of a
/// heartbeat interval and an expiry timer: one timer entry and one
/// allocation less per idle connection.
struct Timer {
    every: Duration,
    /// The token's `exp` by Belfry's clock, and by the runtime's.
    at: belfry_core::Millis,
    ends: tokio::time::Instant,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
}

/// Why a stream's timer fired.
#[derive(Debug, PartialEq, Eq)]
enum Tick {
    Heartbeat,
    Expired,
}

impl Timer {
    fn new(every: Duration, at: belfry_core::Millis, clock: &dyn Clock) -> Timer {
        let left = u64::try_from(at.0 - clock.now().0).unwrap_or(0);
        let now = tokio::time::Instant::now();
        let ends = now + Duration::from_millis(left);
        Timer {
            every,
            at,
            ends,
            sleep: Box::pin(tokio::time::sleep_until((now + every).min(ends))),
        }
    }

    /// Waits for the next heartbeat or the token's end. Cancel safe: once
    /// the sleep is over it returns in the same poll.
    async fn tick(&mut self, clock: &dyn Clock) -> Tick {
        self.sleep.as_mut().await;
        let now = tokio::time::Instant::now();
        if now >= self.ends || clock.now() >= self.at {
            return Tick::Expired;
        }
        // A heartbeat that came late delays the next one (no catching up).
        self.sleep.as_mut().reset((now + self.every).min(self.ends));
        Tick::Heartbeat
    }
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct StreamParams {
    /// Resume after this seq (WebSocket; SSE clients may also use Last-Event-ID).
    after: Option<String>,
    /// A user token, for clients that cannot set headers (EventSource,
    /// browser WebSockets). Never a secret key: keys in URLs are refused.
    #[allow(dead_code)]
    token: Option<String>,
    /// `each` (the default): a `counts` event follows every change of the
    /// counts. `derived`: none follows a new entry (a notification with
    /// `stack_count` 1) — the client adds one unread and one unseen item
    /// itself for each one whose seq is above the seq of the last counts it
    /// has (counts carry the seq they are as of); every other change still
    /// sends counts. A broadcast is then one event per connection.
    #[param(inline)]
    counts: Option<CountsMode>,
}

/// How a stream sends counts (see [`StreamParams::counts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
enum CountsMode {
    Each,
    Derived,
}

fn parse_cursor(value: &str, last_seq: i64) -> ApiResult<i64> {
    let cursor: i64 = value.trim().parse().map_err(|_| {
        ApiError::bad_request(
            "invalid_cursor",
            format!(
                "the cursor '{value}' is not a seq number; use the id of the last event received"
            ),
        )
    })?;
    if cursor < 0 {
        return Err(ApiError::bad_request(
            "invalid_cursor",
            "the cursor must not be negative",
        ));
    }
    if cursor > last_seq {
        return Err(ApiError::bad_request(
            "invalid_cursor",
            format!(
                "the cursor {cursor} is ahead of this server (its last seq is {last_seq}); \
                 reload the inbox and reconnect without a cursor"
            ),
        ));
    }
    Ok(cursor)
}

/// Registers the connection (after checking the cursor and the user).
async fn open(
    state: &AppState,
    token: &UserToken,
    params: StreamParams,
    kill: CancellationToken,
) -> ApiResult<(Connection, Option<i64>)> {
    let cursor = params.after.as_deref();
    let user = token.user.clone();
    let cursor = match cursor.filter(|c| !c.trim().is_empty()) {
        None => None,
        Some(c) => Some(match parse_cursor(c, state.store.last_seq()) {
            Ok(cursor) => cursor,
            // With several nodes, this one may not have heard yet of seqs
            // that another committed (and streamed): ask the database.
            Err(_) => parse_cursor(c, state.store.refresh_last_seq().await?)?,
        }),
    };
    let record = state
        .store
        .get_user(&user)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("there is no user {user}")))?;
    let derived = params.counts == Some(CountsMode::Derived);
    let conn = state
        .hub
        .connect(user, record.groups, kill, token.issued_at, derived);
    // A revocation that arrived between the token check and the connection
    // (it found no connection to end) still ends this one.
    if state.hub.revocations.is_revoked(token) {
        conn.stop.set(Reason::Ended);
    }
    Ok((conn, cursor))
}

/// Reads what a reconnecting client missed, page by page.
struct Replay {
    after: i64,
    done: bool,
}

impl Replay {
    async fn next_page(&mut self, state: &AppState, user: &UserId) -> ApiResult<Vec<Arc<Frame>>> {
        let page = state.hub.config.replay_page;
        let items = state
            .store
            .replay(user, self.after, page, state.clock.now())
            .await?;
        if items.len() < page {
            self.done = true;
        }
        Ok(items
            .into_iter()
            .map(|(seq, json)| {
                self.after = seq;
                Frame::new(Kind::Notification, Some(seq), json)
            })
            .collect())
    }
}

/// Most queued frames written together.
const MAX_BATCH: usize = 64;

/// Whether a live frame must be skipped because the replay sent it already.
fn already_sent(frame: &Frame, last_sent: i64) -> bool {
    frame.kind == Kind::Notification && frame.seq.is_some_and(|s| s <= last_sent)
}

struct SseState {
    app: AppState,
    conn: Connection,
    replay: Option<Replay>,
    pending: VecDeque<Bytes>,
    last_sent: i64,
    timer: Timer,
    started: bool,
}

async fn sse_next(mut s: SseState) -> Option<(Result<Bytes, Infallible>, SseState)> {
    loop {
        if !s.started {
            s.started = true;
            // Sent at once, so that proxies and browsers see the stream open.
            return Some((Ok(Bytes::from_static(b"retry: 3000\n\n")), s));
        }
        if let Some(b) = s.pending.pop_front() {
            return Some((Ok(b), s));
        }
        if let Some(replay) = &mut s.replay {
            let user = s.conn.user.clone();
            match replay.next_page(&s.app, &user).await {
                Ok(frames) => {
                    for f in frames {
                        s.last_sent = s.last_sent.max(f.seq.unwrap_or(0));
                        s.pending.push_back(f.sse());
                    }
                    if replay.done {
                        s.replay = None;
                    }
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = ?e, "replay failed; the stream ends and the client resumes");
                    return None;
                }
            }
        }
        tokio::select! {
            biased;
            // Whatever the reason, the response ends (a cut-off connection
            // is dropped by the accept loop too). If its token ended, the
            // client reconnects with a new token and its cursor.
            _ = s.conn.stop.stopped() => return None,
            tick = s.timer.tick(s.app.clock.as_ref()) => match tick {
                Tick::Expired => return None,
                Tick::Heartbeat => return Some((Ok(Bytes::from_static(SSE_HEARTBEAT)), s)),
            },
            frame = s.conn.rx.recv() => match frame {
                None => return None,
                Some(first) => {
                    // Everything already queued goes out as one chunk; a
                    // single frame stays the shared bytes, uncopied.
                    let mut parts: Vec<Bytes> = Vec::new();
                    let mut next = Some(first);
                    while let Some(f) = next.take() {
                        if !already_sent(&f, s.last_sent) {
                            if let Some(seq) = f.seq {
                                s.last_sent = seq;
                            }
                            parts.push(f.sse());
                        }
                        if parts.len() < MAX_BATCH {
                            next = s.conn.rx.try_recv();
                        }
                    }
                    let chunk = match parts.len() {
                        0 => continue,
                        1 => parts.pop().expect("one part"),
                        _ => Bytes::from(parts.concat()),
                    };
                    return Some((Ok(chunk), s));
                }
            },
        }
    }
}

/// Server-Sent Events of the user's inbox.
///
/// Events: `notification` (`id:` is its seq; data is the inbox item),
/// `counts` (`{"unread","unseen","seq"}`, sent on connect and whenever they
/// change; with `counts=derived` not after a new entry), `state` (`{"action": "read"|"unread"|"archive"|"unarchive"|
/// "delete", "ids": [...]}`, `{"action": "read_all", "category"}`,
/// `{"action": "seen_all"}`, `{"action": "read_entity", "entity"}`: changes
/// made on another device or tab). With `Last-Event-ID` (or `?after=`)
/// everything after that seq is replayed first, in order. A comment line is
/// sent when idle (heartbeat). A client that falls too far behind is
/// disconnected and resumes with its cursor. A cursor ahead of the server
/// (e.g. after the database was reset) is refused with 400: reload and
/// reconnect without one. The stream ends (the response completes) when
/// its token expires or is revoked: reconnect with a new token and
/// `Last-Event-ID`/`?after=` to miss nothing.
#[utoipa::path(
    get, path = "/v1/me/stream", tag = "inbox",
    params(StreamParams, ("Last-Event-ID" = Option<String>, Header, description = "Resume after this seq")),
    responses(
        (status = 200, description = "text/event-stream", content_type = "text/event-stream"),
        (status = 400, description = "Bad cursor", body = Problem),
        (status = 401, body = Problem),
    ),
    security(("user_token" = []))
)]
async fn sse(
    State(state): State<AppState>,
    StreamUser(token): StreamUser,
    connection: Option<Extension<ConnectionHandle>>,
    headers: HeaderMap,
    crate::extract::ApiQuery(mut params): crate::extract::ApiQuery<StreamParams>,
) -> ApiResult<Response> {
    if let Some(id) = headers.get("last-event-id").and_then(|v| v.to_str().ok()) {
        params.after = Some(id.to_string());
    }
    // Cutting this connection closes its socket, even if the client reads nothing.
    let kill = connection.map(|Extension(c)| c.abort).unwrap_or_default();
    let (conn, cursor) = open(&state, &token, params, kill).await?;
    let timer = Timer::new(
        state.hub.config.heartbeat,
        token.expires_at,
        state.clock.as_ref(),
    );
    let stream = futures::stream::unfold(
        SseState {
            timer,
            app: state,
            conn,
            replay: cursor.map(|after| Replay { after, done: false }),
            pending: VecDeque::new(),
            last_sent: cursor.unwrap_or(0),
            started: false,
        },
        sse_next,
    );
    let mut response = Body::from_stream(stream).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-transform"),
    );
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// The inbox over a WebSocket.
///
/// Text frames `{"type": "notification"|"counts"|"state"|"heartbeat",
/// "seq": n|null, "data": …}` with the same data as the SSE stream.
/// `?after=<seq>` replays everything after it first. Messages from the
/// client are ignored. On shutdown the server closes with code 1012. When
/// the token expires or is revoked (or its user is deleted) the server
/// closes with code 4001 and the reason `token expired` or `token revoked`:
/// reconnect with a new token and `?after=` the last seq received.
#[utoipa::path(
    get, path = "/v1/me/ws", tag = "inbox",
    params(StreamParams),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = 400, description = "Bad cursor", body = Problem),
        (status = 401, body = Problem),
    ),
    security(("user_token" = []))
)]
async fn websocket(
    State(state): State<AppState>,
    StreamUser(token): StreamUser,
    crate::extract::ApiQuery(params): crate::extract::ApiQuery<StreamParams>,
    upgrade: WebSocketUpgrade,
) -> ApiResult<Response> {
    let kill = CancellationToken::new();
    let (conn, cursor) = open(&state, &token, params, kill).await?;
    let expires_at = token.expires_at;
    Ok(upgrade
        // Small buffers: thousands of idle sockets must stay cheap.
        .read_buffer_size(1024)
        // Frames are fed and then flushed together (see run_websocket).
        .write_buffer_size(4 * 1024)
        .max_write_buffer_size(1024 * 1024)
        .max_message_size(64 * 1024)
        .max_frame_size(64 * 1024)
        .on_upgrade(move |socket| run_websocket(socket, state, conn, cursor, expires_at)))
}

/// What woke a WebSocket's task, in the order it is looked at.
enum Woke {
    Stop(Reason),
    Tick(Tick),
    Frame(Option<Arc<Frame>>),
    Read(Option<Result<Message, axum::Error>>),
}

async fn run_websocket(
    mut socket: WebSocket,
    app: AppState,
    mut conn: Connection,
    cursor: Option<i64>,
    expires_at: belfry_core::Millis,
) {
    let mut last_sent = cursor.unwrap_or(0);
    let mut timer = Timer::new(app.hub.config.heartbeat, expires_at, app.clock.as_ref());
    let stop = &conn.stop;

    // Writes go first: the stop signal is looked at only while a write
    // waits (a write that can go ahead costs no extra poll). The socket is
    // not split: reads and writes take turns in this one task, without a
    // lock between them.
    //
    // Sends one text frame unless the hub cuts the connection meanwhile.
    macro_rules! send {
        ($text:expr) => {
            tokio::select! {
                biased;
                r = socket.send(Message::Text($text)) => if r.is_err() { return },
                _ = stop.killed() => return,
            }
        };
    }
    // Buffers a frame; `flush!` writes what was fed.
    macro_rules! feed {
        ($text:expr) => {
            tokio::select! {
                biased;
                r = socket.feed(Message::Text($text)) => if r.is_err() { return },
                _ = stop.killed() => return,
            }
        };
    }
    macro_rules! flush {
        () => {
            tokio::select! {
                biased;
                r = socket.flush() => if r.is_err() { return },
                _ = stop.killed() => return,
            }
        };
    }

    if let Some(after) = cursor {
        let mut replay = Replay { after, done: false };
        while !replay.done {
            match replay.next_page(&app, &conn.user).await {
                Ok(frames) => {
                    for f in frames {
                        last_sent = last_sent.max(f.seq.unwrap_or(0));
                        send!(f.ws());
                    }
                }
                Err(e) => {
                    tracing::warn!(error = ?e, "replay failed; closing the WebSocket");
                    return;
                }
            }
        }
    }

    // Closes the socket with a code and reason, waiting at most a second.
    macro_rules! close {
        ($code:expr, $reason:expr) => {{
            let close = Message::Close(Some(CloseFrame {
                code: $code,
                reason: $reason.into(),
            }));
            let _ = tokio::time::timeout(Duration::from_secs(1), socket.send(close)).await;
            return;
        }};
    }

    // The read side has its own waker: a fan-out's frames wake this task,
    // and the socket is polled for the client's messages only when it woke
    // the task (see `wake.rs`).
    let read = Flag::new();
    loop {
        let woke = {
            let mut stopped = std::pin::pin!(stop.stopped());
            let mut tick = std::pin::pin!(timer.tick(app.clock.as_ref()));
            let mut frame = std::pin::pin!(conn.rx.recv());
            std::future::poll_fn(|cx| {
                if let Poll::Ready(r) = stopped.as_mut().poll(cx) {
                    return Poll::Ready(Woke::Stop(r));
                }
                if let Poll::Ready(t) = tick.as_mut().poll(cx) {
                    return Poll::Ready(Woke::Tick(t));
                }
                if let Poll::Ready(f) = frame.as_mut().poll(cx) {
                    return Poll::Ready(Woke::Frame(f));
                }
                read.poll(cx, |cx| socket.poll_next_unpin(cx))
                    .map(Woke::Read)
            })
            .await
        };
        match woke {
            Woke::Stop(reason) => match reason {
                Reason::Killed => return,
                Reason::ShuttingDown => close!(1012, "server restarting"),
                Reason::Ended => close!(CLOSE_TOKEN_ENDED, "token revoked"),
            },
            Woke::Tick(Tick::Expired) => close!(CLOSE_TOKEN_ENDED, "token expired"),
            Woke::Tick(Tick::Heartbeat) => send!(WS_HEARTBEAT.into()),
            Woke::Frame(None) => return,
            Woke::Frame(Some(first)) => {
                // Everything already queued goes out in one write (a
                // broadcast is a notification and the new counts).
                let mut next = Some(first);
                let mut fed = 0;
                while let Some(f) = next.take() {
                    if !already_sent(&f, last_sent) {
                        if let Some(seq) = f.seq {
                            last_sent = seq;
                        }
                        feed!(f.ws());
                        fed += 1;
                    }
                    if fed < MAX_BATCH {
                        next = conn.rx.try_recv();
                    }
                }
                flush!();
            }
            Woke::Read(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return,
            Woke::Read(Some(Ok(_))) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use belfry_core::{ManualClock, Millis};

    #[tokio::test]
    async fn the_timer_beats_until_the_token_ends_then_ends_the_stream() {
        let clock = ManualClock::new(Millis(1_000_000));
        let every = Duration::from_millis(40);
        let mut timer = Timer::new(every, Millis(1_000_000 + 150), &clock);
        let started = tokio::time::Instant::now();
        for n in 1..=3u32 {
            assert_eq!(timer.tick(&clock).await, Tick::Heartbeat);
            assert!(started.elapsed() >= every * n, "beat {n} came early");
        }
        // The token ends (150 ms) before the fourth beat would be due
        // (160 ms at the earliest).
        assert_eq!(timer.tick(&clock).await, Tick::Expired);
        assert!(started.elapsed() >= Duration::from_millis(150));
    }

    #[tokio::test]
    async fn the_timer_ends_the_stream_when_the_clock_passes_the_tokens_end() {
        let clock = ManualClock::new(Millis(1_000_000));
        let mut timer = Timer::new(
            Duration::from_millis(20),
            Millis(1_000_000 + 3_600_000),
            &clock,
        );
        assert_eq!(timer.tick(&clock).await, Tick::Heartbeat);
        clock.advance_secs(3600);
        assert_eq!(timer.tick(&clock).await, Tick::Expired);
    }
}
