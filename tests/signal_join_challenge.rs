//! Issue 14 item 6 against real processes: a join must prove possession of the call secret
//! for this connection. A proof copied from another connection, a wrong join key, and a
//! departed member's id are refused; the real member still joins (with a fresh id).

mod common;

use blindfold::client::{Identity, Participant, ParticipantConfig};
use blindfold::e2ee::CallSecret;
use blindfold::signal::proto::{self, ClientMessage, ErrorCode, ServerMessage};
use tokio_tungstenite::tungstenite::{Message, connect};

type Ws = tokio_tungstenite::tungstenite::WebSocket<
    tokio_tungstenite::tungstenite::stream::MaybeTlsStream<std::net::TcpStream>,
>;

fn recv(ws: &mut Ws) -> ServerMessage {
    loop {
        match ws.read().expect("frame") {
            Message::Text(t) => return proto::parse_server(t.as_str()).expect("server frame"),
            _ => continue,
        }
    }
}

/// A raw connection and its challenge.
fn open(url: &str) -> (Ws, Vec<u8>) {
    let (mut ws, _) = connect(url).expect("connects");
    if let tokio_tungstenite::tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(common::DEADLINE)).unwrap();
    }
    match recv(&mut ws) {
        ServerMessage::Challenge { nonce } => (ws, hex::decode(nonce).unwrap()),
        other => panic!("expected a challenge, got {other:?}"),
    }
}

fn join(
    ws: &mut Ws,
    conf: &str,
    pid: &str,
    proof: &[u8],
    join_key: Option<&[u8; 32]>,
) -> ServerMessage {
    let msg = ClientMessage::Join {
        conference: conf.into(),
        participant: pid.into(),
        proof: hex::encode(proof),
        key_package: "00".into(),
        join_key: join_key.map(hex::encode),
    };
    ws.send(Message::Text(proto::encode(msg).into())).unwrap();
    loop {
        match recv(ws) {
            m @ (ServerMessage::Joined { .. } | ServerMessage::Error { .. }) => return m,
            _ => continue,
        }
    }
}

fn refused(m: &ServerMessage) -> Option<ErrorCode> {
    match m {
        ServerMessage::Error { code, .. } => Some(*code),
        _ => None,
    }
}

#[test]
fn copied_proofs_wrong_keys_and_departed_ids_are_refused() {
    let serve = common::ServeProcess::start(1, &[]);
    let signal = common::signal::SignalProcess::start(serve.control, &[]);
    let ws_url = format!("ws://{}/v1/ws", signal.addr);
    let secret: [u8; 32] = rand::random();
    let call = CallSecret::from_bytes(secret);
    let conf = call.conference_id().to_hex();
    let join_key = call.join_key();

    // A stranger cannot create the conference: the id commits to the real join key.
    let (mut a, ca) = open(&ws_url);
    let fake_key = [7u8; 32];
    let pid = "11111111111111111111111111111111";
    let m = join(
        &mut a,
        &conf,
        pid,
        &proto::join_proof(&fake_key, &ca, &conf, pid),
        Some(&fake_key),
    );
    assert_eq!(refused(&m), Some(ErrorCode::BadProof));
    drop(a);

    // Two members are in the call; bob stays throughout.
    let bob = Participant::spawn(ParticipantConfig::new(
        &ws_url,
        secret,
        Identity::generate("bob", "phone"),
    ))
    .unwrap();
    bob.wait_ready(common::DEADLINE).unwrap();
    let member = Participant::spawn(ParticipantConfig::new(
        &ws_url,
        secret,
        Identity::generate("alice", "laptop"),
    ))
    .unwrap();
    member.wait_ready(common::DEADLINE).unwrap();

    // A proof made for connection A (as a recording of A's join would hold) is worthless on B.
    let (mut a, ca) = open(&ws_url);
    let (mut b, _cb) = open(&ws_url);
    let pid = "22222222222222222222222222222222";
    let proof_for_a = proto::join_proof(&join_key, &ca, &conf, pid);
    assert_eq!(
        refused(&join(&mut b, &conf, pid, &proof_for_a, None)),
        Some(ErrorCode::BadProof)
    );
    // No proof of the call secret: refused.
    assert_eq!(
        refused(&join(&mut b, &conf, pid, &[0; 32], None)),
        Some(ErrorCode::BadProof)
    );
    // The real one on its own connection is admitted.
    assert_eq!(refused(&join(&mut a, &conf, pid, &proof_for_a, None)), None);
    drop(a);
    drop(b);

    // A departed member's id cannot be taken over, even with a valid proof.
    let departed = member.id().to_hex();
    member.leave(common::DEADLINE).unwrap();
    let _ = member.stop();
    let (mut c, cc) = open(&ws_url);
    let proof = proto::join_proof(&join_key, &cc, &conf, &departed);
    let m = join(&mut c, &conf, &departed, &proof, None);
    assert_eq!(refused(&m), Some(ErrorCode::ParticipantTaken), "{m:?}");
    drop(c);

    // The real person joins again, with a fresh id, and is in the call.
    let again = Participant::spawn(ParticipantConfig::new(
        &ws_url,
        secret,
        Identity::generate("alice", "laptop"),
    ))
    .unwrap();
    again
        .wait_ready(common::DEADLINE)
        .expect("the real member joins");
    assert_ne!(again.id().to_hex(), departed);
    assert!(again.wait_stats(common::DEADLINE, |s| s.group_size == 2 && s.decrypted > 10));
    let _ = again.stop();
    let _ = bob.stop();
}
