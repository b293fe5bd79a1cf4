//! The forwarder's one configuration struct: command-line flags, environment variables
//! and an optional TOML file (`--config`), with documented defaults.
//!
//! Owns parsing and defaults only; it starts nothing. Precedence: a flag or environment
//! variable given explicitly beats the file, which beats the built-in default.

use blindfold_proto::table::IngressLimits;
use clap::{ArgMatches, Args, parser::ValueSource};
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// Configuration of `blindfold serve`. Every flag can also be set in the TOML file given
/// with `--config` (same names, with underscores).
#[derive(Args, Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeArgs {
    /// TOML file with any of these settings; flags and env vars given explicitly win.
    #[arg(long, env = "BLINDFOLD_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// UDP address for all media (STUN, SRTP, SRTCP), shared by every shard.
    #[arg(long, default_value = "0.0.0.0:10000", env = "BLINDFOLD_MEDIA")]
    pub media: SocketAddr,

    /// IP put in the candidates handed to clients, when it differs from the bound one
    /// (1:1 NAT). Default: the media IP, or 127.0.0.1 when bound to the wildcard.
    #[arg(long, env = "BLINDFOLD_ADVERTISE")]
    pub advertise: Option<IpAddr>,

    /// Number of shards (threads, each with its own SO_REUSEPORT socket). Default: cores.
    #[arg(long, env = "BLINDFOLD_SHARDS")]
    pub shards: Option<usize>,

    /// Datagrams per recvmmsg call.
    #[arg(long, default_value_t = 32, env = "BLINDFOLD_BATCH")]
    pub batch: usize,

    /// Pin shard threads to cores (one per core, round robin).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, env = "BLINDFOLD_PIN")]
    pub pin: bool,

    /// Send a burst of equal-size packets to each subscriber as one segmented send
    /// (UDP GSO) when the kernel has it; false: one datagram per sendmmsg entry.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, env = "BLINDFOLD_GSO")]
    pub gso: bool,

    /// Let the kernel coalesce received bursts (UDP GRO) when it has it; each datagram
    /// of a coalesced buffer is still checked on its own.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, env = "BLINDFOLD_GRO")]
    pub gro: bool,

    /// SO_RCVBUF / SO_SNDBUF asked for each media socket, in bytes.
    #[arg(long, default_value_t = 8 << 20, env = "BLINDFOLD_SOCKET_BUFFER")]
    pub socket_buffer: usize,

    /// HTTP control API address (keep it private: it is the signalling service's).
    #[arg(long, default_value = "127.0.0.1:8480", env = "BLINDFOLD_CONTROL")]
    pub control: SocketAddr,

    /// Bearer token required on every control request but /healthz.
    #[arg(long, env = "BLINDFOLD_CONTROL_TOKEN", hide_env_values = true)]
    pub control_token: Option<String>,

    /// Seconds without a valid STUN check after which a latched endpoint stops
    /// receiving (RFC 7675 consent freshness).
    #[arg(long, default_value_t = 30, env = "BLINDFOLD_CONSENT_TIMEOUT")]
    pub consent_timeout: u64,

    /// Most conferences at once.
    #[arg(long, default_value_t = 10_000)]
    pub max_conferences: usize,

    /// Most endpoints in one conference.
    #[arg(long, default_value_t = 256)]
    pub max_endpoints_per_conference: usize,

    /// Most tracks one endpoint may publish.
    #[arg(long, default_value_t = 16)]
    pub max_tracks_per_endpoint: usize,

    /// Most SSRCs in one track (simulcast layers, RTX).
    #[arg(long, default_value_t = 8)]
    pub max_ssrcs_per_track: usize,

    /// Most subscriptions one endpoint may hold.
    #[arg(long, default_value_t = 512)]
    pub max_subscriptions_per_endpoint: usize,

    /// Per-endpoint ingress limit, packets per second (0: off).
    #[arg(long, default_value_t = 3_000)]
    pub ingress_pps: u32,

    /// Per-endpoint ingress limit, bytes per second (0: off).
    #[arg(long, default_value_t = 3_000_000)]
    pub ingress_bps: u32,

    /// Burst allowed above the ingress limits, in milliseconds of the sustained rate.
    #[arg(long, default_value_t = 500)]
    pub ingress_burst_ms: u32,

    /// On SIGTERM, how long existing calls may go on before the process exits.
    #[arg(long, default_value_t = 30)]
    pub drain_timeout: u64,

    /// Redis URL of the cluster (`redis://host:6379`, `redis+unix:///path`): register
    /// this forwarder there so signalling instances can place calls on it. Without it the
    /// forwarder runs alone, exactly as before.
    #[arg(long, env = "BLINDFOLD_REDIS_URL", hide_env_values = true)]
    pub redis: Option<String>,

    /// Node id in the cluster registry (1-32 of `[A-Za-z0-9_-]`). Default: random at
    /// each start.
    #[arg(long, env = "BLINDFOLD_NODE_ID")]
    pub node_id: Option<String>,

    /// Region label placement prefers for joiners of the same region (`[a-z0-9-]`).
    #[arg(long, env = "BLINDFOLD_REGION")]
    pub region: Option<String>,

    /// Control API URL registered for the signalling service. Default:
    /// `http://<control address>`, with a wildcard IP replaced by the advertised one.
    #[arg(long, env = "BLINDFOLD_CONTROL_URL")]
    pub control_url: Option<String>,
}

impl Default for ServeArgs {
    fn default() -> Self {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrap {
            #[command(flatten)]
            args: ServeArgs,
        }
        // Defaults live once, in the clap attributes above.
        Wrap::parse_from(["serve"]).args
    }
}

/// A configuration file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this struct.
    #[error("parsing {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: Box<toml::de::Error>,
    },
    /// A value is out of range.
    #[error("invalid setting: {0}")]
    Invalid(String),
}

impl ServeArgs {
    /// The control model's limits in this configuration.
    pub fn limits(&self) -> blindfold_proto::model::Limits {
        blindfold_proto::model::Limits {
            conferences: self.max_conferences,
            endpoints_per_conference: self.max_endpoints_per_conference,
            tracks_per_endpoint: self.max_tracks_per_endpoint,
            ssrcs_per_track: self.max_ssrcs_per_track,
            subscriptions_per_endpoint: self.max_subscriptions_per_endpoint,
        }
    }

    /// The per-endpoint ingress limits in this configuration.
    pub fn ingress_limits(&self) -> IngressLimits {
        IngressLimits {
            packets_per_sec: self.ingress_pps,
            bytes_per_sec: self.ingress_bps,
            burst_ms: self.ingress_burst_ms,
        }
    }

    /// Applies the `--config` file under the explicitly given flags: for every field the
    /// user did not set on the command line or in the environment, the file's value wins
    /// over the default.
    pub fn merge_file(self, matches: Option<&ArgMatches>) -> Result<Self, ConfigError> {
        let Some(path) = self.config.clone() else {
            return self.validated();
        };
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let mut file: ServeArgs = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.clone(),
            source: Box::new(source),
        })?;
        file.config = Some(path);
        let explicit = |id: &str| {
            matches.is_some_and(|m| {
                matches!(
                    m.value_source(id),
                    Some(ValueSource::CommandLine | ValueSource::EnvVariable)
                )
            })
        };
        macro_rules! take {
            ($($f:ident),*) => { $( if explicit(stringify!($f)) { file.$f = self.$f.clone(); } )* };
        }
        take!(
            media,
            advertise,
            shards,
            batch,
            pin,
            gso,
            gro,
            socket_buffer,
            control,
            control_token,
            consent_timeout,
            max_conferences,
            max_endpoints_per_conference,
            max_tracks_per_endpoint,
            max_ssrcs_per_track,
            max_subscriptions_per_endpoint,
            ingress_pps,
            ingress_bps,
            ingress_burst_ms,
            drain_timeout,
            redis,
            node_id,
            region,
            control_url
        );
        file.validated()
    }

    /// Checks the settings that no value of the others can make sensible.
    pub fn validated(self) -> Result<Self, ConfigError> {
        if self.batch == 0 || self.batch > 1024 {
            return Err(ConfigError::Invalid("batch must be 1..=1024".into()));
        }
        if self.shards == Some(0) {
            return Err(ConfigError::Invalid("shards must be at least 1".into()));
        }
        // A datagram larger than a receive buffer is dropped as oversize anyway, so the
        // bucket must hold one of that size, no more.
        self.ingress_limits()
            .check(blindfold_udp::MAX_DATAGRAM)
            .map_err(|e| {
                ConfigError::Invalid(format!(
                    "{e} (--ingress-pps {}, --ingress-bps {}, --ingress-burst-ms {})",
                    self.ingress_pps, self.ingress_bps, self.ingress_burst_ms
                ))
            })?;
        if self
            .node_id
            .as_deref()
            .is_some_and(|id| !blindfold_cluster::schema::valid_node_id(id))
        {
            return Err(ConfigError::Invalid(
                "node-id must be 1-32 characters of [A-Za-z0-9_-]".into(),
            ));
        }
        if self
            .region
            .as_deref()
            .is_some_and(|r| !blindfold_cluster::schema::valid_region(r))
        {
            return Err(ConfigError::Invalid(
                "region must be 1-32 characters of [a-z0-9-]".into(),
            ));
        }
        Ok(self)
    }

    /// The number of shards to run.
    pub fn shard_count(&self) -> usize {
        self.shards.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
    }

    /// The control URL to register for a bound control address.
    pub fn registered_control_url(&self, bound: SocketAddr) -> String {
        if let Some(url) = &self.control_url {
            return url.clone();
        }
        let ip = if bound.ip().is_unspecified() {
            self.advertised(bound).ip()
        } else {
            bound.ip()
        };
        format!("http://{}", SocketAddr::new(ip, bound.port()))
    }

    /// The address advertised in candidates for a bound media address.
    pub fn advertised(&self, bound: SocketAddr) -> SocketAddr {
        let ip = self.advertise.unwrap_or_else(|| {
            if bound.ip().is_unspecified() {
                IpAddr::from([127, 0, 0, 1])
            } else {
                bound.ip()
            }
        });
        SocketAddr::new(ip, bound.port())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches, Parser};

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        args: ServeArgs,
    }

    #[test]
    fn defaults_are_sane() {
        let a = ServeArgs::default();
        assert_eq!(a.media, "0.0.0.0:10000".parse().unwrap());
        assert_eq!(a.control, "127.0.0.1:8480".parse().unwrap());
        assert_eq!(a.batch, 32);
        assert_eq!(a.consent_timeout, 30);
        assert_eq!(a.advertised(a.media), "127.0.0.1:10000".parse().unwrap());
    }

    #[test]
    fn ingress_limits_that_hold_less_than_one_packet_are_refused() {
        let with = |pps, bps, burst_ms| ServeArgs {
            ingress_pps: pps,
            ingress_bps: bps,
            ingress_burst_ms: burst_ms,
            ..ServeArgs::default()
        };
        // Below one maximum datagram of bytes, or one packet, in the burst.
        for bad in [
            with(3_000, 2_000, 500),
            with(3_000, 3_000_000, 0),
            with(1, 3_000_000, 500),
            with(0, 100_000, 10),
        ] {
            let err = bad.validated().expect_err("refused at start").to_string();
            assert!(err.contains("ingress"), "{err}");
        }
        // The defaults, a limit switched off, and the smallest sufficient burst pass.
        let max = blindfold_udp::MAX_DATAGRAM as u32;
        for good in [
            ServeArgs::default(),
            with(0, 0, 0),
            with(0, max, 1000),
            with(2, 0, 500),
        ] {
            let limits = good.ingress_limits();
            assert!(good.validated().is_ok(), "{limits:?}");
        }
        let l = with(200, 300_000, 250).ingress_limits();
        assert_eq!(
            (l.packets_per_sec, l.bytes_per_sec, l.burst_ms),
            (200, 300_000, 250)
        );
    }

    #[test]
    fn file_fills_in_and_flags_win() {
        let dir = std::env::temp_dir().join(format!("blindfold-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("serve.toml");
        std::fs::write(
            &path,
            "batch = 64\nshards = 3\nmedia = \"127.0.0.1:7000\"\n",
        )
        .unwrap();
        let m = Wrap::command().get_matches_from([
            "serve",
            "--config",
            path.to_str().unwrap(),
            "--shards",
            "2",
        ]);
        let args = Wrap::from_arg_matches(&m).unwrap().args;
        let merged = args.merge_file(Some(&m)).unwrap();
        assert_eq!(merged.batch, 64);
        assert_eq!(merged.shards, Some(2));
        assert_eq!(merged.media, "127.0.0.1:7000".parse().unwrap());
        std::fs::write(&path, "batchh = 1\n").unwrap();
        let args = Wrap::from_arg_matches(&m).unwrap().args;
        assert!(matches!(
            args.merge_file(Some(&m)),
            Err(ConfigError::Parse { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
