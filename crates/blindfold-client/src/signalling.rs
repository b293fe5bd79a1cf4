//! The participant's side of the signalling WebSocket: framing, and the join exchange
//! (challenge, proof, KeyPackage, `joined`).
//!
//! Owns: connecting, answering the service's challenge with a proof under the call's join
//! key, registering the join key when the service does not know the conference yet, and
//! reading frames. Must not touch: the group or media keys (the KeyPackage comes in as
//! bytes), the UDP socket.

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use super::participant::ClientError;
use blindfold_e2ee::{CallSecret, ParticipantId};
use blindfold_signal::proto::{
    self, Candidate, ClientMessage, ErrorCode, Ice, MemberInfo, ServerMessage,
};

pub(crate) type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub(crate) async fn send_ws(ws: &mut Ws, msg: ClientMessage) -> Result<(), ClientError> {
    ws.send(Message::Text(proto::encode(msg).into()))
        .await
        .map_err(|e| ClientError::Signal(e.to_string()))
}

/// Next server message; `None` when the connection closed.
pub(crate) async fn recv_ws(ws: &mut Ws) -> Result<Option<ServerMessage>, ClientError> {
    loop {
        match ws.next().await {
            None => return Ok(None),
            Some(Err(e)) => return Err(ClientError::Signal(e.to_string())),
            Some(Ok(Message::Text(t))) => {
                return proto::parse_server(t.as_str())
                    .map(Some)
                    .map_err(|e| ClientError::Protocol(e.to_string()));
            }
            Some(Ok(Message::Close(_))) => return Ok(None),
            Some(Ok(_)) => continue,
        }
    }
}

pub(crate) fn parse_id(s: &str) -> Result<ParticipantId, ClientError> {
    s.parse()
        .map_err(|_| ClientError::Protocol("malformed participant id".into()))
}

/// What the service told the joiner.
pub(crate) struct Admitted {
    pub members: Vec<MemberInfo>,
    pub ice: Ice,
    pub candidates: Vec<Candidate>,
}

async fn expect_server(ws: &mut Ws, what: &'static str) -> Result<ServerMessage, ClientError> {
    recv_ws(ws)
        .await?
        .ok_or_else(|| ClientError::Signal(format!("closed while waiting for {what}")))
}

/// Connects, answers the challenge and joins with `key_package`. The join key is sent only
/// if the service does not know the conference yet (it then checks it against the id).
pub(crate) async fn join(
    url: &str,
    call: &CallSecret,
    me: ParticipantId,
    key_package: &[u8],
) -> Result<(Ws, Admitted), ClientError> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(|e| ClientError::Signal(e.to_string()))?;
    let nonce = match expect_server(&mut ws, "the challenge").await? {
        ServerMessage::Challenge { nonce } => {
            hex::decode(nonce).map_err(|_| ClientError::Protocol("malformed challenge".into()))?
        }
        _ => return Err(ClientError::Protocol("expected a challenge".into())),
    };
    let conference = call.conference_id().to_hex();
    let participant = me.to_hex();
    let join_key = call.join_key();
    let proof = proto::join_proof(&join_key, &nonce, &conference, &participant);
    let mut with_key = false;
    loop {
        send_ws(
            &mut ws,
            ClientMessage::Join {
                conference: conference.clone(),
                participant: participant.clone(),
                proof: hex::encode(proof),
                key_package: hex::encode(key_package),
                join_key: with_key.then(|| hex::encode(*join_key)),
            },
        )
        .await?;
        loop {
            match expect_server(&mut ws, "`joined`").await? {
                ServerMessage::Joined {
                    members,
                    ice,
                    candidates,
                    ..
                } => {
                    return Ok((
                        ws,
                        Admitted {
                            members,
                            ice,
                            candidates,
                        },
                    ));
                }
                ServerMessage::Error {
                    code: ErrorCode::ConferenceUnknown,
                    ..
                } if !with_key => {
                    with_key = true;
                    break;
                }
                ServerMessage::Error { code, message } => {
                    return Err(ClientError::Refused { code, message });
                }
                _ => continue,
            }
        }
    }
}
