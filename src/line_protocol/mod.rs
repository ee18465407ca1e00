//! Just enough of InfluxDB 1.x's line-protocol parser to route points: where each line ends, and
//! each line's measurement and tags, with nothing allocated per line.
//!
//! The rules are InfluxDB 1.x's (`models/points.go`), because the router must agree with the nodes
//! about what a line is:
//!
//! - **Line ends.** A `\n` ends a line, except inside a double-quoted string field value: the quote
//!   state is tracked only after the first space (the field section), a quote opens or closes a
//!   value only when more `=` than `,` have been seen there, and a backslash skips the next byte
//!   when at least two bytes follow it. A `\r` before the `\n` stays in the line (InfluxDB 1.x then
//!   rejects the timestamp or value it sticks to), but it is never taken into a measurement or tag.
//! - **Blank lines and comments.** Leading spaces, tabs and NUL bytes are skipped; an empty line is
//!   blank; a line whose first other byte is `#` is a comment.
//! - **Measurement.** Up to the first comma or space not preceded by a backslash. A line that
//!   starts with a comma has no measurement (InfluxDB's "missing measurement").
//! - **Escapes.** A byte preceded by a backslash is never a separator (InfluxDB looks only at the
//!   previous byte, so in `a\\,b` the comma is escaped too). Unescaping, as InfluxDB does it for
//!   measurement names and tags, turns `\,` `\"` `\ ` `\=` into the character and leaves any other
//!   backslash alone.
//! - **Tags.** `key=value` pairs separated by unescaped commas, up to the first unescaped space.
//!
//! Anything else wrong with a line (missing fields, a bad value or timestamp, a malformed tag) is
//! left for the node to report in its own words: the router needs only the measurement and one tag.

mod scan;
pub mod simd;

pub use scan::{Scan, TimeSpan, Timestamps};

use std::{borrow::Cow, ops::Range};

/// Iterates over the lines of a write body the way InfluxDB splits them.
pub fn lines(body: &[u8]) -> Lines<'_> {
    Lines {
        ends: line_ends(body),
    }
}

/// The lines of a body; see [`lines`].
#[derive(Debug, Clone)]
pub struct Lines<'a> {
    ends: LineEnds<'a>,
}

/// Where the lines of a body lie, as InfluxDB splits them, without reading what they hold.
pub fn line_ends(body: &[u8]) -> LineEnds<'_> {
    LineEnds {
        body,
        pos: 0,
        newlines: Some(Newlines::new(body)),
    }
}

/// The text of each line of a body, its `\n` left out; see [`line_ends`].
#[derive(Debug, Clone)]
pub struct LineEnds<'a> {
    body: &'a [u8],
    pos: usize,
    /// While no quote or backslash has been met, the newlines, each the end of a line; `None`
    /// from the line that holds the first one on, whose lines end by InfluxDB's rules.
    newlines: Option<Newlines<'a>>,
}

/// The position of every `\n` in a body, in order, found 64 bytes at a time up to the first block
/// holding a `"` or a `\\` ([`simd::BlockSearch`]): the next line's end is a bit of a mask already
/// built, where a `memchr` call for each line set up its search afresh.
///
/// Before the first quote or backslash every newline ends a line, so the blocks before it give
/// line ends as they are. The block that holds one gives none: the line in progress there, and
/// every line after it, must be read by InfluxDB's rules ([`Newlines::quoted`]). The same loads
/// that find the newlines find the quotes and backslashes, where a search of the whole body for
/// them first read it twice.
///
/// The search runs ahead of its reader, [`AHEAD`] newlines at a time, in a loop built for the
/// fastest instructions this CPU has ([`simd::with_fastest`]), and the reader takes each line's
/// end with a load: a reader whose loop does much besides (the router's split) then neither calls
/// the block search for every block nor keeps the search's state in registers it needs.
#[derive(Debug, Clone)]
pub struct Newlines<'a> {
    /// The search, where the last fill left it; each fill searches on with its own instructions.
    search: NewlineSearch<'a, simd::Baseline>,
    /// Newlines found and not given yet: `found[given..filled]`.
    found: [usize; AHEAD],
    given: usize,
    filled: usize,
}

/// How many newlines [`Newlines`] finds at a time: a power of two, so that an index below it is
/// kept by a mask ([`Newlines::next`]).
const AHEAD: usize = 64;
const _: () = assert!(AHEAD.is_power_of_two());

impl<'a> Newlines<'a> {
    /// The newlines of `body`.
    pub fn new(body: &'a [u8]) -> Self {
        Newlines {
            search: NewlineSearch::with(body, simd::Baseline),
            found: [0; AHEAD],
            given: 0,
            filled: 0,
        }
    }

    /// Once `next` gave `None`: whether the newlines stopped at a block holding a quote or a
    /// backslash rather than at the body's end. The line in progress then ends by InfluxDB's
    /// rules, not at the next newline.
    pub fn quoted(&self) -> bool {
        self.search.quoted()
    }

    /// Whether the body holds neither a quote nor a backslash; what was not read yet is searched
    /// now. (What the search passed, it found neither in.)
    pub fn plain(&self) -> bool {
        self.search.plain()
    }

    /// Finds the next [`AHEAD`] newlines, or as many as are left.
    // Never inlined: it runs once every 64 lines, and its loop inside the reader's would be
    // built without AVX2 and take the reader's registers.
    #[inline(never)]
    fn fill(&mut self) {
        simd::with_fastest(Fill(self));
    }
}

impl Iterator for Newlines<'_> {
    type Item = usize;

    #[inline(always)]
    fn next(&mut self) -> Option<usize> {
        if self.given == self.filled {
            self.fill();
            if self.filled == 0 {
                return None;
            }
        }
        // Masked, not checked: `given < filled <= AHEAD`, a power of two, so the mask keeps it.
        let end = self.found[self.given & (AHEAD - 1)];
        self.given += 1;
        Some(end)
    }
}

/// One fill of [`Newlines`], as a [`simd::LineWalk`]: the block search is inlined into its loop.
struct Fill<'s, 'a>(&'s mut Newlines<'a>);

impl simd::LineWalk for Fill<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn walk<B: simd::BlockSearch>(self, blocks: B) {
        let newlines = self.0;
        let mut search = newlines.search.searching_with(blocks);
        let mut filled = 0;
        // Not a `zip` of the slots and the search: its `next` was left out of line, built
        // without AVX2, and called the block search.
        while let Some(slot) = newlines.found.get_mut(filled) {
            let Some(end) = search.next() else { break };
            *slot = end;
            filled += 1;
        }
        newlines.search = search.searching_with(simd::Baseline);
        (newlines.given, newlines.filled) = (0, filled);
    }
}

/// The search behind [`Newlines`], one block at a time, each searched by `B`: a walk generic over
/// it has the search inlined (see [`simd::LineWalk`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewlineSearch<'a, B> {
    body: &'a [u8],
    /// Where the block after the one in `mask` starts.
    next: usize,
    /// Bit `i`: a newline at `next - 64 + i`, for those not taken yet.
    mask: u64,
    /// The block at `next` holds a quote or a backslash: no newline from it on is given.
    quoted: bool,
    blocks: B,
}

impl<'a, B: simd::BlockSearch> NewlineSearch<'a, B> {
    /// The newlines of `body`, each block searched by `blocks`.
    #[inline]
    pub(crate) fn with(body: &'a [u8], blocks: B) -> Self {
        NewlineSearch {
            body,
            next: 0,
            mask: 0,
            quoted: false,
            blocks,
        }
    }

    /// The same search, where it stands, each block from now on searched by `blocks`.
    #[inline(always)]
    fn searching_with<C: simd::BlockSearch>(self, blocks: C) -> NewlineSearch<'a, C> {
        NewlineSearch {
            body: self.body,
            next: self.next,
            mask: self.mask,
            quoted: self.quoted,
            blocks,
        }
    }

    /// See [`Newlines::quoted`].
    pub(crate) fn quoted(&self) -> bool {
        self.quoted
    }

    /// See [`Newlines::plain`].
    fn plain(&self) -> bool {
        let unread = self.body.get(self.next..).unwrap_or(&[]);
        !self.quoted && memchr::memchr2(b'"', b'\\', unread).is_none()
    }
}

impl<B: simd::BlockSearch> Iterator for NewlineSearch<'_, B> {
    type Item = usize;

    // Always: a walk built for AVX2 holds the block search only where this is inlined into it.
    #[inline(always)]
    fn next(&mut self) -> Option<usize> {
        while self.mask == 0 {
            let start = self.next;
            if self.quoted {
                return None;
            }
            let rest = self.body.get(start..).filter(|rest| !rest.is_empty())?;
            let found = match rest.first_chunk::<64>() {
                Some(block) => self.blocks.unquoted_newlines(block),
                None => {
                    // The last, short block: padded with bytes that are neither newlines nor
                    // quotes nor backslashes.
                    let mut block = [0u8; 64];
                    block[..rest.len()].copy_from_slice(rest);
                    self.blocks.unquoted_newlines(&block)
                }
            };
            let Some(mask) = found else {
                self.quoted = true;
                return None;
            };
            self.mask = mask;
            self.next = start + 64;
        }
        let bit = self.mask.trailing_zeros() as usize;
        self.mask &= self.mask - 1;
        Some(self.next - 64 + bit)
    }
}

impl<'a> LineEnds<'a> {
    /// The lines of `body` from `from`, the start of a line, each ended by InfluxDB's rules.
    pub fn by_the_rules(body: &'a [u8], from: usize) -> Self {
        LineEnds {
            body,
            pos: from,
            newlines: None,
        }
    }

    /// Whether the body holds neither a quote nor a backslash, so that no line can be left open.
    pub fn plain(&self) -> bool {
        self.newlines.as_ref().is_some_and(Newlines::plain)
    }
}

impl Iterator for LineEnds<'_> {
    type Item = Range<usize>;

    #[inline]
    fn next(&mut self) -> Option<Range<usize>> {
        let start = self.pos;
        if start >= self.body.len() {
            return None;
        }
        let end = match &mut self.newlines {
            Some(newlines) => match newlines.next() {
                Some(end) => end,
                None if newlines.quoted() => {
                    self.newlines = None;
                    line_end(self.body, start)
                }
                None => self.body.len(),
            },
            None => line_end(self.body, start),
        };
        self.pos = end + 1;
        Some(start..end)
    }
}

impl Lines<'_> {
    /// See [`LineEnds::plain`].
    pub fn plain(&self) -> bool {
        self.ends.plain()
    }
}

/// One line of a body.
#[derive(Debug, Clone)]
pub struct Line<'a> {
    /// Byte range of the whole line in the body, its terminating `\n` included when there is one:
    /// the spans of all lines, concatenated, are the body.
    pub span: Range<usize>,
    /// The line's text: the bytes of `span` without the terminating `\n`.
    pub text: &'a [u8],
    /// What the line holds.
    pub kind: LineKind<'a>,
}

/// What a line holds.
#[derive(Debug, Clone)]
pub enum LineKind<'a> {
    /// Nothing but whitespace.
    Blank,
    /// A `#` comment.
    Comment,
    /// A point, with its series key.
    Point(SeriesKey<'a>),
    /// A line no series key can be read from.
    Invalid(LineError),
}

/// Why a line has no usable series key, in InfluxDB's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// The line starts with a comma.
    #[error("missing measurement")]
    MissingMeasurement,
}

/// The measurement and tags of a point, still escaped.
#[derive(Debug, Clone, Copy)]
pub struct SeriesKey<'a> {
    measurement: &'a [u8],
    /// The rest of the line after the measurement. Where its tag section ends is only looked for
    /// when a tag is asked for: routing by measurement never needs it.
    rest: &'a [u8],
}

/// A tag key looked up in many lines: the key a `by_tag` route spreads its points by.
#[derive(Debug, Clone)]
pub struct TagKey {
    name: String,
    /// `name=`, when the name holds nothing line protocol escapes in a tag key, no backslash, and
    /// no quote (whose escaping differs between the parts of a line): every line then writes it
    /// the same way, and the start of its pair is those bytes.
    written: Option<Box<[u8]>>,
}

impl TagKey {
    /// Prepares the (unescaped) tag key `name`.
    pub fn new(name: &str) -> TagKey {
        let plain = !name
            .bytes()
            .any(|b| matches!(b, b',' | b'=' | b' ' | b'\\' | b'"'));
        TagKey {
            name: name.to_owned(),
            written: plain.then(|| format!("{name}=").into_bytes().into_boxed_slice()),
        }
    }

    /// The key, unescaped.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl PartialEq for TagKey {
    fn eq(&self, other: &TagKey) -> bool {
        self.name == other.name
    }
}

impl Eq for TagKey {}

/// A name or value as written in line protocol, still escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Escaped<'a> {
    text: &'a [u8],
    part: Part,
}

/// Which part of a line a name comes from: influxd 1.x unescapes `\"` in measurement names but
/// keeps it, backslash and all, in tag keys and values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Measurement,
    Tag,
}

impl<'a> Iterator for Lines<'a> {
    type Item = Line<'a>;

    // Always inlined into the router's loop: returned through memory, a line was written field
    // by field and read back whole, which stalled on every line, and a plain `#[inline]` was not
    // always followed once the loop grew.
    #[inline(always)]
    fn next(&mut self) -> Option<Line<'a>> {
        let range = self.ends.next()?;
        let body = self.ends.body;
        let text = &body[range.clone()];
        // The span takes the `\n`; the text does not.
        Some(Line {
            span: range.start..(range.end + 1).min(body.len()),
            text,
            kind: classify(text),
        })
    }
}

/// Index of the `\n` ending the line that starts at `i`, or the body's length.
fn line_end(buf: &[u8], i: usize) -> usize {
    // Almost every line has neither a quote nor a backslash before its first newline, and then
    // that newline ends it whatever the rules below say: find it with SIMD instead of a byte loop.
    let newline = memchr::memchr(b'\n', &buf[i..]).map_or(buf.len(), |n| i + n);
    if memchr::memchr2(b'"', b'\\', &buf[i..newline]).is_none() {
        return newline;
    }
    match scan_line(buf, i, false) {
        LineEnd::Newline(end) => end,
        LineEnd::Eof { .. } => buf.len(),
    }
}

/// Whether another body may be appended to this one, after a `\n` when it does not end with one,
/// and still be read by InfluxDB as lines of its own. Not when this body's last line is left open:
/// an escape or a quoted value would carry on into the next body (a comment ending in `\` would
/// swallow the first line of the next write, which the node would then answer 204 for).
pub fn ends_cleanly(body: &[u8]) -> bool {
    if memchr::memchr2(b'"', b'\\', body).is_none() {
        return true;
    }
    let mut start = 0;
    while start < body.len() {
        match scan_line(body, start, true) {
            LineEnd::Newline(end) => start = end + 1,
            // A final `\n` that did not end the line was escaped or quoted; otherwise the `\n`
            // put between the bodies ends it, unless it is escaped or quoted itself.
            LineEnd::Eof { open } => return !open && !body.ends_with(b"\n"),
        }
    }
    true
}

/// How a line ends.
enum LineEnd {
    /// At this `\n`.
    Newline(usize),
    /// At the end of the buffer; `open` when a quoted value or an escape was still open there.
    Eof { open: bool },
}

/// Scans the line that starts at `i` byte by byte as InfluxDB does. `followed`: as if more bytes
/// came after `buf` (bodies joined), which changes how a backslash near the end reads: InfluxDB
/// skips the byte after a backslash only when at least two bytes follow it.
fn scan_line(buf: &[u8], mut i: usize, followed: bool) -> LineEnd {
    let mut quoted = false;
    let mut fields = false;
    let (mut equals, mut commas) = (0usize, 0usize);
    while i < buf.len() {
        let b = buf[i];
        if b == b'\\' && (followed || i + 2 < buf.len()) {
            i += 2;
            continue;
        }
        if b == b' ' {
            fields = true;
        }
        if fields {
            if !quoted && b == b'=' {
                equals += 1;
            } else if !quoted && b == b',' {
                commas += 1;
            } else if b == b'"' && equals > commas {
                quoted = !quoted;
            } else if b == b'\n' && !quoted {
                return LineEnd::Newline(i);
            }
        } else if b == b'\n' {
            return LineEnd::Newline(i);
        }
        i += 1;
    }
    LineEnd::Eof {
        open: quoted || i > buf.len(),
    }
}

/// What a line holds. The search runs out of line and answers in two registers: a `LineKind`
/// returned through memory was written field by field and read back whole, which stalled the
/// router's loop on every line.
#[inline]
fn classify(text: &[u8]) -> LineKind<'_> {
    if let Some(name_end) = short_name(text) {
        // A '\r' ending the line is never a separator, so it is after `name_end`.
        return LineKind::Point(SeriesKey {
            measurement: &text[..name_end],
            rest: without_cr(&text[name_end..]),
        });
    }
    let (start, name_end) = key_bounds(text);
    match text.get(start) {
        None => LineKind::Blank,
        Some(b'#') => LineKind::Comment,
        Some(b',') => LineKind::Invalid(LineError::MissingMeasurement),
        Some(_) => {
            let key = without_cr(&text[start..]);
            let (measurement, rest) = key.split_at(name_end - start);
            LineKind::Point(SeriesKey { measurement, rest })
        }
    }
}

/// Where the measurement of a point ends when the line starts with it (no blank to skip) and it
/// ends, unescaped, within the first 16 bytes: nearly every line, answered from one mask without
/// the call [`key_bounds`] makes for the rest.
#[inline(always)]
fn short_name(text: &[u8]) -> Option<usize> {
    let chunk = text.first_chunk::<16>()?;
    if matches!(chunk[0], b' ' | b'\t' | 0 | b'#' | b',') {
        return None;
    }
    // Not 0: the first byte is no separator.
    let end = simd::separators(chunk).trailing_zeros() as usize;
    (end < 16 && chunk[end - 1] != b'\\').then_some(end)
}

/// Where a line's first byte that is not blank lies (as influxd skips spaces, tabs and NULs) and,
/// when that byte starts a point, where its measurement ends: the first comma or space not
/// preceded by a backslash.
#[inline(never)]
fn key_bounds(text: &[u8]) -> (usize, usize) {
    let start = blanks(text);
    if matches!(text.get(start), None | Some(b'#' | b',')) {
        return (start, start);
    }
    let key = without_cr(&text[start..]);
    let name_end = unescaped_separator(key, 0);
    (start, start + name_end)
}

/// How many bytes at the start of a line influxd skips: spaces, tabs and NULs.
#[inline]
pub fn blanks(text: &[u8]) -> usize {
    text.iter()
        .position(|&b| !matches!(b, b' ' | b'\t' | 0))
        .unwrap_or(text.len())
}

/// A point's text without the `\r` a CRLF ending leaves: it belongs to no name.
#[inline]
fn without_cr(text: &[u8]) -> &[u8] {
    text.strip_suffix(b"\r").unwrap_or(text)
}

/// `text.starts_with(prefix)` for a short prefix, without a call to `memcmp`: a prefix of 8 to 16
/// bytes is compared as two overlapping words.
#[inline]
fn starts_with(text: &[u8], prefix: &[u8]) -> bool {
    let Some(head) = text.get(..prefix.len()) else {
        return false;
    };
    match (
        head.first_chunk::<8>().zip(head.last_chunk::<8>()),
        prefix.first_chunk::<8>().zip(prefix.last_chunk::<8>()),
    ) {
        (Some((a, b)), Some((c, d))) if prefix.len() <= 16 => {
            u64::from_ne_bytes(*a) == u64::from_ne_bytes(*c)
                && u64::from_ne_bytes(*b) == u64::from_ne_bytes(*d)
        }
        _ => head == prefix,
    }
}

/// The first index at or after `from` whose byte is `,` or ` ` and not escaped (not preceded by a
/// backslash), or the length; 16 bytes at a time, as a series key's parts are short.
fn unescaped_separator(text: &[u8], from: usize) -> usize {
    unescaped(text, from, simd::separators, |b| b == b',' || b == b' ')
}

/// The first index at or after `from` whose byte `ends` takes and is not escaped (not preceded by
/// a backslash), or the length: `mask` gives those bytes of 16 at a time as bits.
#[inline(always)]
fn unescaped(
    text: &[u8],
    from: usize,
    mask: impl Fn(&[u8; 16]) -> u16,
    ends: impl Fn(u8) -> bool,
) -> usize {
    let mut at = from;
    loop {
        let found = match text.get(at..).and_then(<[u8]>::first_chunk::<16>) {
            Some(chunk) => match mask(chunk) {
                0 => {
                    at += 16;
                    continue;
                }
                bits => at + bits.trailing_zeros() as usize,
            },
            None => match text.get(at..).and_then(|t| t.iter().position(|&b| ends(b))) {
                Some(i) => at + i,
                None => return text.len(),
            },
        };
        if found == 0 || text[found - 1] != b'\\' {
            return found;
        }
        at = found + 1;
    }
}

impl<'a> SeriesKey<'a> {
    /// The measurement.
    pub fn measurement(&self) -> Escaped<'a> {
        Escaped {
            text: self.measurement,
            part: Part::Measurement,
        }
    }

    /// The tags as written, their leading comma included, up to the first unescaped space:
    /// points whose tags are the same bytes have the same value for every tag.
    #[inline]
    pub fn tag_section(&self) -> &'a [u8] {
        &self.rest[..unescaped(self.rest, 0, simd::spaces, |b| b == b' ')]
    }

    /// The value of tag `key`, if the point has it: [`SeriesKey::tag`], faster.
    pub fn tag_value(&self, key: &TagKey) -> Option<Escaped<'a>> {
        let Some(written) = &key.written else {
            return self.tag(&key.name);
        };
        let Some((b',', tags)) = self.rest.split_first() else {
            return None;
        };
        // Pair by pair: an unescaped comma always ends a pair and an unescaped space the tags,
        // and each is found 16 bytes at a time. The key holds no backslash, so a pair whose
        // first bytes are `key=` is its pair.
        let mut pair = 0;
        loop {
            if starts_with(&tags[pair..], written) {
                let start = pair + written.len();
                return Some(Escaped {
                    text: &tags[start..unescaped_separator(tags, start)],
                    part: Part::Tag,
                });
            }
            let end = unescaped_separator(tags, pair);
            match tags.get(end) {
                Some(b',') => pair = end + 1,
                _ => return None,
            }
        }
    }

    /// The value of tag `key` (compared to the unescaped key), if the point has it.
    pub fn tag(&self, key: &str) -> Option<Escaped<'a>> {
        let Some((b',', tags)) = self.rest.split_first() else {
            return None;
        };
        // One walk over the tag section, a byte at a time: its pairs are short, and finding each
        // separator with its own memchr call cost a thousand instructions a point.
        let (mut start, mut eq) = (0, None);
        for (i, &byte) in tags.iter().enumerate() {
            if !matches!(byte, b'=' | b',' | b' ') || (i > 0 && tags[i - 1] == b'\\') {
                continue;
            }
            if byte == b'=' {
                eq = eq.or(Some(i));
                continue;
            }
            if let Some(value) = pair_value(tags, start..i, eq, key) {
                return Some(value);
            }
            if byte == b' ' {
                // The end of the tag section.
                return None;
            }
            (start, eq) = (i + 1, None);
        }
        pair_value(tags, start..tags.len(), eq, key)
    }
}

/// The value of the pair `tags[pair]`, whose first unescaped `=` is at `eq`, if its key is `key`.
fn pair_value<'a>(
    tags: &'a [u8],
    pair: Range<usize>,
    eq: Option<usize>,
    key: &str,
) -> Option<Escaped<'a>> {
    let eq = eq?;
    let tag = |text| Escaped {
        text,
        part: Part::Tag,
    };
    tag(&tags[pair.start..eq])
        .eq_str(key)
        .then(|| tag(&tags[eq + 1..pair.end]))
}

impl<'a> Escaped<'a> {
    /// The bytes as written.
    pub fn raw(&self) -> &'a [u8] {
        self.text
    }

    /// The unescaped text; borrowed when nothing is escaped (invalid UTF-8 is replaced).
    pub fn unescaped(&self) -> Cow<'a, str> {
        if !self.text.contains(&b'\\') {
            return String::from_utf8_lossy(self.text);
        }
        let bytes: Vec<u8> = self.bytes().collect();
        Cow::Owned(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Whether the unescaped text is `s`, without allocating.
    pub fn eq_str(&self, s: &str) -> bool {
        // Unescaping only ever shortens: most names that differ are told apart by length alone.
        if self.text.len() < s.len() {
            return false;
        }
        if !self.text.contains(&b'\\') {
            return self.text == s.as_bytes();
        }
        self.bytes().eq(s.bytes())
    }

    /// Whether the unescaped text starts with `prefix`, without allocating.
    pub fn starts_with_str(&self, prefix: &str) -> bool {
        if !self.text.contains(&b'\\') {
            return self.text.starts_with(prefix.as_bytes());
        }
        let mut bytes = self.bytes();
        prefix.bytes().all(|p| bytes.next() == Some(p))
    }

    /// The unescaped bytes, for hashing without allocating.
    pub fn bytes(&self) -> Unescape<'a> {
        Unescape {
            rest: self.text,
            quote: self.part == Part::Measurement,
        }
    }
}

/// The unescaped bytes of an [`Escaped`].
#[derive(Debug, Clone)]
pub struct Unescape<'a> {
    rest: &'a [u8],
    /// Whether `\"` stands for `"` (measurement names only).
    quote: bool,
}

impl Iterator for Unescape<'_> {
    type Item = u8;

    fn next(&mut self) -> Option<u8> {
        let (&first, rest) = self.rest.split_first()?;
        match (first, rest.first()) {
            (b'\\', Some(&escaped @ (b',' | b' ' | b'='))) => {
                self.rest = &rest[1..];
                Some(escaped)
            }
            (b'\\', Some(&escaped @ b'"')) if self.quote => {
                self.rest = &rest[1..];
                Some(escaped)
            }
            _ => {
                self.rest = rest;
                Some(first)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(body: &str) -> Vec<String> {
        lines(body.as_bytes())
            .map(|line| match line.kind {
                LineKind::Blank => "blank".to_owned(),
                LineKind::Comment => "comment".to_owned(),
                LineKind::Invalid(e) => format!("invalid: {e}"),
                LineKind::Point(key) => key.measurement().unescaped().into_owned(),
            })
            .collect()
    }

    fn key(line: &str) -> SeriesKey<'_> {
        match lines(line.as_bytes()).next().map(|l| l.kind) {
            Some(LineKind::Point(key)) => key,
            other => panic!("{line:?} is {other:?}"),
        }
    }

    #[test]
    fn a_body_whose_last_line_is_left_open_cannot_be_joined() {
        assert!(ends_cleanly(b""));
        assert!(ends_cleanly(b"cpu v=1 1"));
        assert!(ends_cleanly(b"cpu v=1 1\n"));
        assert!(ends_cleanly(b"cpu s=\"a\\\"b\" 1\n# fine\n"));
        // The separator would be escaped, or quoted.
        assert!(!ends_cleanly(b"cpu v=1 1\n# dir C:\\"));
        assert!(!ends_cleanly(b"cpu v=1 1\\\n"));
        assert!(!ends_cleanly(b"cpu v=1 1\n# a=\""));
        assert!(!ends_cleanly(b"cpu s=\"open 1\n"));
        // Joined anyway, the next body's line would vanish into this one: what the rule prevents.
        let joined = b"cpu v=1 1\n# dir C:\\\nmem v=2 2";
        assert_eq!(lines(joined).count(), 2);
    }

    #[test]
    fn spans_cover_the_body() {
        for body in [
            "",
            "\n",
            "cpu v=1\nmem v=2",
            "cpu v=1\r\n\r\n# c\n",
            "a s=\"x\ny\" 1\n",
        ] {
            let mut joined = Vec::new();
            for line in lines(body.as_bytes()) {
                joined.extend_from_slice(&body.as_bytes()[line.span]);
            }
            assert_eq!(joined, body.as_bytes(), "{body:?}");
        }
    }

    #[test]
    fn blank_lines_comments_and_missing_measurements() {
        assert_eq!(
            kinds("cpu v=1\n\n  \t\n# a comment, v=1\n  ,x v=1\n \tmem v=2"),
            [
                "cpu",
                "blank",
                "blank",
                "comment",
                "invalid: missing measurement",
                "mem"
            ]
        );
    }

    #[test]
    fn a_newline_inside_a_quoted_field_does_not_end_the_line() {
        assert_eq!(
            kinds("log,host=a msg=\"one\ntwo, x=\\\"y\\\"\nthree\" 1\nmem v=1\n"),
            ["log", "mem"]
        );
        // Before the field section a quote is just a character.
        assert_eq!(kinds("we\"ird v=1\nmem v=1"), ["we\"ird", "mem"]);
        // A quote in a field key (more commas than equals so far) opens nothing.
        assert_eq!(kinds("m a=1,\"b=2\nmem v=1"), ["m", "mem"]);
    }

    #[test]
    fn an_escaped_quote_is_unescaped_in_measurements_only() {
        // As influxd 1.6.7 stores `m\"x\=y,t\"k=v\"a\=b f=1`: measurement `m"x=y`, tag key
        // `t\"k`, tag value `v\"a=b`.
        let k = key(r#"m\"x\=y,t\"k=v\"a\=b f=1"#);
        assert_eq!(k.measurement().unescaped(), r#"m"x=y"#);
        assert!(k.tag(r#"t"k"#).is_none());
        assert_eq!(
            k.tag(r#"t\"k"#).map(|v| v.unescaped().into_owned()),
            Some(r#"v\"a=b"#.into())
        );
    }

    #[test]
    fn escapes_in_measurements_and_tags() {
        let k = key("my\\ weird\\,name,tag\\ key=va\\=l\\,ue,t2=x v=1");
        assert_eq!(k.measurement().unescaped(), "my weird,name");
        assert!(k.measurement().eq_str("my weird,name"));
        assert!(k.measurement().starts_with_str("my w"));
        assert!(!k.measurement().starts_with_str("my weird,namex"));
        assert_eq!(
            k.tag("tag key").map(|v| v.unescaped().into_owned()),
            Some("va=l,ue".into())
        );
        assert_eq!(k.tag("t2").map(|v| v.raw()), Some(&b"x"[..]));
        assert!(k.tag("t3").is_none());
        // Other backslashes stay; a backslash before a separator escapes it, even a doubled one.
        let k = key("c:\\\\dir\\\\,x=1 v=1");
        assert_eq!(k.measurement().unescaped(), "c:\\\\dir\\,x=1");
        assert!(k.tag("x").is_none());
        assert!(matches!(k.measurement().unescaped(), Cow::Owned(_)));
        assert!(matches!(
            key("cpu v=1").measurement().unescaped(),
            Cow::Borrowed("cpu")
        ));
    }

    #[test]
    fn crlf_never_reaches_a_name() {
        let body = "cpu,host=a\r\nmem\r\n";
        let keys: Vec<_> = lines(body.as_bytes())
            .filter_map(|l| match l.kind {
                LineKind::Point(k) => Some(k),
                _ => None,
            })
            .collect();
        assert_eq!(keys[0].measurement().raw(), b"cpu");
        assert_eq!(keys[0].tag("host").map(|v| v.raw()), Some(&b"a"[..]));
        assert_eq!(
            keys[0].tag_value(&TagKey::new("host")).map(|v| v.raw()),
            Some(&b"a"[..])
        );
        assert_eq!(keys[1].measurement().raw(), b"mem");
    }

    /// The tag lookup as it was: each separator found with its own search.
    fn tag_by_searches<'a>(rest: &'a [u8], key: &str) -> Option<&'a [u8]> {
        let mut rest = match rest.split_first() {
            Some((b',', tags)) => &tags[..unescaped_position(tags, 0, b' ', b' ')],
            _ => &[],
        };
        while !rest.is_empty() {
            let pair_end = unescaped_position(rest, 0, b',', b',');
            let pair = &rest[..pair_end];
            let eq = unescaped_position(pair, 0, b'=', b'=');
            let tag = Escaped {
                text: &pair[..eq.min(pair.len())],
                part: Part::Tag,
            };
            if eq < pair.len() && tag.eq_str(key) {
                return Some(&pair[eq + 1..]);
            }
            rest = rest.get(pair_end + 1..).unwrap_or_default();
        }
        None
    }

    proptest::proptest! {
        #[test]
        fn the_tag_walk_finds_what_the_searches_found(
            rest in "[,=\\\\ ab]{0,48}",
            key in "[=\\\\ ab]{0,3}",
        ) {
            let key_of = SeriesKey { measurement: b"m", rest: rest.as_bytes() };
            let expected = tag_by_searches(rest.as_bytes(), &key);
            proptest::prop_assert_eq!(
                key_of.tag(&key).map(|v| v.raw()), expected, "{:?} in {:?}", key, rest
            );
            proptest::prop_assert_eq!(
                key_of.tag_value(&TagKey::new(&key)).map(|v| v.raw()),
                expected,
                "{:?} in {:?}",
                key,
                rest
            );
        }
    }

    proptest::proptest! {
        /// The tag section ends at the first space not after a backslash, 16 bytes at a time or
        /// in the tail alike.
        #[test]
        fn the_tag_section_ends_where_a_byte_loop_ends_it(
            rest in "[,=\\\\ ab]{0,60}",
        ) {
            let key_of = SeriesKey { measurement: b"m", rest: rest.as_bytes() };
            let bytes = rest.as_bytes();
            let end = (0..bytes.len())
                .find(|&i| bytes[i] == b' ' && (i == 0 || bytes[i - 1] != b'\\'))
                .unwrap_or(bytes.len());
            proptest::prop_assert_eq!(key_of.tag_section(), &bytes[..end], "{:?}", rest);
        }
    }

    /// The search the scanner made before [`unescaped_separator`]: the first index at or after
    /// `from` whose byte is `a` or `b` and not escaped (not preceded by a backslash), or the
    /// length.
    fn unescaped_position(text: &[u8], from: usize, a: u8, b: u8) -> usize {
        let mut at = from;
        while let Some(n) = memchr::memchr2(a, b, &text[at..]) {
            let i = at + n;
            if i == 0 || text[i - 1] != b'\\' {
                return i;
            }
            at = i + 1;
        }
        text.len()
    }

    /// [`key_bounds`] as it was, a byte at a time.
    fn key_bounds_by_bytes(text: &[u8]) -> (usize, usize) {
        let start = blanks(text);
        if matches!(text.get(start), None | Some(b'#' | b',')) {
            return (start, start);
        }
        let key = without_cr(&text[start..]);
        let name_end = match key.iter().position(|&b| b == b',' || b == b' ') {
            Some(i) if i == 0 || key[i - 1] != b'\\' => i,
            Some(i) => unescaped_position(key, i + 1, b',', b' '),
            None => key.len(),
        };
        (start, start + name_end)
    }

    proptest::proptest! {
        #[test]
        fn the_name_end_is_found_as_a_byte_loop_finds_it(
            text in proptest::collection::vec(
                proptest::sample::select(b" \t\0#,\r\\=ax".to_vec()), 0..48
            ),
            plain_run in 0usize..24,
        ) {
            // A run of name bytes first, so that ends on both sides of 16 are common.
            let mut line = vec![b'n'; plain_run];
            line.extend_from_slice(&text);
            proptest::prop_assert_eq!(key_bounds(&line), key_bounds_by_bytes(&line), "{:?}", line);
            // The short way in `classify` agrees with the bounds found a byte at a time.
            let (start, name_end) = key_bounds_by_bytes(&line);
            let expected = match line.get(start) {
                None => "blank".to_owned(),
                Some(b'#') => "comment".to_owned(),
                Some(b',') => "invalid".to_owned(),
                Some(_) => {
                    let key = without_cr(&line[start..]);
                    let (measurement, rest) = key.split_at(name_end - start);
                    format!("{measurement:?} {rest:?}")
                }
            };
            let found = match classify(&line) {
                LineKind::Blank => "blank".to_owned(),
                LineKind::Comment => "comment".to_owned(),
                LineKind::Invalid(_) => "invalid".to_owned(),
                LineKind::Point(key) => format!("{:?} {:?}", key.measurement, key.rest),
            };
            proptest::prop_assert_eq!(found, expected, "{:?}", line);
        }
    }

    proptest::proptest! {
        /// Lines end where InfluxDB's rules end them, read line by line from the start, wherever
        /// the first quote or backslash falls among the 64-byte blocks; and `plain` says whether
        /// there is one, however many lines were read.
        #[test]
        fn the_lines_end_where_the_rules_end_them(
            body in proptest::collection::vec(
                proptest::prop_oneof![
                    12 => proptest::sample::select(b"\n\n\rab ,=#".to_vec()),
                    1 => proptest::sample::select(b"\"\\".to_vec()),
                ],
                0..300,
            ),
            taken in 0usize..8,
        ) {
            let found: Vec<_> = line_ends(&body).collect();
            let by_the_rules: Vec<_> = LineEnds::by_the_rules(&body, 0).collect();
            proptest::prop_assert_eq!(&found, &by_the_rules, "{:?}", body);
            let plain = memchr::memchr2(b'"', b'\\', &body).is_none();
            let mut ends = line_ends(&body);
            ends.by_ref().take(taken).for_each(drop);
            proptest::prop_assert_eq!(ends.plain(), plain);
        }
    }

    fn newlines_found(body: &[u8]) -> Vec<usize> {
        Newlines::new(body).collect()
    }

    fn memchr_newlines(body: &[u8]) -> Vec<usize> {
        memchr::memchr_iter(b'\n', body).collect()
    }

    proptest::proptest! {
        #[test]
        fn every_newline_is_found_in_order_as_memchr_finds_it(
            body in proptest::collection::vec(
                proptest::sample::select(b"\n\n\rab ,=\x8a".to_vec()), 0..600
            ),
        ) {
            proptest::prop_assert_eq!(newlines_found(&body), memchr_newlines(&body));
        }

        #[test]
        fn newlines_after_long_lines_are_found_too(
            body in proptest::collection::vec(
                proptest::prop_oneof![150 => proptest::strategy::Just(b'a'), 1 => proptest::strategy::Just(b'\n')],
                0..2000
            ),
        ) {
            proptest::prop_assert_eq!(newlines_found(&body), memchr_newlines(&body));
        }
    }

    #[test]
    fn the_newlines_found_ahead_stop_at_the_block_of_the_first_quote() {
        // Lines enough for one fill, or several, before the quote.
        for lines in [10, 63, 64, 65, 200] {
            let mut body = "a\n".repeat(lines).into_bytes();
            let quote = body.len() + 2;
            body.extend_from_slice(b"b=\"x\ny\"\nc\n");
            let mut newlines = Newlines::new(&body);
            let found: Vec<usize> = newlines.by_ref().collect();
            let block = quote / 64 * 64;
            let before: Vec<usize> = memchr_newlines(&body)
                .into_iter()
                .filter(|&n| n < block)
                .collect();
            assert_eq!(found, before, "{lines} lines");
            assert!(newlines.quoted(), "{lines} lines");
            assert!(!newlines.plain(), "{lines} lines");
            assert_eq!(newlines.next(), None, "{lines} lines");
        }
    }

    proptest::proptest! {
        #[test]
        fn a_short_prefix_is_compared_as_starts_with_compares_it(
            text in proptest::collection::vec(proptest::sample::select(b"ab".to_vec()), 0..24),
            prefix in proptest::collection::vec(proptest::sample::select(b"ab".to_vec()), 0..20),
        ) {
            proptest::prop_assert_eq!(starts_with(&text, &prefix), text.starts_with(&prefix));
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            let len = (state % 64) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    b"\\ ,=\"\n\r#a\tb"[(state % 11) as usize]
                })
                .collect();
            let mut covered = 0;
            for line in lines(&bytes) {
                assert_eq!(line.span.start, covered);
                covered = line.span.end;
                if let LineKind::Point(k) = line.kind {
                    let _ = (k.measurement().unescaped(), k.tag("a"), k.tag(""));
                }
            }
            assert_eq!(covered, bytes.len());
        }
    }
}
