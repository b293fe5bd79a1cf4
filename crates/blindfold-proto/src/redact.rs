//! A wrapper for values that must not reach logs verbatim (an address, an id, a key).
//!
//! Owns the placeholder formatting only. `Display`/`Debug` print `[redacted]`, so a
//! stray `{}` cannot leak what it wraps.

use std::fmt;

/// Wraps a value that must not reach logs verbatim.
pub struct Redacted<T>(pub T);

impl<T> fmt::Display for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<T> fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}
