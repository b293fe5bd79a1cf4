//! The `--key-log` line has the documented shape and its key and salt really decrypt the
//! logged SSRC's packets in the logged epoch.

use blindfold::e2ee::{
    CallSecret, E2eeSession, ParticipantId, ScheduleConfig, SrtpKeys, SrtpReceiver, read_mki,
};

#[test]
fn keylog_line_decrypts_the_logged_stream() {
    let call = CallSecret::from_bytes([8; 32]);
    let me = ParticipantId::random(&mut rand::rng());
    let mut session = E2eeSession::new(ScheduleConfig::default(), &call, me).unwrap();
    session.start_alone(0).unwrap();
    let ssrc = 0x0102_0304;
    let line = session.keylog_line(ssrc).unwrap();
    let fields: Vec<&str> = line.split(' ').collect();
    assert_eq!(fields.len(), 5, "{line}");
    assert_eq!(fields[0], "SRTP");
    assert_eq!(fields[1], "01020304");
    let epoch = session.sending_epoch().unwrap();
    assert_eq!(fields[2], format!("{:08x}", epoch.as_u32()));
    assert_eq!(fields[3].len(), 32);
    assert_eq!(fields[4].len(), 24);

    let mut packet = vec![0x80, 96, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4];
    packet.extend_from_slice(b"logged media");
    let plain = packet.clone();
    session.protect_rtp_vec(&mut packet).unwrap();
    assert_eq!(read_mki(&packet).unwrap(), epoch);

    let key: [u8; 16] = hex::decode(fields[3]).unwrap().try_into().unwrap();
    let salt: [u8; 12] = hex::decode(fields[4]).unwrap().try_into().unwrap();
    let logged = SrtpKeys::derive(&key, &salt, Some(epoch));
    let n = SrtpReceiver::new()
        .unprotect_rtp(&logged, &mut packet)
        .unwrap();
    assert_eq!(&packet[..n], &plain[..]);
}
