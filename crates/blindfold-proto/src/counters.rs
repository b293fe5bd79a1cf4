//! What the router counts: drop reasons and per-batch counters.
//!
//! Owns the drop reasons (the only label values besides the shard number) and the plain
//! [`LocalCounters`] a shard adds to while it routes one batch. Must not touch atomics,
//! threads or rendering: publishing and the Prometheus text are the forwarder's
//! (`blindfold_forwarder::metrics`). Nothing here is labelled with an address, an id or
//! anything a user chose.

/// Why a datagram was not forwarded. The names are the `reason` label values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum DropReason {
    /// First byte outside the STUN and RTP/RTCP ranges of RFC 7983 (DTLS, TURN, junk).
    Unclassified,
    /// Datagram larger than the receive buffer.
    Oversize,
    /// RTP/RTCP header shorter or inconsistent with its own length fields.
    Malformed,
    /// Source address not latched to any endpoint.
    UnknownSource,
    /// RTP SSRC (or SR sender SSRC) not registered to the sending endpoint.
    SsrcNotOwned,
    /// RTCP whose target media SSRC could not be read or is not in the conference.
    RtcpNoTarget,
    /// The sender exceeded its ingress limits.
    RateLimited,
    /// STUN that is not a well-formed Binding request or success response.
    StunMalformed,
    /// STUN naming a ufrag no endpoint has.
    StunUnknownUser,
    /// STUN whose MESSAGE-INTEGRITY did not verify.
    StunBadIntegrity,
    /// STUN refused by the per-source or global rate limit.
    StunRateLimited,
    /// A check whose transaction id this endpoint already used from another address: a
    /// captured check replayed elsewhere.
    StunReplayed,
    /// A verified check nominating an address that an endpoint of another conference
    /// holds: never taken.
    StunAddressInUse,
    /// A STUN response that answers no check of ours from that address (or does not
    /// verify).
    StunUnsolicited,
    /// A copy the kernel would not take (EAGAIN, buffer full, unreachable).
    SendFailed,
    /// A copy for a subscriber that is not latched or whose consent lapsed.
    NoDestination,
}

impl DropReason {
    /// Every reason, in label order.
    pub const ALL: [DropReason; 16] = [
        DropReason::Unclassified,
        DropReason::Oversize,
        DropReason::Malformed,
        DropReason::UnknownSource,
        DropReason::SsrcNotOwned,
        DropReason::RtcpNoTarget,
        DropReason::RateLimited,
        DropReason::StunMalformed,
        DropReason::StunUnknownUser,
        DropReason::StunBadIntegrity,
        DropReason::StunRateLimited,
        DropReason::StunReplayed,
        DropReason::StunAddressInUse,
        DropReason::StunUnsolicited,
        DropReason::SendFailed,
        DropReason::NoDestination,
    ];
    /// Number of reasons.
    pub const COUNT: usize = Self::ALL.len();

    /// The Prometheus label value.
    pub fn label(self) -> &'static str {
        match self {
            DropReason::Unclassified => "unclassified",
            DropReason::Oversize => "oversize",
            DropReason::Malformed => "malformed",
            DropReason::UnknownSource => "unknown_source",
            DropReason::SsrcNotOwned => "ssrc_not_owned",
            DropReason::RtcpNoTarget => "rtcp_no_target",
            DropReason::RateLimited => "rate_limited",
            DropReason::StunMalformed => "stun_malformed",
            DropReason::StunUnknownUser => "stun_unknown_user",
            DropReason::StunBadIntegrity => "stun_bad_integrity",
            DropReason::StunRateLimited => "stun_rate_limited",
            DropReason::StunReplayed => "stun_replayed",
            DropReason::StunAddressInUse => "stun_address_in_use",
            DropReason::StunUnsolicited => "stun_unsolicited",
            DropReason::SendFailed => "send_failed",
            DropReason::NoDestination => "no_destination",
        }
    }
}

/// Counters a shard accumulates without atomics during one batch.
#[derive(Debug, Default, Clone)]
pub struct LocalCounters {
    /// Datagrams received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Datagrams sent (copies and STUN responses).
    pub tx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// RTP packets that produced at least one copy (a packet whose SSRC has no
    /// subscriber, or none with a destination, is not counted).
    pub rtp_forwarded: u64,
    /// RTCP packets that produced at least one copy.
    pub rtcp_forwarded: u64,
    /// Valid STUN Binding requests answered.
    pub stun_answered: u64,
    /// Endpoints latched or moved by STUN.
    pub latches: u64,
    /// Receive buffers in which the kernel had coalesced several datagrams (UDP GRO).
    pub gro_buffers: u64,
    /// Segmented sends (UDP GSO): one message carrying several datagrams to one
    /// destination.
    pub gso_sends: u64,
    /// Segmented sends the kernel refused, sent again one datagram at a time.
    pub gso_fallbacks: u64,
    /// Packets of a track declared with a header extension (audio level, frame marking)
    /// that did not carry it; forwarded all the same.
    pub ext_missing: u64,
    /// Packets whose extension block or element did not fit its lengths; forwarded all
    /// the same.
    pub ext_malformed: u64,
    /// Subscribers moved onto a video layer at one of its key frames.
    pub layer_switches: u64,
    /// Drops by reason.
    pub drops: [u64; DropReason::COUNT],
}

impl LocalCounters {
    /// Counts one drop.
    #[inline]
    pub fn drop(&mut self, reason: DropReason) {
        self.drops[reason as usize] += 1;
    }
}
