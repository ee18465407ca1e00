//! `GET /debug/vars`: the gateway's own counters in InfluxDB's expvar shape, so that Telegraf's
//! `influxdb` input and scripts written for influxd read them unchanged. Each entry is
//! `{"name": ..., "tags": {...}, "values": {...}}` under a unique key, beside `system` and
//! `cmdline` as influxd has them.

use std::time::{Instant, SystemTime};

use actix_web::{http::StatusCode, web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};

use super::ApiError;
use crate::{gateway::Gateway, metrics::Metrics};

/// When the gateway started, for `system` in `/debug/vars`.
#[derive(Debug)]
pub struct Started {
    at: Instant,
    wall: SystemTime,
}

impl Started {
    /// Now.
    pub fn now() -> Self {
        Started {
            at: Instant::now(),
            wall: SystemTime::now(),
        }
    }
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_nanos(time).to_string()
}

/// Handles `GET /debug/vars`.
pub async fn debug_vars(
    req: HttpRequest,
    gateway: web::Data<Gateway>,
    started: web::Data<Started>,
    metrics: web::Data<Metrics>,
) -> Result<HttpResponse, ApiError> {
    // With gateway users, only an admin sees the cluster's internals.
    if let Some(user) = super::auth::authenticate(&gateway, &req).await? {
        if !user.is_admin() {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("user {:?} is not an admin", user.name()),
            ));
        }
    }
    let mut vars = Map::new();
    vars.insert(
        "system".into(),
        json!({
            "currentTime": rfc3339(SystemTime::now()),
            "started": rfc3339(started.wall),
            "uptime": started.at.elapsed().as_secs(),
        }),
    );
    vars.insert(
        "cmdline".into(),
        Value::from(std::env::args().collect::<Vec<_>>()),
    );
    for (endpoint, count) in metrics.arrivals() {
        vars.insert(
            format!("gateway_http:endpoint={endpoint}"),
            json!({
                "name": "gateway_http",
                "tags": { "endpoint": endpoint },
                "values": { "req": count },
            }),
        );
    }
    for node in gateway.nodes() {
        let health = node.health();
        let status = &health.status;
        vars.insert(
            format!("gateway_node:node={}", status.name),
            json!({
                "name": "gateway_node",
                "tags": { "node": status.name, "url": status.url },
                "values": {
                    "up": i64::from(status.state == crate::node::NodeState::Up),
                    "inFlight": status.in_flight,
                    "waiting": status.waiting,
                    "replayedPoints": status.replayed_points,
                    "replayRate": status.replay_rate_points_per_second,
                    "queueEntries": health.queue.entries,
                    "queueBytes": health.queue.bytes,
                    "queueOldestAgeSeconds": health.queue.oldest_age_seconds.unwrap_or(0),
                    "deadLetters": health.queue.dead_letters,
                    "refusedQueueFull": health.queue.refused_full,
                },
            }),
        );
    }
    Ok(HttpResponse::Ok().json(Value::Object(vars)))
}
