//! What one pass over a body reads: its points, whether it ends cleanly, and the time span of its
//! points — which decides when two writes may be on the wire to one node together.
//!
//! A node must end up as if it had applied writes in the order the gateway accepted them: a point
//! written twice keeps the second value (the relay's overwrite caveat is the bug this prevents).
//! Two writes *commute*, so that applying them in either order leaves the node the same, when no
//! point of one can replace a point of the other — and a point only ever replaces one with the same
//! timestamp. So writes whose timestamps lie in disjoint ranges may be in flight together, and a
//! node gets several requests at once (InfluxDB uses its cores for concurrent writes, not for one
//! large one), while writes that might overwrite each other still go one after the other.
//!
//! A line without a timestamp is stamped by influxd on arrival, so its time depends on the order:
//! a write holding one commutes with nothing. So does a write whose span is not known (a replayed
//! record; its order is kept by the replayer anyway).
//!
//! What order still decides between commuting writes is a field's type when two writes give it
//! different types within one shard group: influxd refuses the later one. Replicas that disagree
//! there are handled as any replica that refuses what its peers accepted (a dead letter and a
//! resync flag), never silently.

use crate::line_protocol::{self, simd};

/// The timestamps a write's points carry, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSpan {
    /// No line writes a point (blank lines, comments): commutes with everything.
    Nothing,
    /// Every point has a timestamp, from `first` to `last` (inclusive).
    Range {
        /// The earliest timestamp.
        first: i64,
        /// The latest timestamp.
        last: i64,
    },
    /// Some point has no timestamp, or the span was not computed: commutes with nothing.
    Unknown,
}

/// What one pass over a write body tells the node actors: how many points it holds and their
/// time span. Made once for a write that every node gets whole (one shard), shared by every
/// replica; a sharded write's router gathers the same for each share while it splits the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scan {
    /// Lines that are neither blank nor comments.
    pub points: u64,
    /// Their timestamps.
    pub span: TimeSpan,
    /// Whether another body may be appended to it ([`line_protocol::ends_cleanly`]).
    pub ends_cleanly: bool,
}

impl Scan {
    /// Scans a line-protocol body written with `precision` (`/write`'s parameter). Reads each
    /// line's last word, without parsing the rest: a line whose last word is a number either has
    /// it as its timestamp or is refused by influxd (and writes nothing).
    pub fn of(body: &[u8], precision: Option<&str>) -> Scan {
        simd::with_fastest(Pass {
            body,
            stamps: Timestamps::new(precision),
        })
    }

    /// The same pass without reading timestamps (the span is `Unknown`): for queued records,
    /// whose order the span does not decide.
    pub fn untimed(body: &[u8]) -> Scan {
        simd::with_fastest(Pass {
            body,
            stamps: Timestamps::untimed(),
        })
    }

    /// The lines up to the first block holding a quote or a backslash are those the newlines
    /// end; from the line in progress there on, the lines are read by InfluxDB's rules.
    #[inline(always)]
    fn lines(body: &[u8], mut stamps: Timestamps, blocks: impl simd::BlockSearch) -> Scan {
        let mut points = 0;
        let mut start = 0;
        let mut newlines = line_protocol::NewlineSearch::with(body, blocks);
        for end in newlines.by_ref() {
            points += Scan::plain_line(&body[start..end], &mut stamps);
            start = end + 1;
        }
        if newlines.quoted() {
            return Scan::by_the_rules(body, start, points, stamps);
        }
        points += Scan::plain_line(body.get(start..).unwrap_or(&[]), &mut stamps);
        Scan {
            points,
            span: stamps.span(),
            ends_cleanly: true,
        }
    }

    /// Takes in `line`, of a body without a quote or a backslash before its end; 1 if it writes a
    /// point. A line whose first byte comes after `#` is a point without a look at the blanks
    /// influxd skips.
    #[inline(always)]
    fn plain_line(line: &[u8], stamps: &mut Timestamps) -> u64 {
        match line.first() {
            Some(&first) if first > b'#' => {}
            _ => match line.get(line_protocol::blanks(line)) {
                None | Some(b'#') => return 0,
                Some(_) => {}
            },
        }
        stamps.line(line);
        1
    }

    /// The rest of [`Scan::lines`] from `from`, the start of a line, each line ended by
    /// InfluxDB's rules, quotes and escapes and all; `points` were counted before it.
    fn by_the_rules(body: &[u8], from: usize, mut points: u64, mut stamps: Timestamps) -> Scan {
        for text in line_protocol::LineEnds::by_the_rules(body, from) {
            let line = &body[text];
            match line.get(line_protocol::blanks(line)) {
                None | Some(b'#') => continue,
                Some(_) => points += 1,
            }
            stamps.line(line);
        }
        Scan {
            points,
            span: stamps.span(),
            ends_cleanly: line_protocol::ends_cleanly(body),
        }
    }
}

/// [`Scan::lines`] as a [`simd::LineWalk`], built once for each instruction set.
struct Pass<'a> {
    body: &'a [u8],
    stamps: Timestamps,
}

impl simd::LineWalk for Pass<'_> {
    type Output = Scan;

    #[inline(always)]
    fn walk<B: simd::BlockSearch>(self, blocks: B) -> Scan {
        Scan::lines(self.body, self.stamps, blocks)
    }
}

/// The time span of a write gathered one line at a time: what [`Scan`] does for a whole body,
/// and what the router does while it splits one, so that a sharded body is read once.
///
/// Nearly every timestamp is written in 19 digits (nanoseconds since 2001), and in one write
/// nearly all of them begin with the same three digits (they change every 10^16 ns, about 116
/// days). Those are kept as written: the first such word's lead (its space and first three
/// digits) is the write's, and the last sixteen digits of each word that shares it are compared
/// as one number, whose order is the timestamps' order. Only the least and the greatest are read
/// as numbers, when the span is asked for: reading each one cost more than the rest of the scan.
/// Any other timestamp, a 19-digit one with another lead too, is read and scaled as it comes.
#[derive(Debug, Clone, Copy)]
pub struct Timestamps {
    /// Nanoseconds per unit of the write's precision; 0 once the span is known to be unknown.
    unit: i64,
    /// The least and greatest of the timestamps not kept as words, scaled.
    first: i64,
    last: i64,
    /// The lead of the write's first 19-digit word, [`NO_LEAD`] before it.
    lead: u32,
    /// The least and greatest [`Word::rest`] of the words with that lead; nothing while there is
    /// no lead.
    least: u128,
    greatest: u128,
}

/// No word's lead: a lead begins with a space.
const NO_LEAD: u32 = 0;

impl Timestamps {
    /// For a write with `precision` (`/write`'s parameter).
    pub fn new(precision: Option<&str>) -> Timestamps {
        Timestamps {
            unit: nanoseconds_per_unit(precision),
            first: i64::MAX,
            last: i64::MIN,
            lead: NO_LEAD,
            least: 0,
            greatest: 0,
        }
    }

    /// Gathers nothing: the span is `Unknown`.
    pub fn untimed() -> Timestamps {
        Timestamps {
            unit: 0,
            ..Timestamps::new(None)
        }
    }

    /// Takes in one line that writes a point, without its newline.
    // Always: with `#[inline]` LLVM kept it out of the router's loop, a call for every point.
    #[inline(always)]
    pub fn line(&mut self, line: &[u8]) {
        if self.unit == 0 {
            return;
        }
        self.timed_line(line);
    }

    /// [`Timestamps::line`] without the check for a span already unknown: for a caller that
    /// never made one untimed (the router's split), to which reading on after an overflow costs
    /// less than the check on every line. The span stays unknown.
    #[inline(always)]
    pub fn timed_line(&mut self, line: &[u8]) {
        match Word::of(line) {
            // Timestamps mostly rise (or repeat) through a write, so that a word is most often a
            // new greatest, and then it is no new least: `least <= greatest` holds from the first
            // word on, which set both.
            Some(word) if word.lead == self.lead => {
                if word.rest > self.greatest {
                    self.greatest = word.rest;
                } else if word.rest < self.least {
                    self.least = word.rest;
                }
            }
            // The line is passed on, not the word: passing the word sent it through the stack on
            // every line, the fast path's too.
            _ => self.other_line(line),
        }
    }

    /// A line whose last word is not 19 digits with the write's lead: the write's first word, one
    /// with another lead, another timestamp, or none.
    #[inline(never)]
    fn other_line(&mut self, line: &[u8]) {
        let time = match Word::of(line) {
            Some(word) if self.lead == NO_LEAD => {
                self.lead = word.lead;
                (self.least, self.greatest) = (word.rest, word.rest);
                return;
            }
            Some(word) => word.value(),
            None => any_word_timestamp(line),
        };
        match time.and_then(|t| t.checked_mul(self.unit)) {
            Some(time) => {
                self.first = self.first.min(time);
                self.last = self.last.max(time);
            }
            None => self.unit = 0,
        }
    }

    /// The span of the lines taken in.
    pub fn span(&self) -> TimeSpan {
        if self.unit == 0 {
            return TimeSpan::Unknown;
        }
        let (mut first, mut last) = (self.first, self.last);
        if self.lead != NO_LEAD {
            // Words are never negative, so scaling keeps their order: when the greatest fits in
            // an `i64` once scaled, every word between does.
            let scaled = |rest| {
                let word = Word {
                    lead: self.lead,
                    rest,
                };
                word.value().and_then(|t| t.checked_mul(self.unit))
            };
            let (Some(least), Some(greatest)) = (scaled(self.least), scaled(self.greatest)) else {
                return TimeSpan::Unknown;
            };
            first = first.min(least);
            last = last.max(greatest);
        }
        if first > last {
            TimeSpan::Nothing
        } else {
            TimeSpan::Range { first, last }
        }
    }
}

/// A line's last 20 bytes when they are a space and 19 ASCII digits, not escaped, as big-endian
/// numbers, so that words compare as the timestamps they write: the space and the first three
/// digits, then the other sixteen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Word {
    /// The space and the first three digits.
    lead: u32,
    /// The other sixteen digits.
    rest: u128,
}

impl Word {
    /// The line's last word when it is 19 digits: checked and kept in three loads.
    #[inline(always)]
    fn of(line: &[u8]) -> Option<Word> {
        let (head, word) = line.split_last_chunk::<20>()?;
        let (lead, middle, low) = split_word(word);
        // The space and three digits: as for eight, each digit's high nibble is 3 before and
        // after adding 6, and the space is itself. The other sixteen in one SIMD compare.
        let lead_ok = lead & 0xF0F0_F0FF == 0x3030_3020
            && lead.wrapping_add(0x0606_0600) & 0xF0F0_F000 == 0x3030_3000;
        let [_, _, _, _, sixteen @ ..] = word;
        (lead_ok && simd::all_digits(sixteen) && head.last() != Some(&b'\\')).then(|| Word {
            lead: lead.swap_bytes(),
            rest: u128::from(middle.swap_bytes()) << 64 | u128::from(low.swap_bytes()),
        })
    }

    /// The number the word writes, if an `i64` holds it.
    fn value(self) -> Option<i64> {
        let lead = self.lead.swap_bytes();
        let middle = ((self.rest >> 64) as u64).swap_bytes();
        let low = (self.rest as u64).swap_bytes();
        let leading = u64::from((lead >> 8) & 0xF) * 100
            + u64::from((lead >> 16) & 0xF) * 10
            + u64::from(lead >> 24 & 0xF);
        i64::try_from(
            leading * 10_000_000_000_000_000
                + digits_value(middle) * 100_000_000
                + digits_value(low),
        )
        .ok()
    }
}

impl TimeSpan {
    /// Whether writes with these spans leave a node the same in either order.
    pub fn commutes_with(self, other: TimeSpan) -> bool {
        match (self, other) {
            (TimeSpan::Nothing, _) | (_, TimeSpan::Nothing) => true,
            (
                TimeSpan::Range { first, last },
                TimeSpan::Range {
                    first: other_first,
                    last: other_last,
                },
            ) => last < other_first || other_last < first,
            _ => false,
        }
    }

    /// The span of two writes sent as one.
    pub fn union(self, other: TimeSpan) -> TimeSpan {
        match (self, other) {
            (TimeSpan::Nothing, span) | (span, TimeSpan::Nothing) => span,
            (TimeSpan::Range { first, last }, TimeSpan::Range { first: f, last: l }) => {
                TimeSpan::Range {
                    first: first.min(f),
                    last: last.max(l),
                }
            }
            _ => TimeSpan::Unknown,
        }
    }
}

/// What one unit of `/write`'s `precision` is in nanoseconds, as influxd 1.x reads it
/// (`models.GetPrecisionMultiplier`): it knows `u`, `ms`, `s`, `m` and `h`, and takes anything
/// else — `us` and `ns` included, and nonsense — for nanoseconds, without refusing the write.
fn nanoseconds_per_unit(precision: Option<&str>) -> i64 {
    match precision.unwrap_or("") {
        "u" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => 1,
    }
}

/// The line's last word as a timestamp: an optional `-` and at most 19 decimal digits after the
/// last space, nothing else; the rule [`Timestamps`] reads, as one number, for the tests.
#[cfg(test)]
fn last_word_timestamp(line: &[u8]) -> Option<i64> {
    match Word::of(line) {
        Some(word) => word.value(),
        None => any_word_timestamp(line),
    }
}

/// The last 20 bytes of a line as the space-and-three-digits before a 19-digit word, then its
/// two blocks of eight, each first byte lowest.
#[inline]
fn split_word(word: &[u8; 20]) -> (u32, u64, u64) {
    let &[a, b, c, d, m0, m1, m2, m3, m4, m5, m6, m7, l0, l1, l2, l3, l4, l5, l6, l7] = word;
    (
        u32::from_le_bytes([a, b, c, d]),
        u64::from_le_bytes([m0, m1, m2, m3, m4, m5, m6, m7]),
        u64::from_le_bytes([l0, l1, l2, l3, l4, l5, l6, l7]),
    )
}

/// The line's last word as a timestamp (an optional `-` and at most 19 decimal digits after the
/// last space, nothing else) when it is not a [`Word`]: eight digits at a time while eight are
/// there, then one at a time. Read from the line's end: looking for the space first (`memrchr`)
/// and then parsing cost twice as much.
#[inline(never)]
fn any_word_timestamp(line: &[u8]) -> Option<i64> {
    const MAX_DIGITS: usize = 19;
    let (mut value, mut scale, mut digits, mut rest) = (0u64, 1u64, 0, line);
    // At most twice: a third block would pass 19 digits.
    while digits + 8 <= MAX_DIGITS {
        let Some((head, block)) = rest.split_last_chunk::<8>() else {
            break;
        };
        let block = u64::from_le_bytes(*block);
        if !all_digits(block) {
            break;
        }
        value += digits_value(block) * scale;
        scale *= 100_000_000;
        digits += 8;
        rest = head;
    }
    while let Some((&digit, head)) = rest.split_last() {
        if !digit.is_ascii_digit() {
            break;
        }
        if digits == MAX_DIGITS {
            return None;
        }
        // Below 10^19 in all, which a u64 holds.
        value += u64::from(digit - b'0') * scale;
        scale = scale.wrapping_mul(10);
        digits += 1;
        rest = head;
    }
    if digits == 0 {
        return None;
    }
    let (negative, rest) = match rest {
        [head @ .., b'-'] => (true, head),
        _ => (false, rest),
    };
    // The word must follow a space, and an escaped space does not end the field set:
    // `s="x"\ 12` has no timestamp.
    match rest {
        [.., b'\\', b' '] => return None,
        [.., b' '] => {}
        _ => return None,
    }
    let value = i64::try_from(value).ok()?;
    Some(if negative { -value } else { value })
}

/// Whether all eight bytes are ASCII digits: each byte's high nibble is 3, and adding 6 does not
/// carry into it (SWAR). A carry out of one byte into the next needs a byte of 0xFA or more,
/// whose high nibble already failed the first test.
#[inline]
fn all_digits(chunk: u64) -> bool {
    const HIGH_NIBBLES: u64 = 0xF0F0_F0F0_F0F0_F0F0;
    const ZEROS: u64 = 0x3030_3030_3030_3030;
    (chunk & HIGH_NIBBLES) ^ ZEROS
        | (chunk.wrapping_add(0x0606_0606_0606_0606) & HIGH_NIBBLES) ^ ZEROS
        == 0
}

/// Eight ASCII digits, the first in the lowest byte, as a number: pairs, then fours, then the
/// eight, each step one multiply.
#[inline]
fn digits_value(chunk: u64) -> u64 {
    let mut value = chunk & 0x0F0F_0F0F_0F0F_0F0F;
    value = (value.wrapping_mul(10 << 8 | 1) >> 8) & 0x00FF_00FF_00FF_00FF;
    value = (value.wrapping_mul(100 << 16 | 1) >> 16) & 0x0000_FFFF_0000_FFFF;
    value.wrapping_mul(10_000 << 32 | 1) >> 32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(body: &str) -> TimeSpan {
        Scan::of(body.as_bytes(), None).span
    }

    fn span_in(body: &str, precision: &str) -> TimeSpan {
        Scan::of(body.as_bytes(), Some(precision)).span
    }

    fn range(first: i64, last: i64) -> TimeSpan {
        TimeSpan::Range { first, last }
    }

    #[test]
    fn the_span_covers_every_timestamp() {
        assert_eq!(span("cpu v=1 20\nmem v=2 10\ncpu v=3 15\n"), range(10, 20));
        assert_eq!(span("cpu,host=a\\ b s=\"x y\",v=1 -5"), range(-5, -5));
        assert_eq!(span("\n# comment 12\n  \n"), TimeSpan::Nothing);
        assert_eq!(span(""), TimeSpan::Nothing);
    }

    #[test]
    fn a_point_stamped_on_arrival_makes_the_span_unknown() {
        assert_eq!(span("cpu v=1 10\ncpu v=2\n"), TimeSpan::Unknown);
        // The last word is in a string: no timestamp.
        assert_eq!(span("cpu s=\"a 12\""), TimeSpan::Unknown);
        assert_eq!(span("cpu s=\"a\n12\" 5"), range(5, 5));
        // A CRLF line is refused by influxd; whatever it is, it is not taken for a time.
        assert_eq!(span("cpu v=1 10\r\n"), TimeSpan::Unknown);
        assert_eq!(span("cpu v=1 99999999999999999999"), TimeSpan::Unknown);
        // An escaped space stays in the field set; influxd 1.6 stamps this on arrival.
        assert_eq!(span("cpu s=\"x\"\\ 12"), TimeSpan::Unknown);
    }

    #[test]
    fn precision_scales_to_nanoseconds() {
        assert_eq!(
            span_in("cpu v=1 3", "s"),
            range(3_000_000_000, 3_000_000_000)
        );
        assert_eq!(span_in("cpu v=1 2", "u"), range(2_000, 2_000));
        assert_eq!(
            span_in("cpu v=1 1", "h"),
            range(3_600_000_000_000, 3_600_000_000_000)
        );
        // influxd takes `us`, `ns` and nonsense for nanoseconds (checked against influxd 1.6).
        assert_eq!(span_in("cpu v=1 1000", "us"), range(1_000, 1_000));
        assert_eq!(span_in("cpu v=1 1", "fortnight"), range(1, 1));
        assert_eq!(
            span_in("cpu v=1 9223372036854775807", "s"),
            TimeSpan::Unknown
        );
    }

    #[test]
    fn lines_read_on_after_an_overflow_leave_the_span_unknown() {
        // What the router's split does: `timed_line` reads every line, the check for a span
        // already unknown left out.
        for lines in [
            [
                "cpu v=1 9223372036854775807",
                "cpu v=1 1",
                "cpu v=1 1600000000000000000",
            ],
            ["cpu v=1 1", "cpu v=1 9223372036854775807", "cpu v=1 -5"],
        ] {
            let mut stamps = Timestamps::new(Some("s"));
            for line in lines {
                stamps.timed_line(line.as_bytes());
            }
            assert_eq!(stamps.span(), TimeSpan::Unknown, "{lines:?}");
        }
    }

    #[test]
    fn words_with_another_lead_than_the_first_are_in_the_span() {
        // The first word's lead is the write's; the first word is neither the least nor the
        // greatest, and other timestamps come before and between.
        let mut stamps = Timestamps::new(None);
        for time in [
            7,
            1_600_000_000_000_000_005_i64,
            1_600_000_000_000_000_001,
            1_600_000_000_000_000_009,
            1_700_000_000_000_000_000,
            1_599_999_999_999_999_999,
            1_600_000_000_000_000_003,
            42,
        ] {
            stamps.timed_line(format!("cpu v=1 {time}").as_bytes());
        }
        assert_eq!(stamps.span(), range(7, 1_700_000_000_000_000_000));
        // A word too great for an `i64`, first or after the lead is set, with the same lead or
        // another: the span is unknown.
        for times in [
            ["9223372036854775808", "9220000000000000000"],
            ["9220000000000000000", "9223372036854775808"],
            ["9990000000000000000", "1600000000000000000"],
            ["1600000000000000000", "9990000000000000000"],
        ] {
            let mut stamps = Timestamps::new(None);
            for time in times {
                stamps.timed_line(format!("cpu v=1 {time}").as_bytes());
            }
            assert_eq!(stamps.span(), TimeSpan::Unknown, "{times:?}");
        }
        let mut falling = Timestamps::new(None);
        for time in (1..=9).rev() {
            falling.timed_line(format!("cpu v=1 160000000000000000{time}").as_bytes());
        }
        assert_eq!(
            falling.span(),
            range(1_600_000_000_000_000_001, 1_600_000_000_000_000_009)
        );
    }

    #[test]
    fn points_are_the_lines_that_are_neither_blank_nor_comments() {
        let points = |body: &str| Scan::of(body.as_bytes(), None).points;
        assert_eq!(points("cpu v=1 1\n\n  # note\nmem v=2\r\n\t\0disk v=3"), 3);
        // A newline inside a string field does not end the line; the scan agrees with the router.
        assert_eq!(points("cpu s=\"a\nb\" 1\nmem v=1 2\n"), 2);
        assert_eq!(points(""), 0);
    }

    /// The timestamp read a byte at a time from the end: the simplest reading of the rule.
    fn reference(line: &[u8]) -> Option<i64> {
        let (mut value, mut scale, mut i) = (0u64, 1u64, line.len());
        while i > 0 && line[i - 1].is_ascii_digit() {
            if line.len() - i == 19 {
                return None;
            }
            value += u64::from(line[i - 1] - b'0') * scale;
            scale = scale.wrapping_mul(10);
            i -= 1;
        }
        if i == line.len() {
            return None;
        }
        let negative = i > 0 && line[i - 1] == b'-';
        if negative {
            i -= 1;
        }
        if i == 0 || line[i - 1] != b' ' || (i >= 2 && line[i - 2] == b'\\') {
            return None;
        }
        let value = i64::try_from(value).ok()?;
        Some(if negative { -value } else { value })
    }

    #[test]
    fn timestamps_of_every_length_are_read() {
        let mut digits = String::new();
        for n in 1..=19 {
            digits.push(char::from(b'0' + (n % 10) as u8));
            let line = format!("cpu v=1 {digits}");
            assert_eq!(
                last_word_timestamp(line.as_bytes()),
                digits.parse().ok(),
                "{line}"
            );
            let line = format!("cpu v=1 -{digits}");
            assert_eq!(
                last_word_timestamp(line.as_bytes()),
                Some(-digits.parse::<i64>().unwrap())
            );
        }
        assert_eq!(
            last_word_timestamp(b"cpu v=1 9223372036854775807"),
            Some(i64::MAX)
        );
        assert_eq!(last_word_timestamp(b"cpu v=1 9223372036854775808"), None);
        assert_eq!(
            last_word_timestamp(b"cpu s=\"x\"\\ 1700000000000000000"),
            None
        );
        assert_eq!(last_word_timestamp(b"cpu v=1 17000000000000000000"), None);
        assert_eq!(last_word_timestamp(b"cpu v=1 170000000000000000a"), None);
        assert_eq!(
            last_word_timestamp(b"cpu v=1 -1700000000000000000"),
            Some(-1_700_000_000_000_000_000)
        );
        assert_eq!(last_word_timestamp(b"cpu v=1 12345678:0123456"), None);
        assert_eq!(last_word_timestamp(b"cpu v=1 1234567/"), None);
        assert_eq!(last_word_timestamp(b"cpu v=1 "), None);
        assert_eq!(last_word_timestamp(b"cpu v=1 -"), None);
    }

    proptest::proptest! {
        #[test]
        fn the_timestamp_is_read_as_a_byte_at_a_time(
            head in "[a-z\\\\ =\"]{0,6}",
            word in "[-0-9:/ a\\\\]{0,24}",
            number in "-?[0-9]{0,21}",
        ) {
            for line in [format!("{head}{word}"), format!("{head} {number}")] {
                proptest::prop_assert_eq!(
                    last_word_timestamp(line.as_bytes()),
                    reference(line.as_bytes()),
                    "{:?}", line
                );
            }
        }
    }

    proptest::proptest! {
        /// Near misses of the 19-digit word the fast path reads: one byte of it, or of the space
        /// before it, replaced by any byte.
        #[test]
        fn a_19_digit_word_with_any_byte_replaced_is_read_as_a_byte_at_a_time(
            head in "[a-z\\\\ =\"]{0,4}",
            digits in "[0-9]{19}",
            at in 0usize..20,
            byte in proptest::num::u8::ANY,
        ) {
            let mut line = format!("{head} {digits}").into_bytes();
            let len = line.len();
            line[len - 20 + at] = byte;
            proptest::prop_assert_eq!(last_word_timestamp(&line), reference(&line), "{:?}", line);
        }
    }

    proptest::proptest! {
        /// The loop on the newlines reads what the line-by-line loop reads, whether the body holds
        /// no quote nor backslash or its first one comes in any block: a quoted newline, an
        /// escaped one, a comment ending in a backslash.
        #[test]
        fn a_body_is_scanned_as_line_by_line(
            lines in proptest::collection::vec(
                proptest::prop_oneof![
                    8 => "[a-c]{1,3},t=x v=1 1[0-9]{18}",
                    4 => "[ \t\x00]{0,2}cpu v=1 -?[0-9]{1,20}\r?",
                    2 => "[ \t]{0,3}#[a-z 0-9]{0,24}\\\\?",
                    4 => "[a-c0-9 \t\r#=,\x00-]{0,40}",
                    1 => "cpu s=\"[a-z]{0,3}\n?[a-z ]{0,30}\" 1[0-9]{18}",
                    1 => "c\\\\?pu,t=a\\\\[ \n,] v=1 1[0-9]{18}",
                ],
                0..12,
            ),
            end in proptest::sample::select(vec!["", "\n"]),
            precision in proptest::sample::select(vec![None, Some("s"), Some("ns")]),
        ) {
            let stamps = Timestamps::new(precision);
            let body = format!("{}{end}", lines.join("\n"));
            let body = body.as_bytes();
            let by_the_rules = Scan::by_the_rules(body, 0, 0, stamps);
            // AVX2 where the CPU has it (elsewhere both are the baseline, and only the fuzz
            // target on an AVX2 machine checks the AVX2 build), and the target's baseline.
            proptest::prop_assert_eq!(
                simd::with_fastest(Pass { body, stamps }),
                by_the_rules,
                "{:?}", body
            );
            proptest::prop_assert_eq!(
                Scan::lines(body, stamps, simd::Baseline),
                by_the_rules,
                "{:?}", body
            );
        }
    }

    proptest::proptest! {
        /// Words kept unparsed order as the numbers they write, and read back as them.
        #[test]
        fn words_order_as_their_numbers(a in "[0-9]{19}", b in "[0-9]{19}") {
            let word = |digits: &str| Word::of(format!("cpu v=1 {digits}").as_bytes());
            let (Some(x), Some(y)) = (word(&a), word(&b)) else {
                return Err(proptest::test_runner::TestCaseError::fail("not a word"));
            };
            let number = |digits: &str| digits.parse::<u64>().unwrap_or(u64::MAX);
            // By lead, then by the rest: what `Timestamps` compares, the rest only under one lead.
            proptest::prop_assert_eq!(
                (x.lead, x.rest).cmp(&(y.lead, y.rest)),
                number(&a).cmp(&number(&b))
            );
            proptest::prop_assert_eq!(x.value(), i64::try_from(number(&a)).ok());
        }
    }

    proptest::proptest! {
        /// A write's span is the span of every line's number, read a byte at a time and scaled:
        /// 19-digit words (near `i64::MAX` too, and many with one lead, rising, falling or in no
        /// order), other lengths, negative ones and lines without a timestamp mixed, in every
        /// precision.
        #[test]
        fn the_span_is_the_least_and_greatest_number_scaled(
            words in proptest::collection::vec(
                proptest::prop_oneof![
                    "160[0-9]{16}",
                    "160000000000000000[0-9]",
                    "1[0-9]{18}",
                    "9[0-9]{18}",
                    "922337203685477580[0-9]",
                    "-?[0-9]{1,18}",
                    "[a-z]{0,3}",
                ],
                0..12,
            ),
            precision in proptest::sample::select(vec![None, Some("s"), Some("ms"), Some("h"), Some("ns")]),
        ) {
            let mut stamps = Timestamps::new(precision);
            // What the router's split does: every line read, after an overflow too.
            let mut read_on = stamps;
            let unit = nanoseconds_per_unit(precision);
            let mut expected = Some((i64::MAX, i64::MIN));
            for word in &words {
                let line = format!("cpu v=1 {word}");
                stamps.line(line.as_bytes());
                read_on.timed_line(line.as_bytes());
                let scaled = reference(line.as_bytes()).and_then(|t| t.checked_mul(unit));
                expected = match (expected, scaled) {
                    (Some((first, last)), Some(t)) => Some((first.min(t), last.max(t))),
                    _ => None,
                };
            }
            let expected = match expected {
                None => TimeSpan::Unknown,
                Some((first, last)) if first > last => TimeSpan::Nothing,
                Some((first, last)) => TimeSpan::Range { first, last },
            };
            proptest::prop_assert_eq!(stamps.span(), expected, "{:?} {:?}", words, precision);
            proptest::prop_assert_eq!(read_on.span(), expected, "{:?} {:?}", words, precision);
        }
    }

    #[test]
    fn only_disjoint_spans_commute() {
        assert!(range(1, 5).commutes_with(range(6, 9)));
        assert!(range(6, 9).commutes_with(range(1, 5)));
        assert!(!range(1, 5).commutes_with(range(5, 9)));
        assert!(!range(1, 9).commutes_with(range(3, 4)));
        assert!(!range(1, 5).commutes_with(TimeSpan::Unknown));
        assert!(TimeSpan::Nothing.commutes_with(TimeSpan::Unknown));
        assert_eq!(range(1, 2).union(range(8, 9)), range(1, 9));
        assert_eq!(range(1, 2).union(TimeSpan::Nothing), range(1, 2));
        assert_eq!(range(1, 2).union(TimeSpan::Unknown), TimeSpan::Unknown);
    }
}
