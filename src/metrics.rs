//! Prometheus metrics, through the `prometheus-client` crate: what the HTTP API served (requests by
//! endpoint and status, latency histograms, query plans and merges), recorded as it happens, and
//! each node's state, traffic and queue, read from the node's own counters at every scrape so
//! that the write path pays nothing for them.
//!
//! Names follow Prometheus conventions: `influx_gateway_` prefix, base units (seconds, bytes),
//! `_total` on counters.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::{
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::ConstGauge,
        histogram::{exponential_buckets, Histogram},
    },
    registry::{Registry, Unit},
};

use crate::{
    node::{
        traffic::{Cause, TrafficSnapshot},
        NodeHealth, NodeState,
    },
    repair::Repairs,
};

/// The endpoints labelled by name; any other path is `other`, so that scanners cannot make label
/// sets without bound.
pub const ENDPOINTS: [&str; 11] = [
    "/write",
    "/api/v2/write",
    "/query",
    "/api/v2/query",
    "/ping",
    "/health",
    "/route",
    "/debug/vars",
    "/metrics",
    "/",
    "other",
];

/// The label value for `path`.
pub fn endpoint(path: &str) -> &'static str {
    ENDPOINTS[..ENDPOINTS.len() - 1]
        .iter()
        .find(|e| **e == path)
        .copied()
        .unwrap_or("other")
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: &'static str,
    code: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PlanLabels {
    plan: &'static str,
}

/// How a query was answered, for `influx_gateway_query_plans_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryPlan {
    /// Read from one node.
    Read,
    /// Statements scattered over shards and merged.
    Scatter,
    /// Mutations sent to every node.
    Broadcast,
    /// A statement writing query results back, sent to one shard's replicas.
    OnShard,
    /// Refused before any node was asked.
    Refused,
}

impl QueryPlan {
    fn label(self) -> &'static str {
        match self {
            QueryPlan::Read => "read",
            QueryPlan::Scatter => "scatter",
            QueryPlan::Broadcast => "broadcast",
            QueryPlan::OnShard => "on_shard",
            QueryPlan::Refused => "refused",
        }
    }
}

fn latency_histogram() -> Histogram {
    // 0.5 ms to about 33 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 17))
}

/// The gateway's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<EndpointLabels, Histogram, fn() -> Histogram>,
    plans: Family<PlanLabels, Counter>,
    merged_statements: Counter,
    /// Requests per endpoint, in [`ENDPOINTS`] order, for `/debug/vars`.
    per_endpoint: [AtomicU64; ENDPOINTS.len()],
}

impl Metrics {
    /// Registers every metric; the node and job metrics read `repairs` (and its gateway) at each
    /// scrape.
    pub fn new(repairs: Arc<Repairs>) -> Self {
        let mut registry = Registry::with_prefix("influx_gateway");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by endpoint and status code",
            requests.clone(),
        );
        let durations: Family<EndpointLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "http_request_duration",
            "Time from a request's arrival to its answer's head, by endpoint",
            Unit::Seconds,
            durations.clone(),
        );
        let plans = Family::<PlanLabels, Counter>::default();
        registry.register(
            "query_plans",
            "Queries by how they were answered: read (one node), scatter (shards, merged), broadcast (every node), on_shard (one shard's replicas), refused",
            plans.clone(),
        );
        let merged_statements = Counter::default();
        registry.register(
            "query_merged_statements",
            "Statements of queries scattered over shards, whose answers the gateway merged",
            merged_statements.clone(),
        );
        registry.register_collector(Box::new(NodeCollector { repairs }));
        Metrics {
            registry,
            requests,
            durations,
            plans,
            merged_statements,
            per_endpoint: Default::default(),
        }
    }

    /// Records one answered request.
    pub fn request(&self, endpoint: &'static str, code: u16, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels { endpoint, code })
            .inc();
        self.durations
            .get_or_create(&EndpointLabels { endpoint })
            .observe(took.as_secs_f64());
    }

    /// Counts a request's arrival, for `/debug/vars`.
    pub fn arrived(&self, endpoint: &'static str) {
        if let Some(i) = ENDPOINTS.iter().position(|e| *e == endpoint) {
            self.per_endpoint[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Requests that arrived at each endpoint, in [`ENDPOINTS`] order.
    pub fn arrivals(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        ENDPOINTS
            .iter()
            .zip(&self.per_endpoint)
            .map(|(e, n)| (*e, n.load(Ordering::Relaxed)))
    }

    /// Counts a query by plan.
    pub fn query_plan(&self, plan: QueryPlan) {
        self.plans
            .get_or_create(&PlanLabels { plan: plan.label() })
            .inc();
    }

    /// Counts statements merged across shards.
    pub fn merged(&self, statements: usize) {
        self.merged_statements.inc_by(statements as u64);
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// Reads every node's status, traffic and queue at scrape time.
struct NodeCollector {
    repairs: Arc<Repairs>,
}

impl std::fmt::Debug for NodeCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCollector").finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    node: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    node: String,
    cause: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    node: String,
    state: &'static str,
}

/// One metric family with one value per node.
fn family<M: EncodeMetric, S: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    samples: impl IntoIterator<Item = (S, M)>,
) -> Result<(), std::fmt::Error> {
    let mut samples = samples.into_iter().peekable();
    let Some((_, first)) = samples.peek() else {
        return Ok(());
    };
    let mut metric = encoder.encode_descriptor(name, help, unit, first.metric_type())?;
    for (labels, value) in samples {
        value.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

/// What a scrape reads of one node: its health and its traffic counters.
type NodeReading = (NodeHealth, TrafficSnapshot);

/// What a per-node metric reads of a node's reading.
type Reader<'a> = &'a dyn Fn(&NodeHealth, &TrafficSnapshot) -> u64;

impl Collector for NodeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let nodes: Vec<NodeReading> = self
            .repairs
            .gateway()
            .nodes()
            .iter()
            .map(|n| (n.health(), n.status().traffic().snapshot()))
            .collect();
        let e = &mut encoder;
        encode_states(e, &nodes)?;
        encode_sent(e, &nodes)?;
        encode_answers(e, &nodes)?;
        encode_queues(e, &nodes)?;
        encode_repairs(e, &self.repairs, &nodes)?;
        Ok(())
    }
}

/// Each node's repairs: points copied by every job so far, and chunks left in the one under way.
fn encode_repairs(
    e: &mut DescriptorEncoder,
    repairs: &Repairs,
    nodes: &[NodeReading],
) -> Result<(), std::fmt::Error> {
    let gateway = repairs.gateway();
    let jobs: Vec<_> = repairs.list().iter().map(|j| j.job()).collect();
    let copied = |node: &str| -> u64 {
        gateway
            .nodes()
            .iter()
            .position(|n| n.status().name() == node)
            .map_or(0, |id| repairs.copied(id))
    };
    let remaining = |node: &str| -> u64 {
        jobs.iter()
            .filter(|j| j.repairs(node))
            .map(|j| j.chunks_total.saturating_sub(j.chunks_done))
            .sum()
    };
    family(
        e,
        "repair_points",
        "Points repair and verify jobs wrote to the node since the gateway started.",
        None,
        counter(nodes, &|h, _| copied(&h.status.name)),
    )?;
    family(
        e,
        "repair_chunks_remaining",
        "Chunks left in the repair under way on the node (0 when none).",
        None,
        gauge(nodes, &|h, _| remaining(&h.status.name)),
    )?;
    let divergent = repairs
        .last_verify()
        .and_then(|job| job.report)
        .map(|report| report.shards)
        .unwrap_or_default()
        .into_iter()
        .map(|shard| {
            let left = shard.divergent.iter().filter(|d| !d.repaired).count();
            (
                ShardLabels { shard: shard.shard },
                ConstGauge::new(i64::try_from(left).unwrap_or(i64::MAX)),
            )
        });
    family(
        e,
        "verify_divergent_chunks",
        "Chunks the last verify found different between the shard's replicas, and left so.",
        None,
        divergent,
    )?;
    Ok(())
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShardLabels {
    shard: String,
}

/// One sample per node, labelled with its name.
fn per_node(nodes: &[NodeReading], value: Reader<'_>) -> Vec<(NodeLabels, u64)> {
    nodes
        .iter()
        .map(|(h, t)| {
            (
                NodeLabels {
                    node: h.status.name.clone(),
                },
                value(h, t),
            )
        })
        .collect::<Vec<_>>()
}

/// One counter per node.
fn counter(
    nodes: &[NodeReading],
    value: Reader<'_>,
) -> impl Iterator<Item = (NodeLabels, ConstCounter)> {
    per_node(nodes, value)
        .into_iter()
        .map(|(labels, v)| (labels, ConstCounter::new(v)))
}

/// One gauge per node.
fn gauge(
    nodes: &[NodeReading],
    value: Reader<'_>,
) -> impl Iterator<Item = (NodeLabels, ConstGauge)> {
    per_node(nodes, value).into_iter().map(|(labels, v)| {
        (
            labels,
            ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX)),
        )
    })
}

/// Which state each node is in.
fn encode_states(e: &mut DescriptorEncoder, nodes: &[NodeReading]) -> Result<(), std::fmt::Error> {
    let states = nodes.iter().flat_map(|(h, _)| {
        ["up", "down", "unknown"].into_iter().map(move |state| {
            let current = match h.status.state {
                NodeState::Up => "up",
                NodeState::Down => "down",
                NodeState::Unknown => "unknown",
            };
            (
                StateLabels {
                    node: h.status.name.clone(),
                    state,
                },
                ConstGauge::new(i64::from(current == state)),
            )
        })
    });
    family(
        e,
        "node_state",
        "1 for the state each node is in (up, down, unknown), 0 for the others.",
        None,
        states,
    )?;
    family(
        e,
        "node_up",
        "1 while the node answers, else 0.",
        None,
        gauge(nodes, &|h, _| u64::from(h.status.state == NodeState::Up)),
    )?;
    Ok(())
}

/// What the gateway sent each node.
fn encode_sent(e: &mut DescriptorEncoder, nodes: &[NodeReading]) -> Result<(), std::fmt::Error> {
    family(
        e,
        "node_writes_sent",
        "/write requests sent to the node, live and replayed.",
        None,
        counter(nodes, &|_, t| t.writes),
    )?;
    family(
        e,
        "node_mutations_sent",
        "Mutations (CREATE, DROP, DELETE...) sent to the node.",
        None,
        counter(nodes, &|_, t| t.mutations),
    )?;
    family(
        e,
        "node_points_sent",
        "Points sent to the node (lines of line protocol).",
        None,
        counter(nodes, &|_, t| t.points),
    )?;
    family(
        e,
        "node_write",
        "Line protocol sent to the node.",
        Some(&Unit::Bytes),
        counter(nodes, &|_, t| t.bytes),
    )?;
    Ok(())
}

/// How each node answered, and what it has yet to answer.
fn encode_answers(e: &mut DescriptorEncoder, nodes: &[NodeReading]) -> Result<(), std::fmt::Error> {
    family(
        e,
        "node_accepted",
        "Requests the node applied (2xx).",
        None,
        counter(nodes, &|_, t| t.accepted),
    )?;
    family(
        e,
        "node_rejected",
        "Requests the node refused as the client's fault (4xx and the like).",
        None,
        counter(nodes, &|_, t| t.rejected),
    )?;
    let failures = nodes.iter().flat_map(|(h, t)| {
        Cause::ALL.into_iter().map(move |cause| {
            (
                FailureLabels {
                    node: h.status.name.clone(),
                    cause: cause.as_str(),
                },
                ConstCounter::new(t.failures[cause as usize]),
            )
        })
    });
    family(
        e,
        "node_failures",
        "Requests to the node with no usable answer, by cause.",
        None,
        failures,
    )?;
    family(
        e,
        "node_in_flight_requests",
        "Requests on the wire to the node.",
        None,
        gauge(nodes, &|h, _| h.status.in_flight as u64),
    )?;
    Ok(())
}

/// Each node's disk queue and its replay.
fn encode_queues(e: &mut DescriptorEncoder, nodes: &[NodeReading]) -> Result<(), std::fmt::Error> {
    family(
        e,
        "queue_entries",
        "Writes and mutations waiting in the node's disk queue.",
        None,
        gauge(nodes, &|h, _| h.queue.entries),
    )?;
    family(
        e,
        "queue",
        "Size of the node's disk queue.",
        Some(&Unit::Bytes),
        gauge(nodes, &|h, _| h.queue.bytes),
    )?;
    family(
        e,
        "queue_oldest_age",
        "Age of the oldest entry in the node's disk queue (0 when empty).",
        Some(&Unit::Seconds),
        gauge(nodes, &|h, _| h.queue.oldest_age_seconds.unwrap_or(0)),
    )?;
    family(
        e,
        "queue_dead_letters",
        "Queue entries moved to dead letters.",
        None,
        counter(nodes, &|h, _| h.queue.dead_letters),
    )?;
    family(
        e,
        "queue_refused_full",
        "Copies for the node refused because its queue was full.",
        None,
        counter(nodes, &|h, _| h.queue.refused_full),
    )?;
    family(
        e,
        "queue_replayed_points",
        "Points replayed from the node's queue.",
        None,
        counter(nodes, &|h, _| h.status.replayed_points),
    )?;
    family(
        e,
        "queue_replay_rate_points_per_second",
        "Points per second replayed over the last second of replay.",
        None,
        gauge(nodes, &|h, _| h.status.replay_rate_points_per_second),
    )?;
    Ok(())
}
