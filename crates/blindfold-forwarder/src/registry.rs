//! The forwarder's side of the cluster registry (`serve --redis`): what it registers
//! about itself and the load it reports, sampled from the shards' published metrics.
//!
//! Owns the load sampler and the start of the registration task on the control thread's
//! runtime. Must not touch the shards (it only reads their published counters) nor
//! anything of a call: the record holds the forwarder's own addresses and counts only.
//! The Redis schema and the refresh loop are `blindfold_cluster::registry`'s.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use blindfold_cluster::registry::{self, Load, Registration, RegistrationHandle};

use crate::config::ServeArgs;
use crate::metrics::AllShards;

/// Turns the shards' cumulative counters into the per-second load the registry reports.
pub struct Sampler {
    metrics: Arc<AllShards>,
    last: Option<(Instant, u64, Option<f64>)>,
}

impl Sampler {
    /// A sampler over `metrics`.
    pub fn new(metrics: Arc<AllShards>) -> Self {
        Self {
            metrics,
            last: None,
        }
    }

    /// The load since the previous sample (the first sample reports rates of 0).
    pub fn sample(&mut self) -> Load {
        let now = Instant::now();
        let mut copies = 0u64;
        let mut endpoints = 0u64;
        for m in self.metrics.iter() {
            let s = m.snapshot();
            // Every datagram sent is a copy of a forwarded packet or a STUN answer.
            copies += s
                .counters
                .tx_packets
                .saturating_sub(s.counters.stun_answered);
            // Each shard holds the whole table: the largest count is the forwarder's.
            endpoints = endpoints.max(s.endpoints);
        }
        let cpu = process_cpu_seconds();
        let mut load = Load {
            endpoints,
            ..Load::default()
        };
        if let Some((then, prev_copies, prev_cpu)) = self.last {
            let dt = now.duration_since(then).as_secs_f64();
            if dt > 0.0 {
                load.copies_per_sec = (copies.saturating_sub(prev_copies) as f64 / dt) as u64;
                if let (Some(c), Some(p)) = (cpu, prev_cpu) {
                    load.cpu = ((c - p) / dt).max(0.0);
                }
            }
        }
        self.last = Some((now, copies, cpu));
        load
    }
}

/// CPU time (user + system) of the whole process so far, in seconds, from
/// `/proc/self/stat`; `None` where it cannot be read.
fn process_cpu_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    // comm is in parentheses and may hold spaces: the fields after the last ')' start
    // at field 3 (state); utime and stime are fields 14 and 15.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 wherever /proc reports ticks to userspace; reading sysconf would
    // need `unsafe`, which only blindfold-udp may hold.
    Some((utime + stime) as f64 / 100.0)
}

/// What this forwarder registers, from its configuration and bound addresses.
pub fn registration(cfg: &ServeArgs, media: SocketAddr, control: SocketAddr) -> Registration {
    Registration {
        id: cfg
            .node_id
            .clone()
            .unwrap_or_else(blindfold_cluster::schema::random_node_id),
        control: cfg.registered_control_url(control),
        media: vec![cfg.advertised(media)],
        region: cfg.region.clone(),
        shards: cfg.shard_count() as u32,
    }
}

/// Starts registering at `url` on `runtime` (the control thread's).
pub fn start(
    runtime: &tokio::runtime::Handle,
    url: &str,
    reg: Registration,
    metrics: Arc<AllShards>,
) -> Result<RegistrationHandle, blindfold_cluster::Error> {
    tracing::info!(node = %reg.id, "registry: registering this forwarder");
    let mut sampler = Sampler::new(metrics);
    registry::spawn(runtime, url, reg, move || sampler.sample())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{LocalCounters, new_shards};

    #[test]
    fn samples_copies_per_second_and_endpoints_from_the_shards() {
        let metrics = Arc::new(new_shards(2));
        let mut s = Sampler::new(metrics.clone());
        let first = s.sample();
        assert_eq!(first.copies_per_sec, 0);
        metrics[0].set_table_counts(7, 3);
        metrics[1].set_table_counts(7, 3);
        let c = LocalCounters {
            tx_packets: 10_000,
            stun_answered: 100,
            ..Default::default()
        };
        metrics[1].publish(&c);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let l = s.sample();
        assert_eq!(l.endpoints, 7);
        // 9,900 copies over at least 20 ms: at most 495,000/s, and far above zero.
        assert!(
            l.copies_per_sec > 1000 && l.copies_per_sec <= 495_000,
            "{l:?}"
        );
        // Burn a few ticks of CPU (10 ms each), then the reading must show them.
        let start = Instant::now();
        let mut x = 0u64;
        while process_cpu_seconds() == Some(0.0)
            && start.elapsed() < std::time::Duration::from_secs(5)
        {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(1));
        }
        assert!(process_cpu_seconds().is_some_and(|c| c > 0.0));
    }

    #[test]
    fn registration_uses_the_advertised_addresses() {
        let cfg = ServeArgs {
            advertise: Some("203.0.113.7".parse().unwrap()),
            node_id: Some("fwd-a".into()),
            region: Some("eu-west".into()),
            shards: Some(3),
            ..Default::default()
        };
        let r = registration(
            &cfg,
            "0.0.0.0:10000".parse().unwrap(),
            "0.0.0.0:8480".parse().unwrap(),
        );
        assert_eq!(r.id, "fwd-a");
        assert_eq!(r.media, vec!["203.0.113.7:10000".parse().unwrap()]);
        assert_eq!(r.control, "http://203.0.113.7:8480");
        assert_eq!(r.shards, 3);
        assert!(r.validate().is_ok());
        let random = registration(
            &ServeArgs::default(),
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        );
        assert!(random.validate().is_ok(), "{random:?}");
        assert_eq!(random.control, "http://127.0.0.1:2");
    }
}
