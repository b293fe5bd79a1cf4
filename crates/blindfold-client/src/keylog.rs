//! `--key-log FILE`: like SSLKEYLOGFILE, appends one line per SRTP
//! master key a participant uses or accepts, so a capture can be decrypted by any RFC 7714
//! implementation: `SRTP <ssrc 8 hex> <epoch 8 hex> <master key hex> <master salt hex>`.
//!
//! Owns the file and de-duplication only; the line format comes from `blindfold_e2ee`. Must
//! not be on by default, nor turned on by anything but the explicit flag: whoever reads the
//! file can decrypt the call. It is created mode 0600 without following a symlink, and an
//! existing file is appended to only if it is a regular file nobody else can read.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

/// An open key log.
pub struct KeyLog {
    file: File,
    written: HashSet<(u32, u32)>,
}

impl KeyLog {
    /// Opens `path` for appending (creating it 0600), with a loud warning on stderr.
    /// Refuses a symlink, anything but a regular file, and a file others can read or write.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)?;
        let meta = file.metadata()?;
        if !meta.file_type().is_file() || meta.permissions().mode() & 0o077 != 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "the key log must be a regular file only its owner can read (mode 0600)",
            ));
        }
        eprintln!(
            "WARNING: SRTP key log is ON ({}): anyone who reads it can decrypt this call. \
             Use it for debugging only.",
            path.display()
        );
        tracing::warn!("SRTP key logging is enabled: the key log file decrypts the call");
        Ok(Self {
            file,
            written: HashSet::new(),
        })
    }

    /// Appends `line` once per (SSRC, epoch). One `write` per line keeps lines whole when
    /// several participants append to the same file.
    pub fn record(&mut self, ssrc: u32, epoch: u32, line: &str) {
        if !self.written.insert((ssrc, epoch)) {
            return;
        }
        let mut l = String::with_capacity(line.len() + 1);
        l.push_str(line);
        l.push('\n');
        if let Err(e) = self.file.write_all(l.as_bytes()) {
            tracing::warn!(error = %e, "writing the key log failed");
        }
    }
}

/// One parsed key-log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLogEntry {
    /// SSRC.
    pub ssrc: u32,
    /// Epoch id (the MKI).
    pub epoch: u32,
    /// SRTP master key.
    pub key: Vec<u8>,
    /// SRTP master salt.
    pub salt: Vec<u8>,
}

/// Parses a key-log line; `None` for anything else.
pub fn parse_line(line: &str) -> Option<KeyLogEntry> {
    let mut it = line.split_whitespace();
    if it.next()? != "SRTP" {
        return None;
    }
    let ssrc = u32::from_str_radix(it.next()?, 16).ok()?;
    let epoch = u32::from_str_radix(it.next()?, 16).ok()?;
    let key = hex::decode(it.next()?).ok()?;
    let salt = hex::decode(it.next()?).ok()?;
    Some(KeyLogEntry {
        ssrc,
        epoch,
        key,
        salt,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("bf-keylog-{}", rand::random::<u64>()));
        std::fs::create_dir(&d).unwrap();
        d
    }

    #[test]
    fn created_private_and_never_through_a_symlink_or_into_a_readable_file() {
        let d = dir();
        let path = d.join("keys.log");
        let mut log = KeyLog::open(&path).unwrap();
        log.record(1, 2, "SRTP 00000001 00000002 aa bb");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // A second participant appends to the same private file.
        assert!(KeyLog::open(&path).is_ok());

        let target = d.join("victim");
        std::fs::write(&target, b"").unwrap();
        let link = d.join("link.log");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(KeyLog::open(&link).is_err(), "followed a symlink");

        let readable = d.join("readable.log");
        std::fs::write(&readable, b"").unwrap();
        std::fs::set_permissions(&readable, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(
            KeyLog::open(&readable).is_err(),
            "wrote keys into a world-readable file"
        );
        std::fs::remove_dir_all(d).unwrap();
    }
}
