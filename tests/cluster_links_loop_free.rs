//! Relay-link plans, applied to the forwarder's own routing code in memory: for random
//! placements of a call's members over up to four forwarders, random tracks and random
//! subscriptions, every member gets exactly one copy of every packet it asked for and
//! nothing else, every packet crosses at most one link and each link at most once, a
//! packet that arrived over a link never leaves over one, and receiver feedback reaches
//! the publisher exactly once.
//!
//! Each forwarder is a real `proto::Model` (the control API's model) feeding a real
//! `proto::Router` (the shards' routing code); relay endpoints are endpoints with a
//! declared static address (the other forwarder's media address), as the plan says.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use blindfold::cluster::links::{self, Plan, Publication, TrackKind, TrackRef};
use blindfold::forwarder::config::ServeArgs;
use blindfold::proto::model::{self, Model, Subscription, Track};
use blindfold::proto::route::{Outcome, Router, RouterConfig, StunReply, Transmit};
use blindfold::proto::table::IngressLimits;
use proptest::prelude::*;

const CALL: &str = "call";

fn node_addr(i: usize) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, i as u8 + 1], 10_000))
}

fn member_addr(i: usize) -> SocketAddr {
    SocketAddr::from(([198, 51, 100, i as u8 + 1], 40_000 + i as u16))
}

struct Node {
    router: Router,
    addr: SocketAddr,
}

struct Net {
    nodes: BTreeMap<String, Node>,
    /// Member address → participant id.
    members: BTreeMap<SocketAddr, String>,
    node_of_addr: BTreeMap<SocketAddr, String>,
}

fn kind(k: TrackKind) -> model::TrackKind {
    match k {
        TrackKind::Audio => model::TrackKind::Audio,
        TrackKind::Video => model::TrackKind::Video,
        TrackKind::Screen => model::TrackKind::Screen,
    }
}

/// Builds every forwarder's model from the plan, exactly as the signalling service would
/// through the control API, and hands the updates to a router per forwarder.
fn build(
    plan: &Plan,
    placement: &BTreeMap<String, String>,
    publications: &[Publication],
    node_ids: &[String],
    addr_of: &BTreeMap<String, SocketAddr>,
) -> Net {
    let limits = ServeArgs::default().limits();
    let off = IngressLimits {
        packets_per_sec: 0,
        bytes_per_sec: 0,
        burst_ms: 500,
    };
    let mut net = Net {
        nodes: BTreeMap::new(),
        members: addr_of.iter().map(|(p, a)| (*a, p.clone())).collect(),
        node_of_addr: BTreeMap::new(),
    };
    for (i, id) in node_ids.iter().enumerate() {
        let Some(np) = plan.nodes.get(id) else {
            continue;
        };
        let mut m = Model::new(limits, off);
        let mut router = Router::new(RouterConfig {
            consent_timeout: Duration::from_secs(30),
        });
        let mut apply = |u: Vec<blindfold::proto::table::Update>| {
            for u in u {
                router.apply(u);
            }
        };
        apply(m.create_conference(Some(CALL.into())).unwrap().1);
        for p in np.members.keys() {
            apply(m.create_endpoint(CALL, Some(p.clone())).unwrap().1);
            apply(m.set_address(CALL, p, addr_of[p]).unwrap().1);
            let tracks: Vec<Track> = publications
                .iter()
                .filter(|x| x.track.participant == *p && placement[p] == *id)
                .map(|x| Track::new(x.track.track.clone(), kind(x.kind), x.ssrcs.clone()))
                .collect();
            apply(m.set_tracks(CALL, p, tracks).unwrap().1);
        }
        for (remote, relay) in &np.relays {
            let j = node_ids.iter().position(|n| n == remote).unwrap();
            apply(
                m.create_endpoint(CALL, Some(relay.endpoint.clone()))
                    .unwrap()
                    .1,
            );
            apply(
                m.set_address(CALL, &relay.endpoint, node_addr(j))
                    .unwrap()
                    .1,
            );
            let tracks = relay
                .tracks
                .iter()
                .map(|t| Track::new(t.id.clone(), kind(t.kind), t.ssrcs.clone()))
                .collect();
            apply(m.set_tracks(CALL, &relay.endpoint, tracks).unwrap().1);
        }
        let subs = |list: &[links::Sub]| -> Vec<Subscription> {
            list.iter()
                .map(|s| Subscription::new(s.endpoint.clone(), s.track.clone()))
                .collect()
        };
        for (p, list) in &np.members {
            apply(m.set_subscriptions(CALL, p, subs(list)).unwrap().1);
        }
        for relay in np.relays.values() {
            apply(
                m.set_subscriptions(CALL, &relay.endpoint, subs(&relay.subscriptions))
                    .unwrap()
                    .1,
            );
        }
        net.node_of_addr.insert(node_addr(i), id.clone());
        net.nodes.insert(
            id.clone(),
            Node {
                router,
                addr: node_addr(i),
            },
        );
    }
    net
}

/// What became of one datagram injected by a member.
#[derive(Default, Debug)]
struct Trace {
    /// Member → copies received.
    delivered: BTreeMap<String, usize>,
    /// (from node, to node) → crossings.
    crossings: BTreeMap<(String, String), usize>,
    /// A packet that arrived over a link was sent over a link again.
    relayed_twice: bool,
}

/// Injects `pkt` from member `from` and follows every copy through the forwarders.
fn inject(net: &mut Net, from: &str, home: &str, from_addr: SocketAddr, pkt: &[u8]) -> Trace {
    let now = Instant::now();
    let mut trace = Trace::default();
    // (node to route at, source address, arrived over a link)
    let mut queue = vec![(home.to_string(), from_addr, false)];
    let mut steps = 0;
    while let Some((at, src, via_link)) = queue.pop() {
        steps += 1;
        assert!(steps < 1000, "the packet keeps travelling: a loop");
        let node = net.nodes.get_mut(&at).unwrap();
        let here = node.addr;
        let mut out: Vec<Transmit> = Vec::new();
        let mut reply = StunReply::new();
        match node.router.handle(0, pkt, src, now, &mut out, &mut reply) {
            Outcome::Forwarded(_) | Outcome::Dropped(_) => {}
            Outcome::Reply { .. } | Outcome::Proven => panic!("no STUN here"),
        }
        for t in out {
            if let Some(next) = net.node_of_addr.get(&t.dst) {
                if via_link {
                    trace.relayed_twice = true;
                    continue;
                }
                *trace
                    .crossings
                    .entry((at.clone(), next.clone()))
                    .or_default() += 1;
                queue.push((next.clone(), here, true));
            } else {
                let m = net.members.get(&t.dst).expect("copies go to members only");
                assert_ne!(m, from, "nothing goes back to its sender");
                *trace.delivered.entry(m.clone()).or_default() += 1;
            }
        }
    }
    trace
}

fn rtp(ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 96, 0, 1, 0, 0, 0, 0];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0xAB; 20]);
    p
}

fn pli(sender: u32, media: u32) -> Vec<u8> {
    let mut p = vec![0x81, 206, 0, 2];
    p.extend_from_slice(&sender.to_be_bytes());
    p.extend_from_slice(&media.to_be_bytes());
    p
}

#[derive(Debug, Clone)]
struct Scenario {
    nodes: usize,
    /// Per member: node index, tracks (kinds), wanted (member, track index) pairs.
    placement: Vec<usize>,
    tracks: Vec<Vec<TrackKind>>,
    wants: Vec<Vec<(usize, usize)>>,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (1usize..=4, 1usize..=8).prop_flat_map(|(nodes, members)| {
        let kinds =
            prop::sample::select(vec![TrackKind::Audio, TrackKind::Video, TrackKind::Screen]);
        (
            Just(nodes),
            prop::collection::vec(0..nodes, members),
            prop::collection::vec(prop::collection::vec(kinds, 0..=2), members),
            prop::collection::vec(
                prop::collection::vec((0..members, 0usize..2), 0..=10),
                members,
            ),
        )
            .prop_map(|(nodes, placement, tracks, wants)| Scenario {
                nodes,
                placement,
                tracks,
                wants,
            })
    })
}

fn check(s: &Scenario) {
    let node_ids: Vec<String> = (0..s.nodes).map(|i| format!("n{i}")).collect();
    let pid = |i: usize| format!("p{i}");
    let placement: BTreeMap<String, String> = s
        .placement
        .iter()
        .enumerate()
        .map(|(i, n)| (pid(i), node_ids[*n].clone()))
        .collect();
    let addr_of: BTreeMap<String, SocketAddr> = (0..s.placement.len())
        .map(|i| (pid(i), member_addr(i)))
        .collect();
    let mut publications = Vec::new();
    for (i, kinds) in s.tracks.iter().enumerate() {
        for (t, k) in kinds.iter().enumerate() {
            // Two SSRCs per track (a layer and its RTX, say), unique in the call.
            let base = 0x1000_0000 + (i as u32) * 0x100 + (t as u32) * 0x10;
            publications.push(Publication {
                track: TrackRef {
                    participant: pid(i),
                    track: format!("tr{t}"),
                },
                kind: *k,
                ssrcs: vec![base, base + 1],
            });
        }
    }
    let wants: BTreeMap<String, Vec<TrackRef>> = s
        .wants
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let mut set: BTreeSet<TrackRef> = BTreeSet::new();
            for (m, t) in w {
                set.insert(TrackRef {
                    participant: pid(*m),
                    track: format!("tr{t}"),
                });
            }
            (pid(i), set.into_iter().collect())
        })
        .collect();
    let plan = links::plan(&placement, &publications, &wants);
    assert!(plan.clashes.is_empty());
    let mut net = build(&plan, &placement, &publications, &node_ids, &addr_of);

    for p in &publications {
        // Who should get this track: members that want it, are not its publisher.
        let expected: BTreeMap<String, usize> = wants
            .iter()
            .filter(|(sub, list)| **sub != p.track.participant && list.contains(&p.track))
            .map(|(sub, _)| (sub.clone(), 1))
            .collect();
        let from = &p.track.participant;
        for &ssrc in &p.ssrcs {
            let t = inject(&mut net, from, &placement[from], addr_of[from], &rtp(ssrc));
            assert!(!t.relayed_twice, "a relayed packet was relayed again");
            assert_eq!(
                t.delivered, expected,
                "media of {:?} ssrc {ssrc:#x}",
                p.track
            );
            assert!(
                t.crossings.values().all(|&n| n == 1),
                "each link carries the packet once: {:?}",
                t.crossings
            );
            assert!(
                t.crossings.keys().all(|(a, _)| *a == placement[from]),
                "only the publisher's forwarder sends it over links: {:?}",
                t.crossings
            );
            // Feedback from each receiver reaches the publisher exactly once.
            for sub in expected.keys() {
                let t = inject(&mut net, sub, &placement[sub], addr_of[sub], &pli(1, ssrc));
                let want: BTreeMap<String, usize> = [(from.clone(), 1)].into();
                assert_eq!(t.delivered, want, "PLI from {sub} for {ssrc:#x}");
                assert!(t.crossings.len() <= 1 && !t.relayed_twice);
            }
        }
    }
    // The links are exactly the pairs whose members exchange something.
    let mut needed = BTreeSet::new();
    for (sub, list) in &wants {
        for w in list {
            let (Some(a), Some(b)) = (placement.get(sub), placement.get(&w.participant)) else {
                continue;
            };
            let published = publications.iter().any(|p| p.track == *w);
            if a != b && published && *sub != w.participant {
                needed.insert(if a < b {
                    (a.clone(), b.clone())
                } else {
                    (b.clone(), a.clone())
                });
            }
        }
    }
    assert_eq!(plan.links().into_iter().collect::<BTreeSet<_>>(), needed);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn relay_plans_deliver_once_and_never_loop(s in scenario()) {
        check(&s);
    }
}

#[test]
fn twelve_members_on_three_forwarders_all_see_everyone() {
    // The call the cluster issue describes: 12 members, everyone receives everyone.
    let s = Scenario {
        nodes: 3,
        placement: (0..12).map(|i| i % 3).collect(),
        tracks: vec![vec![TrackKind::Audio, TrackKind::Video]; 12],
        wants: (0..12)
            .map(|i| {
                (0..12)
                    .filter(|j| *j != i)
                    .flat_map(|j| [(j, 0), (j, 1)])
                    .collect()
            })
            .collect(),
    };
    check(&s);
}

#[test]
fn a_plan_diff_touches_only_what_changed() {
    let pl = |v: &[(&str, &str)]| -> BTreeMap<String, String> {
        v.iter()
            .map(|(p, n)| (p.to_string(), n.to_string()))
            .collect()
    };
    let pubs = vec![
        Publication {
            track: TrackRef {
                participant: "a".into(),
                track: "mic".into(),
            },
            kind: TrackKind::Audio,
            ssrcs: vec![1],
        },
        Publication {
            track: TrackRef {
                participant: "b".into(),
                track: "mic".into(),
            },
            kind: TrackKind::Audio,
            ssrcs: vec![2],
        },
    ];
    let all = |ps: &[&str]| -> BTreeMap<String, Vec<TrackRef>> {
        ps.iter()
            .map(|p| {
                let others = ["a", "b"]
                    .iter()
                    .filter(|o| *o != p)
                    .map(|o| TrackRef {
                        participant: o.to_string(),
                        track: "mic".into(),
                    })
                    .collect();
                (p.to_string(), others)
            })
            .collect()
    };
    let one = links::plan(&pl(&[("a", "x"), ("b", "x")]), &pubs, &all(&["a", "b"]));
    assert!(one.links().is_empty());
    // b moves to forwarder y (its forwarder died): a link appears, a's subscription now
    // goes through it, and nothing else changes.
    let two = links::plan(&pl(&[("a", "x"), ("b", "y")]), &pubs, &all(&["a", "b"]));
    assert_eq!(two.links(), vec![("x".to_string(), "y".to_string())]);
    let d = links::diff(&one, &two);
    assert_eq!(d["x"].create_relays.len(), 1);
    assert_eq!(d["y"].create_relays.len(), 1);
    assert_eq!(d["x"].set_member_subscriptions.len(), 1, "{d:?}");
    assert!(d["x"].delete_relays.is_empty());
    // Back on one forwarder: the relays go.
    let back = links::diff(&two, &one);
    assert_eq!(back["x"].delete_relays, vec!["r-y".to_string()]);
    assert_eq!(back["y"].delete_relays, vec!["r-x".to_string()]);
    assert!(links::diff(&two, &two).is_empty());
}
