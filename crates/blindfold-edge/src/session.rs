//! One browser: its str0m peer connection (ICE, DTLS-SRTP with the hop key) on one UDP
//! socket, and its forwarder endpoint on another, with the loop that moves media between
//! them.
//!
//! Owns the per-browser state and both sockets. The browser's SRTP is removed and added
//! here, and only that: payloads stay SFrame ciphertext, the forwarder endpoint latches
//! with the ICE credentials signalling gave the browser (the edge learns no group secret,
//! no call secret). Must not touch: other sessions, the HTTP layer, any group key.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use blindfold_proto::packet::{Class, classify};
use blindfold_proto::stun;
use str0m::change::SdpOffer;
use str0m::format::Codec;
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, SeqNo};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};
use tokio::net::UdpSocket;

use crate::EdgeError;
use crate::bridge::{self, Kind, Routed, Rtp, Slots};
use crate::metrics::Metrics;

/// Where the browser's forwarder endpoint is and how to prove it is ours.
#[derive(Debug, Clone)]
pub struct ForwarderLeg {
    /// The forwarder's media address.
    pub addr: SocketAddr,
    /// The endpoint's ufrag (first half of the STUN USERNAME).
    pub ufrag: String,
    /// The endpoint's pwd (keys MESSAGE-INTEGRITY).
    pub pwd: String,
}

/// Checks toward the forwarder until the first answer, then consent refreshes.
const LATCH_RETRY: Duration = Duration::from_millis(250);
const CONSENT_INTERVAL: Duration = Duration::from_secs(5);
/// A browser that has not connected by then is given up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the edge asks its browser for a keyframe while nobody asked: a cheap floor
/// that lets a receiver whose request was lost recover (RTCP feedback crosses two hops).
const KEYFRAME_FLOOR: Duration = Duration::from_secs(3);
const MAX_DATAGRAM: usize = 2048;

/// A browser's session, ready to run: the answer is already computed.
pub struct Session {
    rtc: Rtc,
    browser: UdpSocket,
    browser_addr: SocketAddr,
    forwarder: UdpSocket,
    leg: ForwarderLeg,
    edge_ufrag: String,
    metrics: Arc<Metrics>,
    slots: Slots,
    /// Slot index → (mid, kind) of the browser's receive-only m-lines.
    slot_mids: Vec<(Mid, Kind)>,
    /// Sources (SSRCs) of the browser's own streams, seen on its send m-lines.
    own_video: Vec<u32>,
}

impl Session {
    /// Binds the two sockets on `media_ip`, accepts the browser's SDP offer and returns
    /// the session with the SDP answer.
    pub async fn create(
        media_ip: std::net::IpAddr,
        offer: &str,
        leg: ForwarderLeg,
        metrics: Arc<Metrics>,
    ) -> Result<(Self, String), EdgeError> {
        let offer = SdpOffer::from_sdp_string(offer).map_err(|e| EdgeError::Sdp(e.to_string()))?;
        let browser = UdpSocket::bind(SocketAddr::new(media_ip, 0))
            .await
            .map_err(EdgeError::Bind)?;
        let browser_addr = browser.local_addr().map_err(EdgeError::Bind)?;
        let bind_any = match leg.addr {
            SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
            SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
        };
        let forwarder = UdpSocket::bind(if leg.addr.ip().is_loopback() {
            SocketAddr::new(leg.addr.ip(), 0)
        } else {
            bind_any
        })
        .await
        .map_err(EdgeError::Bind)?;
        forwarder.connect(leg.addr).await.map_err(EdgeError::Bind)?;

        let mut rtc = RtcConfig::new()
            .set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()))
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .build(Instant::now());
        let cand =
            Candidate::host(browser_addr, "udp").map_err(|e| EdgeError::Sdp(e.to_string()))?;
        rtc.add_local_candidate(cand);
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| EdgeError::Sdp(e.to_string()))?;
        let session = Self {
            rtc,
            browser,
            browser_addr,
            forwarder,
            leg,
            edge_ufrag: stun::random_ufrag(),
            metrics,
            slots: Slots::default(),
            slot_mids: Vec::new(),
            own_video: Vec::new(),
        };
        Ok((session, answer.to_sdp_string()))
    }

    /// Runs until the browser goes away (ICE disconnected, DTLS closed) or `stop` fires.
    pub async fn run(mut self, mut stop: tokio::sync::watch::Receiver<bool>) {
        self.metrics.sessions_open.fetch_add(1, Ordering::Relaxed);
        let reason = self.run_inner(&mut stop).await;
        self.metrics.sessions_open.fetch_sub(1, Ordering::Relaxed);
        tracing::info!(reason, "browser session ended");
    }

    async fn run_inner(&mut self, stop: &mut tokio::sync::watch::Receiver<bool>) -> &'static str {
        let started = Instant::now();
        let mut connected = false;
        let mut latched = false;
        let mut next_check = Instant::now();
        let mut next_keyframe = Instant::now() + KEYFRAME_FLOOR;
        let mut txid = [0u8; 12];
        let mut bbuf = vec![0u8; MAX_DATAGRAM];
        let mut fbuf = vec![0u8; MAX_DATAGRAM];
        let mut out = vec![0u8; MAX_DATAGRAM];
        loop {
            // Drain str0m: transmit what it wants sent, act on events, learn its deadline.
            let deadline = loop {
                match self.rtc.poll_output() {
                    Ok(Output::Timeout(t)) => break t,
                    Ok(Output::Transmit(t)) => {
                        let _ = self.browser.try_send_to(&t.contents, t.destination);
                    }
                    Ok(Output::Event(e)) => match e {
                        Event::Connected => connected = true,
                        Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                            return "browser disconnected";
                        }
                        Event::MediaAdded(m) => self.media_added(m.mid, m.kind, m.direction),
                        Event::RtpPacket(p) => self.on_browser_rtp(&p, &mut out),
                        Event::KeyframeRequest(r) => self.keyframe_request(r.mid),
                        _ => {}
                    },
                    Err(e) => {
                        tracing::debug!(error = %e, "browser session failed");
                        return "peer connection error";
                    }
                }
            };
            if !self.rtc.is_alive() {
                return "peer connection closed";
            }
            let now = Instant::now();
            if !connected && now.duration_since(started) > CONNECT_TIMEOUT {
                return "browser never connected";
            }
            if now >= next_check {
                txid = rand::random();
                let req = stun::binding_request(
                    txid,
                    &self.leg.ufrag,
                    &self.edge_ufrag,
                    self.leg.pwd.as_bytes(),
                );
                let _ = self.forwarder.try_send(&req);
                next_check = now
                    + if latched {
                        CONSENT_INTERVAL
                    } else {
                        LATCH_RETRY
                    };
            }
            if connected && now >= next_keyframe {
                self.request_own_keyframes();
                next_keyframe = now + KEYFRAME_FLOOR;
            }
            let wake = deadline.min(next_check).min(next_keyframe);
            tokio::select! {
                _ = tokio::time::sleep_until(wake.into()) => {
                    if self.rtc.handle_input(Input::Timeout(Instant::now())).is_err() {
                        return "peer connection error";
                    }
                }
                r = self.browser.recv_from(&mut bbuf) => {
                    let Ok((n, from)) = r else { return "browser socket error" };
                    match Receive::new(Protocol::Udp, from, self.browser_addr, &bbuf[..n]) {
                        Ok(recv) => {
                            if self.rtc.handle_input(Input::Receive(Instant::now(), recv)).is_err() {
                                self.metrics.browser_dropped.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(_) => {
                            self.metrics.browser_dropped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                r = self.forwarder.recv(&mut fbuf) => {
                    // A connected socket: only the forwarder's datagrams arrive here.
                    let Ok(n) = r else { continue };
                    if self.on_forwarder_datagram(&fbuf[..n], &txid) {
                        latched = true;
                    }
                }
                _ = stop.changed() => return "edge stopping",
            }
        }
    }

    fn media_added(&mut self, mid: Mid, kind: MediaKind, direction: Direction) {
        let kind = match kind {
            MediaKind::Audio => Kind::Audio,
            MediaKind::Video => Kind::Video,
        };
        // The direction is ours: a browser's receive-only m-line is one we send on.
        if direction.is_sending() {
            self.slots.add(kind, Instant::now());
            self.slot_mids.push((mid, kind));
        }
    }

    fn kind_of_pt(&self, pt: u8) -> Option<Kind> {
        self.rtc
            .codec_config()
            .params()
            .iter()
            .find(|p| *p.pt() == pt)
            .and_then(|p| match p.spec().codec {
                Codec::Opus => Some(Kind::Audio),
                Codec::Vp8 => Some(Kind::Video),
                _ => None,
            })
    }

    fn pt_of_kind(&self, kind: Kind) -> Option<str0m::media::Pt> {
        let want = match kind {
            Kind::Audio => Codec::Opus,
            Kind::Video => Codec::Vp8,
        };
        self.rtc
            .codec_config()
            .params()
            .iter()
            .find(|p| p.spec().codec == want)
            .map(|p| p.pt())
    }

    /// A browser's RTP packet (SRTP already removed): to the forwarder with the canonical
    /// payload type, header extensions dropped, payload (SFrame ciphertext) untouched.
    fn on_browser_rtp(&mut self, p: &str0m::rtp::RtpPacket, out: &mut [u8]) {
        let h = &p.header;
        let Some(kind) = self.kind_of_pt(*h.payload_type) else {
            self.metrics.browser_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let ssrc = *h.ssrc;
        if kind == Kind::Video && !self.own_video.contains(&ssrc) && self.own_video.len() < 4 {
            self.own_video.push(ssrc);
        }
        let rtp = Rtp {
            marker: h.marker,
            pt: kind.canonical_pt(),
            seq: h.sequence_number,
            timestamp: h.timestamp,
            ssrc,
            payload: &p.payload,
        };
        let Some(n) = bridge::write_rtp(out, &rtp) else {
            self.metrics.browser_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if self.forwarder.try_send(&out[..n]).is_ok() {
            self.metrics.to_forwarder.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A datagram from the forwarder. Returns true when it was the answer to our check.
    fn on_forwarder_datagram(&mut self, pkt: &[u8], txid: &[u8; 12]) -> bool {
        match classify(pkt) {
            Class::Stun => {
                if stun::parse_binding_success(pkt, txid, self.leg.pwd.as_bytes()).is_ok() {
                    return true;
                }
                // The forwarder's return-path check before it sends us media.
                if let Some(answer) = stun::answer_check(
                    pkt,
                    self.leg.addr,
                    &self.leg.ufrag,
                    &self.edge_ufrag,
                    self.leg.pwd.as_bytes(),
                ) {
                    let _ = self.forwarder.try_send(&answer);
                }
            }
            Class::Rtcp => {
                let mut any = false;
                for media in bridge::keyframe_requests(pkt) {
                    any = true;
                    if self.own_video.contains(&media) {
                        self.request_keyframe_of(media);
                    }
                }
                if !any {
                    self.metrics
                        .forwarder_dropped
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
            Class::Rtp => self.forward_to_browser(pkt),
            Class::Other => {
                self.metrics
                    .forwarder_dropped
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        false
    }

    fn forward_to_browser(&mut self, pkt: &[u8]) {
        let Some(rtp) = bridge::parse_rtp(pkt) else {
            self.metrics
                .forwarder_dropped
                .fetch_add(1, Ordering::Relaxed);
            return;
        };
        let Some(kind) = Kind::of_canonical_pt(rtp.pt) else {
            self.metrics
                .forwarder_dropped
                .fetch_add(1, Ordering::Relaxed);
            return;
        };
        let now = Instant::now();
        let (index, seq, fresh) = match self.slots.route(kind, rtp.ssrc, rtp.seq, now) {
            Routed::Slot { index, seq, fresh } => (index, seq, fresh),
            Routed::NoSlot => {
                self.metrics.no_slot.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        if fresh && kind == Kind::Video {
            // A new viewer needs a keyframe from that source: ask it through the forwarder.
            let _ = self.forwarder.try_send(&bridge::pli(1, rtp.ssrc));
        }
        let Some(pt) = self.pt_of_kind(kind) else {
            self.metrics
                .forwarder_dropped
                .fetch_add(1, Ordering::Relaxed);
            return;
        };
        let mid = self.slot_mids[index].0;
        let mut api = self.rtc.direct_api();
        let Some(tx) = api.stream_tx_by_mid(mid, None) else {
            self.metrics
                .forwarder_dropped
                .fetch_add(1, Ordering::Relaxed);
            return;
        };
        tx.write_rtp(
            RtpWrite::new(pt, SeqNo::from(seq), rtp.timestamp, now, rtp.payload).marker(rtp.marker),
        );
        self.metrics.to_browser.fetch_add(1, Ordering::Relaxed);
    }

    /// The browser asked for a keyframe on one of its receive slots: pass it to the
    /// source that slot shows now.
    fn keyframe_request(&mut self, mid: Mid) {
        let Some(index) = self.slot_mids.iter().position(|(m, _)| *m == mid) else {
            return;
        };
        if let Some(source) = self.slots.source(index) {
            let _ = self.forwarder.try_send(&bridge::pli(1, source));
        }
    }

    fn request_keyframe_of(&mut self, ssrc: u32) {
        if let Some(rx) = self.rtc.direct_api().stream_rx(&ssrc.into()) {
            rx.request_keyframe(KeyframeRequestKind::Pli);
        }
    }

    fn request_own_keyframes(&mut self) {
        for ssrc in self.own_video.clone() {
            self.request_keyframe_of(ssrc);
        }
    }
}
