//! Placement: which forwarder is a call's home, and which forwarder each participant
//! joins, decided atomically inside Redis.
//!
//! Owns the placement rules and the script that applies them. Must not touch the
//! forwarders themselves (creating endpoints and relay links is the signalling service's
//! job) or any participant data beyond ephemeral ids and an optional region label.
//!
//! Every decision is one Lua script, so it reads the registry and writes the answer
//! without another client in between: two signalling instances placing the same new call
//! at the same moment both get the home the first one wrote. A home is kept while its
//! node's registration is live (a draining home keeps its call); when it lapsed, the
//! next placement picks a new one and says so ([`HomeChange::Moved`]).
//!
//! A participant goes to the first node that passes the first rule that any node passes:
//! 1. not draining, in the participant's region (when given), under the budget;
//! 2. not draining, under the budget (another region);
//! 3. not draining, in the participant's region (over the budget);
//! 4. not draining.
//!
//! Within a rule the call's home comes first, then the call's other nodes, then any other
//! node, each by least load (endpoints, then copies/s, then id): a call spreads only when
//! it must, and each spread costs relay links. Loads come from the nodes' last reports
//! plus the placements it may not reflect yet (claims younger than the report by less
//! than [`crate::schema::REPORT_LAG`]), so a burst of joins within one report period does
//! not all land on the node that looked emptiest.

use std::sync::LazyLock;

use redis::Value;

use crate::schema::{self, CALL_TTL, CLAIMS_TTL, CallKeys, REPORT_LAG};
use crate::{Cluster, Error};

/// Per-forwarder limits above which a joiner goes elsewhere (0 or `None`: no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Budget {
    /// Most endpoints on one forwarder (participants and relays, all calls).
    pub endpoints: Option<u64>,
    /// Most copies per second on one forwarder.
    pub copies_per_sec: Option<u64>,
}

/// What happened to the call's home during a placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HomeChange {
    /// The call already had a live home.
    Kept,
    /// The call had no home: this placement chose it.
    Created,
    /// The previous home's registration lapsed: this placement chose a new one.
    Moved {
        /// The lapsed node.
        from: String,
    },
}

/// The answer of a placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    /// The call's home node.
    pub home: String,
    /// The node the participant is on (the home when placing a call only).
    pub node: String,
    /// Whether the home was kept, created or moved.
    pub home_change: HomeChange,
}

/// A participant moved off a lapsed node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    /// Its ephemeral id.
    pub participant: String,
    /// The lapsed node.
    pub from: String,
    /// Its new node.
    pub to: String,
}

/// Shared by the scripts: node state with pending claims, the rules, the choice.
/// ARGV[1..5] of every script: region ('' none), endpoint budget, copies budget (0 none),
/// claims TTL ms, report lag ms.
const PRELUDE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local region, be, bc = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local claims_ttl, lag = tonumber(ARGV[4]), tonumber(ARGV[5])

local cache = {}
-- A live node's state (load includes placements made since its last report), or nil.
local function node(id)
  local c = cache[id]
  if c ~= nil then return c or nil end
  local h = redis.call('HMGET', 'bf:node:' .. id, 'draining', 'region', 'endpoints', 'copies', 'sampled_ms')
  if not h[1] then cache[id] = false; return nil end
  local ck = 'bf:node:' .. id .. ':claims'
  redis.call('ZREMRANGEBYSCORE', ck, '-inf', now - claims_ttl)
  -- Claims the report may not reflect yet: younger than the report minus its lag.
  local pending = redis.call('ZCOUNT', ck, tonumber(h[5]) - lag, '+inf')
  c = { id = id, draining = (h[1] == '1'), region = h[2],
        endpoints = tonumber(h[3]) + pending, copies = tonumber(h[4]) }
  cache[id] = c
  return c
end

local all = nil
local function everyone()
  if all then return all end
  all = {}
  for _, id in ipairs(redis.call('SMEMBERS', 'bf:nodes')) do
    local n = node(id)
    if n then table.insert(all, n) else redis.call('SREM', 'bf:nodes', id) end
  end
  return all
end

local function better(a, b)
  if b == nil then return true end
  if a.endpoints ~= b.endpoints then return a.endpoints < b.endpoints end
  if a.copies ~= b.copies then return a.copies < b.copies end
  return a.id < b.id
end

local function least(list, ok)
  local best = nil
  for _, n in ipairs(list) do
    if ok(n) and better(n, best) then best = n end
  end
  return best
end

local function under(n) return (be == 0 or n.endpoints < be) and (bc == 0 or n.copies < bc) end
local function here(n) return region == '' or n.region == region end
local rules = {
  function(n) return not n.draining and here(n) and under(n) end,
  function(n) return not n.draining and under(n) end,
  function(n) return not n.draining and here(n) end,
  function(n) return not n.draining end,
}

-- The first node passing the first rule any node passes: home, then `used`, then all.
local function choose(home, used)
  for _, ok in ipairs(rules) do
    local h = home and node(home)
    if h and ok(h) then return h end
    local n = least(used, ok) or least(everyone(), ok)
    if n then return n end
  end
  return nil
end

-- The call's live nodes other than the home, from its placement hash.
local function call_nodes(placement_key, home)
  local out, seen = {}, {}
  for _, id in ipairs(redis.call('HVALS', placement_key)) do
    if id ~= home and not seen[id] then
      seen[id] = true
      local n = node(id)
      if n then table.insert(out, n) end
    end
  end
  return out
end

local function claim(id, claim_id)
  local ck = 'bf:node:' .. id .. ':claims'
  redis.call('ZADD', ck, now, claim_id)
  redis.call('PEXPIRE', ck, claims_ttl)
  local c = cache[id]
  if c then c.endpoints = c.endpoints + 1 end
end

-- The call's home, kept while live, else chosen (preferring the call's live nodes).
-- Returns home id, change ('kept'|'created'|'moved'), previous home or ''.
local function ensure_home(home_key, placement_key)
  local home = redis.call('GET', home_key)
  if home and node(home) then return home, 'kept', '' end
  local n = choose(nil, call_nodes(placement_key, ''))
  if not n then return nil end
  redis.call('SET', home_key, n.id)
  if home then return n.id, 'moved', home end
  return n.id, 'created', ''
end

local function touch(ttl)
  for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], ttl) end
end
"#;

/// KEYS: the call's keys ([`CallKeys::all`] order: home, placement first). ARGV[6]:
/// participant ('' to place the call only), ARGV[7]: claim id, ARGV[8]: call TTL ms.
const PLACE: &str = r#"
local participant, claim_id = ARGV[6], ARGV[7]
local home, change, prev = ensure_home(KEYS[1], KEYS[2])
if not home then return redis.error_reply('NO_FORWARDER no live forwarder') end
local at = home
if participant ~= '' then
  local cur = redis.call('HGET', KEYS[2], participant)
  if cur and node(cur) then
    at = cur
  else
    local n = choose(home, call_nodes(KEYS[2], home))
    if not n then return redis.error_reply('NO_FORWARDER no live forwarder') end
    at = n.id
    redis.call('HSET', KEYS[2], participant, at)
    claim(at, claim_id)
  end
end
touch(ARGV[8])
return {home, at, change, prev}
"#;

/// KEYS as [`PLACE`]. ARGV[6]: claim id prefix, ARGV[7]: call TTL ms. Moves every
/// participant placed on a lapsed node; returns home, change, previous home, then
/// (participant, from, to) triples.
const RELOCATE: &str = r#"
local out = {}
if redis.call('EXISTS', KEYS[1]) == 0 and redis.call('EXISTS', KEYS[2]) == 0 then
  return {'', 'kept', ''}
end
local home, change, prev = ensure_home(KEYS[1], KEYS[2])
if not home then return redis.error_reply('NO_FORWARDER no live forwarder') end
local flat = redis.call('HGETALL', KEYS[2])
local moves = {}
for i = 1, #flat, 2 do
  local p, n = flat[i], flat[i + 1]
  if not node(n) then
    local to = choose(home, call_nodes(KEYS[2], home))
    if not to then return redis.error_reply('NO_FORWARDER no live forwarder') end
    redis.call('HSET', KEYS[2], p, to.id)
    claim(to.id, ARGV[6] .. p)
    table.insert(moves, p); table.insert(moves, n); table.insert(moves, to.id)
  end
end
touch(ARGV[7])
local res = {home, change, prev}
for _, v in ipairs(moves) do table.insert(res, v) end
return res
"#;

fn compile(body: &str) -> redis::Script {
    redis::Script::new(&format!("{PRELUDE}\n{body}"))
}

static PLACE_S: LazyLock<redis::Script> = LazyLock::new(|| compile(PLACE));
static RELOCATE_S: LazyLock<redis::Script> = LazyLock::new(|| compile(RELOCATE));

/// Maps the scripts' `NO_FORWARDER` error reply.
pub(crate) fn map_err(e: redis::RedisError) -> Error {
    match e.code() {
        Some("NO_FORWARDER") => Error::NoForwarder,
        _ => Error::Redis(e),
    }
}

fn text(v: &Value) -> Result<String, Error> {
    redis::from_redis_value_ref::<String>(v).map_err(|e| Error::Corrupt(e.to_string()))
}

fn home_change(change: &str, prev: String) -> HomeChange {
    match change {
        "created" => HomeChange::Created,
        "moved" => HomeChange::Moved { from: prev },
        _ => HomeChange::Kept,
    }
}

impl Cluster {
    /// Places call `call` (its home only), or finds its home.
    pub async fn place_call(
        &self,
        call: &str,
        region: Option<&str>,
        budget: Budget,
    ) -> Result<Placed, Error> {
        self.place(call, None, region, budget).await
    }

    /// Places `participant` of `call` (and the call's home, if it has none): the same
    /// answer for every caller until the participant leaves or its node lapses.
    pub async fn place_participant(
        &self,
        call: &str,
        participant: &str,
        region: Option<&str>,
        budget: Budget,
    ) -> Result<Placed, Error> {
        self.place(call, Some(participant), region, budget).await
    }

    async fn place(
        &self,
        call: &str,
        participant: Option<&str>,
        region: Option<&str>,
        budget: Budget,
    ) -> Result<Placed, Error> {
        check(call, participant, region)?;
        let keys = CallKeys::new(call);
        let mut inv = PLACE_S.prepare_invoke();
        for k in keys.all() {
            inv.key(k);
        }
        prelude_args(&mut inv, region, budget);
        let p = participant.unwrap_or("");
        inv.arg(p)
            .arg(format!("{call}/{p}"))
            .arg(schema::ms(CALL_TTL));
        let v: Vec<Value> = inv.invoke_async(&mut self.conn()).await.map_err(map_err)?;
        let [home, node, change, prev] = v.as_slice() else {
            return Err(Error::Corrupt("placement answer".into()));
        };
        Ok(Placed {
            home: text(home)?,
            node: text(node)?,
            home_change: home_change(&text(change)?, text(prev)?),
        })
    }

    /// Moves every participant of `call` placed on a node whose registration lapsed to a
    /// live node (and the home, if it lapsed). Atomic: of two instances repairing the
    /// same call at once, one makes the moves and the other finds none to make.
    pub async fn relocate_lapsed(
        &self,
        call: &str,
        budget: Budget,
    ) -> Result<(Option<Placed>, Vec<Move>), Error> {
        check(call, None, None)?;
        let keys = CallKeys::new(call);
        let mut inv = RELOCATE_S.prepare_invoke();
        for k in keys.all() {
            inv.key(k);
        }
        prelude_args(&mut inv, None, budget);
        inv.arg(format!("{call}/")).arg(schema::ms(CALL_TTL));
        let v: Vec<Value> = inv.invoke_async(&mut self.conn()).await.map_err(map_err)?;
        if v.len() < 3 || !(v.len() - 3).is_multiple_of(3) {
            return Err(Error::Corrupt("relocation answer".into()));
        }
        let home = text(&v[0])?;
        let placed = (!home.is_empty()).then(|| -> Result<Placed, Error> {
            Ok(Placed {
                node: home.clone(),
                home: home.clone(),
                home_change: home_change(&text(&v[1])?, text(&v[2])?),
            })
        });
        let placed = placed.transpose()?;
        let moves = v[3..]
            .chunks(3)
            .map(|c| {
                Ok(Move {
                    participant: text(&c[0])?,
                    from: text(&c[1])?,
                    to: text(&c[2])?,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok((placed, moves))
    }

    /// The call's home and every participant's node, as placed.
    pub async fn placement(
        &self,
        call: &str,
    ) -> Result<(Option<String>, std::collections::BTreeMap<String, String>), Error> {
        check(call, None, None)?;
        let keys = CallKeys::new(call);
        let (home, map): (Option<String>, std::collections::BTreeMap<String, String>) =
            redis::pipe()
                .get(&keys.home)
                .hgetall(&keys.placement)
                .query_async(&mut self.conn())
                .await?;
        Ok((home, map))
    }
}

fn check(call: &str, participant: Option<&str>, region: Option<&str>) -> Result<(), Error> {
    if !schema::valid_id(call) {
        return Err(Error::Invalid("call id"));
    }
    if participant.is_some_and(|p| !schema::valid_id(p)) {
        return Err(Error::Invalid("participant id"));
    }
    if region.is_some_and(|r| !schema::valid_region(r)) {
        return Err(Error::Invalid("region"));
    }
    Ok(())
}

fn prelude_args(inv: &mut redis::ScriptInvocation<'_>, region: Option<&str>, budget: Budget) {
    inv.arg(region.unwrap_or(""))
        .arg(budget.endpoints.unwrap_or(0))
        .arg(budget.copies_per_sec.unwrap_or(0))
        .arg(schema::ms(CLAIMS_TTL))
        .arg(schema::ms(REPORT_LAG));
}
