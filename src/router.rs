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

use std::{collections::HashMap, fmt, ops::Range};

use bytes::{Bytes, BytesMut};
use regex::Regex;
use xxhash_rust::xxh3::{xxh3_64, Xxh3};

use crate::{
    config::{Config, ConfigError, RouteConfig},
    line_protocol::{
        self, Escaped, Line, LineError, LineKind, Scan, SeriesKey, TagKey, TimeSpan, Timestamps,
    },
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

/// How a route recognises a measurement.
#[derive(Debug, Clone)]
enum Matcher {
    Exact(String),
    Prefix(String),
    Regex(Regex),
}

impl Matcher {
    fn matches(&self, measurement: &Escaped<'_>) -> bool {
        match self {
            Matcher::Exact(name) => measurement.eq_str(name),
            Matcher::Prefix(prefix) => measurement.starts_with_str(prefix),
            Matcher::Regex(re) => re.is_match(&measurement.unescaped()),
        }
    }

    fn matches_str(&self, measurement: &str) -> bool {
        match self {
            Matcher::Exact(name) => measurement == name,
            Matcher::Prefix(prefix) => measurement.starts_with(prefix.as_str()),
            Matcher::Regex(re) => re.is_match(measurement),
        }
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Matcher::Exact(name) => write!(f, "measurement {name:?}"),
            Matcher::Prefix(prefix) => write!(f, "measurement_prefix {prefix:?}"),
            Matcher::Regex(re) => write!(f, "measurement_regex {:?}", re.as_str()),
        }
    }
}

/// Where a route sends the measurements it matches.
#[derive(Debug, Clone)]
enum Target {
    Shard(ShardId),
    ByTag { key: TagKey, shards: Vec<ShardId> },
}

#[derive(Debug, Clone)]
struct Route {
    matcher: Matcher,
    target: Target,
}

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
    /// Resolves `shards:` and `routes:` against `nodes:`; errors name the key at fault.
    pub fn from_config(config: &Config) -> Result<Router, ConfigError> {
        let node_ids: HashMap<&str, NodeId> = config
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.as_str(), i))
            .collect();
        let shards = if config.shards.is_empty() {
            if !config.routes.is_empty() {
                return Err(ConfigError::invalid(
                    "routes",
                    "routes need shards: define `shards:` first",
                ));
            }
            vec![Shard::new("all", (0..config.nodes.len()).collect())]
        } else {
            resolve_shards(config, &node_ids)?
        };
        let shard_ids: HashMap<&str, ShardId> = shards
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.as_str(), i))
            .collect();
        let routes = config
            .routes
            .iter()
            .enumerate()
            .map(|(i, route)| resolve_route(i, route, &shard_ids))
            .collect::<Result<_, _>>()?;
        Ok(Router {
            all: (0..shards.len()).collect(),
            shards,
            routes,
        })
    }

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

    /// The shard a point goes to once its measurement's placement is known.
    fn shard_of_point(&self, placement: Placement<'_>, key: &SeriesKey<'_>) -> ShardId {
        match placement {
            Placement::Shard(shard) => shard,
            Placement::ByTag { key: tag, shards } => {
                let hash = match key.tag_value(tag) {
                    // Nothing escaped: the bytes as written are the value, hashed in one call
                    // (the digest is the streaming hasher's, without setting one up per point).
                    Some(value) if memchr::memchr(b'\\', value.raw()).is_none() => {
                        xxh3_64(value.raw())
                    }
                    Some(value) => {
                        let mut hasher = Xxh3::new();
                        update_bytes(&mut hasher, value.bytes());
                        hasher.digest()
                    }
                    None => xxh3_64(b""),
                };
                self.pick(hash, shards)
            }
        }
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
        let mut split = Split::new(self.shards.len(), precision);
        let mut recent = RecentPlacements::default();
        let mut lines = line_protocol::lines(body);
        for line in lines.by_ref() {
            match &line.kind {
                LineKind::Blank | LineKind::Comment => {}
                LineKind::Point(key) => {
                    let measurement = key.measurement();
                    let placement = recent.get_or_insert(measurement.raw(), || {
                        self.placement_by(db, |m| m.matches(&measurement), || measurement.bytes())
                    });
                    split.push(body, &line, self.shard_of_point(placement, key));
                }
                LineKind::Invalid(error) => {
                    split.leave_out(body, line.span.start);
                    let text = String::from_utf8_lossy(&body[line.span]);
                    split.unroutable.push(Unroutable {
                        line: text.trim().to_owned(),
                        error: error.clone(),
                    });
                }
            }
        }
        let plain = lines.plain();
        split.finish(body, plain, &self.shards)
    }
}

/// The placements of the last few measurements of a write, by their name as written: a batch
/// usually cycles through a handful of measurements, and matching the routes (maybe a regex) or
/// hashing the name again for every line would cost more than the rest of the routing. A fixed
/// table in which each name may sit in one of two slots chosen by its hash, so that a line
/// compares its name at most twice and a handful of names rarely evict each other: nothing is
/// allocated per write or per line.
struct RecentPlacements<'b, 'r> {
    entries: [Option<(NameKey<'b>, Placement<'r>)>; RECENT_PLACEMENTS],
}

/// Slots of [`RecentPlacements`]: 64 = 2^6, so a hash gives two slots of six bits each.
const RECENT_PLACEMENTS: usize = 64;

/// A measurement name as written, with its first and last eight bytes as words (overlapping when
/// it is shorter than 16; a name shorter than 8 is folded into one word, a byte at a time, which
/// with the length tells it apart: `"\0a"` and `"a"` fold alike but differ in length). Names up to
/// 16 bytes long, nearly all of them, are hashed and told apart by two words, without `memcmp`.
#[derive(Clone, Copy)]
struct NameKey<'b> {
    name: &'b [u8],
    first: u64,
    last: u64,
}

impl<'b> NameKey<'b> {
    #[inline]
    fn new(name: &'b [u8]) -> Self {
        let (first, last) = match (name.first_chunk::<8>(), name.last_chunk::<8>()) {
            (Some(first), Some(last)) => (u64::from_le_bytes(*first), u64::from_le_bytes(*last)),
            _ => {
                let word = name.iter().fold(0, |w, &b| w << 8 | u64::from(b));
                (word, word)
            }
        };
        NameKey { name, first, last }
    }

    #[inline]
    fn hash(&self) -> u64 {
        (self.first ^ self.last.rotate_left(29) ^ self.name.len() as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    #[inline]
    fn same(&self, other: &NameKey<'_>) -> bool {
        self.name.len() == other.name.len()
            && self.first == other.first
            && self.last == other.last
            && (self.name.len() <= 16 || self.name == other.name)
    }
}

impl Default for RecentPlacements<'_, '_> {
    fn default() -> Self {
        RecentPlacements {
            entries: [None; RECENT_PLACEMENTS],
        }
    }
}

impl<'b, 'r> RecentPlacements<'b, 'r> {
    fn get_or_insert(
        &mut self,
        name: &'b [u8],
        placement: impl FnOnce() -> Placement<'r>,
    ) -> Placement<'r> {
        let key = NameKey::new(name);
        let hash = key.hash();
        let slots = [
            (hash >> 58) as usize,
            (hash >> 52) as usize % RECENT_PLACEMENTS,
        ];
        for slot in slots {
            if let Some((known, placement)) = &self.entries[slot] {
                if known.same(&key) {
                    return *placement;
                }
            }
        }
        let placement = placement();
        let slot = slots
            .into_iter()
            .find(|&slot| self.entries[slot].is_none())
            .unwrap_or(slots[0]);
        self.entries[slot] = Some((key, placement));
        placement
    }
}

/// The per-shard bodies of one write, built while its lines are read.
struct Split {
    shard_count: usize,
    /// While every line so far went to one shard: that shard; the body is still shared.
    sole: Option<ShardId>,
    /// Set once lines go to several shards or one is left out: a buffer per shard.
    buffers: Option<Vec<BytesMut>>,
    /// Points per shard.
    points: Vec<u64>,
    /// The timestamps of each shard's points. An unroutable line's is in none: it is not sent,
    /// and orders nothing.
    stamps: Vec<Timestamps>,
    /// The last line that went to a shard: only the body's final line can be left open.
    last: Option<(ShardId, Range<usize>)>,
    unroutable: Vec<Unroutable>,
}

impl Split {
    /// For a write whose timestamps are in `precision` (`/write`'s parameter).
    fn new(shard_count: usize, precision: Option<&str>) -> Self {
        Split {
            shard_count,
            sole: None,
            buffers: None,
            points: vec![0; shard_count],
            stamps: vec![Timestamps::new(precision); shard_count],
            last: None,
            unroutable: Vec::new(),
        }
    }

    fn push(&mut self, body: &Bytes, line: &Line<'_>, shard: ShardId) {
        let span = line.span.clone();
        self.points[shard] += 1;
        self.stamps[shard].line(&body[span.start..line.text_end]);
        self.last = Some((shard, span.clone()));
        if self.buffers.is_none() {
            match self.sole {
                None if self.unroutable.is_empty() => {
                    self.sole = Some(shard);
                    return;
                }
                Some(sole) if sole == shard => return,
                _ => self.start_copying(body, span.start),
            }
        }
        if let Some(buffers) = &mut self.buffers {
            buffers[shard].extend_from_slice(&body[span]);
        }
    }

    /// The line at `start` is left out: the lines before it can no longer share the body.
    fn leave_out(&mut self, body: &Bytes, start: usize) {
        if self.buffers.is_none() {
            self.start_copying(body, start);
        }
    }

    /// Switches to one buffer per shard; everything before `upto` went to the sole shard. Each
    /// starts with room for its even share of the rest, so that most never grow.
    fn start_copying(&mut self, body: &Bytes, upto: usize) {
        let room = (body.len() - upto) / self.shard_count + 1024;
        let mut buffers: Vec<BytesMut> = (0..self.shard_count)
            .map(|_| BytesMut::with_capacity(room))
            .collect();
        if let Some(sole) = self.sole {
            buffers[sole].extend_from_slice(&body[..upto]);
        }
        self.buffers = Some(buffers);
    }

    /// The batches; `plain` says the body holds no quote or backslash, so that no line is open.
    fn finish<'r>(self, body: &Bytes, plain: bool, shards: &'r [Shard]) -> Routed<'r> {
        // Every line but the body's last ended at a newline of its own, which went with it; the
        // last may have been left open (an escape, a quote), and so is the share that holds it.
        let open_end = match &self.last {
            _ if plain => None,
            Some((shard, span)) if span.end == body.len() => {
                (!line_protocol::ends_cleanly(&body[span.clone()])).then_some(*shard)
            }
            _ => None,
        };
        let batches = match (self.buffers, self.sole) {
            (Some(buffers), _) => buffers
                .into_iter()
                .zip(shards)
                .enumerate()
                .filter(|(_, (b, _))| !b.is_empty())
                .map(|(id, (b, shard))| ShardBatch {
                    shard,
                    body: fitted(b),
                    points: self.points[id],
                    ends_cleanly: open_end != Some(id),
                    span: self.stamps[id].span(),
                })
                .collect(),
            // The whole body, its blank and comment lines too: the last of those may be open.
            (None, Some(sole)) => vec![ShardBatch {
                shard: &shards[sole],
                body: body.clone(),
                points: self.points[sole],
                ends_cleanly: plain || line_protocol::ends_cleanly(body),
                span: self.stamps[sole].span(),
            }],
            (None, None) => Vec::new(),
        };
        Routed {
            batches,
            unroutable: self.unroutable,
        }
    }
}

/// A share's bytes without most of the room reserved for it: a small share of a large body would
/// otherwise hold its whole even share of memory while it waits in flight.
fn fitted(share: BytesMut) -> Bytes {
    if share.capacity() > 2 * share.len() + 4096 {
        Bytes::copy_from_slice(&share)
    } else {
        share.freeze()
    }
}

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

impl Shard {
    fn new(name: &str, replicas: Vec<NodeId>) -> Self {
        Shard {
            seed: xxh3_64(name.as_bytes()),
            name: name.to_owned(),
            replicas,
        }
    }
}

fn resolve_shards(
    config: &Config,
    node_ids: &HashMap<&str, NodeId>,
) -> Result<Vec<Shard>, ConfigError> {
    let mut shards: Vec<Shard> = Vec::with_capacity(config.shards.len());
    let mut served = vec![false; config.nodes.len()];
    for (i, shard) in config.shards.iter().enumerate() {
        let key = format!("shards[{i}]");
        if shard.name.trim().is_empty() || shard.name.trim() != shard.name {
            return Err(ConfigError::invalid(
                format!("{key}.name"),
                format!(
                    "{:?} must be a non-empty name without spaces at its ends",
                    shard.name
                ),
            ));
        }
        if let Some(j) = shards.iter().position(|s| s.name == shard.name) {
            return Err(ConfigError::invalid(
                format!("{key}.name"),
                format!("duplicate shard name {:?} (also shards[{j}])", shard.name),
            ));
        }
        if shard.replicas.is_empty() {
            return Err(ConfigError::invalid(
                format!("{key}.replicas"),
                "a shard needs at least one replica",
            ));
        }
        let mut replicas = Vec::with_capacity(shard.replicas.len());
        for (r, name) in shard.replicas.iter().enumerate() {
            let Some(&node) = node_ids.get(name.as_str()) else {
                return Err(ConfigError::invalid(
                    format!("{key}.replicas[{r}]"),
                    format!("{name:?} is not the name of a node in `nodes`"),
                ));
            };
            if replicas.contains(&node) {
                return Err(ConfigError::invalid(
                    format!("{key}.replicas[{r}]"),
                    format!("{name:?} is listed twice"),
                ));
            }
            served[node] = true;
            replicas.push(node);
        }
        shards.push(Shard::new(&shard.name, replicas));
    }
    if let Some(idle) = served.iter().position(|s| !s) {
        return Err(ConfigError::invalid(
            format!("nodes[{idle}]"),
            format!(
                "{:?} is a replica of no shard: add it to one, or remove it",
                config.nodes[idle].name
            ),
        ));
    }
    Ok(shards)
}

fn resolve_route(
    i: usize,
    route: &RouteConfig,
    shard_ids: &HashMap<&str, ShardId>,
) -> Result<Route, ConfigError> {
    let key = format!("routes[{i}]");
    let shard = |field: &str, name: &str| {
        shard_ids.get(name).copied().ok_or_else(|| {
            ConfigError::invalid(
                format!("{key}.{field}"),
                format!("{name:?} is not the name of a shard in `shards`"),
            )
        })
    };
    let matcher = match (
        &route.measurement,
        &route.measurement_prefix,
        &route.measurement_regex,
    ) {
        (Some(name), None, None) => Matcher::Exact(name.clone()),
        (None, Some(prefix), None) => Matcher::Prefix(prefix.clone()),
        (None, None, Some(re)) => Matcher::Regex(Regex::new(re).map_err(|e| {
            ConfigError::invalid(
                format!("{key}.measurement_regex"),
                format!("{re:?} is not a valid regular expression: {e}"),
            )
        })?),
        _ => {
            return Err(ConfigError::invalid(
                key,
                "needs exactly one of measurement, measurement_prefix, measurement_regex",
            ))
        }
    };
    let target = match (&route.shard, &route.by_tag, &route.shards) {
        (Some(name), None, None) => Target::Shard(shard("shard", name)?),
        (None, Some(tag), shards) => {
            if tag.is_empty() {
                return Err(ConfigError::invalid(
                    format!("{key}.by_tag"),
                    "must name a tag key",
                ));
            }
            let shards = match shards {
                None => (0..shard_ids.len()).collect(),
                Some(names) if names.is_empty() => {
                    return Err(ConfigError::invalid(
                        format!("{key}.shards"),
                        "must list at least one shard",
                    ))
                }
                Some(names) => {
                    let mut ids: Vec<ShardId> = Vec::with_capacity(names.len());
                    for (j, name) in names.iter().enumerate() {
                        let id = shard(&format!("shards[{j}]"), name)?;
                        if ids.contains(&id) {
                            return Err(ConfigError::invalid(
                                format!("{key}.shards[{j}]"),
                                format!("{name:?} is listed twice"),
                            ));
                        }
                        ids.push(id);
                    }
                    ids
                }
            };
            Target::ByTag {
                key: TagKey::new(tag),
                shards,
            }
        }
        (None, None, _) => {
            return Err(ConfigError::invalid(
                key,
                "needs a target: `shard`, or `by_tag` (with `shards`)",
            ))
        }
        (Some(_), Some(_), _) | (Some(_), None, Some(_)) => {
            return Err(ConfigError::invalid(
                key,
                "give either `shard`, or `by_tag` with `shards`, not both",
            ))
        }
    };
    Ok(Route { matcher, target })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: &str = "nodes:\n  - name: influx1\n    url: http://127.0.0.1:1\n  - name: influx2\n    url: http://127.0.0.1:2\n  - name: influx3\n    url: http://127.0.0.1:3\n  - name: influx4\n    url: http://127.0.0.1:4\n";

    fn router(shards_and_routes: &str) -> Router {
        crate::blueprint::Blueprint::from_yaml(&format!("{NODES}{shards_and_routes}"))
            .unwrap()
            .router
    }

    fn error_of(shards_and_routes: &str) -> String {
        crate::blueprint::Blueprint::from_yaml(&format!("{NODES}{shards_and_routes}"))
            .unwrap_err()
            .to_string()
    }

    const TWO: &str = "shards:\n  - name: s1\n    replicas: [influx1, influx2]\n  - name: s2\n    replicas: [influx3, influx4]\n";

    const ISSUE_EXAMPLE: &str = "shards:
  - name: s1
    replicas: [influx1, influx2]
  - name: s2
    replicas: [influx3, influx4]
routes:
  - measurement: cpu
    shard: s1
  - measurement_prefix: \"disk\"
    shard: s2
  - measurement_regex: \"^net_\"
    shard: s2
  - measurement: http_requests
    by_tag: customer_id
    shards: [s1, s2]
";

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
    fn configuration_errors_name_the_key() {
        assert_eq!(
            error_of("shards:\n  - name: s1\n    replicas: [influx1, influx9]\n"),
            "shards[0].replicas[1]: \"influx9\" is not the name of a node in `nodes`"
        );
        assert_eq!(
            error_of(&format!(
                "{TWO}routes:\n  - measurement: cpu\n    shard: s3\n"
            )),
            "routes[0].shard: \"s3\" is not the name of a shard in `shards`"
        );
        assert!(error_of(&format!(
            "{TWO}routes:\n  - measurement_regex: \"(\"\n    shard: s1\n"
        ))
        .starts_with("routes[0].measurement_regex: \"(\" is not a valid regular expression"));
        assert_eq!(
            error_of(&format!(
                "{TWO}routes:\n  - measurement: cpu\n    measurement_prefix: c\n    shard: s1\n"
            )),
            "routes[0]: needs exactly one of measurement, measurement_prefix, measurement_regex"
        );
        assert_eq!(
            error_of(&format!("{TWO}routes:\n  - measurement: cpu\n")),
            "routes[0]: needs a target: `shard`, or `by_tag` (with `shards`)"
        );
        assert_eq!(
            error_of(&format!(
                "{TWO}routes:\n  - measurement: cpu\n    by_tag: h\n    shards: [s1, s4]\n"
            )),
            "routes[0].shards[1]: \"s4\" is not the name of a shard in `shards`"
        );
        assert_eq!(
            error_of("shards:\n  - name: s1\n    replicas: [influx1, influx2, influx3]\n"),
            "nodes[3]: \"influx4\" is a replica of no shard: add it to one, or remove it"
        );
        assert_eq!(
            error_of("shards:\n  - name: s1\n    replicas: [influx1, influx2]\n  - name: s1\n    replicas: [influx3, influx4]\n"),
            "shards[1].name: duplicate shard name \"s1\" (also shards[0])"
        );
        assert_eq!(
            error_of("routes:\n  - measurement: cpu\n    shard: s1\n"),
            "routes: routes need shards: define `shards:` first"
        );
        assert!(error_of(&format!("{TWO}routes:\n  - measurment: cpu\n"))
            .contains("unknown field `measurment`"));
        // A node may serve several shards.
        let overlapping = router("shards:\n  - name: s1\n    replicas: [influx1, influx2]\n  - name: s2\n    replicas: [influx2, influx3, influx4]\n");
        assert_eq!(overlapping.shards()[1].replicas, vec![1, 2, 3]);
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

        proptest! {
            #[test]
            fn names_are_told_apart_as_their_bytes_are(
                a in proptest::collection::vec(prop_oneof![Just(0u8), Just(b'a'), Just(b'b')], 0..20),
                b in proptest::collection::vec(prop_oneof![Just(0u8), Just(b'a'), Just(b'b')], 0..20),
            ) {
                prop_assert_eq!(NameKey::new(&a).same(&NameKey::new(&b)), a == b);
                prop_assert!(NameKey::new(&a).same(&NameKey::new(&a.clone())));
            }
        }

        fn line() -> impl Strategy<Value = Gen> {
            let point = (
                measurement(),
                proptest::option::of("[a-z0-9]{0,4}"),
                0..1000u32,
                "[a-z]{0,3}",
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
