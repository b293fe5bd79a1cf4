//! One participant's MLS client (RFC 9420, through openmls) for one call: its per-call
//! credential and KeyPackages, the group it is in, and the admission rule every Add must
//! pass. Sans-IO: bytes in, bytes and epoch changes out; all state in memory.
//!
//! Owns: the MLS state (openmls' in-memory storage, the signature key, the group), the
//! per-call credential and its proof of the call secret, the sets of identities, signature
//! keys and KeyPackages already seen in this call, and the export of each epoch's media
//! secret and epoch authenticator. Must not touch: who commits when (that is
//! [`super::session`]), media keys beyond exporting the epoch secret, sockets, clocks (openmls
//! itself reads the wall clock only to check KeyPackage lifetimes).
//!
//! # Admission: joins prove themselves to the group
//! A member's credential is a BasicCredential whose identity is its ephemeral participant id
//! followed by `HMAC-SHA256(admission key, label ‖ conference ‖ id ‖ signature key)[..16]`,
//! where the admission key derives from the call secret (never sent anywhere). The MAC binds
//! the signature key, so a copied credential is useless without the matching private key,
//! and the delivery service, which does not know the call secret, cannot mint one. Every
//! member checks it on every Add it commits or processes and on every leaf of a Welcome.
//! An exact replay of a KeyPackage is caught by refusing any Add whose participant id,
//! signature key or KeyPackage reference was already seen in this call (participant ids are
//! random per join, so a returning member simply has a new one); KeyPackages also expire
//! after [`KEY_PACKAGE_LIFETIME_S`]. A replayed Welcome fails: its init key was consumed.

use std::collections::HashSet;
use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use thiserror::Error;
use zeroize::{Zeroize, Zeroizing};

use super::ids::{CallSecret, ConferenceId, ID_LEN, ParticipantId};

/// MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519 (0x0001): the suite every MLS stack must
/// implement, ts-mls included (the browser plan).
pub const CIPHERSUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;
/// MLS exporter label of the media epoch secret.
pub const MEDIA_EXPORTER_LABEL: &str = "blindfold/v1 media";
/// Octets of the media epoch secret.
pub const MEDIA_SECRET_LEN: usize = 32;
/// How long a KeyPackage is valid (openmls adds a 1 h margin into the past for skew).
pub const KEY_PACKAGE_LIFETIME_S: u64 = 10 * 60;
/// Octets of the admission MAC at the end of a credential identity.
pub const ADMISSION_MAC_LEN: usize = 16;
/// Octets of a credential identity: participant id then admission MAC.
pub const IDENTITY_LEN: usize = ID_LEN + ADMISSION_MAC_LEN;

const LABEL_ADMISSION: &[u8] = b"blindfold/v1 member credential";

/// Why the MLS layer refused something. Network input never panics; it ends here.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum GroupError {
    #[error("not an MLS message of the expected kind")]
    Malformed,
    #[error("not in a group yet")]
    NoGroup,
    #[error("message is for epoch {got}, the group is at {at}")]
    WrongEpoch { got: u64, at: u64 },
    #[error("message is for another group")]
    OtherGroup,
    #[error("credential does not prove the call secret")]
    BadCredential,
    #[error("participant id, signature key or KeyPackage already seen in this call")]
    Replayed,
    #[error("the KeyPackage is not the announced participant's")]
    WrongParticipant,
    #[error("Welcome refused: {0}")]
    Welcome(String),
    #[error("openmls: {0}")]
    Mls(String),
}

fn mls<E: fmt::Debug>(e: E) -> GroupError {
    GroupError::Mls(format!("{e:?}"))
}

/// A new epoch this member is now in.
#[derive(Clone)]
pub struct EpochChange {
    /// The MLS epoch number.
    pub epoch: u64,
    /// The epoch's media secret (MLS exporter).
    pub secret: Zeroizing<[u8; MEDIA_SECRET_LEN]>,
    /// The MLS epoch authenticator (source of the verification code).
    pub authenticator: Vec<u8>,
    /// Members of the new epoch, this one included.
    pub roster: Vec<ParticipantId>,
    /// Members the commit removed.
    pub removed: Vec<ParticipantId>,
    /// Members the commit added.
    pub added: Vec<ParticipantId>,
}

impl fmt::Debug for EpochChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EpochChange")
            .field("epoch", &self.epoch)
            .field("roster", &self.roster.len())
            .field("removed", &self.removed)
            .field("added", &self.added)
            .finish_non_exhaustive()
    }
}

/// What one inbound handshake message did.
#[derive(Debug)]
pub enum Processed {
    /// A commit merged (another member's, or ours echoed back by the delivery service).
    Merged(EpochChange),
    /// A commit that removed this member: it is out of the group.
    SelfRemoved,
    /// A member proposed its own removal (a voluntary leave, signed by the leaver).
    LeaveProposed(ParticipantId),
    /// For a later epoch than ours: keep it and try again after the next merge.
    Future(u64),
    /// Nothing to do (an own proposal echoed, an application message).
    Ignored,
}

/// A commit ready for the delivery service, with the Welcome for the members it adds.
pub struct Commit {
    /// The MLSMessage (PrivateMessage) carrying the Commit.
    pub message: Vec<u8>,
    /// The Welcome and whom it is for.
    pub welcome: Option<(Vec<ParticipantId>, Vec<u8>)>,
    /// The epoch the commit was made in.
    pub epoch: u64,
}

/// The call-wide inputs of admission: conference id and the key proofs are made under.
#[derive(Clone)]
pub struct Admission {
    conference: ConferenceId,
    key: Zeroizing<[u8; 32]>,
}

impl Admission {
    pub fn new(call: &CallSecret) -> Self {
        Self {
            conference: call.conference_id(),
            key: call.admission_key(),
        }
    }

    fn mac(&self, id: &ParticipantId, signature_key: &[u8]) -> [u8; ADMISSION_MAC_LEN] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(self.key.as_slice())
            .expect("HMAC takes any key length");
        for part in [
            LABEL_ADMISSION,
            self.conference.as_bytes().as_slice(),
            id.as_bytes().as_slice(),
            signature_key,
        ] {
            mac.update(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
            mac.update(part);
        }
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; ADMISSION_MAC_LEN];
        out.copy_from_slice(&full[..ADMISSION_MAC_LEN]);
        out
    }

    /// The credential identity for `id` with this signature key.
    pub fn identity(&self, id: &ParticipantId, signature_key: &[u8]) -> [u8; IDENTITY_LEN] {
        let mut out = [0u8; IDENTITY_LEN];
        out[..ID_LEN].copy_from_slice(id.as_bytes());
        out[ID_LEN..].copy_from_slice(&self.mac(id, signature_key));
        out
    }

    /// The participant id a credential proves, if its MAC verifies for this signature key.
    pub fn verify(&self, credential: &Credential, signature_key: &[u8]) -> Option<ParticipantId> {
        let basic = BasicCredential::try_from(credential.clone()).ok()?;
        let identity = basic.identity();
        if identity.len() != IDENTITY_LEN {
            return None;
        }
        let mut raw = [0u8; ID_LEN];
        raw.copy_from_slice(&identity[..ID_LEN]);
        let id = ParticipantId::from_bytes(raw);
        let ok: bool = self
            .mac(&id, signature_key)
            .ct_eq(&identity[ID_LEN..])
            .into();
        ok.then_some(id)
    }
}

/// The participant id in a credential, without checking its proof (for members already in
/// the tree, whose proofs were checked when they were added).
fn credential_id(credential: &Credential) -> Option<ParticipantId> {
    let basic = BasicCredential::try_from(credential.clone()).ok()?;
    let raw: [u8; ID_LEN] = basic.identity().get(..ID_LEN)?.try_into().ok()?;
    Some(ParticipantId::from_bytes(raw))
}

/// One participant's MLS client for one call.
pub struct MlsMember {
    me: ParticipantId,
    admission: Admission,
    provider: OpenMlsRustCrypto,
    signer: SignatureKeyPair,
    credential: CredentialWithKey,
    group: Option<MlsGroup>,
    /// The commit this member made and the delivery service has not yet echoed back.
    pending_commit: Option<Vec<u8>>,
    seen_ids: HashSet<ParticipantId>,
    seen_signature_keys: HashSet<Vec<u8>>,
    seen_key_packages: HashSet<Vec<u8>>,
}

impl MlsMember {
    /// A fresh per-call credential for `me` (a new Ed25519 key each call).
    pub fn new(call: &CallSecret, me: ParticipantId) -> Result<Self, GroupError> {
        let admission = Admission::new(call);
        let signer = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).map_err(mls)?;
        let identity = admission.identity(&me, signer.public());
        let credential = CredentialWithKey {
            credential: BasicCredential::new(identity.to_vec()).into(),
            signature_key: signer.public().into(),
        };
        let mut seen_ids = HashSet::new();
        seen_ids.insert(me);
        Ok(Self {
            me,
            admission,
            provider: OpenMlsRustCrypto::default(),
            signer,
            credential,
            group: None,
            pending_commit: None,
            seen_ids,
            seen_signature_keys: HashSet::new(),
            seen_key_packages: HashSet::new(),
        })
    }

    pub fn me(&self) -> ParticipantId {
        self.me
    }

    /// A fresh KeyPackage (an MLSMessage) to hand the delivery service with the join. Its
    /// private keys stay in memory until a Welcome consumes them.
    pub fn key_package(&mut self) -> Result<Vec<u8>, GroupError> {
        let bundle = KeyPackage::builder()
            .key_package_lifetime(Lifetime::new(KEY_PACKAGE_LIFETIME_S))
            .build(
                CIPHERSUITE,
                &self.provider,
                &self.signer,
                self.credential.clone(),
            )
            .map_err(mls)?;
        let kp = bundle.key_package();
        if let Ok(r) = kp.hash_ref(self.provider.crypto()) {
            self.seen_key_packages.insert(r.as_slice().to_vec());
        }
        MlsMessageOut::from(kp.clone())
            .tls_serialize_detached()
            .map_err(mls)
    }

    fn group_config(&self) -> MlsGroupCreateConfig {
        MlsGroupCreateConfig::builder()
            .ciphersuite(CIPHERSUITE)
            // The Welcome carries the tree, so the delivery service keeps no MLS state.
            .use_ratchet_tree_extension(true)
            // Handshakes as PrivateMessage: the service sees group id, epoch, content type.
            .wire_format_policy(PURE_CIPHERTEXT_WIRE_FORMAT_POLICY)
            // No secrets of past epochs: the media layer keeps what it needs for its grace.
            .max_past_epochs(0)
            .build()
    }

    /// Starts the call's group alone (the first member), at epoch 0.
    pub fn create_group(&mut self) -> Result<EpochChange, GroupError> {
        let group = MlsGroup::new_with_group_id(
            &self.provider,
            &self.signer,
            &self.group_config(),
            GroupId::from_slice(self.admission.conference.as_bytes()),
            self.credential.clone(),
        )
        .map_err(mls)?;
        self.seen_signature_keys
            .insert(self.signer.public().to_vec());
        self.group = Some(group);
        self.epoch_change(Vec::new(), Vec::new())
    }

    pub fn in_group(&self) -> bool {
        self.group.as_ref().is_some_and(MlsGroup::is_active)
    }

    /// The MLS epoch, once in a group.
    pub fn epoch(&self) -> Option<u64> {
        self.group.as_ref().map(|g| g.epoch().as_u64())
    }

    /// The current epoch authenticator.
    pub fn epoch_authenticator(&self) -> Option<Vec<u8>> {
        self.group
            .as_ref()
            .map(|g| g.epoch_authenticator().as_slice().to_vec())
    }

    /// (leaf index, participant id) of every member, in leaf order.
    pub fn roster(&self) -> Vec<(u32, ParticipantId)> {
        let Some(group) = &self.group else {
            return Vec::new();
        };
        group
            .members()
            .filter_map(|m| credential_id(&m.credential).map(|id| (m.index.u32(), id)))
            .collect()
    }

    /// This member's leaf index.
    pub fn own_leaf(&self) -> Option<u32> {
        self.group.as_ref().map(|g| g.own_leaf_index().u32())
    }

    pub fn has_pending_commit(&self) -> bool {
        self.pending_commit.is_some()
    }

    /// Checks a KeyPackage the delivery service relayed for `announced`: signature,
    /// lifetime and suite (openmls), the credential's proof of the call secret, that it
    /// names the announced participant, and that nothing in it was seen before.
    pub fn validate_key_package(
        &self,
        bytes: &[u8],
        announced: &ParticipantId,
    ) -> Result<KeyPackage, GroupError> {
        let msg = MlsMessageIn::tls_deserialize_exact(bytes).map_err(|_| GroupError::Malformed)?;
        let MlsMessageBodyIn::KeyPackage(kp) = msg.extract() else {
            return Err(GroupError::Malformed);
        };
        let kp = kp
            .validate(self.provider.crypto(), ProtocolVersion::Mls10)
            .map_err(mls)?;
        if kp.ciphersuite() != CIPHERSUITE {
            return Err(GroupError::Malformed);
        }
        let id = self.check_key_package(&kp)?;
        if id != *announced {
            return Err(GroupError::WrongParticipant);
        }
        Ok(kp)
    }

    fn check_key_package(&self, kp: &KeyPackage) -> Result<ParticipantId, GroupError> {
        let leaf = kp.leaf_node();
        let id = self
            .admission
            .verify(leaf.credential(), leaf.signature_key().as_slice())
            .ok_or(GroupError::BadCredential)?;
        let kp_ref = kp.hash_ref(self.provider.crypto()).map_err(mls)?;
        let in_tree = self.roster().iter().any(|(_, m)| *m == id);
        if self.seen_ids.contains(&id)
            || in_tree
            || self
                .seen_signature_keys
                .contains(leaf.signature_key().as_slice())
            || self.seen_key_packages.contains(kp_ref.as_slice())
        {
            return Err(GroupError::Replayed);
        }
        Ok(id)
    }

    fn remember(&mut self, kp: &KeyPackage) {
        let leaf = kp.leaf_node();
        if let Some(id) = credential_id(leaf.credential()) {
            self.seen_ids.insert(id);
        }
        self.seen_signature_keys
            .insert(leaf.signature_key().as_slice().to_vec());
        if let Ok(r) = kp.hash_ref(self.provider.crypto()) {
            self.seen_key_packages.insert(r.as_slice().to_vec());
        }
    }

    /// A commit removing `removes` and adding `adds` (validated KeyPackages). It stays
    /// pending until the delivery service echoes it back as the epoch's winner; a previous
    /// pending commit of ours is dropped first.
    pub fn commit(
        &mut self,
        removes: &[ParticipantId],
        adds: Vec<KeyPackage>,
    ) -> Result<Commit, GroupError> {
        self.clear_pending_commit();
        let roster = self.roster();
        let leaves: Vec<LeafNodeIndex> = roster
            .iter()
            .filter(|(_, id)| removes.contains(id))
            .map(|(leaf, _)| LeafNodeIndex::new(*leaf))
            .collect();
        let added: Vec<ParticipantId> = adds
            .iter()
            .filter_map(|kp| credential_id(kp.leaf_node().credential()))
            .collect();
        let group = self.group.as_mut().ok_or(GroupError::NoGroup)?;
        let epoch = group.epoch().as_u64();
        let bundle = group
            .commit_builder()
            .propose_adds(adds)
            .propose_removals(leaves)
            .load_psks(self.provider.storage())
            .map_err(mls)?
            .build(
                self.provider.rand(),
                self.provider.crypto(),
                &self.signer,
                |_| true,
            )
            .map_err(mls)?
            .stage_commit(&self.provider)
            .map_err(mls)?;
        let welcome = match bundle.to_welcome_msg() {
            Some(w) => Some((added, w.tls_serialize_detached().map_err(mls)?)),
            None => None,
        };
        let message = bundle.commit().tls_serialize_detached().map_err(mls)?;
        self.pending_commit = Some(message.clone());
        Ok(Commit {
            message,
            welcome,
            epoch,
        })
    }

    /// Forgets our pending commit (another one won, or the service never echoed it).
    pub fn clear_pending_commit(&mut self) {
        self.pending_commit = None;
        if let Some(group) = &mut self.group
            && group.pending_commit().is_some()
        {
            let _ = group.clear_pending_commit(self.provider.storage());
        }
    }

    /// A signed proposal to remove ourselves (a voluntary leave): any member may commit it.
    pub fn propose_leave(&mut self) -> Result<Vec<u8>, GroupError> {
        self.clear_pending_commit();
        let group = self.group.as_mut().ok_or(GroupError::NoGroup)?;
        let msg = group
            .leave_group(&self.provider, &self.signer)
            .map_err(mls)?;
        msg.tls_serialize_detached().map_err(mls)
    }

    /// Joins from a Welcome: every leaf must prove the call secret, and this member must be
    /// in the tree. A replayed or foreign Welcome matches no KeyPackage of ours.
    pub fn join(&mut self, bytes: &[u8]) -> Result<EpochChange, GroupError> {
        if self.group.is_some() {
            return Err(GroupError::Welcome("already in a group".into()));
        }
        let msg = MlsMessageIn::tls_deserialize_exact(bytes).map_err(|_| GroupError::Malformed)?;
        let MlsMessageBodyIn::Welcome(welcome) = msg.extract() else {
            return Err(GroupError::Malformed);
        };
        // openmls deletes the KeyPackage a Welcome names before checking the rest, so a
        // tampered copy arriving first would spoil the genuine one: keep the storage as it
        // was and put it back if this Welcome fails.
        let backup = self
            .provider
            .storage()
            .values
            .read()
            .map(|v| v.clone())
            .map_err(|_| GroupError::Mls("storage lock".into()))?;
        let result = self.join_welcome(welcome);
        if let Ok(mut values) = self.provider.storage().values.write() {
            if result.is_err() {
                for v in values.values_mut() {
                    v.zeroize();
                }
                *values = backup;
            } else {
                let mut backup = backup;
                for v in backup.values_mut() {
                    v.zeroize();
                }
            }
        }
        result
    }

    fn join_welcome(&mut self, welcome: Welcome) -> Result<EpochChange, GroupError> {
        let join_config = MlsGroupJoinConfig::builder()
            .use_ratchet_tree_extension(true)
            .wire_format_policy(PURE_CIPHERTEXT_WIRE_FORMAT_POLICY)
            .max_past_epochs(0)
            .build();
        let staged = StagedWelcome::new_from_welcome(&self.provider, &join_config, welcome, None)
            .map_err(|e| GroupError::Welcome(format!("{e:?}")))?;
        if staged.group_context().group_id().as_slice() != self.admission.conference.as_bytes() {
            return Err(GroupError::OtherGroup);
        }
        let mut ids = Vec::new();
        let mut keys = Vec::new();
        for m in staged.members() {
            let id = self
                .admission
                .verify(&m.credential, &m.signature_key)
                .ok_or(GroupError::BadCredential)?;
            if ids.contains(&id) {
                return Err(GroupError::Replayed);
            }
            ids.push(id);
            keys.push(m.signature_key);
        }
        if !ids.contains(&self.me) {
            return Err(GroupError::Welcome("this member is not in the tree".into()));
        }
        let group = staged
            .into_group(&self.provider)
            .map_err(|e| GroupError::Welcome(format!("{e:?}")))?;
        self.seen_ids.extend(ids);
        self.seen_signature_keys.extend(keys);
        self.group = Some(group);
        self.epoch_change(Vec::new(), Vec::new())
    }

    /// Handles one handshake message the delivery service ordered. Our own commit echoed
    /// back means it won its epoch: merge it. Another member's commit is checked (every Add
    /// must pass admission) and merged, which drops any commit of ours for that epoch.
    pub fn process(&mut self, bytes: &[u8]) -> Result<Processed, GroupError> {
        if self.pending_commit.as_deref() == Some(bytes) {
            self.pending_commit = None;
            let group = self.group.as_ref().ok_or(GroupError::NoGroup)?;
            let staged = group.pending_commit().ok_or(GroupError::NoGroup)?;
            let removed = self.ids_of(
                staged
                    .remove_proposals()
                    .map(|r| r.remove_proposal().removed()),
            );
            let added: Vec<ParticipantId> = staged
                .add_proposals()
                .filter_map(|a| {
                    credential_id(a.add_proposal().key_package().leaf_node().credential())
                })
                .collect();
            let kps: Vec<KeyPackage> = staged
                .add_proposals()
                .map(|a| a.add_proposal().key_package().clone())
                .collect();
            let group = self.group.as_mut().ok_or(GroupError::NoGroup)?;
            group.merge_pending_commit(&self.provider).map_err(mls)?;
            for kp in &kps {
                self.remember(kp);
            }
            return self.epoch_change(removed, added).map(Processed::Merged);
        }
        let group = self.group.as_mut().ok_or(GroupError::NoGroup)?;
        let msg = MlsMessageIn::tls_deserialize_exact(bytes).map_err(|_| GroupError::Malformed)?;
        let protocol = msg
            .try_into_protocol_message()
            .map_err(|_| GroupError::Malformed)?;
        if protocol.group_id() != group.group_id() {
            return Err(GroupError::OtherGroup);
        }
        let at = group.epoch().as_u64();
        let got = protocol.epoch().as_u64();
        if got > at {
            return Ok(Processed::Future(got));
        }
        if got < at {
            return Err(GroupError::WrongEpoch { got, at });
        }
        let processed = group
            .process_message(&self.provider, protocol)
            .map_err(mls)?;
        let sender = match processed.sender() {
            Sender::Member(leaf) => Some(*leaf),
            _ => None,
        };
        match processed.into_content() {
            ProcessedMessageContent::StagedCommitMessage(staged) => {
                for add in staged.add_proposals() {
                    self.check_key_package(add.add_proposal().key_package())?;
                }
                let kps: Vec<KeyPackage> = staged
                    .add_proposals()
                    .map(|a| a.add_proposal().key_package().clone())
                    .collect();
                let removed = self.ids_of(
                    staged
                        .remove_proposals()
                        .map(|r| r.remove_proposal().removed()),
                );
                let added: Vec<ParticipantId> = kps
                    .iter()
                    .filter_map(|kp| credential_id(kp.leaf_node().credential()))
                    .collect();
                let self_removed = staged.self_removed();
                self.pending_commit = None;
                let group = self.group.as_mut().ok_or(GroupError::NoGroup)?;
                group
                    .merge_staged_commit(&self.provider, *staged)
                    .map_err(mls)?;
                for kp in &kps {
                    self.remember(kp);
                }
                if self_removed {
                    return Ok(Processed::SelfRemoved);
                }
                self.epoch_change(removed, added).map(Processed::Merged)
            }
            ProcessedMessageContent::ProposalMessage(p) => match (p.proposal(), sender) {
                (Proposal::Remove(r), Some(leaf)) if r.removed() == leaf => {
                    let id = self.ids_of(std::iter::once(leaf));
                    Ok(id
                        .first()
                        .map_or(Processed::Ignored, |id| Processed::LeaveProposed(*id)))
                }
                _ => Ok(Processed::Ignored),
            },
            _ => Ok(Processed::Ignored),
        }
    }

    fn ids_of(&self, leaves: impl Iterator<Item = LeafNodeIndex>) -> Vec<ParticipantId> {
        let roster = self.roster();
        leaves
            .filter_map(|l| {
                roster
                    .iter()
                    .find(|(i, _)| *i == l.u32())
                    .map(|(_, id)| *id)
            })
            .collect()
    }

    fn epoch_change(
        &self,
        removed: Vec<ParticipantId>,
        added: Vec<ParticipantId>,
    ) -> Result<EpochChange, GroupError> {
        let group = self.group.as_ref().ok_or(GroupError::NoGroup)?;
        let exported = Zeroizing::new(
            group
                .export_secret(
                    self.provider.crypto(),
                    MEDIA_EXPORTER_LABEL,
                    &[],
                    MEDIA_SECRET_LEN,
                )
                .map_err(mls)?,
        );
        let mut secret = Zeroizing::new([0u8; MEDIA_SECRET_LEN]);
        if exported.len() != MEDIA_SECRET_LEN {
            return Err(GroupError::Mls("exporter length".into()));
        }
        secret.copy_from_slice(&exported);
        Ok(EpochChange {
            epoch: group.epoch().as_u64(),
            secret,
            authenticator: group.epoch_authenticator().as_slice().to_vec(),
            roster: self.roster().into_iter().map(|(_, id)| id).collect(),
            removed,
            added,
        })
    }
}

impl Drop for MlsMember {
    fn drop(&mut self) {
        // openmls keeps every private key serialized in this map: wipe it before freeing.
        if let Ok(mut values) = self.provider.storage().values.write() {
            for v in values.values_mut() {
                v.zeroize();
            }
            values.clear();
        }
    }
}

impl fmt::Debug for MlsMember {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MlsMember")
            .field("me", &self.me)
            .field("epoch", &self.epoch())
            .finish_non_exhaustive()
    }
}

/// A short code two members compare out of band: 6 groups of 5 digits from the epoch
/// authenticator (each group is 5 octets read big-endian, mod 100000), as DAVE does.
pub fn verification_code(authenticator: &[u8]) -> String {
    authenticator
        .chunks(5)
        .take(6)
        .map(|c| {
            let v = c.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
            format!("{:05}", v % 100_000)
        })
        .collect::<Vec<_>>()
        .join(" ")
}
