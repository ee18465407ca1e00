//! Chooses where a query goes: one node, one shard, every shard statement by statement, or every
//! node.
//!
//! The rule when in doubt is to broadcast: a read sent to every node costs a little work and
//! still gets one node's answer, while a mutation sent to one node leaves the replicas different.
//!
//! With several shards a read statement goes to the shards its sources live on: one shard, when
//! every source is placed there; otherwise every shard concerned, and the answers are merged
//! ([`super::merge`]). A query whose statements all fit on one shard is sent there whole, as it
//! would be to one InfluxDB, and streams back.

use crate::{
    influxql::{
        classify_query,
        into::write_back,
        sources::{reads, Measurement, Reads},
        LexError, Statement, StatementKind,
    },
    router::{Placement, Router, ShardId},
};

/// Where a query goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan<'q> {
    /// Reads only, all answerable by one replica of `shard` (`None`: by any node).
    Read {
        /// The shard whose replicas may answer.
        shard: Option<ShardId>,
    },
    /// Every replica of `shard` applies the statement, in order with the writes it receives: one
    /// that writes query results back, whose sources and target all live on that shard.
    OnShard {
        /// The shard.
        shard: ShardId,
    },
    /// Every node applies the whole query, in order with the writes it receives.
    Broadcast {
        /// How many statements the query has (1 when they could not be counted).
        statements: usize,
    },
    /// Reads spanning shards: each statement is answered on its own, merged where it must be.
    Scatter(Vec<Routed<'q>>),
    /// A statement the sharded cluster cannot run correctly; the text says why.
    Refused(String),
}

/// One read statement and where it is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed<'q> {
    /// The statement.
    pub statement: Statement<'q>,
    /// Who answers it.
    pub target: Target,
}

/// Who answers one read statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Any node: node-local statements, and schema every node holds.
    AnyNode,
    /// One replica of this shard.
    Shard(ShardId),
    /// One replica of each of these shards, answers merged.
    Shards {
        /// The shards, in router order.
        shards: Vec<ShardId>,
        /// Tags by which some source is spread over shards (a series may span shards).
        shard_tags: Vec<String>,
    },
}

/// The `q` of a request, as far as the gateway could find it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryText {
    /// The request has this `q`.
    Found(String),
    /// The request has no `q`: the node will say so.
    Absent,
    /// The request carries a body the gateway does not decode (multipart, say): `q` may be in it.
    Unknown,
}

/// A request's `q`, lexed and classified once, then handed to every step that reads it: the
/// rights check, the statement filter and the planner.
#[derive(Debug)]
pub enum Classified<'q> {
    /// The request has no `q`: the node will say so.
    Absent,
    /// The request carries a body the gateway does not decode (multipart, say): `q` may be in it.
    Unknown,
    /// `q`'s statements (none for an empty `q`).
    Statements(Vec<Statement<'q>>),
    /// `q` does not lex: the lexer's error, for whoever must refuse it.
    Unlexable(LexError),
}

impl<'q> Classified<'q> {
    /// Lexes and classifies `q`.
    pub fn of(q: &'q QueryText) -> Self {
        match q {
            QueryText::Absent => Classified::Absent,
            QueryText::Unknown => Classified::Unknown,
            QueryText::Found(text) => match classify_query(text) {
                Ok(statements) => Classified::Statements(statements),
                Err(e) => Classified::Unlexable(e),
            },
        }
    }
}

/// Why a `q` the gateway cannot read (in a multipart body) is refused on a sharded cluster.
pub const UNREAD_ON_SHARDS: &str = "on a sharded cluster the gateway must read q to route it: \
    send it as a URL parameter or a form field, not in a multipart body";

/// Plans a query for database `db` (the request's `db`, if any).
///
/// Broadcast: any mutation; any statement the classifier does not know; a query that does not lex
/// (the gateway's lexer must never be the reason a mutation reaches one node only); a `q` that
/// could not be found.
pub fn plan<'q>(q: Classified<'q>, router: &Router, db: Option<&str>) -> Plan<'q> {
    let statements = match q {
        Classified::Statements(statements) => statements,
        Classified::Absent => return Plan::Read { shard: None },
        Classified::Unknown if router.is_sharded() => {
            return Plan::Refused(UNREAD_ON_SHARDS.to_owned())
        }
        Classified::Unknown | Classified::Unlexable(_) => return Plan::Broadcast { statements: 1 },
    };
    let reads_only = statements
        .iter()
        .all(|s| matches!(s.kind, StatementKind::Read | StatementKind::NodeLocal));
    if !reads_only {
        if router.is_sharded() {
            let placed: Vec<_> = statements
                .iter()
                .filter_map(|s| place_write_back(s, router, db))
                .collect();
            match placed.as_slice() {
                [] => {}
                [Ok(shard)] if statements.len() == 1 => return Plan::OnShard { shard: *shard },
                _ => {
                    // A refusal says where the measurements live; otherwise it is only the mix.
                    let why = placed.into_iter().find_map(Result::err).unwrap_or_else(|| {
                        "on a sharded cluster a statement that writes query results back \
                         (SELECT ... INTO, CREATE CONTINUOUS QUERY) must be sent alone: it goes \
                         to one shard's nodes only"
                            .to_owned()
                    });
                    return Plan::Refused(why);
                }
            }
        }
        return Plan::Broadcast {
            statements: statements.len().max(1),
        };
    }
    if !router.is_sharded() {
        return Plan::Read { shard: None };
    }
    let routed: Vec<Routed<'q>> = statements
        .into_iter()
        .map(|statement| {
            let target = target(&statement, router, db);
            Routed { statement, target }
        })
        .collect();
    let mut sole: Option<ShardId> = None;
    for r in &routed {
        match (&r.target, sole) {
            (Target::AnyNode, _) => {}
            (Target::Shard(s), None) => sole = Some(*s),
            (Target::Shard(s), Some(t)) if *s == t => {}
            _ => return Plan::Scatter(routed),
        }
    }
    Plan::Read { shard: sole }
}

/// Where a statement that writes query results back (`SELECT ... INTO`, `CREATE CONTINUOUS
/// QUERY`) can run on a sharded cluster: on the replicas of the one shard holding every source and
/// the target, as each node computes it from its own data and writes the result to itself. The
/// error names where each measurement lives.
pub fn place_write_back(
    statement: &Statement<'_>,
    router: &Router,
    db: Option<&str>,
) -> Option<Result<ShardId, String>> {
    let what = if statement.tokens.first()?.is_keyword("CREATE") {
        "a continuous query"
    } else {
        "SELECT ... INTO"
    };
    let write_back = match write_back(statement)? {
        Ok(write_back) => write_back,
        Err(e) => {
            return Some(Err(format!(
                "{what} on a sharded cluster must have its sources and INTO target on one shard, \
                 and the gateway could not tell where they live: {e}"
            )))
        }
    };
    let db = write_back.on.as_deref().or(db).unwrap_or("");
    let mut lives: Vec<(String, Vec<ShardId>)> = Vec::new();
    let mut names = Vec::new();
    for source in &write_back.sources {
        let source_db = source.db.as_deref().unwrap_or(db);
        match &source.measurement {
            Measurement::Name(name) => {
                names.push(name.as_str());
                lives.push((
                    name.clone(),
                    router.placement(source_db, name).shards().to_vec(),
                ));
            }
            Measurement::Regex(regex) => {
                return Some(Err(format!(
                    "{what} on a sharded cluster must have its sources and INTO target on one \
                     shard: the regex /{regex}/ may match measurements on any of them; name the \
                     measurements instead"
                )))
            }
        }
    }
    let into_db = write_back.into.db.as_deref().unwrap_or(db);
    let targets = match &write_back.into.measurement {
        Some(name) => vec![name.as_str()],
        None => names,
    };
    for name in targets {
        lives.push((
            format!("{name} (INTO)"),
            router.placement(into_db, name).shards().to_vec(),
        ));
    }
    let first = &lives.first()?.1;
    if let [shard] = first[..] {
        if lives.iter().all(|(_, shards)| shards == first) {
            return Some(Ok(shard));
        }
    }
    let shard_names = |shards: &[ShardId]| {
        shards
            .iter()
            .map(|&s| router.shards()[s].name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let placed: Vec<String> = lives
        .iter()
        .map(|(name, shards)| match shards[..] {
            [_] => format!("{name} on shard {}", shard_names(shards)),
            _ => format!("{name} spread over shards {}", shard_names(shards)),
        })
        .collect();
    Some(Err(format!(
        "{what} on a sharded cluster must have its sources and INTO target on one shard, as \
         each node computes it from its own data and writes the result to itself: {}",
        placed.join("; ")
    )))
}

/// The shard whose replicas a continuous query belongs on under `router`; `None` when it belongs
/// on every node (the cluster is not sharded, or the query spans shards: one created before
/// sharding, left where it is).
pub fn continuous_query_home(query: &str, router: &Router) -> Option<ShardId> {
    if !router.is_sharded() {
        return None;
    }
    let statements = classify_query(query).ok()?;
    place_write_back(statements.first()?, router, None)?.ok()
}

/// Where one read statement is answered.
fn target(statement: &Statement<'_>, router: &Router, db: Option<&str>) -> Target {
    if statement.kind == StatementKind::NodeLocal {
        return Target::AnyNode;
    }
    let every_shard = || Target::Shards {
        shards: (0..router.shards().len()).collect(),
        shard_tags: router.shard_tags().map(str::to_owned).collect(),
    };
    let (on, sources) = match reads(statement) {
        Reads::Schema { merge: false } => return Target::AnyNode,
        Reads::Schema { merge: true } | Reads::Everything { .. } => return every_shard(),
        Reads::Sources { on, sources, .. } => (on, sources),
    };
    let mut shards: Vec<ShardId> = Vec::new();
    let mut shard_tags: Vec<String> = Vec::new();
    for source in &sources {
        let name = match &source.measurement {
            Measurement::Name(name) => name,
            // A regex may match any measurement, wherever it lives.
            Measurement::Regex(_) => return every_shard(),
        };
        let db = source.db.as_deref().or(on.as_deref()).or(db).unwrap_or("");
        let placement = router.placement(db, name);
        if let Placement::ByTag { key, .. } = placement {
            if !shard_tags.iter().any(|k| k == key.name()) {
                shard_tags.push(key.name().to_owned());
            }
        }
        for &shard in placement.shards() {
            if !shards.contains(&shard) {
                shards.push(shard);
            }
        }
    }
    shards.sort_unstable();
    match shards.as_slice() {
        [one] => Target::Shard(*one),
        _ => Target::Shards { shards, shard_tags },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plans `q` on an unsharded cluster of two nodes and checks the plan.
    fn assert_plan(q: &str, expected: Plan<'_>) {
        let q = QueryText::Found(q.to_owned());
        assert_eq!(
            plan(Classified::of(&q), &Router::replicate_to_all(2), Some("db")),
            expected
        );
    }

    #[test]
    fn reads_go_to_one_node() {
        assert_plan("SELECT * FROM cpu", Plan::Read { shard: None });
        assert_plan("SHOW DATABASES; SHOW QUERIES", Plan::Read { shard: None });
        assert_plan("", Plan::Read { shard: None });
        assert_eq!(
            plan(
                Classified::of(&QueryText::Absent),
                &Router::replicate_to_all(1),
                None
            ),
            Plan::Read { shard: None }
        );
    }

    #[test]
    fn mutations_and_doubt_go_everywhere() {
        let everywhere = |statements| Plan::Broadcast { statements };
        assert_plan("SELECT * FROM cpu; CREATE DATABASE x", everywhere(2));
        assert_plan("create database x", everywhere(1));
        assert_plan("CREATE DATABASE 'x", everywhere(1));
        assert_plan("SELEC 1; DROP DATABASE x", everywhere(2));
        assert_eq!(
            plan(
                Classified::of(&QueryText::Unknown),
                &Router::replicate_to_all(1),
                None
            ),
            everywhere(1)
        );
    }

    #[test]
    fn a_cast_before_a_division_does_not_hide_a_mutation() {
        assert_plan(
            "SELECT v::field / 2 FROM cpu; DROP DATABASE w1",
            Plan::Broadcast { statements: 2 },
        );
        assert_plan(
            "SELECT v::tag / 2 FROM cpu; DROP DATABASE w1 /",
            Plan::Broadcast { statements: 2 },
        );
    }

    fn sharded() -> Router {
        crate::blueprint::Blueprint::from_yaml(concat!(
            include_str!("../../tests/fixtures/two-shards.yaml"),
            "routes:
  - {measurement: cpu, shard: s1}
  - {measurement: mem, shard: s1}
  - {measurement: disk, shard: s2}
  - {measurement: http, by_tag: customer, shards: [s1, s2]}
"
        ))
        .unwrap()
        .router
    }

    /// The target of each statement of `q` on the sharded cluster, or the whole plan when it is
    /// not scattered.
    fn targets(q: &str) -> Result<Vec<Target>, String> {
        let q = QueryText::Found(q.to_owned());
        match plan(Classified::of(&q), &sharded(), Some("db")) {
            Plan::Scatter(routed) => Ok(routed.into_iter().map(|r| r.target).collect()),
            other => Err(format!("{other:?}")),
        }
    }

    fn spread(shard_tags: &[&str]) -> Target {
        Target::Shards {
            shards: vec![0, 1],
            shard_tags: shard_tags.iter().map(|t| t.to_string()).collect(),
        }
    }

    #[test]
    fn a_query_on_one_shard_goes_there_whole() {
        let plan_of = |q: &str| {
            let q = QueryText::Found(q.to_owned());
            format!("{:?}", plan(Classified::of(&q), &sharded(), Some("db")))
        };
        assert_eq!(plan_of("SELECT * FROM cpu"), "Read { shard: Some(0) }");
        assert_eq!(
            plan_of("SELECT * FROM cpu, mem; SHOW QUERIES; SHOW USERS"),
            "Read { shard: Some(0) }"
        );
        assert_eq!(
            plan_of("SHOW TAG KEYS FROM \"db\"..\"disk\""),
            "Read { shard: Some(1) }"
        );
        assert_eq!(plan_of("SHOW QUERIES"), "Read { shard: None }");
    }

    #[test]
    fn statements_spanning_shards_are_scattered() {
        assert_eq!(targets("SELECT * FROM cpu, disk"), Ok(vec![spread(&[])]));
        assert_eq!(
            targets("SELECT count(n) FROM http"),
            Ok(vec![spread(&["customer"])])
        );
        assert_eq!(
            targets("SELECT * FROM /./"),
            Ok(vec![spread(&["customer"])])
        );
        assert_eq!(
            targets("SHOW MEASUREMENTS; SHOW DATABASES"),
            Ok(vec![spread(&["customer"]), spread(&["customer"])])
        );
        assert_eq!(
            targets("SELECT * FROM cpu; SELECT * FROM disk; SHOW USERS"),
            Ok(vec![Target::Shard(0), Target::Shard(1), Target::AnyNode])
        );
        assert_eq!(
            targets("SELECT max(v) FROM (SELECT v FROM cpu), (SELECT v FROM disk)"),
            Ok(vec![spread(&[])])
        );
    }

    /// The plan of `q` on the sharded cluster, its refusal shortened to what follows the colon.
    fn sharded_plan(q: &str) -> Plan<'static> {
        let q = QueryText::Found(q.to_owned());
        match plan(Classified::of(&q), &sharded(), Some("db")) {
            Plan::Refused(why) => Plan::Refused(why.rsplit(": ").next().unwrap_or("").to_owned()),
            Plan::OnShard { shard } => Plan::OnShard { shard },
            Plan::Broadcast { statements } => Plan::Broadcast { statements },
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn what_writes_back_on_one_shard_goes_to_its_replicas() {
        assert_eq!(
            sharded_plan(
                "CREATE CONTINUOUS QUERY c ON db BEGIN SELECT mean(v) INTO mem FROM cpu GROUP BY time(1m) END"
            ),
            Plan::OnShard { shard: 0 }
        );
        assert_eq!(
            sharded_plan("SELECT * INTO db.autogen.:MEASUREMENT FROM disk"),
            Plan::OnShard { shard: 1 }
        );
    }

    #[test]
    fn a_continuous_query_belongs_with_its_measurements() {
        let home = |q: &str| continuous_query_home(q, &sharded());
        let cq = |select: &str| format!("CREATE CONTINUOUS QUERY c ON db BEGIN {select} END");
        assert_eq!(
            home(&cq(
                "SELECT max(v) INTO db..disk FROM disk GROUP BY time(1h)"
            )),
            Some(1)
        );
        assert_eq!(
            home(&cq("SELECT count(v) INTO mem FROM cpu GROUP BY time(1h)")),
            Some(0)
        );
        assert_eq!(
            home(&cq("SELECT count(v) INTO disk FROM cpu GROUP BY time(1h)")),
            None
        );
        assert_eq!(
            continuous_query_home(
                &cq("SELECT count(v) INTO mem FROM cpu GROUP BY time(1h)"),
                &Router::replicate_to_all(2)
            ),
            None
        );
    }

    #[test]
    fn what_sharding_would_get_wrong_is_refused() {
        let refused = |why: &str| Plan::Refused(why.to_owned());
        assert_eq!(
            sharded_plan("SELECT mean(v) INTO disk FROM cpu GROUP BY time(1m)"),
            refused("cpu on shard s1; disk (INTO) on shard s2")
        );
        assert_eq!(
            sharded_plan(
                "CREATE CONTINUOUS QUERY c ON db BEGIN SELECT count(n) INTO cpu FROM http GROUP BY time(1m) END"
            ),
            refused("http spread over shards s1, s2; cpu (INTO) on shard s1")
        );
        assert_eq!(
            sharded_plan("SELECT * INTO cpu FROM /c/"),
            refused("the regex /c/ may match measurements on any of them; name the measurements instead")
        );
        assert_eq!(
            sharded_plan("SELECT * INTO cpu FROM (SELECT v FROM mem), disk"),
            refused("mem on shard s1; disk on shard s2; cpu (INTO) on shard s1")
        );
        assert!(matches!(
            sharded_plan("CREATE DATABASE x; SELECT * INTO cpu FROM mem"),
            Plan::Refused(why) if why.starts_with("it goes to one shard")
        ));
        assert_eq!(
            sharded_plan("CREATE DATABASE x; DROP MEASUREMENT cpu"),
            Plan::Broadcast { statements: 2 }
        );
        // A q the gateway cannot read (multipart) could be anything, a SELECT ... INTO too.
        assert!(matches!(
            plan(Classified::of(&QueryText::Unknown), &sharded(), None),
            Plan::Refused(why) if why.contains("multipart")
        ));
    }
}
