//! Getting a run ready and cleaning up after it: the participants' UDP sockets, the
//! conferences, endpoints, tracks and subscriptions created through the forwarder's real
//! control API (issue 2's paths), latching by STUN (or joining the ceiling), and the
//! forwarder's Prometheus counters. Runs before and after the clock, never in a hot loop.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use blindfold_control::blocking;
use blindfold_control::client::ControlError;
use blindfold_control::{SubscriptionJson, TrackJson};
use socket2::{Domain, Protocol, Socket, Type};

use super::ceiling;
use super::engine::Creds;
use super::topology::Topology;
use blindfold_proto::route::STUN_PER_IP;
use blindfold_proto::stun as ice;

/// The typed control-API client the load tool drives a forwarder with.
pub type Api = blocking::Client;

/// Setting up or tearing down a run failed.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The control API could not be reached or refused a request.
    #[error("control API: {0}")]
    Control(#[from] ControlError),
    /// A socket could not be created.
    #[error("participant socket: {0}")]
    Socket(#[from] std::io::Error),
    /// Some participants never latched.
    #[error("{missing} of {total} participants not latched after {secs} s")]
    Latch {
        /// How many did not.
        missing: usize,
        /// Out of.
        total: usize,
        /// Waited.
        secs: u64,
    },
}

/// Deletes a conference, ignoring one that is already gone.
pub fn delete_conference(api: &Api, id: &str) -> Result<(), SetupError> {
    match api.delete_conference(id) {
        Ok(()) | Err(ControlError::NotFound(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Forwarder counters summed over shards, from the Prometheus text.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct FwdCounters {
    /// Datagrams received.
    pub rx: f64,
    /// Datagrams sent.
    pub tx: f64,
    /// Copies the kernel refused (`send_failed`).
    pub send_failed: f64,
    /// Datagrams dropped for a routing reason (unknown source, rate limit, ...).
    pub other_drops: f64,
}

impl FwdCounters {
    /// Parses the sums out of `/metrics`.
    pub fn parse(text: &str) -> Self {
        let mut c = Self::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some(v) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
                continue;
            };
            if line.starts_with("blindfold_rx_packets_total") {
                c.rx += v;
            } else if line.starts_with("blindfold_tx_packets_total") {
                c.tx += v;
            } else if line.starts_with("blindfold_dropped_packets_total") {
                if line.contains("reason=\"send_failed\"") {
                    c.send_failed += v;
                } else {
                    c.other_drops += v;
                }
            }
        }
        c
    }

    /// `self + other`, field by field (a cluster's forwarders summed).
    pub fn plus(&self, o: &Self) -> Self {
        Self {
            rx: self.rx + o.rx,
            tx: self.tx + o.tx,
            send_failed: self.send_failed + o.send_failed,
            other_drops: self.other_drops + o.other_drops,
        }
    }

    /// `self - earlier`.
    pub fn since(&self, e: &Self) -> Self {
        Self {
            rx: self.rx - e.rx,
            tx: self.tx - e.tx,
            send_failed: self.send_failed - e.send_failed,
            other_drops: self.other_drops - e.other_drops,
        }
    }
}

/// One UDP socket per participant, non-blocking, on the local side of `media`.
pub fn participant_sockets(
    n: usize,
    media: SocketAddr,
    buf: usize,
) -> Result<Vec<UdpSocket>, SetupError> {
    let ip: IpAddr = match media.ip() {
        IpAddr::V4(a) if a.is_loopback() => Ipv4Addr::LOCALHOST.into(),
        IpAddr::V6(a) if a.is_loopback() => Ipv6Addr::LOCALHOST.into(),
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    (0..n)
        .map(|_| {
            let s = Socket::new(Domain::for_address(media), Type::DGRAM, Some(Protocol::UDP))?;
            s.set_nonblocking(true)?;
            // Capped by net.core.rmem_max/wmem_max; a smaller buffer only shows as
            // generator-side drops, which the report attributes.
            let _ = s.set_recv_buffer_size(buf);
            let _ = s.set_send_buffer_size(buf);
            s.bind(&SocketAddr::new(ip, 0).into())?;
            Ok(s.into())
        })
        .collect()
}

/// Creates the conferences of `topo` (ids `{prefix}-{c}`), their endpoints (`p{m}`),
/// tracks (`t{t}`, one SSRC each) and subscriptions. Returns the ICE credentials by
/// participant number.
pub fn create_calls(api: &Api, topo: &Topology, prefix: &str) -> Result<Vec<Creds>, SetupError> {
    let mut creds = Vec::with_capacity(topo.participants());
    for c in 0..topo.conferences {
        let conf = format!("{prefix}-{c}");
        api.create_conference(Some(&conf))?;
        for m in 0..topo.size {
            let ep = format!("p{m}");
            let created = api.create_endpoint(&conf, Some(&ep))?;
            creds.push(Creds {
                ufrag: created.ice.ufrag,
                pwd: created.ice.pwd,
            });
            if m < topo.publishers {
                let p = c * topo.size + m;
                let tracks = topo
                    .tracks
                    .iter()
                    .enumerate()
                    .map(|(t, prof)| {
                        TrackJson::new(format!("t{t}"), prof.kind(), [Topology::ssrc(p, t)])
                    })
                    .collect();
                api.set_tracks(&conf, &ep, tracks)?;
            }
        }
        for m in 0..topo.size {
            resubscribe(api, topo, prefix, c * topo.size + m)?;
        }
    }
    Ok(creds)
}

/// Sends participant `p`'s subscription set again (`PUT .../subscriptions`). The set is
/// the one [`create_calls`] gave it, so the forwarder rebuilds the conference's routes
/// without changing who receives what: churn that loss accounting can still check.
pub fn resubscribe(api: &Api, topo: &Topology, prefix: &str, p: usize) -> Result<(), SetupError> {
    let (c, m) = (p / topo.size, p % topo.size);
    let mut subs = Vec::new();
    topo.for_each_source(m, |src| {
        for t in 0..topo.track_count() {
            subs.push(SubscriptionJson::new(format!("p{src}"), format!("t{t}")));
        }
    });
    api.set_subscriptions(&format!("{prefix}-{c}"), &format!("p{m}"), subs)?;
    Ok(())
}

/// Deletes the conferences [`create_calls`] made; returns the first error, after trying
/// them all.
pub fn delete_calls(api: &Api, topo: &Topology, prefix: &str) -> Result<(), SetupError> {
    let mut first = None;
    for c in 0..topo.conferences {
        if let Err(e) = delete_conference(api, &format!("{prefix}-{c}")) {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

/// What a participant sends back for a datagram the forwarder sent it, if anything.
type Reply<'a> = dyn Fn(usize, &[u8]) -> Option<Vec<u8>> + 'a;

/// Sends a request from each socket, paced at `per_sec`, and retries the unanswered every
/// 300 ms until each is answered (`answered` says whether a datagram is the answer for
/// participant `p`) or `wait` passes. A datagram for which `reply` returns something
/// (the forwarder's return-path check) is answered with it.
fn handshake(
    sockets: &[UdpSocket],
    dest: &dyn Fn(usize) -> SocketAddr,
    wait: Duration,
    per_sec: usize,
    request: &dyn Fn(usize, u32) -> Vec<u8>,
    answered: &dyn Fn(usize, u32, &[u8]) -> bool,
    reply: &Reply<'_>,
) -> Result<(), SetupError> {
    let deadline = Instant::now() + wait;
    let mut pending: Vec<usize> = (0..sockets.len()).collect();
    let mut attempt = 0u32;
    let mut buf = [0u8; 2048];
    while !pending.is_empty() {
        if Instant::now() >= deadline {
            return Err(SetupError::Latch {
                missing: pending.len(),
                total: sockets.len(),
                secs: wait.as_secs(),
            });
        }
        attempt += 1;
        for chunk in pending.chunks(per_sec.max(1) / 10 + 1) {
            for &p in chunk {
                let _ = sockets[p].send_to(&request(p, attempt), dest(p));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let until = Instant::now() + Duration::from_millis(300);
        let mut done: HashSet<usize> = HashSet::new();
        while Instant::now() < until && done.len() < pending.len() {
            for &p in &pending {
                let media = dest(p);
                while let Ok((n, from)) = sockets[p].recv_from(&mut buf) {
                    if from != media {
                        continue;
                    }
                    if let Some(r) = reply(p, &buf[..n]) {
                        let _ = sockets[p].send_to(&r, media);
                    } else if answered(p, attempt, &buf[..n]) {
                        done.insert(p);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        pending.retain(|p| !done.contains(p));
    }
    Ok(())
}

fn txid(p: usize, attempt: u32) -> [u8; 12] {
    let mut t = [0u8; 12];
    t[..8].copy_from_slice(&(p as u64).to_be_bytes());
    t[8..].copy_from_slice(&attempt.to_be_bytes());
    t
}

/// Latches every participant `p` at `dests[p]` by STUN (verified success response),
/// answering the forwarder's return-path check (it comes just before the success
/// response, so an answered participant has answered it). All participants share one
/// source IP, so the pace stays under the forwarder's per-IP budget for checks from new
/// addresses (`blindfold_proto::route::STUN_PER_IP`, per shard).
pub fn latch_all(
    sockets: &[UdpSocket],
    dests: &[SocketAddr],
    creds: &[Creds],
    wait: Duration,
) -> Result<(), SetupError> {
    handshake(
        sockets,
        &|p| dests[p],
        wait,
        STUN_PER_IP.packets_per_sec as usize * 9 / 10,
        &|p, a| ice::binding_request(txid(p, a), &creds[p].ufrag, "load", creds[p].pwd.as_bytes()),
        &|p, a, pkt| ice::parse_binding_success(pkt, &txid(p, a), creds[p].pwd.as_bytes()).is_ok(),
        &|p, pkt| {
            ice::answer_check(
                pkt,
                dests[p],
                &creds[p].ufrag,
                "load",
                creds[p].pwd.as_bytes(),
            )
        },
    )
}

/// Waits until the control API reports every endpoint of every conference latched (so
/// every shard has learnt every address).
pub fn wait_latched(
    api: &Api,
    topo: &Topology,
    prefix: &str,
    wait: Duration,
) -> Result<(), SetupError> {
    let deadline = Instant::now() + wait;
    for c in 0..topo.conferences {
        loop {
            if api
                .conference(&format!("{prefix}-{c}"))?
                .all_latched(topo.size)
            {
                break;
            }
            if Instant::now() >= deadline {
                return Err(SetupError::Latch {
                    missing: 1,
                    total: topo.participants(),
                    secs: wait.as_secs(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

/// Joins every participant to the ceiling (echoed join datagram).
pub fn join_ceiling(
    sockets: &[UdpSocket],
    media: SocketAddr,
    group: usize,
    wait: Duration,
) -> Result<(), SetupError> {
    handshake(
        sockets,
        &|_| media,
        wait,
        50_000,
        &|p, _| ceiling::join_datagram(p as u32, group as u32).to_vec(),
        &|p, _, pkt| pkt == ceiling::join_datagram(p as u32, group as u32),
        &|_, _| None,
    )
}
