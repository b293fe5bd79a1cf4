//! Ephemeral identifiers: what the forwarder, the signalling service and their logs see.
//!
//! Owns: the per-call secret and the keys and conference id derived from it, random
//! per-join participant ids, and random per-call SSRCs and RTCP CNAMEs.
//!
//! Must not touch: long-term identities (none enter here), media keys.
//!
//! Keys derived from the call secret are `HMAC-SHA256(call secret, len ‖ label)` with
//! distinct labels. The conference id is a hash of the join key, so the signalling service
//! can check that the first member knows the call secret, and ids of two calls are
//! unrelated pseudo-random values. Participant ids are random per join: nothing links two
//! joins of one device, in one call or across calls.

use std::fmt;
use std::str::FromStr;

use hmac::{Hmac, KeyInit, Mac};
use rand::{CryptoRng, Rng};
use sha2::{Digest, Sha256};
use thiserror::Error;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Length of an ephemeral id on the wire (before hex encoding).
pub const ID_LEN: usize = 16;

const LABEL_CONFERENCE: &[u8] = b"blindfold/v1 conference id";
const LABEL_JOIN_KEY: &[u8] = b"blindfold/v1 join key";
const LABEL_ADMISSION_KEY: &[u8] = b"blindfold/v1 admission key";

/// A hex id string that does not decode to 16 octets.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("an ephemeral id is 32 hex digits")]
pub struct BadId;

/// The random 32-octet secret a call's members share through the sealed channel.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct CallSecret([u8; 32]);

impl CallSecret {
    pub fn generate(rng: &mut impl CryptoRng) -> Self {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn derive(&self, label: &[u8]) -> Zeroizing<[u8; 32]> {
        // HMAC accepts keys of any length; 32 octets cannot fail.
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(&u32::try_from(label.len()).unwrap_or(u32::MAX).to_be_bytes());
        mac.update(label);
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(&mac.finalize().into_bytes());
        out
    }

    /// The key a joiner answers the signalling service's challenge with. The service
    /// learns it from the conference's first member (checked against the conference id,
    /// which commits to it); it opens nothing and admits no one to the group.
    pub fn join_key(&self) -> Zeroizing<[u8; 32]> {
        self.derive(LABEL_JOIN_KEY)
    }

    /// The key of the members' credential proofs (see [`crate::group`]). Never leaves the
    /// participants: with it, the delivery service could mint a member.
    pub fn admission_key(&self) -> Zeroizing<[u8; 32]> {
        self.derive(LABEL_ADMISSION_KEY)
    }

    /// The call's ephemeral conference id: `SHA-256(label ‖ join key)[..16]`, so whoever
    /// shows a join key the id commits to knows the call secret (the signalling service
    /// checks this with `blindfold_signal::proto::conference_id_for`).
    pub fn conference_id(&self) -> ConferenceId {
        ConferenceId(conference_id_for(&self.join_key()))
    }
}

/// `SHA-256(len ‖ label ‖ join key)[..16]`.
pub fn conference_id_for(join_key: &[u8; 32]) -> [u8; ID_LEN] {
    let mut h = Sha256::new();
    h.update(
        u32::try_from(LABEL_CONFERENCE.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    h.update(LABEL_CONFERENCE);
    h.update(join_key);
    let full = h.finalize();
    let mut id = [0u8; ID_LEN];
    id.copy_from_slice(&full[..ID_LEN]);
    id
}

impl fmt::Debug for CallSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CallSecret(..)")
    }
}

macro_rules! ephemeral_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; ID_LEN]);

        impl $name {
            pub const fn from_bytes(bytes: [u8; ID_LEN]) -> Self {
                Self(bytes)
            }
            pub const fn as_bytes(&self) -> &[u8; ID_LEN] {
                &self.0
            }
            /// The wire form: 32 lowercase hex digits.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.to_hex())
            }
        }

        impl FromStr for $name {
            type Err = BadId;
            fn from_str(s: &str) -> Result<Self, BadId> {
                let mut bytes = [0u8; ID_LEN];
                hex::decode_to_slice(s, &mut bytes).map_err(|_| BadId)?;
                Ok(Self(bytes))
            }
        }
    };
}

ephemeral_id!(
    /// A call's ephemeral id, the only name the forwarder has for it.
    ConferenceId
);
ephemeral_id!(
    /// A participant's ephemeral id for one join of one call: random, so two joins of the
    /// same device (or two calls) are unlinkable, and an id is never reused in a call.
    ParticipantId
);

impl ParticipantId {
    /// A fresh random id for one join.
    pub fn random(rng: &mut impl CryptoRng) -> Self {
        let mut bytes = [0u8; ID_LEN];
        rng.fill_bytes(&mut bytes);
        Self(bytes)
    }
}

/// A random SSRC for one of this call's streams (never 0, which some stacks treat as unset).
pub fn random_ssrc(rng: &mut impl Rng) -> u32 {
    loop {
        let ssrc = rng.next_u32();
        if ssrc != 0 {
            return ssrc;
        }
    }
}

/// A random RTCP CNAME for this call (RFC 7022 style: no user or host name in it).
pub fn random_cname(rng: &mut impl Rng) -> String {
    let mut bytes = [0u8; 12];
    rng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conference_ids_commit_to_the_join_key_and_differ_per_call() {
        let a = CallSecret::from_bytes([1; 32]);
        let b = CallSecret::from_bytes([2; 32]);
        assert_eq!(a.conference_id(), a.conference_id());
        assert_ne!(a.conference_id(), b.conference_id());
        assert_eq!(
            a.conference_id().as_bytes(),
            &conference_id_for(&a.join_key())
        );
        assert_ne!(*a.join_key(), *a.admission_key());
        let id = ParticipantId::random(&mut rand::rng());
        assert_ne!(id, ParticipantId::random(&mut rand::rng()));
        assert_eq!(id.to_hex().len(), 32);
        assert_eq!(id.to_hex().parse::<ParticipantId>(), Ok(id));
        assert!("xyz".parse::<ParticipantId>().is_err());
    }
}
