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
//! stored as the one the data follows (flushed), together with the earlier one as a deletion
//! **owed**, and from then on reads and writes both follow the configured layout. Only then are
//! the moved series deleted from where they were, and the debt cleared; until it is, reads know
//! that nodes may hold series their shards do not place on them. Settling is one way within a
//! run; a gateway started again after it finds the stored layout equal to its configuration.

use std::{
    ops::Deref,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Mutex, MutexGuard,
    },
    time::Duration,
};

use crate::{
    node::QueueError,
    router::{Layout, Router},
};

/// The key of the stored layout in its tree.
const PLACED: &[u8] = b"placed";

/// The key of the layout whose moved series are still to be deleted.
const OWED: &[u8] = b"owed";

/// The configured layout, and the earlier one while data still follows it.
pub struct Layouts {
    current: Router,
    current_layout: Layout,
    earlier: Option<Earlier>,
    /// A rebalance is under way: nodes may hold series their shards do not place on them.
    moving: AtomicBool,
    /// The layout whose moved series are still to be deleted, since a settled rebalance.
    owed: Mutex<Option<Layout>>,
    /// The layout a reloaded configuration file names, when it differs from the one in force.
    in_file: Mutex<Option<Layout>>,
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
    /// Writes under way that were routed with it too: the same, for what they send there.
    writers: AtomicUsize,
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

impl Reads<'_> {
    /// Whether this query follows the earlier layout: data is still moving.
    pub fn is_earlier(&self) -> bool {
        self.readers.is_some()
    }

    /// Ends this hold and says whether it held the earlier layout: the caller then holds it
    /// itself until [`Layouts::end_read`] (an answer still streaming from an earlier node).
    pub fn detach(mut self) -> bool {
        self.readers.take().is_some()
    }
}

impl Drop for Reads<'_> {
    fn drop(&mut self) {
        if let Some(readers) = self.readers {
            readers.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// The earlier layout one write also goes to, held until it is handed to the nodes.
pub struct Writes<'l> {
    earlier: Option<&'l Router>,
    writers: Option<&'l AtomicUsize>,
}

impl<'l> Writes<'l> {
    /// The earlier layout's router while data still follows it.
    pub fn moving_from(&self) -> Option<&'l Router> {
        self.earlier
    }
}

impl Drop for Writes<'_> {
    fn drop(&mut self) {
        if let Some(writers) = self.writers {
            writers.fetch_sub(1, Ordering::SeqCst);
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
            owed: Mutex::new(None),
            in_file: Mutex::new(None),
            tree,
        };
        if let Some(bytes) = layouts.tree.get(OWED)? {
            match serde_json::from_slice::<Layout>(&bytes) {
                Ok(owed) => {
                    log::warn!(
                        "moved series of the earlier layout ({}) are still to be deleted where they were: a rebalance finishes it",
                        owed.describe()
                    );
                    *layouts.owed_lock() = Some(owed);
                }
                Err(e) => log::error!("the stored deletion owed cannot be read ({e}); ignored"),
            }
        }
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
                        writers: AtomicUsize::new(0),
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

    /// Ends a read of the earlier layout whose [`Reads`] was detached.
    pub fn end_read(&self) {
        if let Some(earlier) = &self.earlier {
            earlier.readers.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// The earlier layout's router while data still follows it.
    pub fn moving_from(&self) -> Option<&Router> {
        self.unsettled().map(|e| &e.router)
    }

    /// Where one write goes besides the configured layout, held until it is handed to the nodes.
    pub fn writes(&self) -> Writes<'_> {
        if let Some(earlier) = &self.earlier {
            // As for reads: counted before the flag is read.
            earlier.writers.fetch_add(1, Ordering::SeqCst);
            if !earlier.settled.load(Ordering::SeqCst) {
                return Writes {
                    earlier: Some(&earlier.router),
                    writers: Some(&earlier.writers),
                };
            }
            earlier.writers.fetch_sub(1, Ordering::SeqCst);
        }
        Writes {
            earlier: None,
            writers: None,
        }
    }

    /// The layout whose moved series are still to be deleted, if a settled rebalance left it.
    pub fn owed(&self) -> Option<Layout> {
        self.owed_lock().clone()
    }

    /// The moved series of the owed layout are all deleted.
    pub async fn paid(&self) -> Result<(), QueueError> {
        self.tree.remove(OWED)?;
        self.tree.flush_async().await?;
        *self.owed_lock() = None;
        Ok(())
    }

    /// Notes the layout a reloaded file names (`None`: the one in force).
    pub fn set_in_file(&self, layout: Option<Layout>) {
        *self.in_file.lock().unwrap_or_else(|p| p.into_inner()) = layout;
    }

    /// The layout the configuration file names, reloaded, when a restart has yet to apply it.
    pub fn in_file(&self) -> Option<Layout> {
        self.in_file
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn owed_lock(&self) -> MutexGuard<'_, Option<Layout>> {
        self.owed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The earlier layout while data still follows it.
    pub fn pending(&self) -> Option<&Layout> {
        self.unsettled().map(|e| &e.layout)
    }

    /// Whether a node may hold series its shards do not place on it, so that a read of one
    /// shard must name the series it wants: while data moves (copies on their way in, dual
    /// writes, or copies not deleted yet).
    pub fn strays_possible(&self) -> bool {
        self.pending().is_some() || self.moving.load(Ordering::SeqCst) || self.owed_lock().is_some()
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

    /// Stores the configured layout as the one the data follows and `from` as a deletion owed,
    /// on disk before it is in force: reads follow the configured layout from now on, and writes
    /// stop going to the earlier one. Returns once no query or write that used the earlier layout
    /// is still under way.
    pub async fn settle(&self, from: &Layout) -> Result<(), QueueError> {
        let owed = serde_json::to_vec(from)
            .map_err(|e| QueueError::Storage(sled::Error::Unsupported(e.to_string())))?;
        self.tree.insert(OWED, owed)?;
        self.put()?;
        self.tree.flush_async().await?;
        *self.owed_lock() = Some(from.clone());
        if let Some(earlier) = &self.earlier {
            earlier.settled.store(true, Ordering::SeqCst);
            while earlier.readers.load(Ordering::SeqCst) > 0
                || earlier.writers.load(Ordering::SeqCst) > 0
            {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const NODES: &str = "nodes:\n  - {name: a, url: 'http://127.0.0.1:1'}\n  - {name: b, url: 'http://127.0.0.1:2'}\n";

    fn layout(shards: &str) -> (Layout, Router) {
        let config = Config::from_yaml(&format!("{NODES}{shards}")).unwrap();
        (Layout::of(&config), Router::from_config(&config).unwrap())
    }

    fn open(tree: &sled::Tree, shards: &str) -> Layouts {
        let (layout, router) = layout(shards);
        Layouts::open(tree.clone(), layout, router, &["a", "b"]).unwrap()
    }

    #[actix_web::test]
    async fn a_changed_layout_is_pending_until_settled_and_its_deletion_owed_until_paid() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("layout").unwrap();
        let before = "shards:\n  - {name: s1, replicas: [a]}\n  - {name: s2, replicas: [b]}\nroutes:\n  - {measurement: cpu, shard: s1}\n";
        let after = "shards:\n  - {name: s1, replicas: [a]}\n  - {name: s2, replicas: [b]}\nroutes:\n  - {measurement: cpu, shard: s2}\n";
        // A first start stores its layout: nothing pending.
        let first = open(&tree, before);
        assert!(first.pending().is_none() && !first.strays_possible());
        drop(first);
        let moved = open(&tree, after);
        let earlier = moved.pending().cloned().expect("a move is pending");
        assert_eq!(moved.reads().placement("db", "cpu").shards(), [0]);
        assert!(moved.writes().moving_from().is_some());
        assert!(moved.strays_possible());
        moved.settle(&earlier).await.unwrap();
        assert!(moved.pending().is_none());
        assert_eq!(moved.reads().placement("db", "cpu").shards(), [1]);
        assert!(moved.writes().moving_from().is_none());
        assert_eq!(moved.owed(), Some(earlier.clone()));
        drop(moved);
        // Started again: settled, but the deletion is still owed until paid.
        let again = open(&tree, after);
        assert!(again.pending().is_none());
        assert_eq!(again.owed(), Some(earlier));
        assert!(again.strays_possible());
        again.paid().await.unwrap();
        drop(again);
        let paid = open(&tree, after);
        assert!(paid.owed().is_none() && !paid.strays_possible());
    }
}
