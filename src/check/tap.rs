//! A reader of one tree's entries beside a walk that reads them anyway: the
//! walk hands each entry over as it meets it, sparing the reader a walk of
//! its own (the vanished customers' merge reads the referencing column's
//! index and the customer ID index so).

use crate::format::record::Record;

/// Fed by a walk: each entry whose record parses, in key order, and each
/// damage the walk meets.
pub trait Tap {
    /// One entry; `rec` is its record, parsed from `payload`.
    fn entry(&mut self, rec: &Record, payload: &[u8]);
    /// The walk met damage (entries may be missing).
    fn damage(&mut self);
}
