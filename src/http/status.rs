//! `/ping` and `/health`: is the gateway there, and how are its nodes.

use actix_web::{
    dev::{Service, ServiceRequest, ServiceResponse},
    http::{
        header::{self, HeaderName, HeaderValue},
        StatusCode,
    },
    web, HttpRequest, HttpResponse,
};
use serde::{Deserialize, Serialize};

use super::params;
use crate::{
    gateway::Gateway,
    node::{queue::OrphanQueue, NodeHealth, NodeState},
    repair::{Job, Repairs, State},
};

/// InfluxDB's build flavour, which some clients read.
const BUILD: &str = "OSS";

#[derive(Deserialize)]
struct PingParams {
    verbose: Option<String>,
}

/// Handles `GET|HEAD /ping` as InfluxDB does: 204, or 200 with the version when verbose
/// (the version headers are added by [`influxdb_headers`]).
pub async fn ping(req: HttpRequest, gateway: web::Data<Gateway>) -> HttpResponse {
    // InfluxDB's rule: any value but "", "0" and "false" asks for the verbose answer.
    let verbose = params::<PingParams>(&req)
        .ok()
        .and_then(|p| p.verbose)
        .is_some_and(|v| !matches!(v.as_str(), "" | "0" | "false"));
    if verbose {
        HttpResponse::Ok().json(serde_json::json!({ "version": gateway.reported_version() }))
    } else {
        HttpResponse::NoContent().finish()
    }
}

/// Adds InfluxDB's `X-Influxdb-Version` and `X-Influxdb-Build` to every answer that lacks them
/// (answers made by the gateway itself; a node's answers carry its own).
pub fn influxdb_headers<S, B>(
    req: ServiceRequest,
    service: &S,
) -> impl std::future::Future<Output = Result<ServiceResponse<B>, actix_web::Error>>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
{
    let gateway = req.app_data::<web::Data<Gateway>>().cloned();
    let answer = service.call(req);
    async move {
        let mut response = answer.await?;
        let headers = response.headers_mut();
        if !headers.contains_key(VERSION_HEADER) {
            if let Some(version) = gateway
                .map(|g| g.reported_version())
                .and_then(|v| HeaderValue::from_str(&v).ok())
            {
                headers.insert(HeaderName::from_static(VERSION_HEADER), version);
            }
        }
        if !headers.contains_key(BUILD_HEADER) {
            headers.insert(
                HeaderName::from_static(BUILD_HEADER),
                HeaderValue::from_static(BUILD),
            );
        }
        // influxd labels every answer JSON, even a 204, and some clients check.
        if !headers.contains_key(header::CONTENT_TYPE) {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        if !headers.contains_key(REQUEST_ID_HEADER) {
            let id = request_id();
            for name in [REQUEST_ID_HEADER, X_REQUEST_ID_HEADER] {
                if let Ok(id) = HeaderValue::from_bytes(&id) {
                    headers.insert(HeaderName::from_static(name), id);
                }
            }
        }
        Ok(response)
    }
}

const VERSION_HEADER: &str = "x-influxdb-version";
const BUILD_HEADER: &str = "x-influxdb-build";
const REQUEST_ID_HEADER: &str = "request-id";
const X_REQUEST_ID_HEADER: &str = "x-request-id";

/// A random id in UUID form, as influxd gives every answer, for matching client and gateway logs.
/// Written in place: every answer gets one, and `format!` made it three allocations.
fn request_id() -> [u8; 36] {
    let (a, b) = (fastrand::u64(..), fastrand::u64(..));
    let mut id = [b'-'; 36];
    hex(&mut id[0..8], a >> 32);
    hex(&mut id[9..13], (a >> 16) & 0xffff);
    id[14] = b'4';
    hex(&mut id[15..18], a & 0xfff);
    hex(&mut id[19..23], 0x8000 | ((b >> 48) & 0x3fff));
    hex(&mut id[24..36], b & 0xffff_ffff_ffff);
    id
}

/// `value`'s low hexadecimal digits, as many as `out` holds, in lower case.
fn hex(out: &mut [u8], mut value: u64) {
    for digit in out.iter_mut().rev() {
        *digit = b"0123456789abcdef"[(value & 0xf) as usize];
        value >>= 4;
    }
}

/// `/health`: InfluxDB's own shape (`name`, `message`, `status`, `checks`, `version`, as influxd
/// 1.8 and 2.x answer, which clients such as `influxdb-client` read), the gateway's detail beside.
#[derive(Serialize)]
struct Health<'a> {
    name: &'static str,
    message: String,
    status: &'static str,
    checks: Vec<Check>,
    version: String,
    gateway_version: &'static str,
    nodes: Vec<NodeView>,
    shards: Vec<ShardHealth<'a>>,
    /// A move of data between layouts, needed or under way.
    #[serde(skip_serializing_if = "Option::is_none")]
    rebalance: Option<RebalanceView>,
    /// Queues on disk for nodes no longer configured: kept, never replayed or deleted.
    orphan_queues: &'a [OrphanQueue],
}

/// One node as an InfluxDB health check.
#[derive(Serialize)]
struct Check {
    name: String,
    status: &'static str,
    message: String,
}

/// A node in `/health`: its health, and the repair under way on it.
#[derive(Serialize)]
struct NodeView {
    #[serde(flatten)]
    health: NodeHealth,
    #[serde(skip_serializing_if = "Option::is_none")]
    repair: Option<RepairProgress>,
}

/// What `/health` shows of a repair under way.
#[derive(Serialize)]
struct RepairProgress {
    id: String,
    state: State,
    chunks_done: u64,
    chunks_total: u64,
    points_copied: u64,
    points_per_second: u64,
    eta_seconds: Option<u64>,
    started: String,
    activity: Option<String>,
}

impl From<Job> for RepairProgress {
    fn from(job: Job) -> Self {
        RepairProgress {
            id: job.id,
            state: job.state,
            chunks_done: job.chunks_done,
            chunks_total: job.chunks_total,
            points_copied: job.points_copied,
            points_per_second: job.points_per_second,
            eta_seconds: job.eta_seconds,
            started: job.started,
            activity: job.activity,
        }
    }
}

/// What `/health` shows while data does not yet follow the configured shards and routes.
#[derive(Serialize)]
struct RebalanceView {
    /// Shards or routes changed since the data was written, and it has not moved yet.
    needed: bool,
    /// Where the data is (and reads go) until it has moved.
    data_follows: Option<String>,
    /// The configured layout it moves to.
    configured: String,
    /// The rebalance under way.
    job: Option<RepairProgress>,
    /// The layout a reloaded configuration file names: a restart applies it, and a rebalance
    /// is then needed.
    #[serde(skip_serializing_if = "Option::is_none")]
    after_restart: Option<String>,
}

#[derive(Serialize)]
struct ShardHealth<'a> {
    name: &'a str,
    replicas: Vec<&'a str>,
    /// Replicas whose last probe or request succeeded: 0 means the shard cannot be read.
    replicas_up: usize,
}

/// "2 of 3 nodes up", and which nodes lack copies their replicas have: a node that answers can
/// still be missing data, and that must not read as all well.
fn health_message(up: usize, nodes: &[NodeView]) -> String {
    let mut message = format!("{up} of {} nodes up", nodes.len());
    for node in nodes {
        if let Some(repair) = &node.repair {
            message.push_str(&format!(
                "; {} under repair (chunk {} of {})",
                node.health.status.name, repair.chunks_done, repair.chunks_total
            ));
        }
    }
    let diverged: Vec<&str> = nodes
        .iter()
        .filter(|n| n.health.queue.needs_resync)
        .map(|n| n.health.status.name.as_str())
        .collect();
    if !diverged.is_empty() {
        let verb = if diverged.len() == 1 { "needs" } else { "need" };
        message.push_str(&format!(
            "; {} {verb} a resync (copies of acknowledged writes are missing there)",
            diverged.join(", ")
        ));
    }
    message
}

/// Handles `GET /health`: every node's state; 200 while a node is up, 503 when none is.
pub async fn health(gateway: web::Data<Gateway>, repairs: web::Data<Repairs>) -> HttpResponse {
    let nodes: Vec<NodeView> = gateway
        .nodes()
        .iter()
        .map(|n| {
            let mut health = n.health();
            let repair = repairs.repairing(n.status().name());
            if repair.is_some() {
                health.mode = "repairing";
            }
            NodeView {
                health,
                repair: repair.map(RepairProgress::from),
            }
        })
        .collect();
    let up = nodes
        .iter()
        .filter(|n| n.health.status.state == NodeState::Up)
        .count();
    let (status, code) = if up > 0 {
        ("pass", StatusCode::OK)
    } else {
        ("fail", StatusCode::SERVICE_UNAVAILABLE)
    };
    let shards = gateway
        .router()
        .shards()
        .iter()
        .map(|shard| ShardHealth {
            name: &shard.name,
            replicas: gateway.replica_names(shard),
            replicas_up: shard
                .replicas
                .iter()
                .filter(|&&n| gateway.nodes()[n].status().state() == NodeState::Up)
                .count(),
        })
        .collect();
    let layouts = gateway.layouts();
    let pending = layouts.pending();
    let job = repairs.rebalancing();
    let in_file = layouts.in_file();
    let rebalance =
        (pending.is_some() || job.is_some() || in_file.is_some()).then(|| RebalanceView {
            needed: pending.is_some(),
            data_follows: pending.map(|l| l.describe()),
            configured: layouts.current_layout().describe(),
            job: job.map(RepairProgress::from),
            after_restart: in_file.map(|l| l.describe()),
        });
    let mut message = health_message(up, &nodes);
    match &rebalance {
        Some(RebalanceView { job: Some(job), .. }) => message.push_str(&format!(
            "; rebalancing (chunk {} of {})",
            job.chunks_done, job.chunks_total
        )),
        Some(RebalanceView { needed: true, .. }) => message.push_str(
            "; shards or routes changed: a rebalance is needed (reads follow the earlier layout)",
        ),
        Some(_) => message.push_str(
            "; the configuration file's shards or routes place data elsewhere: restart to apply them, then rebalance",
        ),
        None => {}
    }
    let checks = nodes
        .iter()
        .map(|n| Check {
            name: n.health.status.name.clone(),
            status: if n.health.status.state == NodeState::Up {
                "pass"
            } else {
                "fail"
            },
            message: match (&n.health.status.state, &n.health.status.last_error) {
                (NodeState::Up, _) => format!("up ({})", n.health.mode),
                (state, Some(error)) => format!("{}: {error}", state.as_str()),
                (state, None) => state.as_str().to_owned(),
            },
        })
        .collect();
    HttpResponse::build(code).json(Health {
        name: "influx-gateway",
        checks,
        status,
        message,
        version: gateway.reported_version(),
        gateway_version: env!("CARGO_PKG_VERSION"),
        nodes,
        shards,
        rebalance,
        orphan_queues: gateway.orphans(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_version_4_uuids() {
        for _ in 0..1000 {
            let id = request_id();
            let text = std::str::from_utf8(&id).expect("ASCII");
            for (i, c) in text.char_indices() {
                match i {
                    8 | 13 | 18 | 23 => assert_eq!(c, '-', "{text}"),
                    14 => assert_eq!(c, '4', "{text}"),
                    19 => assert!("89ab".contains(c), "{text}"),
                    _ => assert!(c.is_ascii_hexdigit() && !c.is_ascii_uppercase(), "{text}"),
                }
            }
        }
    }
}
