//! Key messages sealed end to end to one recipient and authenticated to their sender.
//!
//! Owns: the key-message framing (a clear header naming purpose, sender, recipient and
//! epoch, followed by the sealed body), the [`KeyTransport`] trait an application can
//! implement over its own E2EE messenger (MLS, Proteus), and the default transport,
//! [`HpkeTransport`]: HPKE (RFC 9180) in auth mode with DHKEM(X25519, HKDF-SHA256),
//! HKDF-SHA256 and ChaCha20-Poly1305, via the `hpke` crate.
//!
//! Must not touch: the key schedule's decisions (which secret, to whom, when); I/O.
//!
//! Binding: HPKE `info` carries both ids, and the AEAD's associated data is the whole clear
//! header (version, purpose, sender, recipient, epoch). Auth mode mixes the sender's static
//! key into the KEM, so only the holder of the sender's private key can produce a message
//! that opens. Changing any octet (header, encapsulated key, ciphertext or tag) makes
//! opening fail; the signalling service that relays the messages can neither read nor
//! forge nor redirect them.

use std::collections::HashMap;
use std::fmt;

use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use rand::CryptoRng;
use thiserror::Error;
use zeroize::Zeroizing;

use super::ids::{ID_LEN, ParticipantId};
use super::srtp::EpochId;

type Kem = X25519HkdfSha256;

/// Framing version of key messages.
pub const KEY_MESSAGE_VERSION: u8 = 1;
/// Length of the clear key-message header.
pub const KEY_MESSAGE_HEADER_LEN: usize = 2 + 2 * ID_LEN + 4;
/// Length of an X25519 public key, as carried in membership events.
pub const PUBLIC_KEY_LEN: usize = 32;

const HPKE_INFO_LABEL: &[u8] = b"blindfold/v1 hpke key message";

/// A random source owned by a long-lived object (the key schedule, the HPKE transport).
pub type BoxRng = Box<dyn CryptoRng + Send>;

/// A [`BoxRng`] seeded from the operating system (ChaCha12 via `rand::rngs::StdRng`).
/// `rand::rng()` is not `Send`, hence this helper.
pub fn system_rng() -> BoxRng {
    Box::new(rand::make_rng::<rand::rngs::StdRng>())
}

/// Why a key message could not be sealed or opened.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SealError {
    #[error("key message is truncated or malformed")]
    Malformed,
    #[error("unsupported key message version {0}")]
    UnsupportedVersion(u8),
    #[error("key message is addressed to another participant")]
    NotForMe,
    #[error("key message names a sender other than the one that sent it")]
    SenderMismatch,
    #[error("no transport key known for participant {0}")]
    UnknownPeer(ParticipantId),
    #[error("invalid transport public key")]
    BadPeerKey,
    #[error("key message did not open (altered, misaddressed or forged)")]
    OpenFailed,
    #[error("sealing failed")]
    SealFailed,
}

/// What a key message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum KeyPurpose {
    /// A 32-octet epoch secret for the epoch named in the header.
    EpochSecret = 1,
    /// The 32-octet per-call secret that ids derive from (epoch field unused, zero).
    CallSecret = 2,
}

/// The clear, authenticated part of a key message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyMessageHeader {
    pub purpose: KeyPurpose,
    pub sender: ParticipantId,
    pub recipient: ParticipantId,
    pub epoch: EpochId,
}

impl KeyMessageHeader {
    pub fn encode(&self) -> [u8; KEY_MESSAGE_HEADER_LEN] {
        let mut out = [0u8; KEY_MESSAGE_HEADER_LEN];
        out[0] = KEY_MESSAGE_VERSION;
        out[1] = self.purpose as u8;
        out[2..2 + ID_LEN].copy_from_slice(self.sender.as_bytes());
        out[2 + ID_LEN..2 + 2 * ID_LEN].copy_from_slice(self.recipient.as_bytes());
        out[2 + 2 * ID_LEN..].copy_from_slice(&self.epoch.to_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, SealError> {
        if bytes.len() < KEY_MESSAGE_HEADER_LEN {
            return Err(SealError::Malformed);
        }
        if bytes[0] != KEY_MESSAGE_VERSION {
            return Err(SealError::UnsupportedVersion(bytes[0]));
        }
        let purpose = match bytes[1] {
            1 => KeyPurpose::EpochSecret,
            2 => KeyPurpose::CallSecret,
            _ => return Err(SealError::Malformed),
        };
        let id = |at: usize| {
            let mut b = [0u8; ID_LEN];
            b.copy_from_slice(&bytes[at..at + ID_LEN]);
            ParticipantId::from_bytes(b)
        };
        let e = 2 + 2 * ID_LEN;
        Ok(Self {
            purpose,
            sender: id(2),
            recipient: id(2 + ID_LEN),
            epoch: EpochId::from_bytes([bytes[e], bytes[e + 1], bytes[e + 2], bytes[e + 3]]),
        })
    }
}

/// The sealing box a key schedule hands secrets to: seal for one recipient, open from one
/// sender. Moving the resulting bytes is the application's business (signalling).
///
/// An implementation must authenticate the sender and bind `aad` (the clear header): a
/// message that opens must come from `sender` and carry exactly this header.
pub trait KeyTransport: Send {
    /// Learns a member's transport key from its membership event. Messengers with their
    /// own key directory may ignore it.
    fn add_peer(&mut self, peer: ParticipantId, transport_key: &[u8]) -> Result<(), SealError>;
    /// Forgets a member that left.
    fn remove_peer(&mut self, peer: &ParticipantId);
    fn seal(
        &mut self,
        recipient: &ParticipantId,
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, SealError>;
    fn open(
        &mut self,
        sender: &ParticipantId,
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SealError>;
}

/// Seals `secret` as a key message: clear header followed by the transport's sealed body.
pub fn seal_key_message(
    transport: &mut dyn KeyTransport,
    header: &KeyMessageHeader,
    secret: &[u8],
) -> Result<Vec<u8>, SealError> {
    let head = header.encode();
    let body = transport.seal(&header.recipient, &head, secret)?;
    let mut message = Vec::with_capacity(head.len() + body.len());
    message.extend_from_slice(&head);
    message.extend_from_slice(&body);
    Ok(message)
}

/// Opens a key message that signalling says came from `from`, addressed to `me`.
pub fn open_key_message(
    transport: &mut dyn KeyTransport,
    me: &ParticipantId,
    from: &ParticipantId,
    message: &[u8],
) -> Result<(KeyMessageHeader, Zeroizing<Vec<u8>>), SealError> {
    let header = KeyMessageHeader::decode(message)?;
    if header.recipient != *me {
        return Err(SealError::NotForMe);
    }
    if header.sender != *from {
        return Err(SealError::SenderMismatch);
    }
    let plaintext = transport.open(
        from,
        &message[..KEY_MESSAGE_HEADER_LEN],
        &message[KEY_MESSAGE_HEADER_LEN..],
    )?;
    Ok((header, plaintext))
}

/// A participant device's X25519 key pair for this call.
#[derive(Clone)]
pub struct KeyPair {
    private: <Kem as hpke::Kem>::PrivateKey,
    public: <Kem as hpke::Kem>::PublicKey,
}

impl KeyPair {
    pub fn generate(rng: &mut impl CryptoRng) -> Self {
        let (private, public) = Kem::gen_keypair_with_rng(rng);
        Self { private, public }
    }

    /// The public key to publish in this device's membership event.
    pub fn public_bytes(&self) -> [u8; PUBLIC_KEY_LEN] {
        let mut out = [0u8; PUBLIC_KEY_LEN];
        out.copy_from_slice(&self.public.to_bytes());
        out
    }
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyPair({})", hex::encode(self.public_bytes()))
    }
}

/// [`KeyTransport`] over HPKE auth mode (RFC 9180 §5.1.3).
pub struct HpkeTransport {
    me: ParticipantId,
    keys: KeyPair,
    peers: HashMap<ParticipantId, <Kem as hpke::Kem>::PublicKey>,
    rng: BoxRng,
}

impl HpkeTransport {
    pub fn new(me: ParticipantId, keys: KeyPair, rng: BoxRng) -> Self {
        Self {
            me,
            keys,
            peers: HashMap::new(),
            rng,
        }
    }

    fn info(sender: &ParticipantId, recipient: &ParticipantId) -> Vec<u8> {
        let mut info = Vec::with_capacity(HPKE_INFO_LABEL.len() + 2 * ID_LEN);
        info.extend_from_slice(HPKE_INFO_LABEL);
        info.extend_from_slice(sender.as_bytes());
        info.extend_from_slice(recipient.as_bytes());
        info
    }
}

impl KeyTransport for HpkeTransport {
    fn add_peer(&mut self, peer: ParticipantId, transport_key: &[u8]) -> Result<(), SealError> {
        let key = <Kem as hpke::Kem>::PublicKey::from_bytes(transport_key)
            .map_err(|_| SealError::BadPeerKey)?;
        self.peers.insert(peer, key);
        Ok(())
    }

    fn remove_peer(&mut self, peer: &ParticipantId) {
        self.peers.remove(peer);
    }

    fn seal(
        &mut self,
        recipient: &ParticipantId,
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, SealError> {
        let peer = self
            .peers
            .get(recipient)
            .ok_or(SealError::UnknownPeer(*recipient))?;
        let mode = OpModeS::Auth((self.keys.private.clone(), self.keys.public.clone()));
        let info = Self::info(&self.me, recipient);
        let (encapped, ciphertext) = hpke::single_shot_seal_with_rng::<
            ChaCha20Poly1305,
            HkdfSha256,
            Kem,
        >(&mode, peer, &info, plaintext, aad, &mut self.rng)
        .map_err(|_| SealError::SealFailed)?;
        let enc = encapped.to_bytes();
        let mut out = Vec::with_capacity(enc.len() + ciphertext.len());
        out.extend_from_slice(&enc);
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    fn open(
        &mut self,
        sender: &ParticipantId,
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let peer = self
            .peers
            .get(sender)
            .ok_or(SealError::UnknownPeer(*sender))?;
        if sealed.len() < PUBLIC_KEY_LEN {
            return Err(SealError::Malformed);
        }
        let (enc, ciphertext) = sealed.split_at(PUBLIC_KEY_LEN);
        let encapped =
            <Kem as hpke::Kem>::EncappedKey::from_bytes(enc).map_err(|_| SealError::Malformed)?;
        let mode = OpModeR::Auth(peer.clone());
        let info = Self::info(sender, &self.me);
        hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, Kem>(
            &mode,
            &self.keys.private,
            &encapped,
            &info,
            ciphertext,
            aad,
        )
        .map(Zeroizing::new)
        .map_err(|_| SealError::OpenFailed)
    }
}
