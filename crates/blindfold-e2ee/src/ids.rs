//! Ephemeral identifiers: what the forwarder, the signalling service and their logs see.
//!
//! Owns: the per-call secret, the conference id and participant-device ids derived from it,
//! and random per-call SSRCs and RTCP CNAMEs.
//!
//! Must not touch: long-term identities beyond hashing them into ids, keys for media.
//!
//! Every id is `HMAC-SHA256(call secret, label || fields)[0..16]` where the label and each
//! field are length-prefixed (u32, big-endian), so no two distinct field lists encode to
//! the same input. Without the call secret the ids of one user in two calls are unrelated
//! pseudo-random values: they cannot be linked to each other or to the user.

use std::fmt;
use std::str::FromStr;

use hmac::{Hmac, KeyInit, Mac};
use rand::{CryptoRng, Rng};
use sha2::Sha256;
use thiserror::Error;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Length of an ephemeral id on the wire (before hex encoding).
pub const ID_LEN: usize = 16;

const LABEL_CONFERENCE: &[u8] = b"blindfold/v1 conference id";
const LABEL_PARTICIPANT: &[u8] = b"blindfold/v1 participant id";

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

    fn derive(&self, label: &[u8], fields: &[&[u8]]) -> [u8; ID_LEN] {
        // HMAC accepts keys of any length; 32 octets cannot fail.
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("HMAC takes any key length");
        for part in std::iter::once(label).chain(fields.iter().copied()) {
            let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
            mac.update(&len.to_be_bytes());
            mac.update(part);
        }
        let full = mac.finalize().into_bytes();
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(&full[..ID_LEN]);
        id
    }

    /// The call's ephemeral conference id.
    pub fn conference_id(&self) -> ConferenceId {
        ConferenceId(self.derive(LABEL_CONFERENCE, &[]))
    }

    /// A participant device's ephemeral id in this call, from its long-term user and device
    /// identifiers (which never leave the client).
    pub fn participant_id(&self, user: &[u8], device: &[u8]) -> ParticipantId {
        ParticipantId(self.derive(LABEL_PARTICIPANT, &[user, device]))
    }
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
    /// A participant device's ephemeral id in one call.
    ParticipantId
);

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
    fn ids_are_deterministic_per_call_and_unlinkable_across_calls() {
        let a = CallSecret::from_bytes([1; 32]);
        let b = CallSecret::from_bytes([2; 32]);
        assert_eq!(
            a.participant_id(b"alice", b"phone"),
            a.participant_id(b"alice", b"phone")
        );
        assert_ne!(
            a.participant_id(b"alice", b"phone"),
            b.participant_id(b"alice", b"phone")
        );
        assert_ne!(a.conference_id(), b.conference_id());
        // Length prefixes keep ("ab","c") and ("a","bc") apart.
        assert_ne!(a.participant_id(b"ab", b"c"), a.participant_id(b"a", b"bc"));
        let id = a.participant_id(b"alice", b"phone");
        assert_eq!(id.to_hex().len(), 32);
        assert_eq!(id.to_hex().parse::<ParticipantId>(), Ok(id));
        assert!("xyz".parse::<ParticipantId>().is_err());
    }
}
