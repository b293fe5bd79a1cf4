//! One participant's life in a call, step by step: join through signalling, get into the
//! MLS group, latch on the forwarder, publish, then one event loop until it stops.
//!
//! Owns the order of those steps and the select loop over the WebSocket, the UDP socket,
//! the media tickers, the E2EE session's timer and the handle's commands. Must not touch:
//! what each event does (that is [`super::engine`] and [`super::traffic`]).

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::engine::{Engine, OutStream, now_ms};
use super::keylog::KeyLog;
use super::media;
use super::participant::{ClientError, Command, ParticipantConfig, Phase, Shared};
use super::selective::Selective;
use super::signalling::{self, Admitted, Ws, recv_ws, send_ws};
use blindfold_e2ee::{CallSecret, E2eeSession, ParticipantId, RTP_OVERHEAD};
use blindfold_proto::stun as ice;
use blindfold_signal::proto::{ClientMessage, ErrorCode, ServerMessage};

/// The media socket's receive buffer.
const RECV_BUFFER: usize = 4 << 20;

/// Runs the participant until [`Command::Stop`] or a fatal error.
pub(crate) async fn run(
    cfg: ParticipantConfig,
    me: ParticipantId,
    shared: Arc<Shared>,
    mut cmds: mpsc::UnboundedReceiver<Command>,
) -> Result<(), ClientError> {
    let t0 = Instant::now();
    let (mut ws, mut eng) = tokio::time::timeout(cfg.join_timeout, join(cfg, me, t0, &shared))
        .await
        .map_err(|_| ClientError::Timeout("joining through signalling"))??;
    let sock = UdpSocket::bind(bind_address(&eng)).await?;
    // A receiver busy with a group change (a Commit, a Welcome) must not lose the media
    // that queued meanwhile: room for about a second of a few videos, as real clients
    // keep (the kernel caps it at net.core.rmem_max).
    let _ = socket2::SockRef::from(&sock).set_recv_buffer_size(RECV_BUFFER);
    tokio::time::timeout(eng.cfg.join_timeout, wait_for_key(&mut eng, &mut ws))
        .await
        .map_err(|_| ClientError::Timeout("waiting to be added to the group"))??;
    // Latch only once a key is held: the forwarder starts sending on the latch, and
    // packets that arrive before the Welcome could never be decrypted.
    eng.latch(&sock).await?;
    publish(&mut eng, &mut ws).await?;
    shared.set_phase(Phase::InCall);
    eng.update_ready();
    event_loop(&mut eng, &mut ws, &sock, &mut cmds).await
}

/// Joins through signalling and builds the engine. Alone in the call, this participant
/// starts the group; otherwise a member's Commit will add it.
async fn join(
    cfg: ParticipantConfig,
    me: ParticipantId,
    t0: Instant,
    shared: &Arc<Shared>,
) -> Result<(Ws, Engine), ClientError> {
    let call: &CallSecret = &cfg.call_secret;
    let mut session = E2eeSession::new(cfg.schedule, call, me)
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
    let key_package = session
        .key_package()
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
    let (ws, admitted) = signalling::join(&cfg.signal_url, call, me, &key_package).await?;
    shared.lock().joined_at = Some(Instant::now());
    let Admitted {
        members,
        ice: ice_creds,
        candidates,
    } = admitted;
    if members.is_empty() {
        session
            .start_alone(now_ms(t0))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
    }
    let mut ssrc_owner = HashMap::new();
    for m in &members {
        if let Ok(id) = signalling::parse_id(&m.participant) {
            for s in m.tracks.iter().flat_map(|t| &t.ssrcs) {
                ssrc_owner.insert(*s, id);
            }
        }
    }
    let candidate = candidates
        .first()
        .ok_or_else(|| ClientError::Protocol("no forwarder candidate".into()))?;
    let forwarder = candidate
        .ip
        .parse::<std::net::IpAddr>()
        .map(|ip| SocketAddr::new(ip, candidate.port))
        .map_err(|_| ClientError::Protocol("malformed candidate".into()))?;
    let keylog = match &cfg.key_log {
        Some(p) => Some(KeyLog::open(p)?),
        None => None,
    };
    let audio = cfg.audio.then(OutStream::new);
    let mut sel = Selective::new(
        cfg.selective.clone(),
        me.to_hex(),
        shared.talking.clone(),
        t0,
    );
    for m in &members {
        sel.on_tracks(&m.participant, &m.tracks);
    }
    // Simulcast replaces the single video stream.
    if let Some(v) = cfg.video.filter(|_| sel.simulcast()) {
        sel.start_simulcast(v.packet_bytes, RTP_OVERHEAD);
    }
    let video = cfg.video.filter(|_| !sel.sending()).map(|v| {
        let (n, payload) =
            media::video_frame_plan(v.bitrate_bps, v.fps, v.packet_bytes, RTP_OVERHEAD);
        (OutStream::new(), n, payload)
    });
    let mut eng = Engine {
        cfg,
        me,
        t0,
        session,
        shared: shared.clone(),
        ssrc_owner,
        streams: HashMap::new(),
        epochs: BTreeSet::new(),
        sending_generation: None,
        keylog,
        audio,
        video,
        forwarder,
        ice: ice_creds,
        client_ufrag: ice::random_ufrag(),
        consent_txid: None,
        relatch: false,
        path_proven: false,
        outbox: Vec::new(),
        leaving: false,
        left: false,
        sel,
    };
    eng.drain_outputs();
    Ok((ws, eng))
}

fn bind_address(eng: &Engine) -> SocketAddr {
    let forwarder = eng.forwarder;
    eng.cfg.bind.unwrap_or_else(|| {
        let ip: std::net::IpAddr = if forwarder.ip().is_loopback() {
            forwarder.ip()
        } else if forwarder.is_ipv4() {
            std::net::Ipv4Addr::UNSPECIFIED.into()
        } else {
            std::net::Ipv6Addr::UNSPECIFIED.into()
        };
        SocketAddr::new(ip, 0)
    })
}

/// Handles signalling (and the session's timer, which retries commits) until the group
/// has added this participant and a sending key is held.
async fn wait_for_key(eng: &mut Engine, ws: &mut Ws) -> Result<(), ClientError> {
    while !eng.session.can_send() {
        let deadline = session_deadline(eng);
        tokio::select! {
            msg = recv_ws(ws) => match msg? {
                Some(m) => eng.on_server(m),
                None => return Err(ClientError::Signal("closed while joining the group".into())),
            },
            _ = tokio::time::sleep_until(deadline) => eng.session.handle_timeout(eng.now()),
        }
        eng.drain_outputs();
        eng.flush(ws).await?;
    }
    Ok(())
}

/// Announces this participant's tracks and subscriptions.
async fn publish(eng: &mut Engine, ws: &mut Ws) -> Result<(), ClientError> {
    let cam = Some(eng.sel.own_ssrcs())
        .filter(|s| !s.is_empty())
        .or_else(|| eng.video.as_ref().map(|(v, _, _)| vec![v.ssrc]));
    let tracks = eng.sel.tracks(eng.audio.as_ref().map(|a| a.ssrc), cam);
    eng.shared.lock().ssrcs = tracks.iter().flat_map(|t| t.ssrcs.clone()).collect();
    if !tracks.is_empty() {
        send_ws(ws, ClientMessage::Publish { tracks }).await?;
        // Media starts once the forwarder owns our SSRCs (`published`): packets sent
        // before that would be dropped as coming from SSRCs it does not know.
        tokio::time::timeout(eng.cfg.join_timeout, async {
            loop {
                match recv_ws(ws).await? {
                    Some(ServerMessage::Published) => return Ok(()),
                    Some(ServerMessage::Error { code, message })
                        if code != ErrorCode::StaleCommit =>
                    {
                        return Err(ClientError::Refused { code, message });
                    }
                    Some(m) => eng.on_server(m),
                    None => return Err(ClientError::Signal("closed while publishing".into())),
                }
                eng.drain_outputs();
                eng.flush(ws).await?;
            }
        })
        .await
        .map_err(|_| ClientError::Timeout("waiting for `published`"))??;
    }
    if let Some(to) = eng.cfg.subscribe.clone() {
        send_ws(ws, ClientMessage::Subscribe { to: Some(to) }).await?;
    }
    if let Some(m) = eng.sel.receive_message() {
        send_ws(ws, m).await?;
    }
    eng.flush(ws).await
}

/// When the session's timer next fires (an hour away when it has none or the participant
/// is leaving: a leaver's timers stop).
fn session_deadline(eng: &Engine) -> tokio::time::Instant {
    eng.session
        .poll_timeout()
        .filter(|_| !eng.leaving)
        .map(|ms| tokio::time::Instant::from_std(eng.t0 + Duration::from_millis(ms)))
        .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600))
}

async fn event_loop(
    eng: &mut Engine,
    ws: &mut Ws,
    sock: &UdpSocket,
    cmds: &mut mpsc::UnboundedReceiver<Command>,
) -> Result<(), ClientError> {
    let mut audio_tick = tokio::time::interval(Duration::from_millis(20));
    let frame =
        Duration::from_secs_f64(1.0 / f64::from(eng.cfg.video.map_or(30, |v| v.fps.max(1))));
    let mut video_tick = tokio::time::interval(frame);
    let mut consent_tick = tokio::time::interval(eng.cfg.consent_interval);
    let mut sel_tick = tokio::time::interval(Duration::from_millis(100));
    for t in [
        &mut audio_tick,
        &mut video_tick,
        &mut consent_tick,
        &mut sel_tick,
    ] {
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    consent_tick.reset();
    let mut ws_open = true;
    let mut buf = vec![0u8; 2048];
    loop {
        let deadline = session_deadline(eng);
        let sending = !eng.leaving;
        let media = sending && eng.path_proven;
        // Biased: a signalling message that has arrived (tracks, membership, a commit) is
        // handled before the media it enables, which the forwarder only sends after it;
        // UDP comes last so its steady flow cannot starve the senders' timers.
        tokio::select! {
            biased;
            msg = recv_ws(ws), if ws_open => {
                match msg {
                    Ok(Some(m)) => eng.on_server(m),
                    Ok(None) | Err(_) => {
                        ws_open = false;
                        if !eng.leaving {
                            // The forwarder keeps our endpoint and the group its keys: media
                            // goes on with the membership last known (the ratchet runs), so a
                            // signalling restart does not interrupt the call; a leave seen
                            // before it still fails closed. Rejoining is the application's.
                            tracing::warn!("signalling connection lost; media continues");
                        }
                    }
                }
            }
            _ = audio_tick.tick(), if eng.audio.is_some() && media => eng.send_audio(sock).await,
            _ = video_tick.tick(), if (eng.video.is_some() || eng.sel.sending()) && media => eng.send_video(sock).await,
            _ = sel_tick.tick(), if media => eng.selective_tick(sock).await,
            _ = consent_tick.tick(), if sending => eng.refresh_consent(sock).await,
            _ = tokio::time::sleep_until(deadline) => eng.session.handle_timeout(eng.now()),
            cmd = cmds.recv() => match cmd {
                Some(Command::Leave) => {
                    if !eng.leaving && ws_open {
                        eng.leave();
                    }
                }
                Some(Command::Probe(packets, reply)) => {
                    let _ = reply.send(eng.probe(&packets));
                }
                Some(Command::Stop) | None => break,
            },
            r = sock.recv_from(&mut buf) => {
                match r {
                    Ok((n, from)) => match eng.answer_check(&buf[..n], from) {
                        Some(a) => drop(sock.send_to(&a, from).await),
                        None => eng.on_datagram(&mut buf[..n], from),
                    },
                    // ICMP errors surface here on Linux; the next datagram may be fine.
                    Err(e) => tracing::debug!(error = %e, "udp receive failed"),
                }
            }
        }
        eng.drain_outputs();
        if ws_open {
            eng.flush(ws).await?;
        }
        if std::mem::take(&mut eng.relatch)
            && let Err(e) = eng.latch(sock).await
        {
            // The consent checks go on to the new address; signalling may move us again.
            tracing::warn!(error = %e, "latching on the new forwarder failed");
        }
        eng.update_ready();
    }
    if ws_open && !eng.left {
        let _ = ws.close(None).await;
    }
    Ok(())
}
