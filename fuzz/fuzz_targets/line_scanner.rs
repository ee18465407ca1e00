//! Any bytes through the routing scanner and the router: no panic, every newline before the first
//! quote or backslash found by the 64-byte masks as by a byte loop, the lines ending by InfluxDB's
//! rules, every byte in exactly one line, a tag found by the 16-byte pair walk as by the byte loop,
//! every point line in exactly one shard body, and the whole-body scan's points and time span
//! those of the lines one by one.
#![no_main]

use std::sync::OnceLock;

use bytes::Bytes;
use influx_gateway::{
    blueprint::Blueprint,
    line_protocol::{self, line_ends, lines, LineEnds, LineKind, Newlines, Scan, TagKey, Timestamps},
};
use libfuzzer_sys::fuzz_target;

mod common;

fn config() -> &'static Blueprint {
    static CONFIG: OnceLock<Blueprint> = OnceLock::new();
    CONFIG.get_or_init(|| {
        common::blueprint(
            "routes:
  - {measurement: cpu, shard: s1}
  - {measurement_regex: \"^n\", shard: s2}
  - {measurement_prefix: h, by_tag: customer_id}
",
        )
    })
}

fn customer() -> &'static TagKey {
    static KEY: OnceLock<TagKey> = OnceLock::new();
    KEY.get_or_init(|| TagKey::new("customer_id"))
}

fuzz_target!(|data: &[u8]| {
    // Every newline before the 64-byte block holding the first quote or backslash, as a byte loop
    // finds them, and none from that block on; the lines end where InfluxDB's rules end them.
    let first_quoted_block = data
        .iter()
        .position(|&b| b == b'"' || b == b'\\')
        .map(|at| at / 64 * 64);
    let by_bytes = data
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == b'\n')
        .map(|(i, _)| i)
        .take_while(|&i| first_quoted_block.is_none_or(|block| i < block));
    let mut newlines = Newlines::new(data);
    assert!(newlines.by_ref().eq(by_bytes));
    assert_eq!(newlines.quoted(), first_quoted_block.is_some());
    assert!(line_ends(data).eq(LineEnds::by_the_rules(data, 0)));
    let mut covered = 0;
    let (mut points, mut invalid) = (0, 0);
    // What the whole-body scan (built for AVX2 where the CPU has it) must find, line by line.
    let mut stamps = Timestamps::new(None);
    for line in lines(data) {
        assert_eq!(line.span.start, covered);
        covered = line.span.end;
        // The text is the span, less the newline that ended the line when one did.
        let whole = &data[line.span.clone()];
        assert!(whole == line.text || whole == [line.text, b"\n"].concat());
        if matches!(line.kind, LineKind::Point(_) | LineKind::Invalid(_)) {
            stamps.line(line.text);
        }
        match line.kind {
            LineKind::Point(key) => {
                points += 1;
                let m = key.measurement();
                let _ = (
                    m.unescaped(),
                    m.eq_str("cpu"),
                    m.starts_with_str("h"),
                    m.bytes().count(),
                );
                // The pair walk that finds a plain key 16 bytes at a time finds what the byte
                // loop finds.
                let tag = key.tag("customer_id");
                let _ = tag.map(|v| v.unescaped());
                assert_eq!(
                    key.tag_value(customer()).map(|v| v.raw()),
                    tag.map(|v| v.raw())
                );
            }
            LineKind::Invalid(_) => invalid += 1,
            LineKind::Blank | LineKind::Comment => {}
        }
    }
    assert_eq!(covered, data.len());
    assert_eq!(
        Scan::of(data, None),
        Scan {
            points: (points + invalid) as u64,
            span: stamps.span(),
            ends_cleanly: line_protocol::ends_cleanly(data),
        }
    );

    // Split by shard, each body read again: the same points, each exactly once.
    let body = Bytes::copy_from_slice(data);
    let routed = config().router.route("db", &body, None);
    let routed_points: usize = routed
        .batches
        .iter()
        .map(|b| {
            lines(&b.body)
                .filter(|l| matches!(l.kind, LineKind::Point(_)))
                .count()
        })
        .sum();
    assert_eq!(routed_points, points);
    assert_eq!(routed.unroutable.len(), invalid);
});
