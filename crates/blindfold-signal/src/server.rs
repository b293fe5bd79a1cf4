//! The signalling service's state and WebSocket handling: conferences, their members, and
//! the forwarder calls that membership changes cause.
//!
//! Owns: the in-memory membership of every conference this service placed, join admission
//! (a fresh challenge per connection answered with a MAC under the conference's join key),
//! the relay and ordering of MLS messages (the delivery service role: first Commit per
//! epoch wins and goes to everyone), and the order of forwarder calls versus notifications.
//! It must not open or store MLS messages beyond relaying the hex and reading the clear
//! header ([`super::mls_header`]), write anything to disk, or log ids or addresses above
//! debug level.
//!
//! Concurrency: one async mutex per conference serialises its changes, including the
//! forwarder calls they make, so every member sees joins, leaves and tracks in the same
//! order the forwarder applied them. Different conferences never wait on each other.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::extract::ws::{Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::sync::mpsc;

use super::forwarders::{ControlError, ForwarderClient, blocking};
use super::mls_header::{self, Content};
use super::proto::{
    self, CHALLENGE_LEN, ClientMessage, ErrorCode, JOIN_KEY_LEN, MAX_FRAME, MemberInfo,
    ServerMessage, Track, TrackRef, WelcomeOut, encode, parse_client,
};

type Tx = mpsc::UnboundedSender<ServerMessage>;

/// The whole service: forwarders and conferences.
pub struct Service {
    forwarders: Vec<Arc<ForwarderClient>>,
    conferences: Mutex<HashMap<String, Arc<Conference>>>,
    #[cfg(feature = "hostile-testing")]
    hostile: Option<Arc<dyn super::hostile::Policy>>,
}

struct Conference {
    id: String,
    fwd: Arc<ForwarderClient>,
    state: tokio::sync::Mutex<ConfState>,
}

#[derive(Default)]
struct ConfState {
    /// The conference exists on the forwarder.
    created: bool,
    /// The conference was deleted; a joiner holding this handle must look it up again.
    closed: bool,
    next_order: u64,
    members: BTreeMap<String, Member>,
    /// The key join proofs are checked with, from the first member (the conference id
    /// commits to it).
    join_key: Option<[u8; JOIN_KEY_LEN]>,
    /// Every participant id that was ever in the conference: none is admitted twice.
    seen: std::collections::HashSet<String>,
    /// The epoch of the last Commit relayed: the next must be for the one after it.
    last_commit_epoch: Option<u64>,
    /// Everything relayed, for the hostile mode's replays.
    #[cfg(feature = "hostile-testing")]
    log: Vec<ServerMessage>,
}

struct Member {
    info: MemberInfo,
    /// `None`: every track of every other member.
    subscription: Option<Vec<TrackRef>>,
    /// The subscription set last accepted by the forwarder.
    pushed: Vec<(String, String)>,
    tx: Tx,
}

/// The service's whole view of the calls it carries: only what participants sent it,
/// i.e. ephemeral ids, tracks and join order (MLS messages are relayed, not kept).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StateView {
    /// Conferences, by ephemeral id.
    pub conferences: Vec<ConferenceView>,
}

/// One conference in [`StateView`].
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ConferenceView {
    /// Ephemeral conference id.
    pub id: String,
    /// Its members.
    pub members: Vec<MemberView>,
}

/// One member in [`ConferenceView`].
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MemberView {
    /// What the other members are told about it.
    pub info: MemberInfo,
    /// Its narrowed subscription, if any.
    pub subscription: Option<Vec<TrackRef>>,
    /// What the forwarder was last told it receives.
    pub forwarded: Vec<(String, String)>,
}

/// A refusal to send back to the participant.
struct Refusal(ErrorCode, String);

impl From<ControlError> for Refusal {
    fn from(e: ControlError) -> Self {
        Refusal(ErrorCode::Forwarder, e.to_string())
    }
}

impl Service {
    /// A service placing conferences on `forwarders` (at least one).
    pub fn new(forwarders: Vec<ForwarderClient>) -> Self {
        Self {
            forwarders: forwarders.into_iter().map(Arc::new).collect(),
            conferences: Mutex::new(HashMap::new()),
            #[cfg(feature = "hostile-testing")]
            hostile: None,
        }
    }

    /// A service that misbehaves as `policy` says (tests only).
    #[cfg(feature = "hostile-testing")]
    pub fn new_hostile(
        forwarders: Vec<ForwarderClient>,
        policy: Arc<dyn super::hostile::Policy>,
    ) -> Self {
        let mut s = Self::new(forwarders);
        s.hostile = Some(policy);
        s
    }

    fn conferences(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Conference>>> {
        // A panic while holding this lock leaves only a map of Arcs behind: still usable.
        self.conferences
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The conference `id`, placed on the least loaded forwarder if new.
    fn conference(&self, id: &str) -> Arc<Conference> {
        let mut map = self.conferences();
        map.entry(id.to_string())
            .or_insert_with(|| {
                let fwd = self
                    .forwarders
                    .iter()
                    .min_by_key(|f| f.load())
                    // Invariant: the service is built with at least one forwarder.
                    .expect("at least one forwarder")
                    .clone();
                Arc::new(Conference {
                    id: id.to_string(),
                    fwd,
                    state: tokio::sync::Mutex::new(ConfState::default()),
                })
            })
            .clone()
    }

    /// A snapshot of every conference.
    pub async fn view(&self) -> StateView {
        let confs: Vec<Arc<Conference>> = self.conferences().values().cloned().collect();
        let mut conferences = Vec::new();
        for c in confs {
            let st = c.state.lock().await;
            if st.closed {
                continue;
            }
            conferences.push(ConferenceView {
                id: c.id.clone(),
                members: st
                    .members
                    .values()
                    .map(|m| MemberView {
                        info: m.info.clone(),
                        subscription: m.subscription.clone(),
                        forwarded: m.pushed.clone(),
                    })
                    .collect(),
            });
        }
        conferences.sort_by(|a, b| a.id.cmp(&b.id));
        StateView { conferences }
    }

    #[allow(clippy::too_many_arguments)]
    async fn join(
        &self,
        conf_id: String,
        pid: String,
        proof: &str,
        key_package: String,
        join_key: Option<String>,
        challenge: &[u8; CHALLENGE_LEN],
        tx: &Tx,
    ) -> Result<Arc<Conference>, Refusal> {
        let proof =
            hex::decode(proof).map_err(|_| Refusal(ErrorCode::BadRequest, "proof".into()))?;
        let offered_key = match join_key.as_deref().map(hex::decode) {
            Some(Ok(k)) => Some(
                <[u8; JOIN_KEY_LEN]>::try_from(k.as_slice())
                    .map_err(|_| Refusal(ErrorCode::BadRequest, "join_key".into()))?,
            ),
            Some(Err(_)) => return Err(Refusal(ErrorCode::BadRequest, "join_key".into())),
            None => None,
        };
        loop {
            let conf = self.conference(&conf_id);
            let mut st = conf.state.lock().await;
            if st.closed {
                // Deleted between lookup and lock: the map has (or will get) a fresh one.
                continue;
            }
            let key = match (st.join_key, offered_key) {
                (Some(k), _) => k,
                // The conference id commits to its join key: only a holder of the call
                // secret can register it.
                (None, Some(k)) if proto::conference_id_for(&k) == conf.id => k,
                (None, Some(_)) => {
                    self.forget_if_empty(&conf, &mut st).await;
                    return Err(Refusal(
                        ErrorCode::BadProof,
                        "join key does not match".into(),
                    ));
                }
                (None, None) => {
                    self.forget_if_empty(&conf, &mut st).await;
                    return Err(Refusal(
                        ErrorCode::ConferenceUnknown,
                        "join again with the join key".into(),
                    ));
                }
            };
            if !proto::verify_join_proof(&key, challenge, &conf_id, &pid, &proof) {
                self.forget_if_empty(&conf, &mut st).await;
                return Err(Refusal(
                    ErrorCode::BadProof,
                    "join proof does not verify".into(),
                ));
            }
            if st.members.contains_key(&pid) || st.seen.contains(&pid) {
                return Err(Refusal(
                    ErrorCode::ParticipantTaken,
                    "participant id in use".into(),
                ));
            }
            if !st.created {
                let id = conf.id.clone();
                if let Err(e) = blocking(&conf.fwd, move |f| f.create_conference(&id)).await {
                    self.close(&conf, &mut st).await;
                    return Err(e.into());
                }
                st.created = true;
            }
            let (c, p) = (conf.id.clone(), pid.clone());
            let ep = match blocking(&conf.fwd, move |f| f.create_endpoint(&c, &p)).await {
                Ok(ep) => ep,
                Err(e) => {
                    if st.members.is_empty() {
                        self.close(&conf, &mut st).await;
                    }
                    return Err(if e.status() == Some(409) {
                        Refusal(ErrorCode::ParticipantTaken, "participant id in use".into())
                    } else {
                        e.into()
                    });
                }
            };
            st.join_key = Some(key);
            st.seen.insert(pid.clone());
            let info = MemberInfo {
                participant: pid.clone(),
                order: st.next_order,
                tracks: Vec::new(),
            };
            st.next_order += 1;
            let others: Vec<MemberInfo> = st.members.values().map(|m| m.info.clone()).collect();
            // The joiner hears of the others before they hear of it, so the Welcome a
            // member's Commit brings always arrives after its `joined`.
            let _ = tx.send(ServerMessage::Joined {
                you: info.clone(),
                members: others,
                ice: ep.ice,
                candidates: ep.candidates,
            });
            let announce = ServerMessage::MemberJoined {
                member: info.clone(),
                key_package,
            };
            for m in st.members.values() {
                let _ = m.tx.send(announce.clone());
            }
            #[cfg(feature = "hostile-testing")]
            st.log.push(announce);
            st.members.insert(
                pid.clone(),
                Member {
                    info,
                    subscription: None,
                    pushed: Vec::new(),
                    tx: tx.clone(),
                },
            );
            self.sync_subscriptions(&conf, &mut st).await;
            tracing::info!(members = st.members.len(), "participant joined");
            drop(st);
            return Ok(conf);
        }
    }

    /// A conference that a refused join created in the map, with nobody in it, is dropped.
    async fn forget_if_empty(&self, conf: &Arc<Conference>, st: &mut ConfState) {
        if st.members.is_empty() {
            self.close(conf, st).await;
        }
    }

    /// Removes `pid`: its endpoint goes from the forwarder first, so it stops receiving at
    /// once, and only then are the others told (and the key generator rekeys).
    async fn leave(&self, conf: &Arc<Conference>, pid: &str) {
        let mut st = conf.state.lock().await;
        if st.members.remove(pid).is_none() {
            return;
        }
        let (c, p) = (conf.id.clone(), pid.to_string());
        if let Err(e) = blocking(&conf.fwd, move |f| f.delete_endpoint(&c, &p)).await {
            tracing::warn!(error = %e, "deleting a leaver's endpoint failed");
        }
        for (id, m) in &st.members {
            let msg = ServerMessage::MemberLeft {
                participant: pid.to_string(),
            };
            self.deliver(&m.tx, id, pid, None, msg);
        }
        tracing::info!(members = st.members.len(), "participant left");
        if st.members.is_empty() {
            self.close(conf, &mut st).await;
        } else {
            self.sync_subscriptions(conf, &mut st).await;
        }
    }

    /// Deletes the conference from the forwarder and forgets it.
    async fn close(&self, conf: &Arc<Conference>, st: &mut ConfState) {
        st.closed = true;
        if st.created {
            let c = conf.id.clone();
            if let Err(e) = blocking(&conf.fwd, move |f| f.delete_conference(&c)).await {
                tracing::warn!(error = %e, "deleting an empty conference failed");
            }
        }
        let mut map = self.conferences();
        if map.get(&conf.id).is_some_and(|c| Arc::ptr_eq(c, conf)) {
            map.remove(&conf.id);
        }
    }

    async fn publish(
        &self,
        conf: &Arc<Conference>,
        pid: &str,
        tracks: Vec<Track>,
    ) -> Result<(), Refusal> {
        let mut st = conf.state.lock().await;
        let (c, p, t) = (conf.id.clone(), pid.to_string(), tracks.clone());
        blocking(&conf.fwd, move |f| f.set_tracks(&c, &p, &t))
            .await
            .map_err(|e| match e.status() {
                Some(409) => Refusal(ErrorCode::BadRequest, "an SSRC is already taken".into()),
                Some(400 | 422) => Refusal(ErrorCode::BadRequest, "tracks refused".into()),
                _ => e.into(),
            })?;
        if let Some(me) = st.members.get_mut(pid) {
            me.info.tracks = tracks.clone();
        }
        for (id, m) in &st.members {
            if id != pid {
                let _ = m.tx.send(ServerMessage::Tracks {
                    participant: pid.to_string(),
                    tracks: tracks.clone(),
                });
            }
        }
        self.sync_subscriptions(conf, &mut st).await;
        Ok(())
    }

    async fn subscribe(&self, conf: &Arc<Conference>, pid: &str, to: Option<Vec<TrackRef>>) {
        let mut st = conf.state.lock().await;
        if let Some(me) = st.members.get_mut(pid) {
            me.subscription = to;
        }
        self.sync_subscriptions(conf, &mut st).await;
    }

    /// The delivery service: reads the clear MLS header, keeps the first Commit for each
    /// epoch (the next after the last one relayed) and broadcasts it to every member, the
    /// committer included, then hands its Welcome to the members it adds; proposals go to
    /// the others. Application messages are not relayed (media goes through the forwarder).
    async fn relay_handshake(
        &self,
        conf: &Arc<Conference>,
        from: &str,
        message: String,
        welcome: Option<WelcomeOut>,
    ) -> Result<(), Refusal> {
        let bytes =
            hex::decode(&message).map_err(|_| Refusal(ErrorCode::BadRequest, "message".into()))?;
        let header =
            mls_header::parse(&bytes).map_err(|e| Refusal(ErrorCode::BadRequest, e.to_string()))?;
        if hex::encode(&header.group_id) != conf.id {
            return Err(Refusal(ErrorCode::BadRequest, "another group".into()));
        }
        let mut st = conf.state.lock().await;
        let msg = ServerMessage::Handshake {
            from: from.to_string(),
            message,
        };
        match header.content {
            Content::Application => {
                return Err(Refusal(ErrorCode::BadRequest, "not a handshake".into()));
            }
            Content::Proposal => {
                if welcome.is_some() {
                    return Err(Refusal(
                        ErrorCode::BadRequest,
                        "welcome without commit".into(),
                    ));
                }
                for (id, m) in &st.members {
                    if id != from {
                        self.deliver(&m.tx, id, from, Some(header.epoch), msg.clone());
                    }
                }
            }
            Content::Commit => {
                let next = st.last_commit_epoch.map(|e| e.saturating_add(1));
                if next.is_some_and(|n| header.epoch != n) && self.orders_commits() {
                    return Err(Refusal(
                        ErrorCode::StaleCommit,
                        "epoch already committed".into(),
                    ));
                }
                st.last_commit_epoch = Some(header.epoch);
                for (id, m) in &st.members {
                    self.deliver(&m.tx, id, from, Some(header.epoch), msg.clone());
                }
                if let Some(w) = welcome {
                    let welcome = ServerMessage::Welcome { message: w.message };
                    for to in &w.to {
                        if let Some(m) = st.members.get(to) {
                            self.deliver(&m.tx, to, from, Some(header.epoch), welcome.clone());
                        }
                    }
                    #[cfg(feature = "hostile-testing")]
                    st.log.push(welcome);
                }
            }
        }
        #[cfg(feature = "hostile-testing")]
        st.log.push(msg);
        #[cfg(not(feature = "hostile-testing"))]
        let _ = &mut st;
        Ok(())
    }

    #[cfg(feature = "hostile-testing")]
    fn orders_commits(&self) -> bool {
        self.hostile.as_ref().is_none_or(|h| h.order_commits())
    }

    #[cfg(not(feature = "hostile-testing"))]
    fn orders_commits(&self) -> bool {
        true
    }

    /// Sends `msg` to member `to`; in the hostile mode the policy may drop or delay it.
    fn deliver(&self, tx: &Tx, to: &str, from: &str, epoch: Option<u64>, msg: ServerMessage) {
        #[cfg(feature = "hostile-testing")]
        if let Some(h) = &self.hostile {
            use super::hostile::Action;
            match h.decide(&msg, from, to, epoch) {
                Action::Deliver => {}
                Action::Drop => return,
                Action::Delay(d) => {
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(d).await;
                        let _ = tx.send(msg);
                    });
                    return;
                }
            }
        }
        let _ = (to, from, epoch);
        let _ = tx.send(msg);
    }

    /// Sends every MLS message and join announcement relayed so far in `conf` again, to
    /// every member (the hostile mode's replay).
    #[cfg(feature = "hostile-testing")]
    pub async fn replay(&self, conf: &str) -> usize {
        let Some(c) = self.conferences().get(conf).cloned() else {
            return 0;
        };
        let st = c.state.lock().await;
        for m in st.members.values() {
            for msg in &st.log {
                let _ = m.tx.send(msg.clone());
            }
        }
        st.log.len() * st.members.len()
    }

    /// Brings every member's forwarder subscriptions in line with the tracks present and
    /// the member's choice; calls the forwarder only for members whose set changed.
    async fn sync_subscriptions(&self, conf: &Arc<Conference>, st: &mut ConfState) {
        let wanted: Vec<(String, Vec<(String, String)>)> = st
            .members
            .iter()
            .map(|(id, m)| (id.clone(), desired(st, id, m)))
            .collect();
        for (id, subs) in wanted {
            let Some(m) = st.members.get(&id) else {
                continue;
            };
            if m.pushed == subs {
                continue;
            }
            let (c, p, s) = (conf.id.clone(), id.clone(), subs.clone());
            match blocking(&conf.fwd, move |f| f.set_subscriptions(&c, &p, &s)).await {
                Ok(()) => {
                    if let Some(m) = st.members.get_mut(&id) {
                        m.pushed = subs;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "setting subscriptions failed"),
            }
        }
    }

    /// Serves one participant's WebSocket until it leaves or the connection drops.
    pub async fn connection(self: Arc<Self>, socket: WebSocket) {
        let (mut sink, mut stream) = socket.split();
        let (tx, mut rx) = mpsc::unbounded_channel::<ServerMessage>();
        let writer = tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                if sink.send(Message::Text(encode(m).into())).await.is_err() {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        let mut challenge = [0u8; CHALLENGE_LEN];
        rand::fill(&mut challenge);
        let _ = tx.send(ServerMessage::Challenge {
            nonce: hex::encode(challenge),
        });
        let mut joined: Option<(Arc<Conference>, String)> = None;
        while let Some(Ok(frame)) = stream.next().await {
            let text = match frame {
                Message::Text(t) => t,
                Message::Close(_) => break,
                Message::Ping(_) | Message::Pong(_) => continue,
                Message::Binary(_) => {
                    refuse(
                        &tx,
                        Refusal(ErrorCode::BadRequest, "text frames only".into()),
                    );
                    continue;
                }
            };
            if text.len() > MAX_FRAME {
                refuse(
                    &tx,
                    Refusal(ErrorCode::BadRequest, "frame too large".into()),
                );
                continue;
            }
            let msg = match parse_client(text.as_str()) {
                Ok(m) => m,
                Err(e) => {
                    refuse(&tx, Refusal(ErrorCode::BadRequest, e.to_string()));
                    continue;
                }
            };
            let result = match (&joined, msg) {
                (
                    None,
                    ClientMessage::Join {
                        conference,
                        participant,
                        proof,
                        key_package,
                        join_key,
                    },
                ) => match self
                    .join(
                        conference,
                        participant.clone(),
                        &proof,
                        key_package,
                        join_key,
                        &challenge,
                        &tx,
                    )
                    .await
                {
                    Ok(conf) => {
                        joined = Some((conf, participant));
                        Ok(())
                    }
                    Err(r) => Err(r),
                },
                (None, _) => Err(Refusal(ErrorCode::WrongState, "join first".into())),
                (Some(_), ClientMessage::Join { .. }) => {
                    Err(Refusal(ErrorCode::WrongState, "already joined".into()))
                }
                (Some((conf, pid)), ClientMessage::Publish { tracks }) => {
                    self.publish(conf, pid, tracks).await
                }
                (Some((conf, pid)), ClientMessage::Subscribe { to }) => {
                    self.subscribe(conf, pid, to).await;
                    Ok(())
                }
                (Some((conf, pid)), ClientMessage::Handshake { message, welcome }) => {
                    self.relay_handshake(conf, pid, message, welcome).await
                }
                (Some((conf, pid)), ClientMessage::Leave) => {
                    self.leave(conf, pid).await;
                    let _ = tx.send(ServerMessage::Left);
                    joined = None;
                    break;
                }
            };
            if let Err(r) = result {
                refuse(&tx, r);
            }
        }
        // A dropped WebSocket is a leave.
        if let Some((conf, pid)) = joined {
            self.leave(&conf, &pid).await;
        }
        drop(tx);
        let _ = writer.await;
    }
}

fn refuse(tx: &Tx, Refusal(code, message): Refusal) {
    tracing::debug!(?code, %message, "request refused");
    let _ = tx.send(ServerMessage::Error { code, message });
}

/// What `pid` should receive: every track of the other members it asked for (all, unless
/// it narrowed its subscription), in a canonical order.
fn desired(st: &ConfState, pid: &str, me: &Member) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = st
        .members
        .iter()
        .filter(|(other, _)| other.as_str() != pid)
        .flat_map(|(other, m)| {
            m.info.tracks.iter().filter_map(move |t| {
                let wanted = me.subscription.as_ref().is_none_or(|list| {
                    list.iter()
                        .any(|r| r.participant == *other && r.track == t.id)
                });
                wanted.then(|| (other.clone(), t.id.clone()))
            })
        })
        .collect();
    out.sort();
    out
}
