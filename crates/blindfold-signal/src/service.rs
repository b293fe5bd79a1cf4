//! The signalling service's calls: each conference's membership, its home forwarder, and
//! the forwarder calls that membership changes cause.
//!
//! Owns the in-memory membership of every conference this service placed, join admission
//! (the proof under the conference's join key, ids admitted once), the delivery-service
//! relay of MLS messages (first Commit per epoch wins and goes to everyone, Welcomes to the
//! joiners), and the order of forwarder calls versus notifications. Must not open or store
//! MLS messages beyond relaying the hex and reading the clear header
//! ([`crate::mls_header`]), write anything to disk, or log ids or addresses above debug
//! level.
//!
//! # Concurrency
//! A conference's state sits behind a plain mutex that is never held across an `.await`:
//! an operation decides under the lock, calls the forwarder without it, and takes it again
//! to record the result and notify members. So one slow forwarder call never stalls the
//! rest of the call, independent calls run concurrently (the subscription updates a
//! publish causes go out in parallel), and what needs an order keeps it:
//! - a joiner's endpoint exists before anyone hears of the joiner, and the joiner hears of
//!   the others before they hear of it (so the Welcome a member's Commit brings in reaction
//!   arrives after its `joined`);
//! - a leaver's endpoint is deleted on the forwarder before the others are told (and so
//!   before the group's rekey);
//! - a publisher's tracks are on the forwarder before anyone, itself included
//!   (`published`), hears of them;
//! - membership and track notifications and relayed MLS messages are sent under the lock,
//!   so every member sees them in the same order, and join order numbers and the epoch of
//!   the last Commit are assigned there too;
//! - each member's subscriptions are pushed by at most one task at a time, which re-reads
//!   the wanted set after each push, so the last push is always the latest set;
//! - speaker events from the forwarders' event streams are relayed to the conference's
//!   members as they come (`speakers`), under the same lock as membership changes.
//!
//! # Losing a forwarder
//! [`Service::watch_forwarders`] checks every forwarder's `/healthz` on an interval, with a
//! bounded timeout and no conference lock held; one that fails K checks in a row is lost
//! ([`crate::forwarders::Health`]) and gets no new calls. Each conference homed on it is
//! moved: a live forwarder (least loaded) gets the conference, each member's endpoint
//! (fresh ICE credentials), its tracks and receive choice, the home switches there, and only
//! then is each member told (`moved`, with its new credentials and candidates) and its
//! subscriptions pushed afresh. Tracks go first so the media a member sends as soon as it
//! re-latches is not dropped as `ssrc_not_owned`. The members' MLS group is untouched:
//! the forwarder never had a key. A lost forwarder that answers again (it was only
//! stalled) gets the moved conferences deleted, so it keeps no endpoint of them.
//!
//! The per-call state ([`ConfState`]) is plain data keyed by conference id; only the
//! members' outboxes are local to this process. Moving the call state to a shared store
//! later means replacing this struct's lock with that store's transaction, not changing
//! the order above.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use blindfold_control::client::ControlError;
use blindfold_control::{ReceiveJson, SpeakerEvent, SubscriptionJson, TrackJson};
use serde::Serialize;
use tokio::sync::{OnceCell, watch};

use crate::connection::Outbox;
use crate::forwarders::{Change, Forwarder, by_load};
use crate::limits::{Admission, Guard, Quota, Refused};
use crate::metrics::Metrics;
use crate::mls_header::{self, Content};
use crate::proto::{
    self, CHALLENGE_LEN, ErrorCode, JOIN_KEY_LEN, MemberInfo, ServerMessage, Track, TrackKind,
    TrackRef, WelcomeOut,
};

/// The whole service: forwarders, admission counters and conferences.
pub struct Service {
    forwarders: Vec<Arc<Forwarder>>,
    admission: Arc<Admission>,
    metrics: Arc<Metrics>,
    conferences: Mutex<HashMap<String, Arc<Conference>>>,
    /// Conferences this service creates keep the forwarder's speaker detection on.
    speaker_detection: bool,
    #[cfg(feature = "hostile-testing")]
    hostile: Option<Arc<dyn crate::hostile::Policy>>,
}

/// What a member asks the forwarder to choose for it (the `receive` message).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Choice {
    /// Highest video layer wanted; `None`: the best.
    pub layer: Option<u8>,
    /// Last-N video.
    pub last_n: Option<u32>,
    /// Top-K audio.
    pub top_k_audio: Option<u32>,
    /// Pinned members.
    pub pins: Vec<String>,
}

/// One conference this service placed.
pub(crate) struct Conference {
    id: String,
    /// The forwarder holding it, once the first joiner placed and created it there.
    home: OnceCell<Arc<Forwarder>>,
    /// The forwarder it moved to when `home` was lost (the latest move wins).
    moved: Mutex<Option<Arc<Forwarder>>>,
    state: Mutex<ConfState>,
    /// Becomes true once a closed conference is deleted from its forwarder; a joiner
    /// that found it closing waits for this before creating it afresh.
    deleted: watch::Sender<bool>,
}

#[derive(Default)]
struct ConfState {
    /// Empty and being deleted: joiners must wait for `deleted` and look it up again.
    closed: bool,
    next_order: u64,
    members: BTreeMap<String, Member>,
    /// Participant ids whose endpoints are being created.
    pending: HashSet<String>,
    /// The creator's conference quota, given back when the conference is gone.
    creator: Option<Guard>,
    /// The key join proofs are checked with, from the first member (the conference id
    /// commits to it).
    join_key: Option<[u8; JOIN_KEY_LEN]>,
    /// Every participant id ever admitted: none is admitted twice.
    seen: HashSet<String>,
    /// The epoch of the last Commit relayed: the next must be for the one after it.
    last_commit_epoch: Option<u64>,
    /// Everything relayed, for the hostile mode's replays.
    #[cfg(feature = "hostile-testing")]
    log: Vec<ServerMessage>,
}

struct Member {
    info: MemberInfo,
    /// The forwarder holding its endpoint.
    fwd: Arc<Forwarder>,
    /// `None`: every track of every other member.
    subscription: Option<Vec<TrackRef>>,
    /// The subscription set last accepted by the forwarder.
    pushed: Vec<(String, String)>,
    /// The video layer it asked for, and the one last pushed with its subscriptions.
    layer: Option<u8>,
    pushed_layer: Option<u8>,
    /// What it last asked the forwarder to choose for it (re-applied after a move).
    receive: Option<ReceiveJson>,
    /// A task is pushing this member's subscriptions.
    syncing: bool,
    out: Outbox,
}

/// Rounds of a move: the first takes every member, later ones those admitted on the old
/// forwarder meanwhile (each round is short, so one more is almost always enough).
const MOVE_ROUNDS: usize = 4;

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
#[derive(Debug)]
pub(crate) struct Refusal(pub ErrorCode, pub String);

impl From<ControlError> for Refusal {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::Capacity(_) => Refusal(
                ErrorCode::Capacity,
                "the forwarder has no room for this call now".into(),
            ),
            ControlError::Unavailable(_) => Refusal(
                ErrorCode::Capacity,
                "the forwarder is draining and takes no new calls".into(),
            ),
            e => Refusal(ErrorCode::Forwarder, e.to_string()),
        }
    }
}

impl From<Refused> for Refusal {
    fn from(r: Refused) -> Self {
        match r {
            Refused::Full => Refusal(ErrorCode::Capacity, r.to_string()),
            Refused::Source(q) => Refusal(
                ErrorCode::SourceLimit,
                match q {
                    Quota::Connections => "too many connections from this address",
                    Quota::Conferences => "too many conferences created from this address",
                }
                .into(),
            ),
        }
    }
}

/// What a join asks for.
pub(crate) struct JoinRequest {
    pub conference: String,
    pub participant: String,
    /// The MAC answering this connection's challenge.
    pub proof: Vec<u8>,
    /// The joiner's KeyPackage (hex), for the members.
    pub key_package: String,
    /// The join key, when the joiner registers the conference.
    pub join_key: Option<[u8; JOIN_KEY_LEN]>,
    pub challenge: [u8; CHALLENGE_LEN],
    /// The connection's source address, for the per-source quotas.
    pub source: IpAddr,
}

impl Conference {
    fn lock(&self) -> MutexGuard<'_, ConfState> {
        // Every change under this lock is checked before it is made, so the state a
        // panicking holder leaves behind is consistent: take it over.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The forwarder holding the conference now: where it moved, else where it was placed.
    fn current_home(&self) -> Option<Arc<Forwarder>> {
        let moved = self
            .moved
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        moved.or_else(|| self.home.get().cloned())
    }
}

impl Service {
    /// A service placing conferences on `forwarders` (at least one) under `admission`.
    pub fn new(forwarders: Vec<Forwarder>, admission: Arc<Admission>) -> Self {
        Self {
            forwarders: forwarders.into_iter().map(Arc::new).collect(),
            admission,
            metrics: Arc::new(Metrics::default()),
            conferences: Mutex::new(HashMap::new()),
            speaker_detection: true,
            #[cfg(feature = "hostile-testing")]
            hostile: None,
        }
    }

    /// With `false`, every conference this service creates has the forwarder's speaker
    /// detection off: no audio level is read, no speaker event is sent, and
    /// participants choose their videos with pins, layers and pause.
    pub fn with_speaker_detection(mut self, on: bool) -> Self {
        self.speaker_detection = on;
        self
    }

    /// The forwarders this service places calls on.
    pub fn forwarders(&self) -> &[Arc<Forwarder>] {
        &self.forwarders
    }

    /// Relays a forwarder's speaker event to the members of its conference.
    pub fn on_speakers(&self, ev: SpeakerEvent) {
        let Some(conf) = self.conferences().get(&ev.conference).cloned() else {
            return;
        };
        let st = conf.lock();
        let msg = ServerMessage::Speakers {
            dominant: ev.dominant,
            recent: ev.recent,
        };
        for m in st.members.values() {
            m.out.send(&msg);
        }
    }

    /// A service that misbehaves as `policy` says (tests only).
    #[cfg(feature = "hostile-testing")]
    pub fn new_hostile(
        forwarders: Vec<Forwarder>,
        admission: Arc<Admission>,
        policy: Arc<dyn crate::hostile::Policy>,
    ) -> Self {
        let mut s = Self::new(forwarders, admission);
        s.hostile = Some(policy);
        s
    }

    /// The service's counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The admission counters.
    pub fn admission(&self) -> &Arc<Admission> {
        &self.admission
    }

    fn conferences(&self) -> MutexGuard<'_, HashMap<String, Arc<Conference>>> {
        // A panic while holding this lock leaves only a map of Arcs behind: still usable.
        self.conferences
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The conference `id`, new if there is none.
    fn conference(&self, id: &str) -> Arc<Conference> {
        self.conferences()
            .entry(id.to_string())
            .or_insert_with(|| {
                Arc::new(Conference {
                    id: id.to_string(),
                    home: OnceCell::new(),
                    moved: Mutex::new(None),
                    state: Mutex::new(ConfState::default()),
                    deleted: watch::Sender::new(false),
                })
            })
            .clone()
    }

    /// A snapshot of every conference.
    pub fn view(&self) -> StateView {
        let confs: Vec<Arc<Conference>> = self.conferences().values().cloned().collect();
        let mut conferences: Vec<ConferenceView> = confs
            .iter()
            .filter_map(|c| {
                let st = c.lock();
                (!st.closed).then(|| ConferenceView {
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
                })
            })
            .collect();
        conferences.sort_by(|a, b| a.id.cmp(&b.id));
        StateView { conferences }
    }

    /// Admits a participant: reserves its id, places and creates the conference if it is
    /// new, creates its endpoint, and only then tells it and the others.
    pub(crate) async fn join(
        &self,
        req: JoinRequest,
        out: &Outbox,
    ) -> Result<Arc<Conference>, Refusal> {
        let pid = req.participant;
        let conf = loop {
            let conf = self.conference(&req.conference);
            let (mut wait, refused) = {
                let mut st = conf.lock();
                if !st.closed {
                    match admit(
                        &mut st,
                        &conf.id,
                        &pid,
                        &req.proof,
                        req.join_key,
                        &req.challenge,
                    ) {
                        Ok(()) => (None, None),
                        // A refused stranger must not leave an empty conference behind.
                        Err(refusal) => (None, Some((refusal, begin_close(&mut st)))),
                    }
                } else {
                    (Some(conf.deleted.subscribe()), None)
                }
            };
            if let Some((refusal, close)) = refused {
                if close {
                    self.finish_close(&conf).await;
                }
                return Err(refusal);
            }
            let Some(wait) = wait.as_mut() else {
                break conf;
            };
            // Deleted between lookup and lock: once its deletion is done, the map has
            // (or will get) a fresh one.
            let _ = wait.wait_for(|deleted| *deleted).await;
        };
        let home = match conf
            .home
            .get_or_try_init(|| self.place(&conf, req.source))
            .await
        {
            Ok(placed) => conf.current_home().unwrap_or_else(|| placed.clone()),
            Err(r) => {
                self.abandon(&conf, &pid).await;
                return Err(r);
            }
        };
        let ep = match home.create_endpoint(&conf.id, &pid).await {
            Ok(ep) => ep,
            Err(e) => {
                self.abandon(&conf, &pid).await;
                return Err(match e {
                    ControlError::Exists(_) => {
                        Refusal(ErrorCode::ParticipantTaken, "participant id in use".into())
                    }
                    e => e.into(),
                });
            }
        };
        {
            let mut st = conf.lock();
            // Moved while the endpoint was made on the old forwarder: the move took its
            // members before this one; joining again lands on the new forwarder.
            let moved = conf
                .current_home()
                .is_some_and(|now| !Arc::ptr_eq(&now, &home));
            if moved {
                drop(st);
                if let Err(e) = home.delete_endpoint(&conf.id, &pid).await {
                    tracing::warn!(error = %e, "deleting a stranded joiner's endpoint failed");
                }
                self.abandon(&conf, &pid).await;
                return Err(Refusal(
                    ErrorCode::Forwarder,
                    "the call moved to another forwarder: join again".into(),
                ));
            }
            st.pending.remove(&pid);
            st.seen.insert(pid.clone());
            let info = MemberInfo {
                participant: pid.clone(),
                order: st.next_order,
                tracks: Vec::new(),
            };
            st.next_order += 1;
            let others: Vec<MemberInfo> = st.members.values().map(|m| m.info.clone()).collect();
            out.send(&ServerMessage::Joined {
                you: info.clone(),
                members: others,
                ice: crate::proto::Ice {
                    ufrag: ep.ice.ufrag,
                    pwd: ep.ice.pwd,
                },
                candidates: ep
                    .candidates
                    .iter()
                    .map(|c| crate::proto::Candidate {
                        ip: c.ip.to_string(),
                        port: c.port,
                    })
                    .collect(),
            });
            let joined = ServerMessage::MemberJoined {
                member: info.clone(),
                key_package: req.key_package,
            };
            for m in st.members.values() {
                m.out.send(&joined);
            }
            #[cfg(feature = "hostile-testing")]
            st.log.push(joined);
            st.members.insert(
                pid.clone(),
                Member {
                    info,
                    fwd: home.clone(),
                    subscription: None,
                    pushed: Vec::new(),
                    layer: None,
                    pushed_layer: None,
                    receive: None,
                    syncing: false,
                    out: out.clone(),
                },
            );
            tracing::info!(members = st.members.len(), "participant joined");
        }
        // Only the joiner's own set changed: it has no tracks yet for the others to want.
        sync(&conf, &pid);
        Ok(conf)
    }

    /// Checks every forwarder each `interval` (each check bounded by it too) and moves the
    /// calls of one that is lost. Runs until the runtime ends.
    pub async fn watch_forwarders(self: Arc<Self>, interval: Duration, lost_after: u32) {
        for f in &self.forwarders {
            f.set_lost_after(lost_after);
        }
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let checks = self.forwarders.iter().map(|f| async move {
                let change = f.check(interval).await;
                (f.clone(), change)
            });
            for (f, change) in futures_util::future::join_all(checks).await {
                match change {
                    Some(Change::Lost) => {
                        self.metrics.forwarder_lost();
                        tracing::warn!("a forwarder stopped answering; moving its calls");
                        let svc = self.clone();
                        tokio::spawn(async move { svc.evacuate(&f).await });
                    }
                    Some(Change::Back) => {
                        tracing::info!("a lost forwarder answers again");
                        tokio::spawn(async move { f.delete_orphans().await });
                    }
                    None => {}
                }
            }
        }
    }

    /// Moves every conference homed on `lost` to a live forwarder.
    async fn evacuate(self: &Arc<Self>, lost: &Arc<Forwarder>) {
        let confs: Vec<Arc<Conference>> = self
            .conferences()
            .values()
            .filter(|c| c.current_home().is_some_and(|h| Arc::ptr_eq(&h, lost)))
            .cloned()
            .collect();
        let moves = confs.into_iter().map(|conf| {
            let lost = lost.clone();
            async move {
                if let Err(Refusal(code, message)) = self.move_conference(&conf, &lost).await {
                    tracing::warn!(?code, %message, "moving a call off a lost forwarder failed");
                }
            }
        });
        futures_util::future::join_all(moves).await;
    }

    /// Re-creates `conf` with its members' endpoints and tracks on the least loaded live
    /// forwarder, switches its home there, then tells each member where to send. Members
    /// admitted on the old forwarder while this ran are moved in a further round.
    async fn move_conference(
        &self,
        conf: &Arc<Conference>,
        lost: &Arc<Forwarder>,
    ) -> Result<(), Refusal> {
        if conf.lock().closed {
            return Ok(());
        }
        let mut to = None;
        let mut last = None;
        for fwd in by_load(&self.forwarders) {
            if Arc::ptr_eq(&fwd, lost) {
                continue;
            }
            match fwd.create_conference(&conf.id).await {
                Ok(()) => {
                    if !self.speaker_detection
                        && let Err(e) = fwd.speaker_detection_off(&conf.id).await
                    {
                        tracing::warn!(error = %e, "turning speaker detection off failed");
                    }
                    to = Some(fwd);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let Some(to) = to else {
            return Err(last.map_or_else(
                || Refusal(ErrorCode::Capacity, "no live forwarder".into()),
                Refusal::from,
            ));
        };
        let mut total = 0;
        for round in 0..MOVE_ROUNDS {
            type Moving = (String, Vec<Track>, Option<ReceiveJson>);
            let members: Vec<Moving> = {
                let st = conf.lock();
                st.members
                    .iter()
                    .filter(|(_, m)| !Arc::ptr_eq(&m.fwd, &to))
                    .map(|(id, m)| (id.clone(), m.info.tracks.clone(), m.receive.clone()))
                    .collect()
            };
            if members.is_empty() {
                break;
            }
            let mut created = HashMap::new();
            for (pid, tracks, receive) in &members {
                let ep = match to.create_endpoint(&conf.id, pid).await {
                    Ok(ep) => ep,
                    Err(e) => {
                        tracing::warn!(error = %e, "creating a moved member's endpoint failed");
                        continue;
                    }
                };
                if !tracks.is_empty()
                    && let Err(e) = to
                        .set_tracks(&conf.id, pid, tracks.iter().map(track_json).collect())
                        .await
                {
                    tracing::warn!(error = %e, "setting a moved member's tracks failed");
                }
                if let Some(r) = receive
                    && let Err(e) = to.set_receive(&conf.id, pid, r.clone()).await
                {
                    tracing::warn!(error = %e, "setting a moved member's choice failed");
                }
                created.insert(pid.clone(), ep);
            }
            lost.forget(members.len());
            if round == 0 {
                // From here on joiners are placed on `to` (or refused, if they got an
                // endpoint on the old one: see `join`).
                *conf.moved.lock().unwrap_or_else(PoisonError::into_inner) = Some(to.clone());
            }
            let (moved, gone) = {
                let mut st = conf.lock();
                let mut moved = Vec::new();
                for (id, m) in st.members.iter_mut() {
                    let Some(ep) = created.remove(id) else {
                        continue;
                    };
                    m.fwd = to.clone();
                    // The new endpoint receives nothing yet: push the whole set again.
                    m.pushed.clear();
                    m.out.send(&ServerMessage::Moved {
                        ice: crate::proto::Ice {
                            ufrag: ep.ice.ufrag,
                            pwd: ep.ice.pwd,
                        },
                        candidates: ep
                            .candidates
                            .iter()
                            .map(|c| crate::proto::Candidate {
                                ip: c.ip.to_string(),
                                port: c.port,
                            })
                            .collect(),
                    });
                    moved.push(id.clone());
                }
                // Left while their endpoints were being created: nobody may receive for them.
                let gone: Vec<String> = created.into_keys().collect();
                (moved, gone)
            };
            for pid in &gone {
                if let Err(e) = to.delete_endpoint(&conf.id, pid).await {
                    tracing::warn!(error = %e, "deleting a departed member's endpoint failed");
                }
            }
            total += moved.len();
            for pid in &moved {
                sync(conf, pid);
            }
        }
        lost.orphan(&conf.id);
        if !lost.is_lost() {
            // It answered again during the move, after its orphans were taken.
            let lost = lost.clone();
            tokio::spawn(async move { lost.delete_orphans().await });
        }
        self.metrics.moved(total);
        tracing::info!(members = total, "call moved to another forwarder");
        Ok(())
    }

    /// Places a new conference: the creator's quota first, then the least loaded
    /// forwarder with room.
    async fn place(&self, conf: &Conference, source: IpAddr) -> Result<Arc<Forwarder>, Refusal> {
        let quota = self.admission.admit(source, Quota::Conferences)?;
        let mut last = None;
        for fwd in by_load(&self.forwarders) {
            match fwd.create_conference(&conf.id).await {
                Ok(()) => {
                    if !self.speaker_detection {
                        fwd.speaker_detection_off(&conf.id).await?;
                    }
                    conf.lock().creator = Some(quota);
                    return Ok(fwd);
                }
                // Full or draining: another forwarder may have room.
                Err(e @ (ControlError::Capacity(_) | ControlError::Unavailable(_))) => {
                    last = Some(e)
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(last.map_or_else(
            || Refusal(ErrorCode::Capacity, "no forwarder".into()),
            Refusal::from,
        ))
    }

    /// Gives back a reservation whose join failed; closes the conference if that leaves
    /// it empty.
    async fn abandon(&self, conf: &Arc<Conference>, pid: &str) {
        let close = {
            let mut st = conf.lock();
            st.pending.remove(pid);
            begin_close(&mut st)
        };
        if close {
            self.finish_close(conf).await;
        }
    }

    /// Removes `pid`: its endpoint goes from the forwarder first, so it stops receiving at
    /// once, and only then are the others told (and the group commits its removal).
    pub(crate) async fn leave(&self, conf: &Arc<Conference>, pid: &str) {
        let Some(fwd) = conf.lock().members.remove(pid).map(|m| m.fwd) else {
            return;
        };
        // Where its endpoint is: after a move that could not re-create it, the old one.
        if let Err(e) = fwd.delete_endpoint(&conf.id, pid).await {
            tracing::warn!(error = %e, "deleting a leaver's endpoint failed");
        }
        let (close, others) = {
            let mut st = conf.lock();
            let left = ServerMessage::MemberLeft {
                participant: pid.to_string(),
            };
            for (id, m) in &st.members {
                self.deliver(&m.out, id, pid, None, left.clone());
            }
            tracing::info!(members = st.members.len(), "participant left");
            let others: Vec<String> = st.members.keys().cloned().collect();
            (begin_close(&mut st), others)
        };
        if close {
            self.finish_close(conf).await;
        } else {
            for id in others {
                sync(conf, &id);
            }
        }
    }

    /// Deletes a closed conference from its forwarder, forgets it, and lets waiting
    /// joiners through.
    async fn finish_close(&self, conf: &Arc<Conference>) {
        if let Some(home) = conf.current_home()
            && let Err(e) = home.delete_conference(&conf.id).await
        {
            tracing::warn!(error = %e, "deleting an empty conference failed");
        }
        {
            let mut map = self.conferences();
            if map.get(&conf.id).is_some_and(|c| Arc::ptr_eq(c, conf)) {
                map.remove(&conf.id);
            }
        }
        conf.lock().creator = None;
        conf.deleted.send_replace(true);
    }

    /// Sets `pid`'s tracks on the forwarder, then tells it (`published`) and the others.
    pub(crate) async fn publish(
        &self,
        conf: &Arc<Conference>,
        pid: &str,
        tracks: Vec<Track>,
    ) -> Result<(), Refusal> {
        let home = joined_home(conf)?;
        let wire = tracks.iter().map(track_json).collect();
        home.set_tracks(&conf.id, pid, wire)
            .await
            .map_err(|e| match e.status() {
                Some(409) => Refusal(ErrorCode::BadRequest, "an SSRC is already taken".into()),
                Some(400 | 422) => Refusal(ErrorCode::BadRequest, "tracks refused".into()),
                _ => e.into(),
            })?;
        let others = {
            let mut st = conf.lock();
            let Some(me) = st.members.get_mut(pid) else {
                return Ok(());
            };
            me.info.tracks = tracks.clone();
            me.out.send(&ServerMessage::Published);
            let changed = ServerMessage::Tracks {
                participant: pid.to_string(),
                tracks,
            };
            let mut others = Vec::new();
            for (id, m) in &st.members {
                if id != pid {
                    m.out.send(&changed);
                    others.push(id.clone());
                }
            }
            others
        };
        for id in others {
            sync(conf, &id);
        }
        Ok(())
    }

    /// Narrows (or widens back to everything) what `pid` receives.
    pub(crate) fn subscribe(
        &self,
        conf: &Arc<Conference>,
        pid: &str,
        to: Option<Vec<TrackRef>>,
    ) -> Result<(), Refusal> {
        joined_home(conf)?;
        if let Some(me) = conf.lock().members.get_mut(pid) {
            me.subscription = to;
        }
        sync(conf, pid);
        Ok(())
    }

    /// Sets what the forwarder chooses for `pid` (last-N, top-K audio, pins), then its
    /// subscriptions' layer.
    pub(crate) async fn receive(
        &self,
        conf: &Arc<Conference>,
        pid: &str,
        choice: Choice,
    ) -> Result<(), Refusal> {
        let home = joined_home(conf)?;
        let wire = ReceiveJson {
            last_n: choice.last_n,
            top_k_audio: choice.top_k_audio,
            pins: choice.pins,
        };
        home.set_receive(&conf.id, pid, wire.clone())
            .await
            .map_err(|e| match e.status() {
                Some(400 | 422) => Refusal(ErrorCode::BadRequest, "receive choice refused".into()),
                _ => e.into(),
            })?;
        if let Some(me) = conf.lock().members.get_mut(pid) {
            me.layer = choice.layer;
            me.receive = Some(wire);
        }
        sync(conf, pid);
        Ok(())
    }

    /// The delivery service: reads the clear MLS header, keeps the first Commit for the
    /// next epoch and broadcasts it to every member, the committer included, then hands its
    /// Welcome to the members it adds; proposals go to the others. Application messages are
    /// not relayed (media goes through the forwarder).
    pub(crate) fn relay_handshake(
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
        let mut st = conf.lock();
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
                        "a Welcome without a Commit".into(),
                    ));
                }
                for (id, m) in &st.members {
                    if id != from {
                        self.deliver(&m.out, id, from, Some(header.epoch), msg.clone());
                    }
                }
            }
            Content::Commit => {
                let next = st.last_commit_epoch.map(|e| e.saturating_add(1));
                if next.is_some_and(|n| header.epoch != n) && self.orders_commits() {
                    return Err(Refusal(
                        ErrorCode::StaleCommit,
                        "that epoch already has its Commit".into(),
                    ));
                }
                st.last_commit_epoch = Some(header.epoch);
                for (id, m) in &st.members {
                    self.deliver(&m.out, id, from, Some(header.epoch), msg.clone());
                }
                if let Some(w) = welcome {
                    let welcome = ServerMessage::Welcome { message: w.message };
                    for to in &w.to {
                        if let Some(m) = st.members.get(to) {
                            self.deliver(&m.out, to, from, Some(header.epoch), welcome.clone());
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

    /// Queues `msg` for member `to`; in the hostile mode the policy may drop or delay it.
    fn deliver(&self, out: &Outbox, to: &str, from: &str, epoch: Option<u64>, msg: ServerMessage) {
        #[cfg(feature = "hostile-testing")]
        if let Some(h) = &self.hostile {
            use crate::hostile::Action;
            match h.decide(&msg, from, to, epoch) {
                Action::Deliver => {}
                Action::Drop => return,
                Action::Delay(d) => {
                    let out = out.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(d).await;
                        out.send(&msg);
                    });
                    return;
                }
            }
        }
        let _ = (to, from, epoch);
        out.send(&msg);
    }

    /// Sends every join announcement and MLS message relayed so far in `conf` again, to
    /// every member (the hostile mode's replay). Returns how many deliveries that made.
    #[cfg(feature = "hostile-testing")]
    pub fn replay(&self, conf: &str) -> usize {
        let Some(c) = self.conferences().get(conf).cloned() else {
            return 0;
        };
        let st = c.lock();
        for m in st.members.values() {
            for msg in &st.log {
                m.out.send(msg);
            }
        }
        st.log.len() * st.members.len()
    }
}

/// Checks a join under the conference's lock and reserves the id: the join key (known, or
/// offered and committed to by the conference id), the proof for this connection's
/// challenge, and an id never admitted before.
fn admit(
    st: &mut ConfState,
    conference: &str,
    pid: &str,
    proof: &[u8],
    offered: Option<[u8; JOIN_KEY_LEN]>,
    challenge: &[u8; CHALLENGE_LEN],
) -> Result<(), Refusal> {
    let key = match (st.join_key, offered) {
        (Some(k), _) => k,
        (None, Some(k)) if proto::conference_id_for(&k) == conference => k,
        (None, Some(_)) => {
            return Err(Refusal(
                ErrorCode::BadProof,
                "the join key does not match the conference".into(),
            ));
        }
        (None, None) => {
            return Err(Refusal(
                ErrorCode::ConferenceUnknown,
                "join again with the join key".into(),
            ));
        }
    };
    if !proto::verify_join_proof(&key, challenge, conference, pid, proof) {
        return Err(Refusal(
            ErrorCode::BadProof,
            "the join proof does not verify".into(),
        ));
    }
    if st.members.contains_key(pid) || st.pending.contains(pid) || st.seen.contains(pid) {
        return Err(Refusal(
            ErrorCode::ParticipantTaken,
            "participant id in use".into(),
        ));
    }
    st.join_key = Some(key);
    st.pending.insert(pid.to_string());
    Ok(())
}

/// Marks an empty conference closed; true when the caller must finish closing it.
fn begin_close(st: &mut ConfState) -> bool {
    if st.closed || !st.members.is_empty() || !st.pending.is_empty() {
        return false;
    }
    st.closed = true;
    true
}

fn joined_home(conf: &Conference) -> Result<Arc<Forwarder>, Refusal> {
    // Invariant: a member exists only after its conference was placed.
    conf.current_home()
        .ok_or_else(|| Refusal(ErrorCode::WrongState, "join first".into()))
}

/// Brings `pid`'s forwarder subscriptions in line with what it wants, unless a push for
/// it is already running (which re-reads the wanted set when it is done).
fn sync(conf: &Arc<Conference>, pid: &str) {
    {
        let mut st = conf.lock();
        let Some(m) = st.members.get_mut(pid) else {
            return;
        };
        if m.syncing {
            return;
        }
        m.syncing = true;
    }
    let (conf, pid) = (conf.clone(), pid.to_string());
    tokio::spawn(async move {
        loop {
            let (want, layer) = {
                let mut st = conf.lock();
                let want = match st.members.get(&pid) {
                    Some(me) => desired(&st, &pid, me),
                    None => return,
                };
                let Some(me) = st.members.get_mut(&pid) else {
                    return;
                };
                if me.pushed == want && me.pushed_layer == me.layer {
                    me.syncing = false;
                    return;
                }
                (want, me.layer)
            };
            // The layer applies to selectively forwarded tracks; others ignore it.
            let subs = want
                .iter()
                .map(|(e, t)| SubscriptionJson::new(e.clone(), t.clone()).with_layer(layer))
                .collect();
            let Some(home) = conf.current_home() else {
                if let Some(m) = conf.lock().members.get_mut(&pid) {
                    m.syncing = false;
                }
                return;
            };
            let result = home.set_subscriptions(&conf.id, &pid, subs).await;
            // Moved while this push went to the old forwarder: push again to the new one.
            let moved = conf
                .current_home()
                .is_some_and(|now| !Arc::ptr_eq(&now, &home));
            let mut st = conf.lock();
            let Some(me) = st.members.get_mut(&pid) else {
                return;
            };
            match result {
                _ if moved => {
                    me.pushed.clear();
                    me.pushed_layer = None;
                }
                Ok(()) => {
                    me.pushed = want;
                    me.pushed_layer = layer;
                }
                Err(e) => {
                    // The next change retries; spinning on a failing forwarder would not.
                    tracing::warn!(error = %e, "setting subscriptions failed");
                    me.syncing = false;
                    return;
                }
            }
        }
    });
}

fn track_json(t: &Track) -> TrackJson {
    use blindfold_control::TrackKind as Wire;
    let kind = match t.kind {
        TrackKind::Audio => Wire::Audio,
        TrackKind::Video => Wire::Video,
        TrackKind::Screen => Wire::Screen,
    };
    let mut j = TrackJson::new(t.id.clone(), kind, t.ssrcs.clone());
    j.extensions.audio_level = t.extensions.audio_level;
    j.extensions.frame_marking = t.extensions.frame_marking;
    j.simulcast = t.simulcast;
    j
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
