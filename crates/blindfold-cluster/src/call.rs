//! The state of one call as the signalling instances share it: members (join order and an
//! opaque record), their tracks and subscriptions, which instance holds each member's
//! connection, member leases, and the call's event stream.
//!
//! Owns the call keys' contents and the scripts that change them. Must not interpret the
//! records it stores (the signalling service's protocol types, which carry ephemeral ids
//! and public key material for the group, never an address or a name) nor hold anything
//! that is not the call's: everything here expires with the call ([`schema`]).
//!
//! Every change is one script that updates the state *and* appends its event to the
//! call's stream (`bf:call:{call}:events`), so the stream is the state's change log: a
//! snapshot returns the id of the last event it includes, and following the stream from
//! that id ([`crate::bus::Follower`]) yields exactly the changes after it, in the order
//! Redis applied them, to every instance alike.
//!
//! Members hold leases (Redis clock): the instance holding a member's connection renews
//! them; a member whose instance died and who did not resume elsewhere within the lease
//! is removed by whichever instance reaps first, with a `left` event like any leave.

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::Duration;

use redis::Value;
use serde::{Deserialize, Serialize};

use crate::schema::{self, CALL_TTL, CallKeys, ENDED_TTL, EVENTS_MAXLEN};
use crate::{Cluster, Error};

/// Largest member record, track set or subscription, in bytes.
pub const MAX_RECORD: usize = 64 * 1024;
/// Largest relayed message body, in bytes (MLS Welcomes for large groups fit).
pub const MAX_MESSAGE: usize = 256 * 1024;
/// Default member lease: how long a member survives its instance's silence.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(15);

/// What an event says happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// `from` joined; the body is its member record (`{"order":N,"info":…}`).
    Joined,
    /// `from` reconnected through another instance.
    Resumed,
    /// `from` left (body empty) or its lease lapsed (body `lease`).
    Left,
    /// `from` replaced its tracks; the body is the new set.
    Tracks,
    /// `from` replaced its subscription; the body is the new one.
    Subscriptions,
    /// `from` sent the body to `to` (or to everyone when `to` is empty).
    Message,
    /// A service notice (placement moves, link changes): `from` is empty.
    Notice,
}

impl EventKind {
    /// The name stored in the stream (`k` field).
    pub fn as_str(&self) -> &'static str {
        match self {
            EventKind::Joined => "joined",
            EventKind::Resumed => "resumed",
            EventKind::Left => "left",
            EventKind::Tracks => "tracks",
            EventKind::Subscriptions => "subs",
            EventKind::Message => "message",
            EventKind::Notice => "notice",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "joined" => EventKind::Joined,
            "resumed" => EventKind::Resumed,
            "left" => EventKind::Left,
            "tracks" => EventKind::Tracks,
            "subs" => EventKind::Subscriptions,
            "message" => EventKind::Message,
            "notice" => EventKind::Notice,
            _ => return None,
        })
    }
}

/// One entry of a call's event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Stream entry id (`ms-seq`), increasing.
    pub id: String,
    /// What happened.
    pub kind: EventKind,
    /// The member it concerns or that sent it (empty for notices).
    pub from: String,
    /// The one recipient of a message, if not everyone.
    pub to: Option<String>,
    /// Opaque body (JSON from the signalling service).
    pub body: String,
}

impl Event {
    /// Builds an event from a stream entry's fields (`k`, `f`, `t`, `b`).
    pub(crate) fn from_fields(
        id: String,
        map: &std::collections::HashMap<String, Value>,
    ) -> Result<Self, Error> {
        let field = |k: &str| -> Result<String, Error> {
            match map.get(k) {
                Some(v) => redis::from_redis_value_ref::<String>(v)
                    .map_err(|e| Error::Corrupt(e.to_string())),
                None => Ok(String::new()),
            }
        };
        let kind =
            EventKind::parse(&field("k")?).ok_or_else(|| Error::Corrupt("event kind".into()))?;
        let to = field("t")?;
        Ok(Event {
            id,
            kind,
            from: field("f")?,
            to: (!to.is_empty()).then_some(to),
            body: field("b")?,
        })
    }
}

/// One member as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberRecord {
    /// Ephemeral participant id.
    pub participant: String,
    /// Join order in the call (1 first), assigned atomically by Redis.
    pub order: u64,
    /// What the signalling service stored at join (opaque JSON).
    pub info: serde_json::Value,
    /// Its tracks, once published (opaque JSON).
    pub tracks: Option<serde_json::Value>,
    /// Its subscription, once set (opaque JSON).
    pub subscription: Option<serde_json::Value>,
    /// The signalling instance holding its connection.
    pub owner: Option<String>,
    /// The forwarder it is placed on.
    pub node: Option<String>,
}

/// A consistent view of a call.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CallState {
    /// Members in join order.
    pub members: Vec<MemberRecord>,
    /// The call's home node.
    pub home: Option<String>,
    /// The id of the last event this view includes ("0-0" when none): follow the
    /// stream from here to see every later change.
    pub cursor: String,
}

impl CallState {
    /// The member `participant`, if present.
    pub fn member(&self, participant: &str) -> Option<&MemberRecord> {
        self.members.iter().find(|m| m.participant == participant)
    }
}

/// The answer to a join or resume.
#[derive(Debug, Clone, PartialEq)]
pub struct Joined {
    /// The joiner's order.
    pub order: u64,
    /// The call as of the join, the joiner included; its cursor is the join's event.
    pub state: CallState,
}

/// KEYS: [`CallKeys::all`]. ARGV[1] call TTL, [2] ended TTL, [3] stream MAXLEN, [4] lease
/// ms; operation arguments from ARGV[5].
const PRELUDE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[4])
local function touch(ttl)
  for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], ttl) end
end
local function emit(kind, from, to, body)
  return redis.call('XADD', KEYS[9], 'MAXLEN', '~', ARGV[3], '*', 'k', kind, 'f', from, 't', to, 'b', body)
end
local function member(p) return redis.call('HEXISTS', KEYS[3], p) == 1 end
local function remove(p)
  redis.call('HDEL', KEYS[3], p)
  redis.call('HDEL', KEYS[4], p)
  redis.call('HDEL', KEYS[5], p)
  redis.call('HDEL', KEYS[6], p)
  redis.call('HDEL', KEYS[2], p)
  redis.call('ZREM', KEYS[7], p)
end
-- After removals: a call with members lives on; an empty one ends (short TTL).
local function settle()
  local left = redis.call('HLEN', KEYS[3])
  if left == 0 then touch(ARGV[2]) else touch(ARGV[1]) end
  return left
end
local function snapshot(cursor)
  return {cursor, redis.call('HGETALL', KEYS[3]), redis.call('HGETALL', KEYS[4]),
    redis.call('HGETALL', KEYS[5]), redis.call('HGETALL', KEYS[6]),
    redis.call('HGETALL', KEYS[2]), redis.call('GET', KEYS[1]) or ''}
end
"#;

/// ARGV[5] participant, [6] instance, [7] info JSON.
const JOIN: &str = r#"
local p = ARGV[5]
if member(p) then return redis.error_reply('TAKEN participant id in use') end
local order = redis.call('INCR', KEYS[8])
local rec = '{"order":' .. order .. ',"info":' .. ARGV[7] .. '}'
redis.call('HSET', KEYS[3], p, rec)
redis.call('HSET', KEYS[6], p, ARGV[6])
redis.call('ZADD', KEYS[7], now + lease, p)
local id = emit('joined', p, '', rec)
touch(ARGV[1])
return snapshot(id)
"#;

/// ARGV[5] participant, [6] instance.
const RESUME: &str = r#"
local p = ARGV[5]
if not member(p) then return redis.error_reply('NOT_MEMBER not in the call') end
redis.call('HSET', KEYS[6], p, ARGV[6])
redis.call('ZADD', KEYS[7], now + lease, p)
local id = emit('resumed', p, '', '')
touch(ARGV[1])
return snapshot(id)
"#;

/// ARGV[5] participant. Returns the event id and how many members remain.
const LEAVE: &str = r#"
local p = ARGV[5]
if not member(p) then return redis.error_reply('NOT_MEMBER not in the call') end
remove(p)
local id = emit('left', p, '', '')
return {id, settle()}
"#;

/// Removes members whose lease lapsed; returns (participant, event id) pairs.
const REAP: &str = r#"
local gone = redis.call('ZRANGEBYSCORE', KEYS[7], '-inf', now)
local out = {}
for _, p in ipairs(gone) do
  remove(p)
  table.insert(out, p)
  table.insert(out, emit('left', p, '', 'lease'))
end
if #gone > 0 then settle() end
return out
"#;

/// ARGV[5] instance, ARGV[6..] participants. Renews the leases of those the instance
/// still holds; returns the ones it no longer holds (left, reaped or resumed elsewhere).
const RENEW: &str = r#"
local lost, renewed = {}, 0
for i = 6, #ARGV do
  local p = ARGV[i]
  if redis.call('HGET', KEYS[6], p) == ARGV[5] then
    redis.call('ZADD', KEYS[7], 'XX', now + lease, p)
    renewed = renewed + 1
  else
    table.insert(lost, p)
  end
end
if renewed > 0 then touch(ARGV[1]) end
return lost
"#;

/// ARGV[5] participant, [6] JSON, [7] 'tracks' | 'subs'.
const SET_FIELD: &str = r#"
local p = ARGV[5]
if not member(p) then return redis.error_reply('NOT_MEMBER not in the call') end
local key = KEYS[4]
if ARGV[7] == 'subs' then key = KEYS[5] end
redis.call('HSET', key, p, ARGV[6])
local id = emit(ARGV[7], p, '', ARGV[6])
touch(ARGV[1])
return id
"#;

/// ARGV[5] from ('' for a notice), [6] to ('' for all), [7] body.
const SEND: &str = r#"
local from, to = ARGV[5], ARGV[6]
local kind = 'message'
if from == '' then
  if redis.call('EXISTS', KEYS[3]) == 0 then return redis.error_reply('NOT_MEMBER no such call') end
  kind = 'notice'
elseif not member(from) then
  return redis.error_reply('NOT_MEMBER sender not in the call')
end
if to ~= '' and not member(to) then return redis.error_reply('UNKNOWN_RECIPIENT recipient not in the call') end
local id = emit(kind, from, to, ARGV[7])
touch(ARGV[1])
return id
"#;

/// ARGV[5] link JSON by pair: flat (pair, json) list replacing the links hash.
const SET_LINKS: &str = r#"
if redis.call('EXISTS', KEYS[3]) == 0 then return redis.error_reply('NOT_MEMBER no such call') end
redis.call('DEL', KEYS[10])
for i = 5, #ARGV, 2 do redis.call('HSET', KEYS[10], ARGV[i], ARGV[i + 1]) end
touch(ARGV[1])
return 1
"#;

const SNAPSHOT: &str = r#"
local last = redis.call('XREVRANGE', KEYS[9], '+', '-', 'COUNT', 1)
local cursor = '0-0'
if #last > 0 then cursor = last[1][1] end
return snapshot(cursor)
"#;

/// KEYS: lock, dirty. ARGV: holder, ttl ms. Takes the lock, or marks the call dirty so
/// the holder goes round once more before it lets go.
const LOCK: &str = r#"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  redis.call('DEL', KEYS[2])
  return 1
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
return 0
"#;

/// KEYS: lock, dirty. ARGV: holder, ttl ms. Releases the lock unless a change arrived
/// meanwhile (then keeps it, renewed: 'again'); 'lost' when another holds it.
const UNLOCK: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 'lost' end
if redis.call('DEL', KEYS[2]) == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 'again'
end
redis.call('DEL', KEYS[1])
return 'released'
"#;

static LOCK_S: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(LOCK));
static UNLOCK_S: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(UNLOCK));

/// What releasing a reconcile lock found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unlock {
    /// Released: nothing changed while it was held.
    Released,
    /// Kept: another instance changed the call meanwhile; reconcile again, then unlock.
    Again,
    /// Not held any more (it expired and another instance took it).
    Lost,
}

fn compile(body: &str) -> redis::Script {
    redis::Script::new(&format!("{PRELUDE}\n{body}"))
}

static JOIN_S: LazyLock<redis::Script> = LazyLock::new(|| compile(JOIN));
static RESUME_S: LazyLock<redis::Script> = LazyLock::new(|| compile(RESUME));
static LEAVE_S: LazyLock<redis::Script> = LazyLock::new(|| compile(LEAVE));
static REAP_S: LazyLock<redis::Script> = LazyLock::new(|| compile(REAP));
static RENEW_S: LazyLock<redis::Script> = LazyLock::new(|| compile(RENEW));
static SET_FIELD_S: LazyLock<redis::Script> = LazyLock::new(|| compile(SET_FIELD));
static SEND_S: LazyLock<redis::Script> = LazyLock::new(|| compile(SEND));
static SET_LINKS_S: LazyLock<redis::Script> = LazyLock::new(|| compile(SET_LINKS));
static SNAPSHOT_S: LazyLock<redis::Script> = LazyLock::new(|| compile(SNAPSHOT));

fn map_err(e: redis::RedisError) -> Error {
    match e.code() {
        Some("TAKEN") => Error::Taken,
        Some("NOT_MEMBER") => Error::NotMember,
        Some("UNKNOWN_RECIPIENT") => Error::NotMember,
        _ => Error::Redis(e),
    }
}

fn text(v: &Value) -> Result<String, Error> {
    redis::from_redis_value_ref::<String>(v).map_err(|e| Error::Corrupt(e.to_string()))
}

fn flat_map(v: &Value) -> Result<BTreeMap<String, String>, Error> {
    let items: Vec<String> =
        redis::from_redis_value_ref(v).map_err(|e| Error::Corrupt(e.to_string()))?;
    let mut out = BTreeMap::new();
    for pair in items.chunks(2) {
        if let [k, v] = pair {
            out.insert(k.clone(), v.clone());
        }
    }
    Ok(out)
}

fn json(s: &str) -> Result<serde_json::Value, Error> {
    serde_json::from_str(s).map_err(|e| Error::Corrupt(e.to_string()))
}

/// Parses [`PRELUDE`]'s `snapshot` answer.
fn parse_snapshot(v: &[Value]) -> Result<CallState, Error> {
    let [cursor, members, tracks, subs, owners, placement, home] = v else {
        return Err(Error::Corrupt("call snapshot".into()));
    };
    let tracks = flat_map(tracks)?;
    let subs = flat_map(subs)?;
    let owners = flat_map(owners)?;
    let placement = flat_map(placement)?;
    let mut out = Vec::new();
    for (p, rec) in flat_map(members)? {
        #[derive(Deserialize)]
        struct Stored {
            order: u64,
            info: serde_json::Value,
        }
        let s: Stored = serde_json::from_str(&rec).map_err(|e| Error::Corrupt(e.to_string()))?;
        out.push(MemberRecord {
            order: s.order,
            info: s.info,
            tracks: tracks.get(&p).map(|t| json(t)).transpose()?,
            subscription: subs.get(&p).map(|t| json(t)).transpose()?,
            owner: owners.get(&p).cloned(),
            node: placement.get(&p).cloned(),
            participant: p,
        });
    }
    out.sort_by_key(|m| m.order);
    let home = text(home)?;
    Ok(CallState {
        members: out,
        home: (!home.is_empty()).then_some(home),
        cursor: text(cursor)?,
    })
}

fn check_id(id: &str, what: &'static str) -> Result<(), Error> {
    if schema::valid_id(id) {
        Ok(())
    } else {
        Err(Error::Invalid(what))
    }
}

fn check_json(s: &str, max: usize, what: &'static str) -> Result<(), Error> {
    if s.len() > max || serde_json::from_str::<serde::de::IgnoredAny>(s).is_err() {
        return Err(Error::Invalid(what));
    }
    Ok(())
}

/// A prepared script call on one call's keys with the common arguments.
fn invocation<'a>(
    script: &'a redis::Script,
    call: &str,
    lease: Duration,
) -> redis::ScriptInvocation<'a> {
    let keys = CallKeys::new(call);
    let mut inv = script.prepare_invoke();
    for k in keys.all() {
        inv.key(k);
    }
    inv.arg(schema::ms(CALL_TTL))
        .arg(schema::ms(ENDED_TTL))
        .arg(EVENTS_MAXLEN)
        .arg(schema::ms(lease));
    inv
}

impl Cluster {
    /// Adds `participant` to `call` (creating the call), held by signalling `instance`,
    /// with `info` (JSON the other members are shown). Fails with [`Error::Taken`] when
    /// the id is already a member.
    pub async fn join(
        &self,
        call: &str,
        participant: &str,
        instance: &str,
        info: &serde_json::Value,
    ) -> Result<Joined, Error> {
        check_id(call, "call id")?;
        check_id(participant, "participant id")?;
        check_id(instance, "instance id")?;
        let info = info.to_string();
        if info.len() > MAX_RECORD {
            return Err(Error::Invalid("member record"));
        }
        let mut inv = invocation(&JOIN_S, call, DEFAULT_LEASE);
        inv.arg(participant).arg(instance).arg(info);
        let v: Vec<Value> = inv.invoke_async(&mut self.conn()).await.map_err(map_err)?;
        let state = parse_snapshot(&v)?;
        let order = state
            .member(participant)
            .map(|m| m.order)
            .ok_or_else(|| Error::Corrupt("join without the joiner".into()))?;
        Ok(Joined { order, state })
    }

    /// Moves `participant`'s connection to `instance` (a reconnect through another
    /// signalling instance). The caller has checked the participant's right to resume.
    pub async fn resume(
        &self,
        call: &str,
        participant: &str,
        instance: &str,
    ) -> Result<Joined, Error> {
        check_id(call, "call id")?;
        check_id(participant, "participant id")?;
        check_id(instance, "instance id")?;
        let mut inv = invocation(&RESUME_S, call, DEFAULT_LEASE);
        inv.arg(participant).arg(instance);
        let v: Vec<Value> = inv.invoke_async(&mut self.conn()).await.map_err(map_err)?;
        let state = parse_snapshot(&v)?;
        let order = state
            .member(participant)
            .map(|m| m.order)
            .ok_or_else(|| Error::Corrupt("resume without the member".into()))?;
        Ok(Joined { order, state })
    }

    /// Removes `participant`; returns its `left` event id and the members remaining
    /// (0: the call ended and its keys expire in [`ENDED_TTL`]).
    pub async fn leave(&self, call: &str, participant: &str) -> Result<(String, u64), Error> {
        check_id(call, "call id")?;
        check_id(participant, "participant id")?;
        let mut inv = invocation(&LEAVE_S, call, DEFAULT_LEASE);
        inv.arg(participant);
        let (id, left): (String, u64) =
            inv.invoke_async(&mut self.conn()).await.map_err(map_err)?;
        Ok((id, left))
    }

    /// Removes members whose lease lapsed; returns their ids.
    pub async fn reap(&self, call: &str) -> Result<Vec<String>, Error> {
        check_id(call, "call id")?;
        let inv = invocation(&REAP_S, call, DEFAULT_LEASE);
        let flat: Vec<String> = inv.invoke_async(&mut self.conn()).await.map_err(map_err)?;
        Ok(flat.chunks(2).map(|c| c[0].clone()).collect())
    }

    /// Renews for `lease` the members of `call` that `instance` holds; returns those it
    /// no longer holds (they left, lapsed or resumed through another instance).
    pub async fn renew(
        &self,
        call: &str,
        instance: &str,
        participants: &[String],
        lease: Duration,
    ) -> Result<Vec<String>, Error> {
        check_id(call, "call id")?;
        check_id(instance, "instance id")?;
        if participants.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = invocation(&RENEW_S, call, lease);
        inv.arg(instance);
        for p in participants {
            inv.arg(p);
        }
        let lost: Vec<String> = inv.invoke_async(&mut self.conn()).await.map_err(map_err)?;
        Ok(lost)
    }

    /// Replaces `participant`'s tracks (JSON); returns the event id.
    pub async fn set_tracks(
        &self,
        call: &str,
        participant: &str,
        tracks: &serde_json::Value,
    ) -> Result<String, Error> {
        self.set_field(call, participant, tracks, "tracks").await
    }

    /// Replaces `participant`'s subscription (JSON); returns the event id.
    pub async fn set_subscription(
        &self,
        call: &str,
        participant: &str,
        subscription: &serde_json::Value,
    ) -> Result<String, Error> {
        self.set_field(call, participant, subscription, "subs")
            .await
    }

    async fn set_field(
        &self,
        call: &str,
        participant: &str,
        value: &serde_json::Value,
        which: &str,
    ) -> Result<String, Error> {
        check_id(call, "call id")?;
        check_id(participant, "participant id")?;
        let text = value.to_string();
        if text.len() > MAX_RECORD {
            return Err(Error::Invalid("record size"));
        }
        let mut inv = invocation(&SET_FIELD_S, call, DEFAULT_LEASE);
        inv.arg(participant).arg(text).arg(which);
        inv.invoke_async(&mut self.conn()).await.map_err(map_err)
    }

    /// Relays `body` from member `from` to member `to` (or to every member when `None`)
    /// through the call's stream; returns the event id. Fails with
    /// [`Error::NotMember`] when either is not a member.
    pub async fn send(
        &self,
        call: &str,
        from: &str,
        to: Option<&str>,
        body: &str,
    ) -> Result<String, Error> {
        check_id(from, "sender id")?;
        self.emit(call, from, to, body).await
    }

    /// Appends a service notice (JSON) to the call's stream, for every member.
    pub async fn notice(&self, call: &str, body: &serde_json::Value) -> Result<String, Error> {
        self.emit(call, "", None, &body.to_string()).await
    }

    async fn emit(
        &self,
        call: &str,
        from: &str,
        to: Option<&str>,
        body: &str,
    ) -> Result<String, Error> {
        check_id(call, "call id")?;
        if let Some(to) = to {
            check_id(to, "recipient id")?;
        }
        check_json(body, MAX_MESSAGE, "message body")?;
        let mut inv = invocation(&SEND_S, call, DEFAULT_LEASE);
        inv.arg(from).arg(to.unwrap_or("")).arg(body);
        inv.invoke_async(&mut self.conn()).await.map_err(map_err)
    }

    /// Replaces the call's relay links (pair name → JSON record).
    pub async fn set_links(
        &self,
        call: &str,
        links: &BTreeMap<String, serde_json::Value>,
    ) -> Result<(), Error> {
        check_id(call, "call id")?;
        let mut inv = invocation(&SET_LINKS_S, call, DEFAULT_LEASE);
        for (pair, rec) in links {
            let text = rec.to_string();
            if pair.len() > 2 * schema::MAX_NODE_ID_LEN + 1 || text.len() > MAX_RECORD {
                return Err(Error::Invalid("link record"));
            }
            inv.arg(pair).arg(text);
        }
        let _: u8 = inv.invoke_async(&mut self.conn()).await.map_err(map_err)?;
        Ok(())
    }

    /// The call's relay links as last set.
    pub async fn links(&self, call: &str) -> Result<BTreeMap<String, serde_json::Value>, Error> {
        check_id(call, "call id")?;
        let map: BTreeMap<String, String> =
            redis::AsyncCommands::hgetall(&mut self.conn(), CallKeys::new(call).links).await?;
        map.into_iter().map(|(k, v)| Ok((k, json(&v)?))).collect()
    }

    /// Takes `call`'s reconcile lock for `holder` (one instance at a time brings the
    /// call's forwarders in line with its state) for at most `ttl`. When another holds
    /// it, marks the call dirty, so that holder reconciles once more before releasing,
    /// and returns false: the change is not lost, and this instance need not wait.
    pub async fn lock_call(&self, call: &str, holder: &str, ttl: Duration) -> Result<bool, Error> {
        check_id(call, "call id")?;
        check_id(holder, "instance id")?;
        let keys = CallKeys::new(call);
        let taken: u8 = LOCK_S
            .key(&keys.lock)
            .key(&keys.dirty)
            .arg(holder)
            .arg(schema::ms(ttl))
            .invoke_async(&mut self.conn())
            .await?;
        Ok(taken == 1)
    }

    /// Releases the lock [`Cluster::lock_call`] took, unless the call changed meanwhile.
    pub async fn unlock_call(
        &self,
        call: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Unlock, Error> {
        check_id(call, "call id")?;
        let keys = CallKeys::new(call);
        let r: String = UNLOCK_S
            .key(&keys.lock)
            .key(&keys.dirty)
            .arg(holder)
            .arg(schema::ms(ttl))
            .invoke_async(&mut self.conn())
            .await?;
        Ok(match r.as_str() {
            "released" => Unlock::Released,
            "again" => Unlock::Again,
            _ => Unlock::Lost,
        })
    }

    /// Deletes every key of `call` at once (a call ended by its owner, or a load run's
    /// placement after the run).
    pub async fn forget_call(&self, call: &str) -> Result<(), Error> {
        check_id(call, "call id")?;
        let keys = CallKeys::new(call);
        let mut cmd = redis::cmd("DEL");
        for k in keys.all() {
            cmd.arg(k);
        }
        cmd.arg(&keys.lock).arg(&keys.dirty);
        let _: u64 = cmd.query_async(&mut self.conn()).await?;
        Ok(())
    }

    /// A consistent view of `call` (empty when it does not exist).
    pub async fn call_state(&self, call: &str) -> Result<CallState, Error> {
        check_id(call, "call id")?;
        let keys = CallKeys::new(call);
        let mut inv = SNAPSHOT_S.prepare_invoke();
        for k in keys.all() {
            inv.key(k);
        }
        let v: Vec<Value> = inv.invoke_async(&mut self.conn()).await.map_err(map_err)?;
        parse_snapshot(&v)
    }

    /// Events of `call` after `cursor`, at most `count` (a non-blocking read, for
    /// catching up; live delivery is [`crate::bus::Follower`]'s).
    pub async fn events_after(
        &self,
        call: &str,
        cursor: &str,
        count: usize,
    ) -> Result<Vec<Event>, Error> {
        check_id(call, "call id")?;
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(CallKeys::new(call).events)
            .arg(format!("({cursor}"))
            .arg("+")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut self.conn())
            .await?;
        reply
            .ids
            .into_iter()
            .map(|e| Event::from_fields(e.id, &e.map))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_kinds_round_trip() {
        for k in [
            EventKind::Joined,
            EventKind::Resumed,
            EventKind::Left,
            EventKind::Tracks,
            EventKind::Subscriptions,
            EventKind::Message,
            EventKind::Notice,
        ] {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(EventKind::parse("dance"), None);
    }

    #[test]
    fn bodies_must_be_json_within_limits() {
        assert!(check_json("{\"a\":1}", 100, "x").is_ok());
        assert!(check_json("not json", 100, "x").is_err());
        assert!(check_json(&format!("\"{}\"", "a".repeat(200)), 100, "x").is_err());
    }
}
