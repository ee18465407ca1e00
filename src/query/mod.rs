//! The query path: decide where a `/query` goes, send it there, and combine the answers.

pub mod broadcast;
pub mod deny;
pub mod merge;
mod narrow;
pub mod peek;
pub mod planner;
pub mod queries;
pub mod read;
pub mod scatter;
pub mod shard_ask;

pub use broadcast::{broadcast, BroadcastOutcome};
pub use planner::{plan, Classified, Plan, QueryText, Routed, Target};
pub use read::{read, read_order, Candidate, ReadError};
pub use scatter::scatter;
pub use shard_ask::{ClientParams, Cluster, ScatterError};
