//! The published vectors, byte for byte: RFC 7714 §16.1 (SRTP AEAD_AES_128_GCM) and §17.1,
//! §17.3 (SRTCP, encrypted and tagging-only), and RFC 3711 Appendix B.3 (key derivation).
//!
//! RFC 7714 gives session keys, not master keys, so its vectors drive
//! `SrtpKeys::from_session_keys`; the KDF is pinned separately by B.3. No MKI: the RFC's
//! packets carry none.

use blindfold::e2ee::srtp::{SrtpKeys, kdf};

fn h(s: &str) -> Vec<u8> {
    let clean: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(clean).expect("test vector hex")
}

// RFC 7714 §16: "The salt used (51756964 2070726f 2071756f) comes from the ASCII string
// 'Quid pro quo'. The 16-octet (128-bit) key is 00 01 02 ... 0f".
const KEY: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
const SALT: &str = "51756964 2070726f 2071756f";

fn rfc_keys() -> SrtpKeys {
    let salt: [u8; 12] = h(SALT).try_into().unwrap();
    SrtpKeys::from_session_keys(&KEY, &salt, &KEY, &salt, None)
}

// §16.1.1 "Encrypting the following packet:"
const RTP_PLAIN: &str = "8040f17b 8041f8d3 5501a0b2 47616c6c
                         69612065 7374206f 6d6e6973 20646976
                         69736120 696e2070 61727465 73207472
                         6573";
// §16.1.1 "Encrypted and tagged packet:" (= §16.1.2 "Decrypting the following packet:")
const RTP_PROTECTED: &str = "8040f17b 8041f8d3 5501a0b2 f24de3a3
                             fb34de6c acba861c 9d7e4bca be633bd5
                             0d294e6f 42a5f47a 51c7d19b 36de3adf
                             8833899d 7f27beb1 6a9152cf 765ee439
                             0cce";
// §16.1.2 "Verified and tagged packet:" (the recovered payload)
const RTP_RECOVERED_PAYLOAD: &str = "47616c6c 69612065 7374206f 6d6e6973
                                     20646976 69736120 696e2070 61727465
                                     73207472 6573";

// §17.1 "Encrypting the following packet:", SRTCP index 000005d4
const RTCP_PLAIN: &str = "81c8000d 4d617273 4e545031 4e545032
                          52545020 0000042a 0000e930 4c756e61
                          deadbeef deadbeef deadbeef deadbeef
                          deadbeef";
// §17.1 "Encrypted and tagged packet:"
const RTCP_ENCRYPTED: &str = "81c8000d 4d617273 63e94885 dcdab67c
                              a727d766 2f6b7e99 7ff5c0f7 6c06f32d
                              c676a5f1 730d6fda 4ce09b46 86303ded
                              0bb9275b c84aa458 96cf4d2f c5abf872
                              45d9eade 800005d4";
// §17.3 "Tagged packet:" (E = 0)
const RTCP_TAGGED: &str = "81c8000d 4d617273 4e545031 4e545032
                           52545020 0000042a 0000e930 4c756e61
                           deadbeef deadbeef deadbeef deadbeef
                           deadbeef 841dd968 3dd78ec9 2ae58790
                           125f62b3 000005d4";
const RTCP_INDEX: u32 = 0x0000_05d4;

#[test]
fn rfc7714_16_1_1_srtp_encryption() {
    let plain = h(RTP_PLAIN);
    let mut buf = plain.clone();
    buf.resize(plain.len() + 16, 0);
    let n = rfc_keys().encrypt_rtp(&mut buf, plain.len(), 0).unwrap();
    assert_eq!(&buf[..n], &h(RTP_PROTECTED)[..]);
}

#[test]
fn rfc7714_16_1_2_srtp_decryption() {
    let mut buf = h(RTP_PROTECTED);
    let n = rfc_keys().decrypt_rtp(&mut buf, 0).unwrap();
    assert_eq!(&buf[..12], &h("8040f17b 8041f8d3 5501a0b2")[..]);
    assert_eq!(&buf[12..n], &h(RTP_RECOVERED_PAYLOAD)[..]);
}

#[test]
fn rfc7714_16_1_2_wrong_roc_does_not_verify() {
    let mut buf = h(RTP_PROTECTED);
    assert!(rfc_keys().decrypt_rtp(&mut buf, 1).is_err());
    assert_eq!(
        buf,
        h(RTP_PROTECTED),
        "a failed verification leaves the packet as it was"
    );
}

#[test]
fn rfc7714_17_1_srtcp_encryption_and_tagging() {
    let plain = h(RTCP_PLAIN);
    let mut buf = plain.clone();
    buf.resize(plain.len() + 20, 0);
    let n = rfc_keys()
        .encrypt_rtcp(&mut buf, plain.len(), RTCP_INDEX, true)
        .unwrap();
    assert_eq!(&buf[..n], &h(RTCP_ENCRYPTED)[..]);

    let mut back = h(RTCP_ENCRYPTED);
    let opened = rfc_keys().decrypt_rtcp(&mut back).unwrap();
    assert_eq!(opened.index, RTCP_INDEX);
    assert!(opened.encrypted);
    assert_eq!(&back[..opened.len], &plain[..]);
}

#[test]
fn rfc7714_17_3_srtcp_tagging_only() {
    let plain = h(RTCP_PLAIN);
    let mut buf = plain.clone();
    buf.resize(plain.len() + 20, 0);
    let n = rfc_keys()
        .encrypt_rtcp(&mut buf, plain.len(), RTCP_INDEX, false)
        .unwrap();
    assert_eq!(&buf[..n], &h(RTCP_TAGGED)[..]);

    let mut back = h(RTCP_TAGGED);
    let opened = rfc_keys().decrypt_rtcp(&mut back).unwrap();
    assert_eq!(opened.index, RTCP_INDEX);
    assert!(!opened.encrypted);
    assert_eq!(&back[..opened.len], &plain[..]);
}

// RFC 3711 Appendix B.3.
const B3_MASTER_KEY: &str = "E1F97A0D3E018BE0D64FA32C06DE4139";
const B3_MASTER_SALT: &str = "0EC675AD498AFEEBB6960B3AABE6";
const B3_CIPHER_KEY: &str = "C61E7A93744F39EE10734AFE3FF7A087";
const B3_CIPHER_SALT: &str = "30CBBC08863D8C85D49DB34A9AE1";
const B3_AUTH_KEY: &str = "CEBE321F6FF7716B6FD4AB49AF256A15
                           6D38BAA48F0A0ACF3C34E2359E6CDBCE
                           E049646C43D9327AD175578EF7227098
                           6371C10C9A369AC2F94A8C5FBCDDDC25
                           6D6E919A48B610EF17C2041E47403576
                           6B68642C59BBFC2F34DB60DBDFB2";

#[test]
fn rfc3711_b3_key_derivation() {
    let key: [u8; 16] = h(B3_MASTER_KEY).try_into().unwrap();
    let salt = h(B3_MASTER_SALT);

    let mut cipher_key = [0u8; 16];
    kdf(&key, &salt, 0x00, &mut cipher_key);
    assert_eq!(cipher_key.to_vec(), h(B3_CIPHER_KEY));

    let mut cipher_salt = [0u8; 14];
    kdf(&key, &salt, 0x02, &mut cipher_salt);
    assert_eq!(cipher_salt.to_vec(), h(B3_CIPHER_SALT));

    let mut auth_key = [0u8; 94];
    kdf(&key, &salt, 0x01, &mut auth_key);
    assert_eq!(auth_key.to_vec(), h(B3_AUTH_KEY));
}

#[test]
fn rfc7714_errata_4938_salt_is_zero_padded_on_the_right() {
    // A 96-bit salt enters the KDF as the 112-bit salt with two zero octets appended.
    let key: [u8; 16] = h(B3_MASTER_KEY).try_into().unwrap();
    let salt12 = &h(B3_MASTER_SALT)[..12];
    let mut padded = salt12.to_vec();
    padded.extend_from_slice(&[0, 0]);
    for label in 0..6u8 {
        let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
        kdf(&key, salt12, label, &mut a);
        kdf(&key, &padded, label, &mut b);
        assert_eq!(a, b, "label {label}");
    }
}
