//! Media on the UDP socket: STUN latch and consent, the synthetic senders, and the
//! verification of every received packet; plus the probe of what this participant's keys
//! can open, and selective forwarding's feedback (key frame requests in and out).
//!
//! Owns: what goes out and comes in on the forwarder's socket. Must not touch: signalling,
//! the group (it only protects and unprotects through the session).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

use super::engine::Engine;
use super::media::{self, RTP_HEADER, StreamStats, VIDEO_PT};
use super::participant::{Captured, ClientError, MediaFormat, ProbeReport};
use blindfold_e2ee::{
    E2eeError, EpochId, ParticipantId, RTP_OVERHEAD, SrtpError, SrtpKeys, read_mki,
};
use blindfold_proto::stun as ice;

impl Engine {
    /// STUN-latches the socket to our endpoint, retrying until a verified answer.
    pub(crate) async fn latch(&mut self, sock: &UdpSocket) -> Result<(), ClientError> {
        let deadline = tokio::time::Instant::now() + self.cfg.join_timeout;
        let mut buf = vec![0u8; 2048];
        while tokio::time::Instant::now() < deadline {
            let txid: [u8; 12] = rand::random();
            let req = ice::binding_request(
                txid,
                &self.ice.ufrag,
                &self.client_ufrag,
                self.ice.pwd.as_bytes(),
            );
            sock.send_to(&req, self.forwarder).await?;
            let until = tokio::time::Instant::now() + Duration::from_millis(250);
            while let Ok(r) = tokio::time::timeout_at(until, sock.recv_from(&mut buf)).await {
                let (n, from) = r?;
                // The forwarder checks our address before it sends media to it.
                if let Some(a) = self.answer_check(&buf[..n], from) {
                    sock.send_to(&a, from).await?;
                } else if from == self.forwarder
                    && ice::parse_binding_success(&buf[..n], &txid, self.ice.pwd.as_bytes()).is_ok()
                {
                    self.path_proven = true;
                    return Ok(());
                }
            }
        }
        Err(ClientError::Timeout("latching to the forwarder"))
    }

    /// Our answer to the forwarder's return-path check, if `pkt` is one.
    pub(crate) fn answer_check(&self, pkt: &[u8], from: SocketAddr) -> Option<Vec<u8>> {
        crate::stun_agent::answer(pkt, from, self.forwarder, &self.ice, &self.client_ufrag)
    }

    pub(crate) async fn refresh_consent(&mut self, sock: &UdpSocket) {
        if self.consent_txid.take().is_some() {
            self.shared.lock().stats.consent_missed += 1;
        }
        let txid: [u8; 12] = rand::random();
        let req = ice::binding_request(
            txid,
            &self.ice.ufrag,
            &self.client_ufrag,
            self.ice.pwd.as_bytes(),
        );
        if sock.send_to(&req, self.forwarder).await.is_ok() {
            self.consent_txid = Some(txid);
        }
    }

    pub(crate) fn protect_and_log(
        &mut self,
        mut pkt: Vec<u8>,
        ssrc: u32,
        seq: u16,
    ) -> Option<Vec<u8>> {
        let protected = match self.cfg.media {
            MediaFormat::Srtp => self.session.protect_rtp_vec(&mut pkt),
            // The payload (one synthetic frame per packet) becomes an SFrame frame; the
            // RTP header stays as the forwarder reads it.
            // Header extensions (audio level, frame marking) stay before the frame, in the
            // clear, where the forwarder reads them.
            MediaFormat::Sframe => {
                let header =
                    blindfold_e2ee::srtp::parse_rtp_header(&pkt).map_or(RTP_HEADER, |h| h.len);
                self.session
                    .protect_frame(&pkt[header..], false)
                    .map(|sealed| {
                        pkt.truncate(header);
                        pkt.extend_from_slice(&sealed);
                    })
            }
        };
        match protected {
            Ok(()) => {
                let mut st = self.shared.lock();
                st.stats.sent += 1;
                st.sent_log
                    .entry(ssrc)
                    .or_default()
                    .push((Instant::now(), seq));
                Some(pkt)
            }
            Err(E2eeError::NoSendingKey) => {
                self.shared.lock().stats.unsent_no_key += 1;
                None
            }
            Err(E2eeError::Stalled(_)) => {
                // Fail closed: no epoch without a leaver yet, so nothing goes out.
                self.shared.lock().stats.unsent_stalled += 1;
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "protecting a packet failed");
                None
            }
        }
    }

    pub(crate) async fn send_audio(&mut self, sock: &UdpSocket) {
        let Some(a) = &mut self.audio else { return };
        let (ssrc, seq) = (a.ssrc, a.seq);
        let pkt = self.sel.audio_packet(ssrc, seq, a.timestamp, RTP_OVERHEAD);
        a.seq = a.seq.wrapping_add(1);
        a.timestamp = a.timestamp.wrapping_add(960);
        if let Some(p) = self.protect_and_log(pkt, ssrc, seq) {
            let _ = sock.send_to(&p, self.forwarder).await;
        }
    }

    pub(crate) async fn send_video(&mut self, sock: &UdpSocket) {
        for (ssrc, seq, pkt) in self.sel.video_packets(RTP_OVERHEAD) {
            if let Some(p) = self.protect_and_log(pkt, ssrc, seq) {
                let _ = sock.send_to(&p, self.forwarder).await;
            }
        }
        let Some((v, n, payload)) = &mut self.video else {
            return;
        };
        let (n, payload) = (*n, *payload);
        let ssrc = v.ssrc;
        let mut burst = Vec::with_capacity(n);
        for i in 0..n {
            burst.push((
                v.seq,
                media::build_rtp(
                    ssrc,
                    v.seq,
                    v.timestamp,
                    VIDEO_PT,
                    i + 1 == n,
                    payload,
                    RTP_OVERHEAD,
                ),
            ));
            v.seq = v.seq.wrapping_add(1);
        }
        v.timestamp = v
            .timestamp
            .wrapping_add(90_000 / self.cfg.video.map_or(30, |c| c.fps.max(1)));
        for (seq, pkt) in burst {
            if let Some(p) = self.protect_and_log(pkt, ssrc, seq) {
                let _ = sock.send_to(&p, self.forwarder).await;
            }
        }
    }

    pub(crate) fn on_datagram(&mut self, data: &mut [u8], from: SocketAddr) {
        let now = self.now();
        if from != self.forwarder {
            self.shared.lock().stats.foreign += 1;
            return;
        }
        let Some(&first) = data.first() else { return };
        if first <= 3 {
            if let Some(txid) = self.consent_txid
                && ice::parse_binding_success(data, &txid, self.ice.pwd.as_bytes()).is_ok()
            {
                self.consent_txid = None;
                self.path_proven = true;
                self.shared.lock().stats.consent_ok += 1;
            }
            return;
        }
        // RFC 5761: payload types 192-223 in the second octet are RTCP.
        if (128..=191).contains(&first) && data.len() >= 8 && (192..=223).contains(&data[1]) {
            if !self.leaving {
                self.on_rtcp(data, now);
            }
            return;
        }
        if !(128..=191).contains(&first) || data.len() < RTP_HEADER {
            self.shared.lock().stats.ignored += 1;
            return;
        }
        let ssrc = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
        let seq = u16::from_be_bytes([data[2], data[3]]);
        if self.leaving && !self.left {
            // Asked to leave: what still arrives is neither counted nor opened.
            return;
        }
        if self.left {
            let mut st = self.shared.lock();
            st.stats.received_after_leave += 1;
            st.after_leave.push((ssrc, seq, Instant::now()));
            return;
        }
        {
            let mut st = self.shared.lock();
            st.stats.received += 1;
            st.stats.received_bytes += data.len() as u64;
            if self.cfg.record > 0 {
                if st.capture.len() >= self.cfg.record {
                    st.capture.pop_front();
                }
                st.capture.push_back(Captured {
                    at: Instant::now(),
                    data: data.to_vec(),
                });
            }
        }
        if self.cfg.media == MediaFormat::Sframe {
            self.on_sframe_packet(data, ssrc, seq, now);
            return;
        }
        let epoch = read_mki(data).ok();
        let Some(sender) = self.ssrc_owner.get(&ssrc).copied() else {
            tracing::debug!("packet from an unmapped SSRC");
            self.sel.on_unmapped(ssrc, seq);
            self.shared.lock().stats.unknown_sender += 1;
            return;
        };
        let wire_len = data.len();
        let video = self.sel.is_video(ssrc);
        let result = self.session.unprotect_rtp(&sender, data, now);
        let failed = result.is_err();
        let mut st = self.shared.lock();
        match result {
            Ok(len) => {
                let ok = blindfold_e2ee::srtp::parse_rtp_header(&data[..len]).is_ok_and(|h| {
                    if video {
                        self.sel.on_video(ssrc, seq, &data[h.len..len], wire_len)
                    } else {
                        media::check_payload(ssrc, seq, &data[h.len..len])
                    }
                });
                if !ok {
                    st.stats.content_errors += 1;
                    st.stats.failed += 1;
                    return;
                }
                st.stats.decrypted += 1;
                if !video {
                    *st.audio_from.entry(sender).or_default() += 1;
                }
                let s = self.streams.entry(ssrc).or_default();
                s.on_packet(seq, now);
                st.stats.max_gap_ms = st.stats.max_gap_ms.max(s.max_gap_ms);
                st.stats.lost = self.streams.values().map(StreamStats::lost).sum();
                st.stats.reordered = self.streams.values().map(|s| s.reordered).sum();
                if let Some(e) = epoch {
                    self.epochs.insert(e.as_u32());
                    st.stats.epochs_seen = self.epochs.len();
                    if let Some(log) = &mut self.keylog
                        && let Some(line) = self.session.keylog_line_for(&sender, ssrc, e)
                    {
                        log.record(ssrc, e.as_u32(), &line);
                    }
                }
            }
            Err(E2eeError::Srtp(SrtpError::UnknownEpoch(e))) => {
                tracing::debug!(epoch = %e, sending = ?self.session.sending_epoch(), "no key for a packet");
                st.stats.no_key += 1;
            }
            Err(E2eeError::Srtp(SrtpError::Replay | SrtpError::TooOld)) => st.stats.replayed += 1,
            Err(E2eeError::UnknownParticipant(_)) => st.stats.unknown_sender += 1,
            Err(e) => {
                tracing::debug!(error = %e, "a received packet failed");
                st.stats.failed += 1;
            }
        }
        if failed && video {
            // Its frame is lost to this receiver, not withheld by the forwarder.
            drop(st);
            self.sel.on_video_unreadable(ssrc, seq);
        }
    }

    /// Receiver feedback from the forwarder (SRTCP, E=0): a key frame request for one of
    /// our simulcast layers.
    fn on_rtcp(&mut self, data: &mut [u8], now: u64) {
        let sender = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
        let Some(from) = self.ssrc_owner.get(&sender).copied() else {
            self.shared.lock().stats.ignored += 1;
            return;
        };
        match self.session.unprotect_rtcp(&from, data, now) {
            Ok(opened) => self.sel.on_rtcp(&data[..opened.len]),
            Err(_) => self.shared.lock().stats.ignored += 1,
        }
    }

    /// Selective forwarding's periodic work: key frame requests (PLI, as SRTCP with E=0
    /// from our audio SSRC) for videos that should be coming and are not, a layer change
    /// to tell signalling about, and the counters for the handle.
    pub(crate) async fn selective_tick(&mut self, sock: &UdpSocket) {
        let plis = self.sel.tick();
        if let Some(me) = self.audio.as_ref().map(|a| a.ssrc) {
            for media_ssrc in plis {
                let mut pli = vec![0x81, 206, 0, 2];
                pli.extend_from_slice(&me.to_be_bytes());
                pli.extend_from_slice(&media_ssrc.to_be_bytes());
                if self.session.protect_rtcp_vec(&mut pli).is_ok() {
                    let _ = sock.send_to(&pli, self.forwarder).await;
                }
            }
        }
        if let Some(m) = self.sel.take_layer_change() {
            self.outbox.push(m);
        }
        let (starts, speakers) = self.sel.drain_logs();
        let mut st = self.shared.lock();
        st.stats.selective = self.sel.stats();
        st.starts.extend(starts);
        st.speakers.extend(speakers);
        st.per_publisher = self.sel.per_publisher();
    }

    /// An RTP packet whose payload is an SFrame frame: the KID names epoch and sender
    /// leaf, so no SSRC mapping is needed to find the key.
    fn on_sframe_packet(&mut self, data: &[u8], ssrc: u32, seq: u16, now: u64) {
        let Ok(h) = blindfold_e2ee::srtp::parse_rtp_header(data) else {
            self.shared.lock().stats.failed += 1;
            return;
        };
        let result = self.session.open_frame(&data[h.len..], false, now);
        let mut st = self.shared.lock();
        match result {
            Ok((_leaf, plain)) => {
                if !media::check_payload(ssrc, seq, &plain) {
                    st.stats.content_errors += 1;
                    st.stats.failed += 1;
                    return;
                }
                st.stats.decrypted += 1;
                let s = self.streams.entry(ssrc).or_default();
                s.on_packet(seq, now);
                st.stats.max_gap_ms = st.stats.max_gap_ms.max(s.max_gap_ms);
                st.stats.lost = self.streams.values().map(StreamStats::lost).sum();
                st.stats.reordered = self.streams.values().map(|s| s.reordered).sum();
                if let Some((e, _)) = blindfold_e2ee::frame_kid(&data[h.len..])
                    .and_then(blindfold_e2ee::split_sframe_kid)
                {
                    self.epochs.insert(e.as_u32());
                    st.stats.epochs_seen = self.epochs.len();
                }
            }
            Err(E2eeError::Srtp(SrtpError::UnknownEpoch(_))) => st.stats.no_key += 1,
            Err(e) => {
                tracing::debug!(error = %e, "a received frame failed");
                st.stats.failed += 1;
            }
        }
    }

    /// Every key this participant holds or can derive, tried on every packet.
    pub(crate) fn probe(&self, packets: &[Vec<u8>]) -> ProbeReport {
        let schedule = self.session.schedule();
        let mut senders: Vec<ParticipantId> = self.session.known_senders();
        senders.push(self.me);
        let held: Vec<EpochId> = schedule.held_epochs().collect();
        let mut report = ProbeReport::default();
        for pkt in packets {
            report.tried += 1;
            let Ok(named) = read_mki(pkt) else { continue };
            let mut epochs = held.clone();
            epochs.push(named);
            let ssrc = pkt
                .get(8..12)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
            let owners: Vec<ParticipantId> = match ssrc.and_then(|s| self.ssrc_owner.get(&s)) {
                Some(o) => vec![*o],
                None => senders.clone(),
            };
            let opened = owners.iter().any(|sender| {
                epochs.iter().any(|&epoch| {
                    let Some(master) = schedule.receive_master(sender, epoch) else {
                        return false;
                    };
                    let keys = SrtpKeys::derive(master.key(), master.salt(), Some(epoch));
                    (0..=2u32).any(|roc| {
                        let mut copy = pkt.clone();
                        let n = copy.len();
                        // Name the key being tried, so only the tag decides.
                        copy[n - 4..].copy_from_slice(&epoch.to_bytes());
                        keys.decrypt_rtp(&mut copy, roc).is_ok()
                    })
                })
            });
            if opened {
                report.opened += 1;
            }
        }
        report
    }
}
