//! What a participant knows about itself, and what of it may leave the device.
//!
//! Owns the long-lived identity (user name, device name, long-term key), the derivation of
//! the per-call ephemeral ids from it (through `blindfold_e2ee::ids`), and the proof that binds
//! a per-call key-transport key to the call. Must not touch the network: nothing here is
//! sent except the ephemeral ids, the per-call public key and the proof.
//!
//! The long-lived identity never leaves the participant: signalling and the forwarder see
//! only `HMAC(call secret, ...)`-derived ids, which cannot be linked across calls without
//! the call secret (a test checks that neither the user name, the device name nor the
//! long-term key appears at the service or the forwarder).

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use blindfold_e2ee::{CallSecret, ConferenceId, ParticipantId};

const LABEL_KEY_PROOF: &[u8] = b"blindfold/v1 key proof";
/// Octets of a key proof.
pub const KEY_PROOF_LEN: usize = 16;

/// A participant device's long-lived identity. In a real application the messenger holds
/// it (and authenticates the long-term key); here it only feeds id derivation.
#[derive(Clone)]
pub struct Identity {
    /// User name, e.g. `alice@example.org`.
    pub user: String,
    /// Device name, e.g. `laptop`.
    pub device: String,
    /// Long-term secret key of the device (never sent anywhere).
    pub long_term_key: [u8; 32],
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("user", &self.user)
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// An identity with a fresh random long-term key.
    pub fn generate(user: &str, device: &str) -> Self {
        let mut long_term_key = [0u8; 32];
        rand::fill(&mut long_term_key);
        Self {
            user: user.to_string(),
            device: device.to_string(),
            long_term_key,
        }
    }

    /// This device's ephemeral id in the call with `call` as its secret.
    pub fn participant_id(&self, call: &CallSecret) -> ParticipantId {
        call.participant_id(self.user.as_bytes(), self.device.as_bytes())
    }
}

/// The call's ephemeral conference id.
pub fn conference_id(call: &CallSecret) -> ConferenceId {
    call.conference_id()
}

/// `HMAC-SHA256(call secret, label, id, key)[..16]` with length-prefixed fields: shows the
/// other members that whoever announced `key` for `id` knows the call secret, which the
/// signalling service does not, so the service cannot substitute its own key.
pub fn key_proof(call: &CallSecret, id: &ParticipantId, key: &[u8]) -> [u8; KEY_PROOF_LEN] {
    // HMAC takes keys of any length.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(call.as_bytes())
        .expect("HMAC accepts any key length");
    for part in [LABEL_KEY_PROOF, id.as_bytes().as_slice(), key] {
        mac.update(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
        mac.update(part);
    }
    let full = mac.finalize().into_bytes();
    let mut out = [0u8; KEY_PROOF_LEN];
    out.copy_from_slice(&full[..KEY_PROOF_LEN]);
    out
}

/// Checks a proof in constant time.
pub fn verify_key_proof(call: &CallSecret, id: &ParticipantId, key: &[u8], proof: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    proof.len() == KEY_PROOF_LEN && bool::from(key_proof(call, id, key).ct_eq(proof))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_per_call_and_proofs_bind_key_and_id() {
        let me = Identity::generate("alice@example.org", "laptop");
        let (c1, c2) = (
            CallSecret::from_bytes([1; 32]),
            CallSecret::from_bytes([2; 32]),
        );
        assert_ne!(me.participant_id(&c1), me.participant_id(&c2));
        let id = me.participant_id(&c1);
        let proof = key_proof(&c1, &id, b"key");
        assert!(verify_key_proof(&c1, &id, b"key", &proof));
        assert!(!verify_key_proof(&c1, &id, b"kez", &proof));
        assert!(!verify_key_proof(&c2, &id, b"key", &proof));
        assert!(!verify_key_proof(
            &c1,
            &me.participant_id(&c2),
            b"key",
            &proof
        ));
        assert!(!format!("{me:?}").contains(&hex::encode(me.long_term_key)));
    }
}
