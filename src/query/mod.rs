//! The query path: decide where a `/query` goes, send it there, and combine the answers.

pub mod broadcast;
pub mod planner;
pub mod read;

pub use broadcast::{broadcast, BroadcastOutcome};
pub use planner::{plan, Plan, QueryText};
pub use read::{read, read_order, ReadError};
