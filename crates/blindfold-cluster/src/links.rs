//! Relay links: when a call's members sit on several forwarders, which pairs of
//! forwarders must be linked, and what each side of a link publishes and subscribes.
//!
//! Owns the plan only: a pure function of the members' placement, their published tracks
//! and their subscriptions, with no I/O. Must not touch the forwarders (the signalling
//! service applies a plan through the control API) or any packet.
//!
//! # The rule, and why it has no loops
//! A link between forwarders A and B is two ordinary endpoints: `r-B` on A, whose static
//! address is B's media address, and `r-A` on B, whose static address is A's. On A, `r-B`
//! *subscribes* to the tracks of A's own members that some member on B wants, and
//! *publishes* (owns the SSRCs of) the tracks of B's own members that some member on A
//! wants; members on A subscribe to a remote track through `r-B`. A packet A sends to B
//! arrives from A's media address, which is `r-A`'s address on B, so B routes it as
//! `r-A`'s (byte-identical, SSRC owned by `r-A`) to its local subscribers.
//!
//! A relay endpoint subscribes only to tracks whose publisher is a member placed on the
//! same forwarder, never to a track another relay publishes. So a packet leaves its
//! publisher's forwarder at most once per link, arrives at the subscriber's forwarder,
//! and is delivered there only to members: it crosses at most one link, crosses each
//! link at most once, and is never relayed again. There is no path of two hops, hence no
//! cycle, whatever the placement. Receiver feedback (RTCP RR, NACK, PLI) from a member on
//! B names an SSRC that `r-A` owns on B and to which the member subscribes, so B sends it
//! to A; on A it arrives from `r-B`, which subscribes to that SSRC, so A delivers it to
//! the publisher: feedback takes the reverse of the media's one hop.
//!
//! Links form a full mesh among the forwarders whose members exchange tracks (a pair
//! with nothing to carry either way gets no link).
//!
//! Relay track ids are `t` and the first SSRC in hex: unique within a call as long as
//! SSRCs are (the forwarder refuses a repeated SSRC in a conference); a publication whose
//! SSRCs clash with an earlier one is left out and reported in [`Plan::clashes`].

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

pub use blindfold_control::TrackKind;

/// A forwarder's node id.
pub type NodeId = String;

/// One track of one participant.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TrackRef {
    /// The publishing participant's ephemeral id.
    pub participant: String,
    /// Its track id.
    pub track: String,
}

/// A published track.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publication {
    /// Which track.
    #[serde(flatten)]
    pub track: TrackRef,
    /// What it carries.
    pub kind: TrackKind,
    /// Its SSRCs.
    pub ssrcs: Vec<u32>,
}

/// A subscription as a forwarder sees it: (endpoint, track) on that forwarder.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Sub {
    /// The publishing endpoint on this forwarder (a member or a relay).
    pub endpoint: String,
    /// The track id on that endpoint.
    pub track: String,
}

/// A track a relay endpoint publishes on behalf of a remote member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayTrack {
    /// Track id on the relay endpoint (`t` + first SSRC in hex).
    pub id: String,
    /// What it carries.
    pub kind: TrackKind,
    /// The remote publisher's SSRCs, which the relay endpoint owns here.
    pub ssrcs: Vec<u32>,
    /// The remote track it carries.
    pub origin: TrackRef,
}

/// One side of a link: the relay endpoint on one forwarder towards `remote`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relay {
    /// Endpoint id (`r-` + remote node id).
    pub endpoint: String,
    /// The forwarder at the other end (the endpoint's static address is its media
    /// address).
    pub remote: NodeId,
    /// Tracks of the remote forwarder's members that members here want.
    pub tracks: Vec<RelayTrack>,
    /// Tracks of members here that members on the remote forwarder want.
    pub subscriptions: Vec<Sub>,
}

/// What one forwarder holds for the call.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NodePlan {
    /// The subscriptions of each member placed here, in this forwarder's terms.
    pub members: BTreeMap<String, Vec<Sub>>,
    /// The relay endpoints here, by remote node.
    pub relays: BTreeMap<NodeId, Relay>,
}

/// The whole call's plan across forwarders.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Plan {
    /// By node.
    pub nodes: BTreeMap<NodeId, NodePlan>,
    /// Publications left out because an SSRC repeats an earlier one's.
    pub clashes: Vec<TrackRef>,
}

/// The relay endpoint id on any forwarder for the link towards `remote`.
pub fn relay_endpoint(remote: &str) -> String {
    format!("r-{remote}")
}

/// The relay track id of a publication.
pub fn relay_track_id(ssrcs: &[u32]) -> String {
    format!("t{:08x}", ssrcs.first().copied().unwrap_or(0))
}

/// Plans the call: `placement` is participant → node, `publications` the tracks members
/// publish, `wants` subscriber → the tracks it wants. Publications and wants of
/// participants not in `placement` are ignored; so are wants of unpublished tracks (the
/// plan is remade when they appear) and of one's own tracks.
pub fn plan(
    placement: &BTreeMap<String, NodeId>,
    publications: &[Publication],
    wants: &BTreeMap<String, Vec<TrackRef>>,
) -> Plan {
    let mut out = Plan::default();
    for node in placement.values() {
        out.nodes.entry(node.clone()).or_default();
    }
    // Published tracks, SSRC-unique in the call.
    let mut seen_ssrcs = BTreeSet::new();
    let mut published: BTreeMap<&TrackRef, &Publication> = BTreeMap::new();
    for p in publications {
        if !placement.contains_key(&p.track.participant) || p.ssrcs.is_empty() {
            continue;
        }
        if p.ssrcs.iter().any(|s| seen_ssrcs.contains(s)) || published.contains_key(&p.track) {
            out.clashes.push(p.track.clone());
            continue;
        }
        seen_ssrcs.extend(p.ssrcs.iter().copied());
        published.insert(&p.track, p);
    }
    // Which remote tracks each node needs: (needing node, origin node) → tracks.
    let mut needs: BTreeMap<(&NodeId, &NodeId), BTreeSet<&TrackRef>> = BTreeMap::new();
    for (sub, list) in wants {
        let Some(here) = placement.get(sub) else {
            continue;
        };
        let mut subs = BTreeSet::new();
        for want in list {
            if want.participant == *sub {
                continue;
            }
            let (Some(publication), Some(there)) =
                (published.get(want), placement.get(&want.participant))
            else {
                continue;
            };
            if there == here {
                subs.insert(Sub {
                    endpoint: want.participant.clone(),
                    track: want.track.clone(),
                });
            } else {
                needs.entry((here, there)).or_default().insert(want);
                subs.insert(Sub {
                    endpoint: relay_endpoint(there),
                    track: relay_track_id(&publication.ssrcs),
                });
            }
        }
        out.nodes
            .entry(here.clone())
            .or_default()
            .members
            .insert(sub.clone(), subs.into_iter().collect());
    }
    // Members without wants still appear, with no subscriptions.
    for (p, node) in placement {
        out.nodes
            .entry(node.clone())
            .or_default()
            .members
            .entry(p.clone())
            .or_default();
    }
    // Both sides of every link that carries something either way.
    let pairs: BTreeSet<(NodeId, NodeId)> = needs
        .keys()
        .map(|(a, b)| {
            if a < b {
                ((*a).clone(), (*b).clone())
            } else {
                ((*b).clone(), (*a).clone())
            }
        })
        .collect();
    for (a, b) in pairs {
        for (here, there) in [(&a, &b), (&b, &a)] {
            // `here` publishes what it needs from `there`, subscribes what `there` needs.
            let tracks = needs
                .get(&(here, there))
                .into_iter()
                .flatten()
                .map(|t| {
                    let p = published[*t];
                    RelayTrack {
                        id: relay_track_id(&p.ssrcs),
                        kind: p.kind,
                        ssrcs: p.ssrcs.clone(),
                        origin: (*t).clone(),
                    }
                })
                .collect();
            let subscriptions = needs
                .get(&(there, here))
                .into_iter()
                .flatten()
                .map(|t| Sub {
                    endpoint: t.participant.clone(),
                    track: t.track.clone(),
                })
                .collect();
            out.nodes.entry(here.clone()).or_default().relays.insert(
                there.clone(),
                Relay {
                    endpoint: relay_endpoint(there),
                    remote: there.clone(),
                    tracks,
                    subscriptions,
                },
            );
        }
    }
    out
}

impl Plan {
    /// The linked pairs (a < b).
    pub fn links(&self) -> Vec<(NodeId, NodeId)> {
        let mut out = Vec::new();
        for (a, n) in &self.nodes {
            for b in n.relays.keys() {
                if a < b {
                    out.push((a.clone(), b.clone()));
                }
            }
        }
        out
    }
}

/// What to change on one forwarder to go from one plan to another.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeChanges {
    /// Relay endpoints to create (with their static address set to the remote's media
    /// address), then give these tracks and subscriptions.
    pub create_relays: Vec<Relay>,
    /// Existing relay endpoints whose tracks changed (set tracks before subscriptions
    /// elsewhere, so nothing subscribes to an SSRC no one owns yet).
    pub set_relay_tracks: Vec<Relay>,
    /// Existing relay endpoints whose subscriptions changed.
    pub set_relay_subscriptions: Vec<Relay>,
    /// Members whose subscriptions changed.
    pub set_member_subscriptions: Vec<(String, Vec<Sub>)>,
    /// Relay endpoints to delete (the link is no longer needed).
    pub delete_relays: Vec<String>,
}

impl NodeChanges {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.create_relays.is_empty()
            && self.set_relay_tracks.is_empty()
            && self.set_relay_subscriptions.is_empty()
            && self.set_member_subscriptions.is_empty()
            && self.delete_relays.is_empty()
    }
}

/// The changes per forwarder from `old` to `new`. A forwarder that leaves the plan gets
/// its relays deleted (its members' endpoints are the caller's to delete).
pub fn diff(old: &Plan, new: &Plan) -> BTreeMap<NodeId, NodeChanges> {
    let empty = NodePlan::default();
    let nodes: BTreeSet<&NodeId> = old.nodes.keys().chain(new.nodes.keys()).collect();
    let mut out = BTreeMap::new();
    for node in nodes {
        let o = old.nodes.get(node).unwrap_or(&empty);
        let n = new.nodes.get(node).unwrap_or(&empty);
        let mut ch = NodeChanges::default();
        for (remote, relay) in &n.relays {
            match o.relays.get(remote) {
                None => ch.create_relays.push(relay.clone()),
                Some(prev) => {
                    if prev.tracks != relay.tracks {
                        ch.set_relay_tracks.push(relay.clone());
                    }
                    if prev.subscriptions != relay.subscriptions {
                        ch.set_relay_subscriptions.push(relay.clone());
                    }
                }
            }
        }
        for (remote, relay) in &o.relays {
            if !n.relays.contains_key(remote) {
                ch.delete_relays.push(relay.endpoint.clone());
            }
        }
        for (member, subs) in &n.members {
            if o.members.get(member) != Some(subs) {
                ch.set_member_subscriptions
                    .push((member.clone(), subs.clone()));
            }
        }
        if !ch.is_empty() {
            out.insert(node.clone(), ch);
        }
    }
    out
}
