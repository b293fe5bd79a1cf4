//! The clear header of an MLS handshake message (RFC 9420 §6): just enough for the delivery
//! service to order Commits by epoch, and nothing more.
//!
//! Owns the reading of `version`, `wire_format`, `group_id`, `epoch` and `content_type` of
//! an MLSMessage carrying a PublicMessage or PrivateMessage. Must not touch anything
//! encrypted or signed: the service cannot read or check the content, and does not try.
//! Every input is network input: a short or malformed one is an error, never a panic.

/// What the service may know of a handshake message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The MLS group id (blindfold uses the conference id).
    pub group_id: Vec<u8>,
    /// The epoch the message was made in.
    pub epoch: u64,
    /// Its content.
    pub content: Content,
}

/// `ContentType` of RFC 9420 §6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    Application,
    Proposal,
    Commit,
}

/// Why a message is not a handshake message the service relays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("truncated MLS message")]
    Truncated,
    #[error("not MLS 1.0")]
    Version,
    #[error("not a PublicMessage or PrivateMessage")]
    WireFormat,
    #[error("unknown sender or content type")]
    Field,
}

const MLS10: u16 = 1;
const PUBLIC_MESSAGE: u16 = 1;
const PRIVATE_MESSAGE: u16 = 2;

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], HeaderError> {
        if self.0.len() < n {
            return Err(HeaderError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, HeaderError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, HeaderError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, HeaderError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, HeaderError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    /// A variable-length vector with RFC 9420 §2.1.2's varint length prefix.
    fn vector(&mut self) -> Result<&'a [u8], HeaderError> {
        let first = self.u8()?;
        let len = match first >> 6 {
            0 => u64::from(first & 0x3f),
            1 => (u64::from(first & 0x3f) << 8) | u64::from(self.u8()?),
            2 => {
                let rest = self.take(3)?;
                (u64::from(first & 0x3f) << 24)
                    | (u64::from(rest[0]) << 16)
                    | (u64::from(rest[1]) << 8)
                    | u64::from(rest[2])
            }
            _ => return Err(HeaderError::Field),
        };
        self.take(usize::try_from(len).map_err(|_| HeaderError::Truncated)?)
    }
}

fn content(byte: u8) -> Result<Content, HeaderError> {
    match byte {
        1 => Ok(Content::Application),
        2 => Ok(Content::Proposal),
        3 => Ok(Content::Commit),
        _ => Err(HeaderError::Field),
    }
}

/// Reads the clear header of a handshake MLSMessage.
pub fn parse(message: &[u8]) -> Result<Header, HeaderError> {
    let mut r = Reader(message);
    if r.u16()? != MLS10 {
        return Err(HeaderError::Version);
    }
    let wire_format = r.u16()?;
    if wire_format != PUBLIC_MESSAGE && wire_format != PRIVATE_MESSAGE {
        return Err(HeaderError::WireFormat);
    }
    let group_id = r.vector()?.to_vec();
    let epoch = r.u64()?;
    let content_type = if wire_format == PRIVATE_MESSAGE {
        r.u8()?
    } else {
        // PublicMessage: sender, then authenticated_data, then the content type.
        match r.u8()? {
            1 | 2 => {
                r.u32()?;
            }
            3 | 4 => {}
            _ => return Err(HeaderError::Field),
        }
        r.vector()?;
        r.u8()?
    };
    Ok(Header {
        group_id,
        epoch,
        content: content(content_type)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn private(epoch: u64, content: u8) -> Vec<u8> {
        let mut m = vec![0, 1, 0, 2, 4, b'g', b'r', b'u', b'p'];
        m.extend_from_slice(&epoch.to_be_bytes());
        m.push(content);
        m.extend_from_slice(&[0; 40]);
        m
    }

    #[test]
    fn reads_private_and_public_headers() {
        let h = parse(&private(7, 3)).unwrap();
        assert_eq!(h.group_id, b"grup");
        assert_eq!((h.epoch, h.content), (7, Content::Commit));
        let mut public = vec![0, 1, 0, 1, 0x40, 2, b'a', b'b'];
        public.extend_from_slice(&9u64.to_be_bytes());
        public.extend_from_slice(&[1, 0, 0, 0, 3, 0, 2]);
        let h = parse(&public).unwrap();
        assert_eq!(
            (h.group_id.as_slice(), h.epoch, h.content),
            (&b"ab"[..], 9, Content::Proposal)
        );
    }

    #[test]
    fn every_truncation_and_bad_field_is_an_error() {
        let full = private(1, 3);
        for n in 0..18 {
            assert!(parse(&full[..n]).is_err(), "prefix of {n}");
        }
        let mut welcome = full.clone();
        welcome[3] = 3;
        assert_eq!(parse(&welcome), Err(HeaderError::WireFormat));
        let mut v2 = full.clone();
        v2[1] = 2;
        assert_eq!(parse(&v2), Err(HeaderError::Version));
        let mut content = full;
        content[17] = 9;
        assert_eq!(parse(&content), Err(HeaderError::Field));
        assert_eq!(parse(&[0, 1, 0, 2, 0xff]), Err(HeaderError::Field));
    }
}
