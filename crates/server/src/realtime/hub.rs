//! The hub of one node: which users have live connections, in which groups
//! they are, and the bounded queue of each connection. Committed events are
//! dispatched here; a notification is encoded once per distinct per-user
//! state and the same frame goes to every connection that should get it.
//!
//! Counts: the hub keeps each connected user's last known counts and the
//! seq they are as of (they include every notification up to it, none
//! above). A broadcast, and a direct notification that makes a new entry
//! (stack count 1), always add one unread and one unseen item, so one with
//! a higher seq updates the cached counts without a query; anything else
//! (a stack that grew, a state change) recomputes them from the store, once
//! per burst. Counts frames carry that seq, so a connection opened with
//! `counts=derived` can do the same arithmetic: it gets no counts frame
//! after a new entry, only the notification (one frame per broadcast).
//!
//! Tokens: each connection remembers when its token was issued. A
//! `TokensRevoked` event records the revocation (for authentication, see
//! [`Revocations`]) and ends the user's connections opened with a token it
//! revokes; deleting a user ends all of theirs. Ending is clean (the SSE
//! response ends, a WebSocket gets close code 4001), so that clients fetch
//! a new token and resume with their cursor; a connection that has not
//! ended [`END_GRACE`] later (a client that reads nothing) is cut off.

use super::frame::{Frame, Kind};
use super::queue::{self, TrySendError};
use super::stop::{Reason, Stop};
use crate::auth::Revocations;
use belfry_core::inbox::InboxItemMeta;
use belfry_core::{Clock, Counts, GroupId, Millis, UserId};
use belfry_store::{Published, SharedStore, StateChange, StoreEvent};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Settings of the real-time layer.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Frames a connection may have queued; a client that falls this far
    /// behind is disconnected (it resumes with its cursor).
    pub queue: usize,
    /// An idle stream gets a heartbeat at least this often.
    pub heartbeat: Duration,
    /// Most notifications replayed to a reconnecting client per query.
    pub replay_page: usize,
    /// Most open connections per user on this node; opening one more closes
    /// the user's oldest (forgotten tabs, leaked sockets), like a slow one.
    pub max_streams_per_user: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            queue: 256,
            heartbeat: Duration::from_secs(20),
            replay_page: 500,
            max_streams_per_user: 20,
        }
    }
}

/// How long an ended connection may take to finish before it is cut off.
pub const END_GRACE: Duration = Duration::from_secs(5);

struct Slot {
    id: u64,
    /// The client derives its counts from new entries (`counts=derived`).
    derived: bool,
    tx: queue::Sender,
    /// Cancelling it drops the TCP connection (the accept loop's handle;
    /// an SSE response stops at once even if the client reads nothing).
    kill: CancellationToken,
    /// When the token that opened it was issued.
    issued_at: Millis,
    /// What the connection's task watches.
    stop: Arc<Stop>,
    /// Cancelled when the connection is gone.
    done: CancellationToken,
}

impl Slot {
    /// Ends the connection cleanly; cuts it off if it has not ended after
    /// [`END_GRACE`].
    fn end(&self) {
        self.stop.set(Reason::Ended);
        let (kill, stop, done) = (self.kill.clone(), self.stop.clone(), self.done.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = done.cancelled() => {}
                _ = tokio::time::sleep(END_GRACE) => cut_off(&stop, &kill),
            }
        });
    }

    /// Drops the connection at once.
    fn cut_off(&self) {
        cut_off(&self.stop, &self.kill);
    }
}

fn cut_off(stop: &Stop, kill: &CancellationToken) {
    stop.set(Reason::Killed);
    kill.cancel();
}

/// Counts and the seq they are as of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Known {
    counts: Counts,
    seq: i64,
}

#[derive(Default)]
struct Entry {
    slots: Vec<Slot>,
    groups: Vec<GroupId>,
    counts: Option<Known>,
    refreshing: bool,
    dirty: bool,
}

#[derive(Default)]
struct State {
    users: HashMap<UserId, Entry>,
    members: HashMap<GroupId, HashSet<UserId>>,
    connections: usize,
}

impl State {
    fn index_groups(&mut self, user: &UserId, old: &[GroupId], new: &[GroupId]) {
        for g in old {
            if let Some(set) = self.members.get_mut(g) {
                set.remove(user);
                if set.is_empty() {
                    self.members.remove(g);
                }
            }
        }
        for g in new {
            self.members
                .entry(g.clone())
                .or_default()
                .insert(user.clone());
        }
    }
}

/// A live connection's end: frames to send, and the signal to stop.
pub struct Connection {
    pub id: u64,
    pub user: UserId,
    pub rx: queue::Receiver,
    /// Set when the connection must stop: cut off by the hub (too slow),
    /// ended cleanly (its token was revoked or its user deleted), or the
    /// server shuts down.
    pub stop: Arc<Stop>,
    done: CancellationToken,
    hub: Arc<Hub>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.done.cancel();
        self.hub.disconnect(&self.user, self.id);
    }
}

pub struct Hub {
    state: Mutex<State>,
    next_id: AtomicU64,
    store: SharedStore,
    clock: Arc<dyn Clock>,
    pub config: HubConfig,
    /// Cancelled on server shutdown (by [`Hub::shut_down`], which also
    /// stops every stream).
    shutdown: CancellationToken,
    /// The token revocations of every node, as this node knows them.
    pub revocations: Revocations,
}

fn counts_frame(k: Known) -> Arc<Frame> {
    Frame::new(
        Kind::Counts,
        None,
        format!(
            r#"{{"unread":{},"unseen":{},"seq":{}}}"#,
            k.counts.unread, k.counts.unseen, k.seq
        ),
    )
}

/// The counts frames of one notification's dispatch, one per distinct
/// value: after a broadcast most connected users' counts are among a few
/// values, and the same frame (encoded once, for each transport once) goes
/// to all of them instead of one frame per user.
#[derive(Default)]
struct CountsFrames(HashMap<(i64, i64, i64), Arc<Frame>>);

impl CountsFrames {
    fn get(&mut self, k: Known) -> Arc<Frame> {
        self.0
            .entry((k.counts.unread, k.counts.unseen, k.seq))
            .or_insert_with(|| counts_frame(k))
            .clone()
    }
}

/// The members of `groups`, each once: a member of several of them is
/// remembered in a set of references (with one group there is nothing to
/// remember), and no id is copied.
fn members_of<'a>(
    members: &'a HashMap<GroupId, HashSet<UserId>>,
    groups: &'a [GroupId],
) -> impl Iterator<Item = &'a UserId> + 'a {
    let several = groups.len() > 1;
    let mut seen: HashSet<&UserId> = HashSet::new();
    groups
        .iter()
        .flat_map(move |g| members.get(g).into_iter().flatten())
        .filter(move |u| !several || seen.insert(*u))
}

impl Hub {
    pub fn new(store: SharedStore, clock: Arc<dyn Clock>, config: HubConfig) -> Arc<Hub> {
        Arc::new(Hub {
            state: Mutex::new(State::default()),
            next_id: AtomicU64::new(1),
            store,
            clock,
            config,
            shutdown: CancellationToken::new(),
            revocations: Revocations::default(),
        })
    }

    /// Loads the revocations that may still refuse tokens from the store
    /// (on start, and after events may have been missed).
    pub async fn load_revocations(&self) -> belfry_store::Result<()> {
        let now = self.clock.now();
        let since = Millis(now.0 - belfry_core::MAX_USER_TOKEN_TTL_SECS * 1000);
        let list = self.store.token_revocations(since).await?;
        self.revocations.load(list, now);
        Ok(())
    }

    /// Cancelled when the server shuts down (cancelling it does nothing:
    /// see [`Hub::shut_down`]).
    pub fn shutdown_signal(&self) -> CancellationToken {
        self.shutdown.child_token()
    }

    /// The server shuts down: every stream stops (WebSockets close with
    /// 1012) and the hub's own tasks end.
    pub fn shut_down(&self) {
        self.shutdown.cancel();
        let st = self.state.lock().expect("hub");
        for entry in st.users.values() {
            for slot in &entry.slots {
                slot.stop.set(Reason::ShuttingDown);
            }
        }
    }

    /// Open connections on this node.
    pub fn connections(&self) -> usize {
        self.state.lock().expect("hub").connections
    }

    /// Registers a connection opened with a token issued at `issued_at`.
    /// From now on it receives every event for the user; `kill` is
    /// cancelled if the hub drops it, its `end` if it must end cleanly.
    /// A `derived` connection gets no counts frame after a new entry.
    pub fn connect(
        self: &Arc<Self>,
        user: UserId,
        groups: Vec<GroupId>,
        kill: CancellationToken,
        issued_at: Millis,
        derived: bool,
    ) -> Connection {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let stop = Arc::new(Stop::default());
        let done = CancellationToken::new();
        let (tx, rx) = queue::channel(self.config.queue);
        let refresh = {
            let mut st = self.state.lock().expect("hub");
            // Checked under the lock that shut_down takes after cancelling.
            if self.shutdown.is_cancelled() {
                stop.set(Reason::ShuttingDown);
            }
            st.connections += 1;
            let fresh = !st.users.contains_key(&user);
            if fresh {
                st.index_groups(&user, &[], &groups);
            }
            let entry = st.users.entry(user.clone()).or_default();
            if fresh {
                entry.groups = groups;
            }
            // The new connection starts with the user's counts.
            let known = entry.counts.filter(|_| !entry.refreshing);
            if let Some(c) = known {
                let _ = tx.try_send(counts_frame(c));
            }
            entry.slots.push(Slot {
                id,
                derived,
                tx,
                kill,
                issued_at,
                stop: stop.clone(),
                done: done.clone(),
            });
            // Slots are in connection order: the oldest go first.
            let excess = entry
                .slots
                .len()
                .saturating_sub(self.config.max_streams_per_user.max(1));
            for old in entry.slots.drain(..excess) {
                metrics::counter!("belfry_stream_limit_disconnects_total").increment(1);
                tracing::info!(
                    connection = old.id,
                    %user,
                    "too many streams for this user: the oldest is closed"
                );
                old.cut_off();
            }
            known.is_none() && Self::wants_refresh(entry)
        };
        metrics::gauge!("belfry_stream_connections").increment(1.0);
        if refresh {
            self.spawn_refresh(user.clone());
        }
        Connection {
            id,
            user,
            rx,
            stop,
            done,
            hub: self.clone(),
        }
    }

    /// Called once per connection, when it ends (its slot may be gone
    /// already if the hub cut it off).
    fn disconnect(&self, user: &UserId, id: u64) {
        let mut st = self.state.lock().expect("hub");
        st.connections -= 1;
        metrics::gauge!("belfry_stream_connections").decrement(1.0);
        let Some(entry) = st.users.get_mut(user) else {
            return;
        };
        entry.slots.retain(|s| s.id != id);
        if entry.slots.is_empty() {
            let groups = st.users.remove(user).map(|e| e.groups).unwrap_or_default();
            st.index_groups(user, &groups, &[]);
        }
    }

    /// True when the caller must start a refresh (none is running).
    fn wants_refresh(entry: &mut Entry) -> bool {
        if entry.refreshing {
            entry.dirty = true;
            false
        } else {
            entry.refreshing = true;
            true
        }
    }

    /// Queues a frame on every connection of the entry; a full queue means
    /// a client that does not keep up: it is cut off and resumes later.
    /// Returns how many connections it was queued on, for
    /// `belfry_stream_events_sent_total`, which the caller adds once for
    /// all it sent (finding the counter in the metrics registry for every
    /// frame was about 1 % of a 10,000-client fan-out's samples).
    fn send(entry: &mut Entry, frame: &Arc<Frame>) -> u64 {
        Self::send_to(entry, frame, false)
    }

    /// [`Self::send`], to every connection or (`skip_derived`) to those
    /// that do not derive their counts.
    fn send_to(entry: &mut Entry, frame: &Arc<Frame>, skip_derived: bool) -> u64 {
        let mut sent = 0;
        entry.slots.retain(|slot| {
            if skip_derived && slot.derived {
                return true;
            }
            match slot.tx.try_send(frame.clone()) {
                Ok(()) => {
                    sent += 1;
                    true
                }
                Err(TrySendError::Full) => {
                    metrics::counter!("belfry_stream_slow_disconnects_total").increment(1);
                    tracing::info!(connection = slot.id, "stream too slow: disconnected");
                    slot.cut_off();
                    false
                }
                Err(TrySendError::Closed) => false,
            }
        });
        sent
    }

    /// Adds frames queued to `belfry_stream_events_sent_total`.
    fn count_sent(sent: u64) {
        if sent > 0 {
            metrics::counter!("belfry_stream_events_sent_total").increment(sent);
        }
    }

    /// Dispatches one commit's events.
    pub fn dispatch(self: &Arc<Self>, events: &[StoreEvent]) {
        let mut refresh = Vec::new();
        let mut sent = 0;
        {
            let mut st = self.state.lock().expect("hub");
            for event in events {
                match event {
                    StoreEvent::Published(p) => sent += Self::published(&mut st, p, &mut refresh),
                    StoreEvent::State { user, change } => {
                        if let Some(entry) = st.users.get_mut(user) {
                            let frame = Frame::new(Kind::State, None, state_json(change));
                            sent += Self::send(entry, &frame);
                            if Self::wants_refresh(entry) {
                                refresh.push(user.clone());
                            }
                        }
                    }
                    StoreEvent::Groups { user, groups } => {
                        if let Some(entry) = st.users.get_mut(user) {
                            let old = std::mem::replace(&mut entry.groups, groups.clone());
                            st.index_groups(user, &old, groups);
                        }
                    }
                    StoreEvent::UserDeleted { user } => {
                        if let Some(entry) = st.users.get_mut(user) {
                            for slot in entry.slots.drain(..) {
                                slot.end();
                            }
                        }
                    }
                    StoreEvent::TokensRevoked { user, after } => {
                        self.revocations.record(user, *after, self.clock.now());
                        if let Some(entry) = st.users.get_mut(user) {
                            entry.slots.retain(|slot| {
                                let revoked = slot.issued_at <= *after;
                                if revoked {
                                    tracing::info!(connection = slot.id, %user, "token revoked: stream ends");
                                    slot.end();
                                }
                                !revoked
                            });
                        }
                    }
                    StoreEvent::Answered {
                        id,
                        answered,
                        users,
                        broadcast,
                    } => {
                        // Every recipient's item shows the answer; no
                        // counts change, so nothing is refreshed.
                        let data = format!(
                            r#"{{"action":"answered","ids":[{}],"answered":{answered}}}"#,
                            serde_json::Value::from(id.as_str())
                        );
                        let frame = Frame::new(Kind::State, None, data);
                        let mut affected: HashSet<UserId> = users.iter().cloned().collect();
                        if let Some(b) = broadcast {
                            affected.extend(Self::audience(&st, b.all, &b.groups));
                        }
                        for user in affected {
                            if let Some(entry) = st.users.get_mut(&user) {
                                sent += Self::send(entry, &frame);
                            }
                        }
                    }
                    // Any node's change (this one's included): the store's
                    // snapshot of who subscribes to what is read again.
                    StoreEvent::WebhooksChanged => self.store.webhooks_changed(),
                    StoreEvent::Removed {
                        id,
                        users,
                        broadcast,
                    } => {
                        let data = serde_json::json!({"action": "delete", "ids": [id]}).to_string();
                        let frame = Frame::new(Kind::State, None, data);
                        let mut affected: HashSet<UserId> = users.iter().cloned().collect();
                        if let Some(b) = broadcast {
                            affected.extend(Self::audience(&st, b.all, &b.groups));
                        }
                        for user in affected {
                            if let Some(entry) = st.users.get_mut(&user) {
                                sent += Self::send(entry, &frame);
                                if Self::wants_refresh(entry) {
                                    refresh.push(user);
                                }
                            }
                        }
                    }
                }
            }
        }
        Self::count_sent(sent);
        for user in refresh {
            self.spawn_refresh(user);
        }
    }

    /// Connected users a broadcast reaches.
    fn audience(st: &State, all: bool, groups: &[GroupId]) -> Vec<UserId> {
        if all {
            return st.users.keys().cloned().collect();
        }
        members_of(&st.members, groups).cloned().collect()
    }

    /// Returns the frames queued.
    fn published(st: &mut State, p: &Published, refresh: &mut Vec<UserId>) -> u64 {
        let mut sent = 0;
        let render = |stack_count: i64| {
            let meta = InboxItemMeta {
                id: p.id.clone(),
                seq: p.seq,
                created_at: p.created_at,
                read: false,
                seen: false,
                archived: false,
                stack_count,
                dismissed: false,
                answered: None,
            };
            Frame::new(
                Kind::Notification,
                Some(p.seq),
                meta.render(&p.content_json),
            )
        };
        // Direct recipients: one encoding per distinct stack count (usually one).
        let mut by_count: Vec<(i64, Arc<Frame>)> = Vec::new();
        let mut counts = CountsFrames::default();
        for (user, count) in &p.direct {
            let Some(entry) = st.users.get_mut(user) else {
                continue;
            };
            let frame = match by_count.iter().find(|(c, _)| c == count) {
                Some((_, f)) => f.clone(),
                None => {
                    let f = render(*count);
                    by_count.push((*count, f.clone()));
                    f
                }
            };
            sent += Self::send(entry, &frame);
            // An entry whose stack count is 1 is new, or a read stack that
            // starts again: either way one more unread and unseen item, so
            // the cached counts follow without counting the inbox again
            // (which costs as much as the user has unread). A stack that
            // grew may or may not have been seen: count it in the store.
            if *count == 1 {
                sent += Self::add_one(entry, user, p.seq, refresh, &mut counts);
            } else if Self::wants_refresh(entry) {
                refresh.push(user.clone());
            }
        }
        let Some(b) = &p.broadcast else {
            return sent;
        };
        let frame = render(1);
        let mut deliver = |user: &UserId, entry: &mut Entry| {
            if p.actor.as_ref() == Some(user) {
                return;
            }
            sent += Self::send(entry, &frame);
            // A broadcast is always one more unread and unseen item.
            sent += Self::add_one(entry, user, p.seq, refresh, &mut counts);
        };
        // The connected members of the audience, each once, without copying
        // their ids: one look-up per member (a fan-out's cost is per
        // connection, so per member nothing is allocated).
        let State { users, members, .. } = st;
        if b.all {
            for (user, entry) in users.iter_mut() {
                deliver(user, entry);
            }
        } else {
            for user in members_of(members, &b.groups) {
                if let Some(entry) = users.get_mut(user) {
                    deliver(user, entry);
                }
            }
        }
        sent
    }

    /// One more unread and unseen item, the entry with `seq`: unless the
    /// cached counts include it already (they were counted after its commit
    /// and before it got here), they follow and the counts frame goes right
    /// behind the notification, so that the connection writes both at once
    /// (see the streams' batching) — except to connections that derive their
    /// counts. Without known counts (or while they are being counted) they
    /// are counted. Returns the frames queued.
    fn add_one(
        entry: &mut Entry,
        user: &UserId,
        seq: i64,
        refresh: &mut Vec<UserId>,
        frames: &mut CountsFrames,
    ) -> u64 {
        match (&mut entry.counts, entry.refreshing) {
            (Some(k), false) => {
                if seq <= k.seq {
                    return 0;
                }
                k.counts.unread += 1;
                k.counts.unseen += 1;
                k.seq = seq;
                // Connections that derive their counts need no frame.
                if entry.slots.iter().any(|s| !s.derived) {
                    let f = frames.get(*k);
                    return Self::send_to(entry, &f, true);
                }
            }
            _ => {
                if Self::wants_refresh(entry) {
                    refresh.push(user.clone());
                }
            }
        }
        0
    }

    /// Recomputes a user's counts from the store and sends them; repeats
    /// while changes arrived during the query, so the last value is right.
    fn spawn_refresh(self: &Arc<Self>, user: UserId) {
        let hub = self.clone();
        tokio::spawn(async move {
            loop {
                let result = hub.store.counts_at(&user, hub.clock.now()).await;
                let mut st = hub.state.lock().expect("hub");
                let Some(entry) = st.users.get_mut(&user) else {
                    return;
                };
                if entry.dirty {
                    // Changed while we counted: this result may be stale, so
                    // it is not sent; count again.
                    entry.dirty = false;
                    continue;
                }
                match result {
                    Ok((counts, seq)) => {
                        let known = Known { counts, seq };
                        entry.counts = Some(known);
                        Self::count_sent(Self::send(entry, &counts_frame(known)));
                    }
                    Err(e) => {
                        tracing::warn!(%user, error = %e, "could not compute counts for a stream");
                        entry.counts = None;
                    }
                }
                entry.refreshing = false;
                return;
            }
        });
    }

    /// Drops every connection (after events may have been missed): clients
    /// reconnect and resume from the store with their cursor. Revocations
    /// may have been among the missed events: they are read again.
    pub fn reset_all(self: &Arc<Self>) {
        // A change of the webhooks may be among what was missed.
        self.store.webhooks_changed();
        {
            let st = self.state.lock().expect("hub");
            for entry in st.users.values() {
                for slot in &entry.slots {
                    slot.cut_off();
                }
            }
        }
        let hub = self.clone();
        tokio::spawn(async move {
            while let Err(e) = hub.load_revocations().await {
                tracing::error!(error = %e, "could not read token revocations after missed events; retrying");
                tokio::select! {
                    _ = hub.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        });
    }
}

fn state_json(change: &StateChange) -> String {
    serde_json::to_string(change).expect("state changes serialise")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(unread: i64, unseen: i64, seq: i64) -> Known {
        Known {
            counts: Counts { unread, unseen },
            seq,
        }
    }

    #[test]
    fn equal_counts_share_one_frame_and_different_ones_do_not() {
        let mut frames = CountsFrames::default();
        let a = frames.get(known(3, 2, 7));
        let b = frames.get(known(3, 2, 7));
        let c = frames.get(known(3, 3, 7));
        let d = frames.get(known(3, 2, 8));
        assert!(Arc::ptr_eq(&a, &b), "one encoding for equal counts");
        assert!(!Arc::ptr_eq(&a, &c));
        assert!(!Arc::ptr_eq(&a, &d), "the seq is part of the frame");
        assert_eq!(
            a.ws().as_str(),
            r#"{"type":"counts","seq":null,"data":{"unread":3,"unseen":2,"seq":7}}"#
        );
        assert!(
            std::str::from_utf8(&c.sse())
                .unwrap()
                .contains(r#"data: {"unread":3,"unseen":3,"seq":7}"#)
        );
    }
}
