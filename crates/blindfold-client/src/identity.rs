//! What a participant knows about itself, and what of it may leave the device.
//!
//! Owns the long-lived identity (user name, device name, long-term key). Must not touch the
//! network: nothing here is ever sent.
//!
//! The long-lived identity never leaves the participant: signalling and the forwarder see
//! only a conference id derived from the call secret and a participant id that is random
//! per join (a test checks that neither the user name, the device name nor the long-term
//! key appears at the service or the forwarder). In the group, the participant is a per-call
//! MLS credential with a fresh signature key (`blindfold_e2ee::group`).

use std::fmt;

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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_no_long_term_key() {
        let me = Identity::generate("alice@example.org", "laptop");
        assert!(!format!("{me:?}").contains(&hex::encode(me.long_term_key)));
    }
}
