//! influx-gateway: several independent InfluxDB 1.x servers behind one InfluxDB-compatible API.
//!
//! Each node is an actix actor ([`node`]) that owns the ordered traffic to one influxd; the
//! [`router`] splits writes into per-shard bodies; [`write`] replicates them and applies the
//! consistency level; [`query`] sends reads to one healthy node and mutations to all; [`http`]
//! exposes it all with InfluxDB's endpoints and error shapes.

pub mod auth;
pub mod blueprint;
pub mod cli;
pub mod config;
pub mod consistency;
pub mod control;
pub mod data_dir;
pub mod gateway;
pub mod http;
pub mod influxql;
pub mod layouts;
pub mod line_protocol;
pub mod memory;
pub mod metrics;
pub mod node;
pub mod query;
pub mod reload;
pub mod repair;
pub mod router;
pub mod serve;
pub mod tls;
pub mod units;
pub mod write;
