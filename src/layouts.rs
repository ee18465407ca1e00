//! Where the data is, and where it goes: the layout (shards and routes) the points already written
//! follow, kept in the gateway's sled database, beside the configured one.
//!
//! When the two differ — shards or routes changed since the data was written — the data must move
//! (a rebalance), and until it has:
//!
//! - **reads** follow the earlier layout, which holds every point;
//! - **writes** go to the configured layout, and every point that the earlier layout would give to
//!   a node the configured one leaves out goes there too ([`Router::route_moved`]), so that the
//!   earlier layout stays complete for reads while the move copies it over.
//!
//! A rebalance that has copied and verified everything **settles** the configured layout: it is
//! stored as the one the data follows (flushed), and from then on reads and writes both follow
//! it. Only then are the moved series deleted from where they were. Settling is one way within a
//! run; a gateway started again after it finds the stored layout equal to its configuration.

use std::{
    ops::Deref,
    sync::atomic::{AtomicBool, AtomicUsize, Ordering},
    time::Duration,
};

use crate::{
    node::QueueError,
    router::{Layout, Router},
};

/// The key of the stored layout in its tree.
const PLACED: &[u8] = b"placed";

/// The configured layout, and the earlier one while data still follows it.
pub struct Layouts {
    current: Router,
    current_layout: Layout,
    earlier: Option<Earlier>,
    /// A rebalance is under way: nodes may hold series their shards do not place on them.
    moving: AtomicBool,
    tree: sled::Tree,
}

/// The layout the data was written by, and whether it was since settled away from.
struct Earlier {
    layout: Layout,
    router: Router,
    settled: AtomicBool,
    /// Queries under way that were planned with it: the data it placed is not deleted before
    /// they end.
    readers: AtomicUsize,
}

/// The placement one query is planned and answered with; while it follows the earlier layout,
/// the moved data stays where that layout put it.
pub struct Reads<'l> {
    router: &'l Router,
    readers: Option<&'l AtomicUsize>,
}

impl Deref for Reads<'_> {
    type Target = Router;

    fn deref(&self) -> &Router {
        self.router
    }
}

impl Drop for Reads<'_> {
    fn drop(&mut self) {
        if let Some(readers) = self.readers {
            readers.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Layouts {
    /// The layouts for a gateway configured with `current` (resolved as `router`) over `nodes`,
    /// the earlier one read from `tree`. A first start stores `current`.
    pub fn open(
        tree: sled::Tree,
        current: Layout,
        router: Router,
        nodes: &[&str],
    ) -> Result<Layouts, QueueError> {
        let stored = match tree.get(PLACED)? {
            None => None,
            Some(bytes) => match serde_json::from_slice::<Layout>(&bytes) {
                Ok(layout) => Some(layout),
                Err(e) => {
                    log::error!("the stored layout cannot be read ({e}); the configured one is taken as where the data is");
                    None
                }
            },
        };
        let mut layouts = Layouts {
            current: router,
            current_layout: current,
            earlier: None,
            moving: AtomicBool::new(false),
            tree,
        };
        match stored {
            Some(layout) if layout == layouts.current_layout => {}
            Some(layout) => match Router::from_layout(&layout, nodes) {
                Ok(router) => {
                    log::warn!(
                        "shards or routes changed since the data was written (it follows {}; the configuration says {}): a rebalance is needed (POST /cluster/rebalance); until it is done, reads follow the earlier layout and writes go to both",
                        layout.describe(),
                        layouts.current_layout.describe()
                    );
                    layouts.earlier = Some(Earlier {
                        layout,
                        router,
                        settled: AtomicBool::new(false),
                        readers: AtomicUsize::new(0),
                    });
                }
                Err(e) => {
                    log::error!(
                        "the layout the data was written by ({}) names nodes no longer configured ({e}): what they held cannot be moved; the configured layout is taken as where the data is",
                        layout.describe()
                    );
                    layouts.store()?;
                }
            },
            None => layouts.store()?,
        }
        Ok(layouts)
    }

    /// The configured layout's router: where writes go.
    pub fn current(&self) -> &Router {
        &self.current
    }

    /// The configured layout.
    pub fn current_layout(&self) -> &Layout {
        &self.current_layout
    }

    /// Where reads go: the earlier layout until the move is settled, then the configured one.
    /// For jobs, which never run beside a rebalance; a query takes [`Layouts::reads`].
    pub fn read_router(&self) -> &Router {
        self.moving_from().unwrap_or(&self.current)
    }

    /// Where one query's reads go, held until it is answered.
    pub fn reads(&self) -> Reads<'_> {
        if let Some(earlier) = &self.earlier {
            // Counted before the flag is read, and [`Layouts::settle`] sets the flag before it
            // reads the count: either this query sees the move settled, or settle sees it.
            earlier.readers.fetch_add(1, Ordering::SeqCst);
            if !earlier.settled.load(Ordering::SeqCst) {
                return Reads {
                    router: &earlier.router,
                    readers: Some(&earlier.readers),
                };
            }
            earlier.readers.fetch_sub(1, Ordering::SeqCst);
        }
        Reads {
            router: &self.current,
            readers: None,
        }
    }

    /// The earlier layout's router while data still follows it: writes go there too.
    pub fn moving_from(&self) -> Option<&Router> {
        self.unsettled().map(|e| &e.router)
    }

    /// The earlier layout while data still follows it.
    pub fn pending(&self) -> Option<&Layout> {
        self.unsettled().map(|e| &e.layout)
    }

    /// Whether a node may hold series its shards do not place on it, so that a read of one
    /// shard must name the series it wants: while data moves (copies on their way in, dual
    /// writes, or copies not deleted yet).
    pub fn strays_possible(&self) -> bool {
        self.pending().is_some() || self.moving.load(Ordering::SeqCst)
    }

    /// Marks a rebalance under way (`true`) or ended.
    pub fn set_moving(&self, moving: bool) {
        self.moving.store(moving, Ordering::SeqCst);
    }

    fn unsettled(&self) -> Option<&Earlier> {
        self.earlier
            .as_ref()
            .filter(|e| !e.settled.load(Ordering::SeqCst))
    }

    /// Stores the configured layout as the one the data follows, on disk before it is in force:
    /// reads follow it from now on, and writes stop going to the earlier one. Returns once no
    /// query planned with the earlier layout is still under way.
    pub async fn settle(&self) -> Result<(), QueueError> {
        self.put()?;
        self.tree.flush_async().await?;
        if let Some(earlier) = &self.earlier {
            earlier.settled.store(true, Ordering::SeqCst);
            while earlier.readers.load(Ordering::SeqCst) > 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    fn store(&self) -> Result<(), QueueError> {
        self.put()?;
        self.tree.flush()?;
        Ok(())
    }

    fn put(&self) -> Result<(), QueueError> {
        let bytes = serde_json::to_vec(&self.current_layout)
            .map_err(|e| QueueError::Storage(sled::Error::Unsupported(e.to_string())))?;
        self.tree.insert(PLACED, bytes)?;
        Ok(())
    }
}
