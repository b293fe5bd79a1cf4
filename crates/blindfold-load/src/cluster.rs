//! Load across a cluster: where each participant of a run sits among several forwarders,
//! and the endpoints, tracks, subscriptions and relay links that placement needs on each
//! forwarder, created through their real control APIs before the clock starts, and
//! removed after.
//!
//! Owns the run's layout only. The placement is the cluster's own (the Lua script in
//! Redis, with a per-forwarder budget) or a fixed layout for a figure that needs one
//! (every copy one hop away); the relays follow `blindfold_cluster::links`, exactly as
//! the signalling service builds them. Must not touch the forwarders' internals (HTTP and
//! UDP only) nor the engine's timing.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use blindfold_cluster::links::{self, Plan, Publication, TrackRef};
use blindfold_control::{SubscriptionJson, TrackJson};

use super::engine::Creds;
use super::setup::{self, Api, SetupError};
use super::topology::Topology;

/// How a run's participants are spread over the forwarders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// As the cluster places them: every participant through the placement script, with
    /// the given per-forwarder endpoint budget (calls spread only when they must).
    Placed {
        /// Most endpoints per forwarder before joiners go elsewhere (0: no limit).
        budget: u64,
    },
    /// Member `m` of every call on forwarder `m mod N`: every call spans all forwarders.
    Spread,
    /// Publishers on the first forwarder, everyone else on the others: every copy to a
    /// non-publisher crosses exactly one link (the one-hop latency figure).
    Split,
}

impl std::str::FromStr for Layout {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "spread" => Ok(Self::Spread),
            "split" => Ok(Self::Split),
            "placed" => Ok(Self::Placed { budget: 0 }),
            _ => s
                .strip_prefix("placed:")
                .and_then(|b| b.parse().ok())
                .map(|budget| Self::Placed { budget })
                .ok_or_else(|| format!("unknown layout {s:?}: placed[:BUDGET], spread or split")),
        }
    }
}

/// One forwarder of the cluster, as its registration gives it.
pub struct Node {
    /// Node id.
    pub id: String,
    /// Its media address (participants and other forwarders send there).
    pub media: SocketAddr,
    /// Its control API.
    pub api: Api,
}

/// The participants' placement and the calls' relay plans for one run.
pub struct ClusterCalls {
    /// The forwarders' ids, in the cluster target's order.
    pub ids: Vec<String>,
    /// Their media addresses.
    pub medias: Vec<SocketAddr>,
    /// The forwarder index of each participant.
    pub at: Vec<usize>,
    /// Each conference's relay plan.
    pub plans: Vec<Plan>,
}

/// The publications of conference `c` in `topo` (tracks `t{t}`, one SSRC each).
fn publications(topo: &Topology, c: usize) -> Vec<Publication> {
    let mut out = Vec::new();
    for m in 0..topo.publishers {
        let p = c * topo.size + m;
        for (t, prof) in topo.tracks.iter().enumerate() {
            out.push(Publication {
                track: TrackRef {
                    participant: format!("p{m}"),
                    track: format!("t{t}"),
                },
                kind: prof.kind(),
                ssrcs: vec![Topology::ssrc(p, t)],
            });
        }
    }
    out
}

/// What member `m` of any conference subscribes to.
fn wants(topo: &Topology, m: usize) -> Vec<TrackRef> {
    let mut out = Vec::new();
    topo.for_each_source(m, |src| {
        for t in 0..topo.track_count() {
            out.push(TrackRef {
                participant: format!("p{src}"),
                track: format!("t{t}"),
            });
        }
    });
    out
}

impl ClusterCalls {
    /// Lays out `topo` over `nodes` (at least one): `place(conference, member)` gives the
    /// node index of each participant.
    pub fn new(
        nodes: &[Node],
        topo: &Topology,
        mut place: impl FnMut(usize, usize) -> usize,
    ) -> Self {
        let mut at = Vec::with_capacity(topo.participants());
        let mut plans = Vec::with_capacity(topo.conferences);
        for c in 0..topo.conferences {
            let mut placement = BTreeMap::new();
            for m in 0..topo.size {
                let n = place(c, m).min(nodes.len() - 1);
                at.push(n);
                placement.insert(format!("p{m}"), nodes[n].id.clone());
            }
            let wants: BTreeMap<String, Vec<TrackRef>> = (0..topo.size)
                .map(|m| (format!("p{m}"), wants(topo, m)))
                .collect();
            plans.push(links::plan(&placement, &publications(topo, c), &wants));
        }
        Self {
            ids: nodes.iter().map(|n| n.id.clone()).collect(),
            medias: nodes.iter().map(|n| n.media).collect(),
            at,
            plans,
        }
    }

    /// A fixed layout's placement function over `n` nodes.
    pub fn fixed(layout: Layout, n: usize, topo: &Topology) -> impl FnMut(usize, usize) -> usize {
        let publishers = topo.publishers;
        move |_c, m| match layout {
            Layout::Spread => m % n,
            Layout::Split if n > 1 => {
                if m < publishers {
                    0
                } else {
                    1 + (m - publishers) % (n - 1)
                }
            }
            _ => 0,
        }
    }

    /// Where each participant sends.
    pub fn dests(&self) -> Vec<SocketAddr> {
        self.at.iter().map(|&n| self.medias[n]).collect()
    }

    fn index_of(&self, id: &str) -> Option<usize> {
        self.ids.iter().position(|n| n == id)
    }

    /// Links each packet of publisher participant `p` crosses (0 when every subscriber
    /// shares its forwarder): the relays subscribed to its tracks.
    pub fn link_copies(&self, topo: &Topology, p: usize) -> usize {
        let (c, m) = (p / topo.size, p % topo.size);
        let here = &self.ids[self.at[p]];
        self.plans[c].nodes.get(here).map_or(0, |np| {
            np.relays
                .values()
                .filter(|r| {
                    r.subscriptions
                        .iter()
                        .any(|s| s.endpoint == format!("p{m}"))
                })
                .count()
        })
    }

    /// Endpoints (participants and relays) each forwarder holds for the run.
    pub fn endpoints_per_node(&self) -> Vec<usize> {
        let mut out = vec![0; self.ids.len()];
        for plan in &self.plans {
            for (id, np) in &plan.nodes {
                if let Some(i) = self.index_of(id) {
                    out[i] += np.members.len() + np.relays.len();
                }
            }
        }
        out
    }

    /// Distinct forwarders each conference uses.
    pub fn span(&self) -> Vec<usize> {
        self.plans.iter().map(|p| p.nodes.len()).collect()
    }

    /// Creates every conference on every forwarder it uses (ids `{prefix}-{c}`): the
    /// members' endpoints and tracks, the relay endpoints with their static addresses and
    /// tracks, then every subscription. Returns the ICE credentials by participant.
    pub fn create(
        &self,
        nodes: &[Node],
        topo: &Topology,
        prefix: &str,
    ) -> Result<Vec<Creds>, SetupError> {
        let mut creds: Vec<Option<Creds>> = vec![None; topo.participants()];
        let subs = |list: &[links::Sub]| -> Vec<SubscriptionJson> {
            list.iter()
                .map(|s| SubscriptionJson::new(&s.endpoint, &s.track))
                .collect()
        };
        for (c, plan) in self.plans.iter().enumerate() {
            let conf = format!("{prefix}-{c}");
            for (node_id, np) in &plan.nodes {
                let api = &nodes[self.node(node_id)].api;
                api.create_conference(Some(&conf))?;
                for member in np.members.keys() {
                    let m: usize = member[1..].parse().expect("members are p{m}");
                    let p = c * topo.size + m;
                    let created = api.create_endpoint(&conf, Some(member))?;
                    creds[p] = Some(Creds {
                        ufrag: created.ice.ufrag,
                        pwd: created.ice.pwd,
                    });
                    if m < topo.publishers {
                        let tracks = topo
                            .tracks
                            .iter()
                            .enumerate()
                            .map(|(t, prof)| {
                                TrackJson::new(format!("t{t}"), prof.kind(), [Topology::ssrc(p, t)])
                            })
                            .collect();
                        api.set_tracks(&conf, member, tracks)?;
                    }
                }
                for relay in np.relays.values() {
                    let ep = &relay.endpoint;
                    api.create_endpoint(&conf, Some(ep))?;
                    api.set_address(&conf, ep, self.medias[self.node(&relay.remote)])?;
                    let tracks = relay
                        .tracks
                        .iter()
                        .map(|t| TrackJson::new(&t.id, t.kind, t.ssrcs.clone()))
                        .collect();
                    api.set_tracks(&conf, ep, tracks)?;
                }
            }
            for (node_id, np) in &plan.nodes {
                let api = &nodes[self.node(node_id)].api;
                for (member, list) in &np.members {
                    api.set_subscriptions(&conf, member, subs(list))?;
                }
                for relay in np.relays.values() {
                    api.set_subscriptions(&conf, &relay.endpoint, subs(&relay.subscriptions))?;
                }
            }
        }
        Ok(creds
            .into_iter()
            .map(|c| c.expect("every participant placed"))
            .collect())
    }

    fn node(&self, id: &str) -> usize {
        self.index_of(id).expect("plans name only the run's nodes")
    }

    /// Deletes every conference of the run on every forwarder; returns the first error
    /// after trying them all.
    pub fn delete(&self, nodes: &[Node], topo: &Topology, prefix: &str) -> Result<(), SetupError> {
        let mut first = None;
        for (c, plan) in self.plans.iter().enumerate().take(topo.conferences) {
            for node_id in plan.nodes.keys() {
                if let Err(e) = setup::delete_conference(
                    &nodes[self.node(node_id)].api,
                    &format!("{prefix}-{c}"),
                ) {
                    first.get_or_insert(e);
                }
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// The forwarders used by at least one conference.
    pub fn used_nodes(&self) -> BTreeSet<usize> {
        self.at.iter().copied().collect()
    }
}

/// A running cluster as a load target: the forwarders registered in its Redis, and the
/// cluster's placement for [`Layout::Placed`].
pub struct ClusterTarget {
    rt: tokio::runtime::Runtime,
    cluster: blindfold_cluster::Cluster,
    /// The live, non-draining forwarders, by id.
    pub nodes: Vec<Node>,
    /// How runs spread their participants.
    pub layout: Layout,
}

impl ClusterTarget {
    /// Reads the registry at `url`; every forwarder's control API takes `token`.
    pub fn open(url: &str, token: &str, layout: Layout) -> Result<Self, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let cluster = {
            let _g = rt.enter();
            blindfold_cluster::Cluster::connect(url).map_err(|e| e.to_string())?
        };
        let registered = rt
            .block_on(cluster.nodes())
            .map_err(|e| format!("reading the registry: {e}"))?;
        let mut nodes = Vec::new();
        for n in registered.into_iter().filter(|n| !n.draining) {
            let r = n.registration;
            let media = *r
                .media
                .first()
                .ok_or_else(|| format!("{} registered no media address", r.id))?;
            let api = Api::new(&r.control, Some(token)).map_err(|e| e.to_string())?;
            nodes.push(Node {
                id: r.id,
                media,
                api,
            });
        }
        if nodes.is_empty() {
            return Err("no live forwarder is registered".into());
        }
        Ok(Self {
            rt,
            cluster,
            nodes,
            layout,
        })
    }

    /// Places `topo`'s participants (calls `{prefix}-{c}`, members `p{m}`).
    pub fn lay_out(&self, topo: &Topology, prefix: &str) -> Result<ClusterCalls, String> {
        let calls = match self.layout {
            Layout::Placed { budget } => {
                let budget = blindfold_cluster::Budget {
                    endpoints: (budget > 0).then_some(budget),
                    copies_per_sec: None,
                };
                let mut err = None;
                let calls = ClusterCalls::new(&self.nodes, topo, |c, m| {
                    let placed = self.rt.block_on(self.cluster.place_participant(
                        &format!("{prefix}-{c}"),
                        &format!("p{m}"),
                        None,
                        budget,
                    ));
                    match placed {
                        Ok(p) => self.nodes.iter().position(|n| n.id == p.node).unwrap_or(0),
                        Err(e) => {
                            err.get_or_insert(e.to_string());
                            0
                        }
                    }
                });
                if let Some(e) = err {
                    return Err(format!("placement: {e}"));
                }
                calls
            }
            fixed => ClusterCalls::new(
                &self.nodes,
                topo,
                ClusterCalls::fixed(fixed, self.nodes.len(), topo),
            ),
        };
        Ok(calls)
    }

    /// Forgets the run's placement in Redis (its calls end with the run).
    pub fn forget(&self, topo: &Topology, prefix: &str) {
        if matches!(self.layout, Layout::Placed { .. }) {
            for c in 0..topo.conferences {
                let _ = self
                    .rt
                    .block_on(self.cluster.forget_call(&format!("{prefix}-{c}")));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::profile::TrackProfile;
    use super::super::topology::Subscribe;
    use super::*;

    fn nodes(n: usize) -> Vec<Node> {
        (0..n)
            .map(|i| Node {
                id: format!("n{i}"),
                media: SocketAddr::from(([127, 0, 0, 1], 10_000 + i as u16)),
                api: Api::new("http://127.0.0.1:1", Some("t")).unwrap(),
            })
            .collect()
    }

    fn topo(c: usize, p: usize, k: Option<usize>) -> Topology {
        Topology::new(c, p, k, vec![TrackProfile::Audio], Subscribe::All).unwrap()
    }

    #[test]
    fn spread_links_every_pair_and_counts_link_copies() {
        let t = topo(2, 6, None);
        let place = ClusterCalls::fixed(Layout::Spread, 3, &t);
        let cc = ClusterCalls::new(&nodes(3), &t, place);
        assert_eq!(cc.span(), vec![3, 3]);
        for plan in &cc.plans {
            assert_eq!(plan.links().len(), 3);
        }
        // Each publisher's packets go to both other forwarders: two link copies.
        assert!((0..t.participants()).all(|p| cc.link_copies(&t, p) == 2));
        // Per forwarder per call: 2 members and 2 relays.
        assert_eq!(cc.endpoints_per_node(), vec![8, 8, 8]);
    }

    #[test]
    fn split_puts_publishers_apart_from_everyone_else() {
        let t = topo(1, 5, Some(2));
        let place = ClusterCalls::fixed(Layout::Split, 3, &t);
        let cc = ClusterCalls::new(&nodes(3), &t, place);
        assert_eq!(cc.at, vec![0, 0, 1, 2, 1]);
        // Publisher p0's subscribers: p1 (same node) and p2..p4 on two other nodes.
        assert_eq!(cc.link_copies(&t, 0), 2);
        assert_eq!(cc.link_copies(&t, 3), 0, "non-publishers send nothing");
        let one = ClusterCalls::new(&nodes(1), &t, ClusterCalls::fixed(Layout::Split, 1, &t));
        assert!(one.plans[0].links().is_empty());
    }

    #[test]
    fn layouts_parse() {
        assert_eq!("spread".parse::<Layout>(), Ok(Layout::Spread));
        assert_eq!(
            "placed:40".parse::<Layout>(),
            Ok(Layout::Placed { budget: 40 })
        );
        assert!("round".parse::<Layout>().is_err());
    }
}
