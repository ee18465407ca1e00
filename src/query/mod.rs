//! The query path: decide where a `/query` goes, send it there, and combine the answers.

pub mod broadcast;
pub mod deny;
pub mod merge;
pub mod peek;
pub mod planner;
pub mod queries;
pub mod read;
pub mod scatter;

pub use broadcast::{broadcast, BroadcastOutcome};
pub use planner::{plan, Classified, Plan, QueryText, Routed, Target};
pub use read::{read, read_order, Candidate, ReadError};
pub use scatter::{scatter, ClientParams, Cluster, ScatterError};
