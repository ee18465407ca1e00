//! Decides which shard each point of a write belongs to, and where a measurement lives.
//!
//! A write is split into one body per shard; every replica of a shard receives that shard's body.
//! With one shard (no `shards:` in the configuration) every point goes everywhere and the body is
//! shared, uncopied, with every node; it is only scanned for its points and time span
//! ([`crate::line_protocol::Scan`]). With several, the same pass that splits the body reads them.
//!
//! With several shards each line's measurement is read with InfluxDB's escaping rules
//! ([`crate::line_protocol`]) and placed by the first route that matches it:
//!
//! - `shard: s` — every point of the measurement goes to `s`;
//! - `by_tag: k` with `shards: [...]` — the point goes to one of those shards chosen by the value
//!   of tag `k`; a point without the tag is placed as if its value were empty (always the same
//!   shard of the list);
//! - no route — one shard of all, chosen by the database and measurement name.
//!
//! The choice among several shards is **rendezvous (highest random weight) hashing**: every shard
//! scores the key, `fmix64(xxh3_64(key) ^ xxh3_64(shard name))`, and the highest score wins (ties,
//! which take a 64-bit collision, go to the smaller name). Both functions are fixed algorithms
//! (XXH3 with seed 0, MurmurHash3's 64-bit finaliser), so a key lands on the same shard across
//! restarts and versions of the gateway; the order of `shards:` plays no part; and adding a shard
//! moves only the keys that shard now wins, about 1/N of them. The key of an unrouted measurement
//! is `db`, a zero byte and the unescaped measurement name; the key of a `by_tag` point is the
//! unescaped tag value alone, so one customer's points share a shard across measurements.
//!
//! The split allocates per request, never per line: while every line goes to one shard the body is
//! shared as it is; from the first line that goes elsewhere (or cannot be routed) each shard gets
//! one buffer, a copy per shard, never one per replica.

mod layout;
mod recent;
mod resolve;
mod split;

use std::fmt;

use bytes::Bytes;
use xxhash_rust::xxh3::{xxh3_64, Xxh3};

pub use self::layout::{Layout, ALL};
use self::{
    recent::Recent,
    resolve::{Matcher, Route, Target},
    split::Split,
};
use crate::{
    line_protocol::{self, Escaped, Line, LineError, LineKind, Scan, SeriesKey, TagKey, TimeSpan},
    node::NodeId,
};

/// Index of a shard in the router's list.
pub type ShardId = usize;

/// A set of nodes that each hold a full copy of some of the data.
#[derive(Debug, Clone)]
pub struct Shard {
    /// Name shown in `/health` and in errors.
    pub name: String,
    /// The nodes holding a copy, in configuration order.
    pub replicas: Vec<NodeId>,
    /// This shard's part of every rendezvous score.
    seed: u64,
}

impl Shard {
    /// A shard whose rendezvous seed comes from its name, so that its order plays no part.
    fn new(name: &str, replicas: Vec<NodeId>) -> Self {
        Shard {
            seed: xxh3_64(name.as_bytes()),
            name: name.to_owned(),
            replicas,
        }
    }
}

/// A tag value's shard, with the shards it was picked among.
type TagShard<'r> = (&'r [ShardId], ShardId);

/// Where the points of one measurement go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement<'r> {
    /// Every point goes to this shard.
    Shard(ShardId),
    /// Each point goes to one of `shards`, chosen by the value of tag `key`.
    ByTag {
        /// The tag whose value decides.
        key: &'r TagKey,
        /// The candidate shards.
        shards: &'r [ShardId],
    },
}

impl Placement<'_> {
    /// Every shard the measurement's points may be on.
    pub fn shards(&self) -> &[ShardId] {
        match self {
            Placement::Shard(shard) => std::slice::from_ref(shard),
            Placement::ByTag { shards, .. } => shards,
        }
    }
}

/// The part of one write that belongs to one shard.
#[derive(Debug, Clone)]
pub struct ShardBatch<'r> {
    /// Where it goes.
    pub shard: &'r Shard,
    /// Its line protocol: the request's body itself when every line goes to this shard.
    pub body: Bytes,
    /// Lines that write a point, counted in the pass that routed them, so that nobody reads it
    /// again.
    pub points: u64,
    /// Whether another body may be appended to it ([`line_protocol::ends_cleanly`]).
    pub ends_cleanly: bool,
    /// The timestamps of its points, read in the same pass: each shard's own, so that a node's
    /// writes commute whenever their own points allow it.
    pub span: TimeSpan,
}

/// A line no shard can take, with InfluxDB's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unroutable {
    /// The line, trimmed as InfluxDB quotes it.
    pub line: String,
    /// Why it has no place.
    pub error: LineError,
}

impl fmt::Display for Unroutable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unable to parse '{}': {}", self.line, self.error)
    }
}

/// A write split across shards.
#[derive(Debug, Clone)]
pub struct Routed<'r> {
    /// One entry per shard that receives points.
    pub batches: Vec<ShardBatch<'r>>,
    /// Lines left out because they cannot be routed.
    pub unroutable: Vec<Unroutable>,
}

/// Maps points to shards.
#[derive(Debug, Clone, Default)]
pub struct Router {
    shards: Vec<Shard>,
    routes: Vec<Route>,
    /// Every shard, for measurements no route matches.
    all: Vec<ShardId>,
}

impl Router {
    /// One shard, named `all`, holding every one of `node_count` nodes.
    pub fn replicate_to_all(node_count: usize) -> Self {
        Router {
            shards: vec![Shard::new("all", (0..node_count).collect())],
            routes: Vec::new(),
            all: vec![0],
        }
    }

    /// The shards, in configuration order.
    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }

    /// Whether the data is split at all (more than one shard).
    pub fn is_sharded(&self) -> bool {
        self.shards.len() > 1
    }

    /// Where the points of `measurement` (unescaped) in database `db` go.
    pub fn placement(&self, db: &str, measurement: &str) -> Placement<'_> {
        self.placement_by(db, |m| m.matches_str(measurement), || measurement.bytes())
    }

    /// The tag keys by which some measurement is spread over shards.
    pub fn shard_tags(&self) -> impl Iterator<Item = &str> {
        self.routes.iter().filter_map(|r| match &r.target {
            Target::ByTag { key, .. } => Some(key.name()),
            Target::Shard(_) => None,
        })
    }

    /// Which route places `measurement`, described for `/route`.
    pub fn explain(&self, measurement: &str) -> String {
        self.routes
            .iter()
            .enumerate()
            .find(|(_, r)| r.matcher.matches_str(measurement))
            .map(|(i, r)| format!("routes[{i}] ({})", r.matcher))
            .unwrap_or_else(|| "no route matches: hash of (db, measurement)".to_owned())
    }

    /// The shard of `shards` that the tag value `value` (unescaped) picks.
    pub fn shard_for_tag(&self, shards: &[ShardId], value: &str) -> ShardId {
        self.pick(xxh3_64(value.as_bytes()), shards)
    }

    fn placement_by<'m, I>(
        &self,
        db: &str,
        matches: impl Fn(&Matcher) -> bool,
        name: impl FnOnce() -> I,
    ) -> Placement<'_>
    where
        I: Iterator<Item = u8> + 'm,
    {
        if let Some(route) = self.routes.iter().find(|r| matches(&r.matcher)) {
            return match &route.target {
                Target::Shard(shard) => Placement::Shard(*shard),
                Target::ByTag { key, shards } => Placement::ByTag { key, shards },
            };
        }
        if self.shards.len() == 1 {
            return Placement::Shard(0);
        }
        let mut hasher = Xxh3::new();
        hasher.update(db.as_bytes());
        hasher.update(&[0]);
        update_bytes(&mut hasher, name());
        Placement::Shard(self.pick(hasher.digest(), &self.all))
    }

    /// Rendezvous hashing: the candidate with the highest score for `key` wins.
    fn pick(&self, key: u64, candidates: &[ShardId]) -> ShardId {
        let mut best: Option<(u64, ShardId)> = None;
        for &shard in candidates {
            let score = fmix64(key ^ self.shards[shard].seed);
            let better = match best {
                None => true,
                Some((top, holder)) => {
                    score > top
                        || (score == top && self.shards[shard].name < self.shards[holder].name)
                }
            };
            if better {
                best = Some((score, shard));
            }
        }
        best.map_or(0, |(_, shard)| shard)
    }

    /// The shard a point goes to once its measurement's placement is known; a tag value's shard
    /// is remembered in `values` for the rest of the write.
    fn shard_of_point<'b, 'r>(
        &'r self,
        placement: Placement<'r>,
        key: &SeriesKey<'b>,
        values: &mut Recent<'b, TagShard<'r>>,
    ) -> ShardId {
        match placement {
            Placement::Shard(shard) => shard,
            Placement::ByTag { key: tag, shards } => match key.tag_value(tag) {
                Some(value) => remembered(values, value.raw(), shards, || {
                    self.shard_of_value(shards, value)
                }),
                None => self.pick(xxh3_64(b""), shards),
            },
        }
    }

    /// The shard of `shards` a tag value picks.
    fn shard_of_value(&self, shards: &[ShardId], value: Escaped<'_>) -> ShardId {
        let hash = if memchr::memchr(b'\\', value.raw()).is_none() {
            // Nothing escaped: the bytes as written are the value, hashed in one call (the
            // digest is the streaming hasher's, without setting one up per point).
            xxh3_64(value.raw())
        } else {
            let mut hasher = Xxh3::new();
            update_bytes(&mut hasher, value.bytes());
            hasher.digest()
        };
        self.pick(hash, shards)
    }

    /// Splits a write for database `db`, its timestamps in `precision` (`/write`'s parameter),
    /// into per-shard bodies, reading each line once.
    pub fn route(&self, db: &str, body: &Bytes, precision: Option<&str>) -> Routed<'_> {
        if self.shards.len() == 1 {
            // Every point goes everywhere: share the body rather than parsing it; the nodes
            // report any line they cannot parse.
            let scan = Scan::of(body, precision);
            return Routed {
                batches: vec![ShardBatch {
                    shard: &self.shards[0],
                    body: body.clone(),
                    points: scan.points,
                    ends_cleanly: scan.ends_cleanly,
                    span: scan.span,
                }],
                unroutable: Vec::new(),
            };
        }
        self.split(db, body, precision, |_, _| true)
    }

    /// The part of a write that `self`, the placement the data already written follows, gives
    /// to nodes that `current`'s placement of the same points leaves out: while data moves to
    /// `current`'s placement, the earlier one must stay complete, for reads go there until the
    /// move is done. Lines neither can route are left to `current`'s routing to report.
    pub fn route_moved(
        &self,
        current: &Router,
        db: &str,
        body: &Bytes,
        precision: Option<&str>,
    ) -> Routed<'_> {
        // Whether every replica of an earlier shard is a replica of a current one: those points
        // reach all of them anyway.
        let covered: Vec<Vec<bool>> = self
            .shards
            .iter()
            .map(|before| {
                current
                    .shards
                    .iter()
                    .map(|now| before.replicas.iter().all(|n| now.replicas.contains(n)))
                    .collect()
            })
            .collect();
        let mut recent: Recent<_> = Recent::default();
        let mut values: Recent<_> = Recent::default();
        let mut routed = self.split(db, body, precision, |key, before| {
            let measurement = key.measurement();
            let placement = recent.get_or_insert(measurement.raw(), || {
                current.placement_by(
                    db,
                    move |m| m.matches(measurement),
                    move || measurement.bytes(),
                )
            });
            !covered[before][current.shard_of_point(placement, key, &mut values)]
        });
        routed.unroutable.clear();
        routed
    }

    /// Splits a write by shard, reading each line once; a point `keep` declines (given its
    /// series and shard) is left out.
    fn split<'b>(
        &self,
        db: &str,
        body: &'b Bytes,
        precision: Option<&str>,
        mut keep: impl FnMut(&SeriesKey<'b>, ShardId) -> bool,
    ) -> Routed<'_> {
        let mut split = Split::new(self.shards.len(), precision);
        let mut recent: Recent<_> = Recent::default();
        let mut values: Recent<_> = Recent::default();
        // Made at the first point spread by a tag: most writes have none.
        let mut tag_sections: Option<Recent<_, TAG_SECTIONS>> = None;
        let mut lines = line_protocol::lines(body);
        for Line { span, text, kind } in lines.by_ref() {
            match kind {
                LineKind::Blank | LineKind::Comment => {}
                LineKind::Point(key) => {
                    let measurement = key.measurement();
                    let placement = recent.get_or_insert(measurement.raw(), || {
                        self.placement_by(
                            db,
                            move |m| m.matches(measurement),
                            move || measurement.bytes(),
                        )
                    });
                    let shard = match placement {
                        Placement::Shard(shard) => shard,
                        Placement::ByTag { shards, .. } => remembered(
                            tag_sections.get_or_insert_with(Recent::default),
                            key.tag_section(),
                            shards,
                            || self.shard_of_point(placement, &key, &mut values),
                        ),
                    };
                    if keep(&key, shard) {
                        split.push(body, span, text, shard);
                    } else {
                        split.leave_out(body, span.start);
                    }
                }
                LineKind::Invalid(error) => {
                    split.leave_out(body, span.start);
                    let text = String::from_utf8_lossy(&body[span]);
                    split.unroutable.push(Unroutable {
                        line: text.trim().to_owned(),
                        error,
                    });
                }
            }
        }
        let plain = lines.plain();
        split.finish(body, plain, &self.shards)
    }
}

/// The shard `decide` picks among `shards` for `name` (a tag value or a tag section), remembered
/// for the rest of the write with the shards it was picked among: the same name under another
/// route, which picks among other shards, is decided afresh.
#[inline]
fn remembered<'b, 'r, const SLOTS: usize>(
    recent: &mut Recent<'b, TagShard<'r>, SLOTS>,
    name: &'b [u8],
    shards: &'r [ShardId],
    mut decide: impl FnMut() -> ShardId,
) -> ShardId {
    let (among, shard) = recent.get_or_insert(name, || (shards, decide()));
    if std::ptr::eq(among, shards) {
        shard
    } else {
        decide()
    }
}

/// Slots for the tag sections of a write spread by a tag, each remembered with its shard: a batch
/// holds a few hundred series at most, most of them a few dozen.
const TAG_SECTIONS: usize = 256;

fn update_bytes(hasher: &mut Xxh3, bytes: impl Iterator<Item = u8>) {
    // Unescaped names arrive a byte at a time; hash them in small blocks, not one call a byte.
    let mut block = [0u8; 64];
    let mut len = 0;
    for b in bytes {
        block[len] = b;
        len += 1;
        if len == block.len() {
            hasher.update(&block);
            len = 0;
        }
    }
    hasher.update(&block[..len]);
}

/// MurmurHash3's 64-bit finaliser: spreads every bit of the input over the output.
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    // `router`, `error_of` and `TWO` are `pub(super)`: the resolver's tests use them too.

    const NODES: &str = "nodes:\n  - name: influx1\n    url: http://127.0.0.1:1\n  - name: influx2\n    url: http://127.0.0.1:2\n  - name: influx3\n    url: http://127.0.0.1:3\n  - name: influx4\n    url: http://127.0.0.1:4\n";

    pub(super) fn router(shards_and_routes: &str) -> Router {
        crate::blueprint::Blueprint::from_yaml(&format!("{NODES}{shards_and_routes}"))
            .unwrap()
            .router
    }

    pub(super) fn error_of(shards_and_routes: &str) -> String {
        crate::blueprint::Blueprint::from_yaml(&format!("{NODES}{shards_and_routes}"))
            .unwrap_err()
            .to_string()
    }

    pub(super) const TWO: &str = "shards:\n  - name: s1\n    replicas: [influx1, influx2]\n  - name: s2\n    replicas: [influx3, influx4]\n";

    const ISSUE_EXAMPLE: &str = concat!(
        "shards:\n  - name: s1\n    replicas: [influx1, influx2]\n  - name: s2\n    replicas: [influx3, influx4]\n",
        include_str!("../../tests/fixtures/example-routes.yaml")
    );

    #[test]
    fn during_a_move_the_earlier_layout_gets_what_the_current_one_sends_elsewhere() {
        let before = router(&format!(
            "{TWO}routes:\n  - measurement: cpu\n    shard: s1\n  - measurement: disk\n    shard: s2\n  - measurement: mem\n    by_tag: host\n    shards: [s1, s2]\n"
        ));
        // cpu moves to s2; disk stays; mem is spread over a third shard of influx2 alone.
        let now = router(
            "shards:\n  - name: s1\n    replicas: [influx1, influx2]\n  - name: s2\n    replicas: [influx3, influx4]\n  - name: s3\n    replicas: [influx2]\nroutes:\n  - measurement: cpu\n    shard: s2\n  - measurement: disk\n    shard: s2\n  - measurement: mem\n    by_tag: host\n    shards: [s1, s2, s3]\n",
        );
        let mut body = String::from("cpu v=1 1\ndisk v=1 1\nbad line\n");
        for h in 0..40 {
            body.push_str(&format!("mem,host=h{h} v=1 1\n"));
        }
        let body = Bytes::from(body);
        let moved = before.route_moved(&now, "db", &body, None);
        assert!(
            moved.unroutable.is_empty(),
            "the current routing reports them"
        );
        let mut earlier: Vec<String> = Vec::new();
        for batch in &moved.batches {
            let text = String::from_utf8_lossy(&batch.body);
            for line in text.lines() {
                earlier.push(format!("{} {line}", batch.shard.name));
            }
        }
        assert!(earlier.contains(&"s1 cpu v=1 1".to_owned()), "{earlier:?}");
        assert!(!earlier.iter().any(|l| l.contains("disk")), "{earlier:?}");
        for h in 0..40 {
            let host = format!("h{h}");
            let was = before.shards()[before.shard_for_tag(&[0, 1], &host)]
                .name
                .clone();
            let is = now.shards()[now.shard_for_tag(&[0, 1, 2], &host)]
                .name
                .clone();
            let line = format!("{was} mem,host={host} v=1 1");
            // s3 (influx2) is inside s1 (influx1, influx2) but not the reverse: a point from s1
            // to s3 must reach influx1 through the earlier layout too; one from s2 to s3 also.
            let also_earlier = was != is;
            assert_eq!(
                earlier.contains(&line),
                also_earlier,
                "{host}: {was} -> {is}"
            );
        }
        let counted: u64 = moved.batches.iter().map(|b| b.points).sum();
        assert_eq!(counted as usize, earlier.len());
    }

    fn names(router: &Router, routed: &Routed<'_>) -> Vec<(String, String)> {
        let _ = router;
        routed
            .batches
            .iter()
            .map(|b| {
                (
                    b.shard.name.clone(),
                    String::from_utf8_lossy(&b.body).into_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn full_replication_shares_the_body() {
        let router = Router::replicate_to_all(3);
        let body = Bytes::from_static(b"cpu v=1\nmem v=2\n");
        let routed = router.route("db", &body, None);
        assert_eq!(routed.batches.len(), 1);
        assert_eq!(routed.batches[0].shard.replicas, vec![0, 1, 2]);
        assert_eq!(
            routed.batches[0].body.as_ptr(),
            body.as_ptr(),
            "no copy of the body"
        );
    }

    #[test]
    fn routes_place_measurements_first_match_first() {
        let r = router(ISSUE_EXAMPLE);
        assert_eq!(r.placement("db", "cpu"), Placement::Shard(0));
        assert_eq!(r.placement("db", "diskio"), Placement::Shard(1));
        assert_eq!(r.placement("db", "net_in"), Placement::Shard(1));
        assert_eq!(
            r.placement("db", "http_requests"),
            Placement::ByTag {
                key: &TagKey::new("customer_id"),
                shards: &[0, 1]
            }
        );
        assert_eq!(r.explain("disk"), "routes[1] (measurement_prefix \"disk\")");
        assert!(r.explain("mem").starts_with("no route matches"));
        assert_eq!(r.shard_tags().collect::<Vec<_>>(), vec!["customer_id"]);
    }

    #[test]
    fn the_hash_is_pinned_across_versions() {
        // These placements are a promise to operators: data written by one version is found by
        // the next. Changing the hash breaks existing clusters; never update these numbers.
        let r = router(TWO);
        let placed: Vec<usize> = ["cpu", "mem", "disk", "net", "swap", "system", "load"]
            .iter()
            .map(|m| r.placement("telegraf", m).shards()[0])
            .collect();
        assert_eq!(placed, PINNED_MEASUREMENTS);
        let tags: Vec<usize> = ["", "acme", "globex", "initech", "umbrella"]
            .iter()
            .map(|v| r.shard_for_tag(&[0, 1], v))
            .collect();
        assert_eq!(tags, PINNED_TAGS);
    }

    const PINNED_MEASUREMENTS: [usize; 7] = [0, 0, 0, 1, 0, 0, 1];
    const PINNED_TAGS: [usize; 5] = [0, 0, 1, 0, 1];

    #[test]
    fn the_order_of_shards_does_not_matter() {
        let forward = router(TWO);
        let reversed = router("shards:\n  - name: s2\n    replicas: [influx3, influx4]\n  - name: s1\n    replicas: [influx1, influx2]\n");
        for i in 0..2000 {
            let m = format!("m{i}");
            let a = &forward.shards()[forward.placement("db", &m).shards()[0]].name;
            let b = &reversed.shards()[reversed.placement("db", &m).shards()[0]].name;
            assert_eq!(a, b, "{m}");
        }
    }

    #[test]
    fn adding_a_shard_moves_about_one_key_in_n() {
        let three = router("shards:\n  - name: a\n    replicas: [influx1]\n  - name: b\n    replicas: [influx2]\n  - name: c\n    replicas: [influx3, influx4]\n");
        let four = router("shards:\n  - name: a\n    replicas: [influx1]\n  - name: b\n    replicas: [influx2]\n  - name: c\n    replicas: [influx3]\n  - name: d\n    replicas: [influx4]\n");
        let keys = 20_000;
        let mut moved = 0;
        let mut per_shard = [0usize; 3];
        for i in 0..keys {
            let m = format!("measurement_{i}");
            let before = three.placement("db", &m).shards()[0];
            let after = four.placement("db", &m).shards()[0];
            per_shard[before] += 1;
            if before != after {
                moved += 1;
                assert_eq!(after, 3, "a key only ever moves to the new shard");
            }
        }
        let fraction = moved as f64 / keys as f64;
        assert!((0.22..0.28).contains(&fraction), "moved {fraction}");
        for count in per_shard {
            let share = count as f64 / keys as f64;
            assert!((0.31..0.36).contains(&share), "unbalanced: {per_shard:?}");
        }
    }

    #[test]
    fn a_write_is_split_by_measurement_and_tag() {
        let r = router(ISSUE_EXAMPLE);
        let acme = r.shard_for_tag(&[0, 1], "acme");
        let other = (0..1000)
            .map(|i| format!("c{i}"))
            .find(|v| r.shard_for_tag(&[0, 1], v) != acme)
            .unwrap();
        let body = format!(
            "cpu,host=a v=1 1\n# comment\n\ndiskio v=2 2\nhttp_requests,customer_id=acme n=1i 3\nhttp_requests,customer_id={other} n=2i 4\nnet_in v=3 5\ncpu v=4 6"
        );
        let routed = r.route("db", &Bytes::from(body), None);
        let mut by_shard = names(&r, &routed);
        by_shard.sort();
        // Lines before the first that goes elsewhere, the comment among them, stay together.
        let mut s1 = "cpu,host=a v=1 1\n# comment\n\n".to_owned();
        let mut s2 = "diskio v=2 2\n".to_owned();
        let acme_line = "http_requests,customer_id=acme n=1i 3\n";
        let other_line = format!("http_requests,customer_id={other} n=2i 4\n");
        if acme == 0 {
            s1.push_str(acme_line);
            s2.push_str(&other_line);
        } else {
            s2.push_str(acme_line);
            s1.push_str(&other_line);
        }
        s1.push_str("cpu v=4 6");
        s2.push_str("net_in v=3 5\n");
        assert_eq!(by_shard, vec![("s1".into(), s1), ("s2".into(), s2)]);
        assert!(routed.unroutable.is_empty());
    }

    #[test]
    fn one_shard_for_every_line_shares_the_body() {
        let r = router(ISSUE_EXAMPLE);
        let body = Bytes::from_static(b"# c\ncpu v=1 1\ncpu,host=b v=2 2\n\n");
        let routed = r.route("db", &body, None);
        assert_eq!(routed.batches.len(), 1);
        assert_eq!(routed.batches[0].body.as_ptr(), body.as_ptr());
        assert_eq!(routed.batches[0].body.len(), body.len());
    }

    /// What the router says of each share is what a scan of it would say: the one pass stands
    /// for the scan each share would otherwise need.
    fn shares_agree_with_a_scan(routed: &Routed<'_>, body: &Bytes) {
        for batch in &routed.batches {
            let scan = Scan::of(&batch.body, None);
            assert_eq!(
                (batch.points, batch.ends_cleanly, batch.span),
                (scan.points, scan.ends_cleanly, scan.span),
                "{:?} of {body:?}",
                batch.body
            );
        }
    }

    #[test]
    fn only_the_share_with_an_open_last_line_is_open() {
        let r = router(ISSUE_EXAMPLE);
        for (body, open) in [
            ("cpu v=1 1\nmem v=2 2\\", 1),
            ("cpu v=1 1\nmem s=\"open 2", 1),
            ("mem v=1 1\ncpu s=\"open\n 2\n", 1),
            ("cpu v=1 1\nmem v=2 2\n# a comment\\", 0),
            ("cpu v=1 1\nmem v=2 2\n ,x v=1\\", 0),
            ("cpu v=1 1\nmem v=2 2\ncpu v=3 3", 0),
        ] {
            let body = Bytes::from(body);
            let routed = r.route("db", &body, None);
            assert_eq!(routed.batches.len(), 2, "{body:?}");
            shares_agree_with_a_scan(&routed, &body);
            let open_shares = routed.batches.iter().filter(|b| !b.ends_cleanly).count();
            assert_eq!(open_shares, open, "{body:?}");
        }
    }

    #[test]
    fn each_share_has_the_time_span_of_its_own_points() {
        let r = router(ISSUE_EXAMPLE);
        let body =
            Bytes::from_static(b"cpu v=1 3\ndiskio v=2 1\n,bad v=3\nnet_in v=4 2\ncpu v=5 4\n");
        let routed = r.route("db", &body, Some("s"));
        let spans: Vec<(&str, TimeSpan)> = routed
            .batches
            .iter()
            .map(|b| (b.shard.name.as_str(), b.span))
            .collect();
        let range = |first: i64, last: i64| TimeSpan::Range {
            first: first * 1_000_000_000,
            last: last * 1_000_000_000,
        };
        // The unroutable line has no timestamp, but it is not sent: it orders nothing.
        assert_eq!(spans, [("s1", range(3, 4)), ("s2", range(1, 2))]);
        let routed = r.route("db", &Bytes::from_static(b"cpu v=1 3\ndiskio v=2\n"), None);
        let spans: Vec<TimeSpan> = routed.batches.iter().map(|b| b.span).collect();
        assert_eq!(
            spans,
            [TimeSpan::Range { first: 3, last: 3 }, TimeSpan::Unknown],
            "a point stamped on arrival makes only its own share's span unknown"
        );
    }

    #[test]
    fn a_line_without_a_measurement_is_left_out_and_reported() {
        let r = router(ISSUE_EXAMPLE);
        let routed = r.route(
            "db",
            &Bytes::from_static(b"cpu v=1 1\n  ,bad v=2\ncpu v=3 3\n"),
            None,
        );
        assert_eq!(
            names(&r, &routed),
            vec![("s1".into(), "cpu v=1 1\ncpu v=3 3\n".into())]
        );
        assert_eq!(
            routed.unroutable[0].to_string(),
            "unable to parse ',bad v=2': missing measurement"
        );
        let routed = r.route("db", &Bytes::from_static(b",bad v=2"), None);
        assert!(routed.batches.is_empty());
        assert_eq!(routed.unroutable.len(), 1);
    }

    #[test]
    fn one_tag_value_under_two_routes_is_placed_by_each_routes_shards() {
        let r = router(
            "shards:\n  - {name: s1, replicas: [influx1]}\n  - {name: s2, replicas: [influx2]}\n  - {name: s3, replicas: [influx3, influx4]}\nroutes:\n  - {measurement: a, by_tag: host, shards: [s1, s2]}\n  - {measurement: b, by_tag: host, shards: [s2, s3]}\n",
        );
        let hosts: Vec<String> = (0..40).map(|i| format!("h{i}")).collect();
        let body: String = hosts
            .iter()
            .flat_map(|h| [format!("a,host={h} v=1 1\n"), format!("b,host={h} v=1 1\n")])
            .collect();
        let routed = r.route("db", &Bytes::from(body), None);
        let mut expected: Vec<String> = vec![String::new(); 3];
        for h in &hosts {
            expected[r.shard_for_tag(&[0, 1], h)].push_str(&format!("a,host={h} v=1 1\n"));
            expected[r.shard_for_tag(&[1, 2], h)].push_str(&format!("b,host={h} v=1 1\n"));
        }
        let mut got: Vec<String> = vec![String::new(); 3];
        for batch in &routed.batches {
            let shard = r
                .shards()
                .iter()
                .position(|s| s.name == batch.shard.name)
                .unwrap();
            got[shard] = String::from_utf8(batch.body.to_vec()).unwrap();
        }
        // Each shard's lines in body order: sort both sides' lines to compare the sets.
        let lines = |s: &[String]| -> Vec<Vec<String>> {
            s.iter()
                .map(|b| {
                    let mut l: Vec<String> = b.lines().map(str::to_owned).collect();
                    l.sort();
                    l
                })
                .collect()
        };
        assert_eq!(lines(&got), lines(&expected));
    }

    #[test]
    fn a_point_without_the_tag_goes_where_an_empty_value_goes() {
        let r = router(ISSUE_EXAMPLE);
        let routed = r.route("db", &Bytes::from_static(b"http_requests n=1i 1\n"), None);
        assert_eq!(routed.batches.len(), 1);
        assert_eq!(
            routed.batches[0].shard.name,
            r.shards()[r.shard_for_tag(&[0, 1], "")].name
        );
    }

    #[test]
    fn a_tag_value_ending_in_cr_is_not_taken_for_a_crlf_line_end() {
        // A line without fields and a CRLF ending, then a point whose last tag value ends in a
        // raw `\r`: the point goes where its own value, `\r` and all, sends it, not where the
        // first line's tags were remembered to go.
        let r = router(ISSUE_EXAMPLE);
        let values: Vec<String> = (0..16).map(|i| format!("c{i}")).collect();
        let shard_of = |value: &str| r.shards()[r.shard_for_tag(&[0, 1], value)].name.clone();
        // Values whose shard changes with the `\r`, so that a mix-up would show.
        let telling: Vec<&String> = values
            .iter()
            .filter(|v| shard_of(v) != shard_of(&format!("{v}\r")))
            .collect();
        assert!(!telling.is_empty());
        for value in telling {
            let body = format!(
                "http_requests,customer_id={value}\r\nhttp_requests,customer_id={value}\r n=1i 1\n"
            );
            let routed = r.route("db", &Bytes::from(body), None);
            let point = routed
                .batches
                .iter()
                .find(|b| b.body.windows(3).any(|w| w == b"n=1"))
                .map(|b| b.shard.name.clone());
            assert_eq!(point, Some(shard_of(&format!("{value}\r"))), "{value}");
        }
    }

    mod split_property {
        use super::*;
        use proptest::prelude::*;

        /// One generated line: its text and, for a point, its measurement and customer tag.
        #[derive(Debug, Clone)]
        enum Gen {
            Point {
                text: String,
                measurement: String,
                customer: Option<String>,
            },
            Comment(String),
            Blank(String),
            NoMeasurement(String),
        }

        fn measurement() -> impl Strategy<Value = (String, String)> {
            // (as written, unescaped)
            prop_oneof![
                Just(("cpu".to_owned(), "cpu".to_owned())),
                Just(("diskio".to_owned(), "diskio".to_owned())),
                Just(("net_in".to_owned(), "net_in".to_owned())),
                Just(("http_requests".to_owned(), "http_requests".to_owned())),
                Just(("my\\ mem".to_owned(), "my mem".to_owned())),
                Just(("a\\,b".to_owned(), "a,b".to_owned())),
                "[a-z]{1,8}".prop_map(|m| (m.clone(), m)),
                // Long names, and names of 17 bytes that differ only in their middle, which
                // their first and last eight bytes do not tell apart.
                "[a-z_]{9,24}".prop_map(|m| (m.clone(), m)),
                "[ab]".prop_map(|c| {
                    let m = format!("measure_{c}_ment");
                    (m.clone(), m)
                }),
            ]
        }

        fn line() -> impl Strategy<Value = Gen> {
            let point = (
                measurement(),
                proptest::option::of("[a-z0-9]{0,4}"),
                0..1000u32,
                // Escaped separators in another tag's value, one of them looking like the pair.
                prop_oneof![
                    "[a-z]{0,3}",
                    Just("a\\ b".to_owned()),
                    Just("a\\,customer_id=zz".to_owned()),
                ],
                proptest::option::weighted(0.9, -5..1000i64),
            )
                .prop_map(|((written, measurement), customer, v, other, time)| {
                    let mut text = written;
                    if !other.is_empty() {
                        text.push_str(&format!(",other={other}"));
                    }
                    if let Some(c) = customer.as_ref().filter(|c| !c.is_empty()) {
                        text.push_str(&format!(",customer_id={c}"));
                    }
                    text.push_str(&format!(" v={v}i,s=\"a b,c=d\""));
                    if let Some(time) = time {
                        text.push_str(&format!(" {time}"));
                    }
                    Gen::Point {
                        text,
                        measurement,
                        customer: customer.filter(|c| !c.is_empty()),
                    }
                });
            prop_oneof![
                8 => point,
                1 => "# [a-z ,=]{0,10}".prop_map(Gen::Comment),
                1 => "[ \t]{0,3}".prop_map(Gen::Blank),
                1 => "[ ]{0,2},[a-z]{1,3} v=1".prop_map(Gen::NoMeasurement),
            ]
        }

        proptest! {
            #[test]
            fn every_point_line_reaches_exactly_its_shard(
                lines in proptest::collection::vec(line(), 0..40),
                crlf in any::<bool>(),
                trailing_newline in any::<bool>(),
            ) {
                let r = router(ISSUE_EXAMPLE);
                let eol = if crlf { "\r\n" } else { "\n" };
                let texts: Vec<&str> = lines
                    .iter()
                    .map(|l| match l {
                        Gen::Point { text, .. } => text.as_str(),
                        Gen::Comment(t) | Gen::Blank(t) | Gen::NoMeasurement(t) => t.as_str(),
                    })
                    .collect();
                let mut body = texts.join(eol);
                if trailing_newline && !body.is_empty() {
                    body.push_str(eol);
                }
                let sent = Bytes::from(body);
                let routed = r.route("db", &sent, None);

                let mut expected: Vec<Vec<&str>> = vec![Vec::new(); r.shards().len()];
                for l in &lines {
                    if let Gen::Point { text, measurement, customer } = l {
                        let shard = match r.placement("db", measurement) {
                            Placement::Shard(s) => s,
                            Placement::ByTag { shards, .. } => {
                                r.shard_for_tag(shards, customer.as_deref().unwrap_or(""))
                            }
                        };
                        expected[shard].push(text);
                    }
                }
                let mut got: Vec<Vec<String>> = vec![Vec::new(); r.shards().len()];
                for batch in &routed.batches {
                    let shard = r.shards().iter().position(|s| s.name == batch.shard.name).unwrap();
                    let text = String::from_utf8(batch.body.to_vec()).unwrap();
                    got[shard] = text
                        .split('\n')
                        .map(|l| l.trim_end_matches('\r'))
                        .filter(|l| {
                            let t = l.trim();
                            !t.is_empty() && !t.starts_with('#')
                        })
                        .map(str::to_owned)
                        .collect();
                }
                prop_assert_eq!(got, expected);
                shares_agree_with_a_scan(&routed, &sent);
                let bad = lines.iter().filter(|l| matches!(l, Gen::NoMeasurement(_))).count();
                prop_assert_eq!(routed.unroutable.len(), bad);
                if routed.batches.len() == 1 && bad == 0 {
                    // One shard takes every point: the body is shared, not copied.
                    prop_assert_eq!(routed.batches[0].body.as_ptr(), sent.as_ptr());
                    prop_assert_eq!(routed.batches[0].body.len(), sent.len());
                }
            }
        }
    }
}
