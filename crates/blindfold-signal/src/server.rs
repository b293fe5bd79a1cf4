//! The signalling service's state and WebSocket handling: conferences, their members, and
//! the forwarder calls that membership changes cause.
//!
//! Owns: the in-memory membership of every conference this service placed, the relay of
//! sealed key messages, and the order of forwarder calls versus notifications. It must not
//! open, parse or store key messages beyond relaying the hex, write anything to disk, or
//! log ids or addresses above debug level.
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
use super::proto::{
    ClientMessage, ErrorCode, MAX_FRAME, MemberInfo, ServerMessage, Track, TrackRef, encode,
    parse_client,
};

type Tx = mpsc::UnboundedSender<ServerMessage>;

/// The whole service: forwarders and conferences.
pub struct Service {
    forwarders: Vec<Arc<ForwarderClient>>,
    conferences: Mutex<HashMap<String, Arc<Conference>>>,
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
/// i.e. ephemeral ids, key-transport public keys, tracks and join order.
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
        }
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

    async fn join(
        &self,
        conf_id: String,
        pid: String,
        key: String,
        key_proof: Option<String>,
        tx: &Tx,
    ) -> Result<Arc<Conference>, Refusal> {
        loop {
            let conf = self.conference(&conf_id);
            let mut st = conf.state.lock().await;
            if st.closed {
                // Deleted between lookup and lock: the map has (or will get) a fresh one.
                continue;
            }
            if !st.created {
                let id = conf.id.clone();
                if let Err(e) = blocking(&conf.fwd, move |f| f.create_conference(&id)).await {
                    self.close(&conf, &mut st).await;
                    return Err(e.into());
                }
                st.created = true;
            }
            if st.members.contains_key(&pid) {
                return Err(Refusal(
                    ErrorCode::ParticipantTaken,
                    "participant id in use".into(),
                ));
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
            let info = MemberInfo {
                participant: pid.clone(),
                order: st.next_order,
                key,
                key_proof,
                tracks: Vec::new(),
            };
            st.next_order += 1;
            let others: Vec<MemberInfo> = st.members.values().map(|m| m.info.clone()).collect();
            // The joiner hears of the others before they hear of it, so a key message a
            // member seals to it in reaction always arrives after its `joined`.
            let _ = tx.send(ServerMessage::Joined {
                you: info.clone(),
                members: others,
                ice: ep.ice,
                candidates: ep.candidates,
            });
            for m in st.members.values() {
                let _ = m.tx.send(ServerMessage::MemberJoined {
                    member: info.clone(),
                });
            }
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
        for m in st.members.values() {
            let _ = m.tx.send(ServerMessage::MemberLeft {
                participant: pid.to_string(),
            });
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

    async fn relay_key(
        &self,
        conf: &Arc<Conference>,
        from: &str,
        to: &str,
        message: String,
    ) -> Result<(), Refusal> {
        let st = conf.state.lock().await;
        let Some(m) = st.members.get(to) else {
            return Err(Refusal(
                ErrorCode::UnknownRecipient,
                "recipient is not a member".into(),
            ));
        };
        let _ = m.tx.send(ServerMessage::Key {
            from: from.to_string(),
            message,
        });
        Ok(())
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
                        key,
                        key_proof,
                    },
                ) => match self
                    .join(conference, participant.clone(), key, key_proof, &tx)
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
                (Some((conf, pid)), ClientMessage::Key { to, message }) => {
                    self.relay_key(conf, pid, &to, message).await
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
