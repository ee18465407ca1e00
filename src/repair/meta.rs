//! What a node must hold before any point is copied to it: the databases, retention policies
//! and continuous queries of a peer.

use super::{
    influx::{ident, RetentionPolicy},
    worker::{CopyError, Stop, Worker},
};
use crate::{node::NodeId, query::planner::continuous_query_home, router::Router};

/// `CREATE` or `ALTER` a retention policy to match `rp`.
fn policy_statement(verb: &str, db: &str, rp: &RetentionPolicy) -> String {
    format!(
        "{verb} RETENTION POLICY {} ON {} DURATION {} REPLICATION {} SHARD DURATION {}{}",
        ident(&rp.name),
        ident(db),
        rp.duration,
        rp.replication.max(1),
        rp.shard_duration,
        if rp.default { " DEFAULT" } else { "" }
    )
}

/// Whether a continuous query belongs on `node` under `router`: on its shard's replicas, or on
/// every node of an unsharded cluster. `None` when it spans shards (one created before sharding):
/// it computes from each node's own data wherever it is, and is neither copied nor dropped.
fn belongs_on(query: &str, node: NodeId, router: &Router) -> Option<bool> {
    if !router.is_sharded() {
        return Some(true);
    }
    continuous_query_home(query, router).map(|s| router.shards()[s].replicas.contains(&node))
}

/// Creates on `target` the databases (only `only`, if given), retention policies and continuous
/// queries `source` holds and it lacks, the latter only where `router` places them; users, which
/// cannot be copied, are listed in the job's warnings.
pub async fn copy_meta(
    w: &Worker<'_>,
    source_id: NodeId,
    target_id: NodeId,
    only: Option<&str>,
    router: &Router,
) -> Result<(), CopyError> {
    let (source, target) = (w.influx(source_id), w.influx(target_id));
    let mut warnings = Vec::new();
    let databases: Vec<String> = source
        .databases()
        .await?
        .into_iter()
        .filter(|db| only.is_none_or(|only| only == db))
        .collect();
    if let Some(db) = only {
        if !databases.iter().any(|d| d == db) {
            return Err(CopyError::Stop(Stop::Failed(format!(
                "database {db:?} not found on {}",
                w.node_name(source_id)
            ))));
        }
    }
    let present = target.databases().await?;
    for db in &databases {
        if !present.contains(db) {
            target
                .execute(None, &format!("CREATE DATABASE {}", ident(db)))
                .await?;
            log::info!("{}: database {db} created", w.node_name(target_id));
        }
        let theirs = target.retention_policies(db).await?;
        for rp in source.retention_policies(db).await? {
            let statement = match theirs.iter().find(|t| t.name == rp.name) {
                None => Some(policy_statement("CREATE", db, &rp)),
                Some(t) if t != &rp => Some(policy_statement("ALTER", db, &rp)),
                Some(_) => None,
            };
            if let Some(statement) = statement {
                target.execute(Some(db), &statement).await?;
            }
        }
    }
    let theirs = target.continuous_queries().await?;
    for cq in source.continuous_queries().await? {
        if !databases.contains(&cq.db) || theirs.iter().any(|t| t.db == cq.db && t.name == cq.name)
        {
            continue;
        }
        match belongs_on(&cq.query, target_id, router) {
            Some(true) => target.execute(Some(&cq.db), &cq.query).await?,
            Some(false) => {}
            None => warnings.push(format!(
                "continuous query {:?} on {:?} reads or writes measurements of several shards: \
                 not copied to {} (each node would compute it from its own data only)",
                cq.name,
                cq.db,
                w.node_name(target_id)
            )),
        }
    }
    let users = target.users().await?;
    for user in source.users().await? {
        if !users.contains(&user) {
            warnings.push(format!(
                "user {user:?} exists on {} but not on {}: users and grants cannot be copied \
                 (their passwords cannot be read back); create it there by hand",
                w.node_name(source_id),
                w.node_name(target_id)
            ));
        }
    }
    let mut record = w.running.lock();
    for warning in warnings {
        if !record.job.warnings.contains(&warning) {
            record.job.warnings.push(warning);
        }
    }
    Ok(())
}

/// Drops from `node` the continuous queries `router` places on other nodes (their measurements
/// moved away), so that each is computed where its data is, and only there.
pub async fn drop_misplaced_queries(
    w: &Worker<'_>,
    node: NodeId,
    router: &Router,
) -> Result<(), CopyError> {
    let influx = w.influx(node);
    for cq in influx.continuous_queries().await? {
        if belongs_on(&cq.query, node, router) == Some(false) {
            influx
                .execute(
                    Some(&cq.db),
                    &format!(
                        "DROP CONTINUOUS QUERY {} ON {}",
                        ident(&cq.name),
                        ident(&cq.db)
                    ),
                )
                .await?;
            log::info!(
                "{}: continuous query {} on {} dropped: its measurements moved to other nodes",
                w.node_name(node),
                cq.name,
                cq.db
            );
        }
    }
    Ok(())
}
