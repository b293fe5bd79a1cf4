//! `--key-log FILE` / `BLINDFOLD_KEYLOG`: like SSLKEYLOGFILE, appends one line per SRTP
//! master key a participant uses or accepts, so a capture can be decrypted by any RFC 7714
//! implementation: `SRTP <ssrc 8 hex> <epoch 8 hex> <master key hex> <master salt hex>`.
//!
//! Owns the file and de-duplication only; the line format comes from `blindfold_e2ee`. Must
//! not be on by default: whoever reads the file can decrypt the call.

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
    /// Opens `path` for appending (creating it), with a loud warning on stderr.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
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
