//! `GET /route`: where a measurement, or one tag value of it, lives.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::{params, required, ApiError};
use crate::{
    gateway::Gateway,
    router::{Placement, Router},
};

#[derive(Deserialize)]
struct RouteParams {
    db: Option<String>,
    measurement: Option<String>,
    /// The value of the route's `by_tag` tag; empty stands for a point without the tag.
    tag: Option<String>,
}

#[derive(Serialize)]
struct RouteAnswer<'a> {
    db: &'a str,
    measurement: &'a str,
    /// Which route decided, or that the hash did.
    route: String,
    /// The tag whose value spreads the measurement over shards, if any.
    by_tag: Option<&'a str>,
    /// The tag value asked about, if any.
    tag: Option<&'a str>,
    /// Where the points go: one shard, or every candidate when a tag value is needed to choose.
    shards: Vec<ShardAnswer<'a>>,
    /// While shards or routes changed and a rebalance has not moved the data yet: where the
    /// points written so far are, and reads go, until it has.
    #[serde(skip_serializing_if = "Option::is_none")]
    data_on: Option<Vec<ShardAnswer<'a>>>,
}

#[derive(Serialize)]
struct ShardAnswer<'a> {
    name: &'a str,
    replicas: Vec<&'a str>,
}

/// Handles `GET /route?db=&measurement=&tag=`.
pub async fn route(
    req: HttpRequest,
    gateway: web::Data<Gateway>,
) -> Result<HttpResponse, ApiError> {
    super::auth::authenticate(&gateway, &req).await?;
    let params: RouteParams = params(&req)?;
    let db = required(&params.db, "database")?;
    let measurement = required(&params.measurement, "measurement")?;
    let router = gateway.router();
    let (by_tag, shards) = placed(&gateway, router, db, measurement, params.tag.as_deref());
    let data_on = gateway
        .layouts()
        .moving_from()
        .map(|earlier| placed(&gateway, earlier, db, measurement, params.tag.as_deref()).1);
    Ok(HttpResponse::Ok().json(RouteAnswer {
        db,
        measurement,
        route: router.explain(measurement),
        by_tag,
        tag: params.tag.as_deref().filter(|_| by_tag.is_some()),
        shards,
        data_on,
    }))
}

/// Where `router` places `measurement` (and tag value `tag`, if given), and by which tag.
fn placed<'a>(
    gateway: &'a Gateway,
    router: &'a Router,
    db: &str,
    measurement: &str,
    tag: Option<&str>,
) -> (Option<&'a str>, Vec<ShardAnswer<'a>>) {
    let (by_tag, shards) = match router.placement(db, measurement) {
        Placement::Shard(shard) => (None, vec![shard]),
        Placement::ByTag { key, shards } => match tag {
            Some(value) => (Some(key.name()), vec![router.shard_for_tag(shards, value)]),
            None => (Some(key.name()), shards.to_vec()),
        },
    };
    let shards = shards
        .into_iter()
        .map(|s| {
            let shard = &router.shards()[s];
            ShardAnswer {
                name: &shard.name,
                replicas: gateway.replica_names(shard),
            }
        })
        .collect();
    (by_tag, shards)
}
