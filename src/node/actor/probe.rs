//! Health probing: `/ping` every `health.interval`, at most one at a time.

use std::sync::Arc;

use actix::prelude::*;

use super::Node;
use crate::node::client::{self, QueuedBecause};

impl Node {
    /// Probes the node once, unless the last probe is still out.
    pub(super) fn probe(&mut self, ctx: &mut Context<Self>) {
        if self.probing {
            return; // the previous probe is still out: a slow node must not pile probes up
        }
        self.probing = true;
        let http = self.http.clone();
        let status = Arc::clone(&self.status);
        let timeout = self.settings.health_timeout;
        let probe = async move { client::ping(&http, status.url(), timeout).await };
        ctx.spawn(probe.into_actor(self).map(|result, node, ctx| {
            node.probing = false;
            match result {
                Ok(version) => {
                    node.status.mark_up(version.as_deref());
                    // Back: replay now rather than wait out a long backoff.
                    node.replay.now();
                    node.schedule_replay(ctx);
                }
                Err(e) => {
                    node.status.mark_down(&e.to_string());
                    node.spill_waiting(QueuedBecause::Down, ctx);
                }
            }
        }));
    }
}
