//! Admission limits of the signalling service: how many connections it takes (in total and
//! from one source address), and what one source may hold at once (conferences it
//! created; every join must prove the call secret, see [`crate::service`]). Each admission is an RAII guard
//! that gives its unit back when dropped, so a count can never leak on an error path.
//!
//! Owns the counters only; must not decide anything about membership, and must not log
//! a source address above debug level (and then only redacted).
//!
//! Every test runs from 127.0.0.1, as does every participant behind one NAT: the
//! per-source limits are configuration (`--max-*-per-source`), and generous by default.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// The limits, from the command line (see [`crate::SignalArgs`]).
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Most WebSocket/HTTP connections served at once; more are answered 503 and closed.
    #[arg(long, default_value_t = 4096, env = "BLINDFOLD_SIGNAL_MAX_CONNECTIONS")]
    pub max_connections: usize,

    /// Most connections from one source address.
    #[arg(
        long,
        default_value_t = 256,
        env = "BLINDFOLD_SIGNAL_MAX_CONNECTIONS_PER_SOURCE"
    )]
    pub max_connections_per_source: usize,

    /// Most live conferences one source address may have created.
    #[arg(
        long,
        default_value_t = 64,
        env = "BLINDFOLD_SIGNAL_MAX_CONFERENCES_PER_SOURCE"
    )]
    pub max_conferences_per_source: usize,

    /// Bytes the service queues for one connection before it closes it as a slow
    /// consumer.
    #[arg(long, default_value_t = 512 * 1024, env = "BLINDFOLD_SIGNAL_MAX_QUEUED_BYTES")]
    pub max_queued_bytes: usize,

    /// Seconds a new connection has to send its `join`.
    #[arg(long, default_value_t = 10, env = "BLINDFOLD_SIGNAL_JOIN_TIMEOUT_SECS")]
    pub join_timeout_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            max_connections_per_source: 256,
            max_conferences_per_source: 64,
            max_queued_bytes: 512 * 1024,
            join_timeout_secs: 10,
        }
    }
}

impl Limits {
    /// How long a connection may stay without joining.
    pub fn join_timeout(&self) -> Duration {
        Duration::from_secs(self.join_timeout_secs)
    }
}

/// What one source may hold a bounded number of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quota {
    /// Open connections.
    Connections,
    /// Live conferences it created.
    Conferences,
}

/// Why an admission was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The service's total is reached.
    #[error("the service is at its connection limit")]
    Full,
    /// This source's share of `Quota` is used up.
    #[error("this address holds too many {0:?}")]
    Source(Quota),
}

#[derive(Debug, Default)]
struct Counts {
    connections: usize,
    conferences: usize,
}

impl Counts {
    fn get(&mut self, q: Quota) -> &mut usize {
        match q {
            Quota::Connections => &mut self.connections,
            Quota::Conferences => &mut self.conferences,
        }
    }

    fn is_empty(&self) -> bool {
        self.connections == 0 && self.conferences == 0
    }
}

#[derive(Debug, Default)]
struct Inner {
    connections: usize,
    by_source: HashMap<IpAddr, Counts>,
}

/// The live counts, shared by the accept loop and the service.
#[derive(Debug)]
pub struct Admission {
    limits: Limits,
    inner: Mutex<Inner>,
}

/// One admitted unit of a quota; given back on drop.
#[derive(Debug)]
pub struct Guard {
    admission: Arc<Admission>,
    source: IpAddr,
    quota: Quota,
}

impl Guard {
    /// The source address it was admitted for.
    pub fn source(&self) -> IpAddr {
        self.source
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let mut inner = self.admission.lock();
        if self.quota == Quota::Connections {
            inner.connections = inner.connections.saturating_sub(1);
        }
        if let Some(c) = inner.by_source.get_mut(&self.source) {
            let n = c.get(self.quota);
            *n = n.saturating_sub(1);
            if c.is_empty() {
                inner.by_source.remove(&self.source);
            }
        }
    }
}

impl Admission {
    /// Counters under `limits`.
    pub fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            inner: Mutex::new(Inner::default()),
        })
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Counters stay consistent under a panic elsewhere (each change is one statement).
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits one unit of `quota` for `source`, or says which limit refuses it.
    pub fn admit(self: &Arc<Self>, source: IpAddr, quota: Quota) -> Result<Guard, Refused> {
        let max = match quota {
            Quota::Connections => self.limits.max_connections_per_source,
            Quota::Conferences => self.limits.max_conferences_per_source,
        };
        let mut inner = self.lock();
        if quota == Quota::Connections && inner.connections >= self.limits.max_connections {
            return Err(Refused::Full);
        }
        let counts = inner.by_source.entry(source).or_default();
        let n = counts.get(quota);
        if *n >= max {
            if counts.is_empty() {
                inner.by_source.remove(&source);
            }
            return Err(Refused::Source(quota));
        }
        *n += 1;
        if quota == Quota::Connections {
            inner.connections += 1;
        }
        Ok(Guard {
            admission: self.clone(),
            source,
            quota,
        })
    }

    /// Open connections (for tests and the debug view).
    pub fn connections(&self) -> usize {
        self.lock().connections
    }

    /// Sources with anything admitted (their table is bounded by the connection limit).
    pub fn sources(&self) -> usize {
        self.lock().by_source.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, n])
    }

    #[test]
    fn per_source_and_total_limits_hold_and_guards_give_back() {
        let a = Admission::new(Limits {
            max_connections: 3,
            max_connections_per_source: 2,
            max_conferences_per_source: 1,
            ..Limits::default()
        });
        let c1 = a.admit(ip(1), Quota::Connections).unwrap();
        let _c2 = a.admit(ip(1), Quota::Connections).unwrap();
        assert_eq!(
            a.admit(ip(1), Quota::Connections).unwrap_err(),
            Refused::Source(Quota::Connections)
        );
        let _c3 = a.admit(ip(2), Quota::Connections).unwrap();
        assert_eq!(
            a.admit(ip(3), Quota::Connections).unwrap_err(),
            Refused::Full
        );
        assert_eq!(a.sources(), 2, "a refused source leaves no entry");
        drop(c1);
        let _c4 = a.admit(ip(3), Quota::Connections).unwrap();
        let conf = a.admit(ip(1), Quota::Conferences).unwrap();
        assert!(a.admit(ip(1), Quota::Conferences).is_err());
        drop(conf);
        assert!(a.admit(ip(1), Quota::Conferences).is_ok());
    }

    #[test]
    fn the_source_table_empties_when_everything_is_given_back() {
        let a = Admission::new(Limits::default());
        let guards: Vec<Guard> = (0..50)
            .map(|n| a.admit(ip(n), Quota::Conferences).unwrap())
            .collect();
        assert_eq!(a.sources(), 50);
        drop(guards);
        assert_eq!(a.sources(), 0);
        assert_eq!(a.connections(), 0);
    }
}
