//! The floor of the gateway's stack: actix-web and awc forwarding each request body, unread, to
//! every upstream, answering 204 once all of them answered 2xx. No parsing, no routing, no actor,
//! no queue: what the benchmark's null-sink rows would show if the gateway itself cost nothing
//! beyond its HTTP server and client. It keeps the gateway's allocator settings: without them a
//! body's pages are faulted in afresh for every request, and it made 0.5–0.8 of its rate.
//!
//! Its client is the gateway's own (`node::client::http_client`, as many connections per upstream as a node
//! gets by default) and its listener sets `TCP_NODELAY` as the gateway's does; unlike the gateway,
//! it sends from the thread that received the request.
//!
//! With `--split`, each upstream gets one contiguous part of the body instead, cut at newlines
//! into near-equal lengths: close to what sharding would cost if choosing each line's shard cost
//! nothing (the gateway's shares of a body are not equal: they follow its measurements).
//!
//! With `--threads`, each upstream's copies are sent from a thread of its own, as the gateway's
//! node actors send theirs: the request's thread hands each body over a bounded channel and waits
//! for the answers to come back. That is the floor of the gateway's shape, not only of its stack:
//! what handing a write to per-node threads costs, with nothing done there but the send.
//!
//! With `--on-workers`, the same hand-over, but each upstream's sender runs on one of the HTTP
//! workers' threads (upstream i on worker i % W) instead of a thread of its own: the floor of a
//! gateway whose node actors lived on its HTTP workers, which an earlier measurement had left
//! open. Some copies are then sent from the thread that received the body, the others one hop
//! away, and no thread is added.
//!
//! ```text
//! forward_floor [--split] [--threads | --on-workers] 127.0.0.1:9000 http://127.0.0.1:9001 [http://127.0.0.1:9002 ...]
//! ```

use std::{
    process::ExitCode,
    rc::Rc,
    sync::{Arc, Mutex, PoisonError},
};

use actix::Arbiter;
use actix_web::{http::StatusCode, web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;
use futures_util::future::join_all;
use tokio::sync::{mpsc, oneshot};

/// Connections per upstream and worker: what a node's client allows by default
/// (`write.max_in_flight` 8, plus two).
const CONNECTIONS: usize = 10;

/// HTTP workers: actix-web's default, which the gateway keeps, one per core.
fn workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Where each upstream's copies are sent from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placement {
    /// The thread that received the request: the floor of the stack.
    Requests,
    /// A thread of the upstream's own, as a node actor's (`--threads`).
    Threads,
    /// One of the HTTP workers' threads, upstream i on worker i % W (`--on-workers`).
    Workers,
}

/// The senders not yet started on a worker, for `--on-workers`.
struct OnWorkers {
    /// The index the next worker to start takes.
    next: usize,
    /// Each upstream's URL and line of jobs, taken by the worker that sends for it.
    inboxes: Vec<Option<(String, mpsc::Receiver<Job>)>>,
}

impl OnWorkers {
    /// Starts, on the calling worker's thread, the senders of the upstreams it is given.
    fn start_here(&mut self, workers: usize) {
        let worker = self.next;
        self.next += 1;
        for (i, inbox) in self.inboxes.iter_mut().enumerate() {
            if i % workers == worker % workers {
                if let Some((url, inbox)) = inbox.take() {
                    actix_web::rt::spawn(send_all(url, inbox));
                }
            }
        }
    }
}

/// What each worker thread holds: its own client (awc is per thread) and the upstream URLs.
struct Upstreams {
    client: awc::Client,
    urls: Rc<[String]>,
    split: bool,
    /// With `--threads` or `--on-workers`: the way to each upstream's sender, in the order of
    /// `urls`.
    relays: Option<Vec<mpsc::Sender<Job>>>,
}

/// One copy for an upstream's sending thread, and where its answer goes.
struct Job {
    /// The request's path and query.
    target: String,
    body: Bytes,
    answer: oneshot::Sender<Result<StatusCode, String>>,
}

/// Starts the thread that sends every copy for `url`, each as soon as it arrives, as a node
/// actor does; returns the thread (kept for the server's life) and the way to it.
fn relay(url: String) -> (Arbiter, mpsc::Sender<Job>) {
    // Bounded, as a node actor's mailbox is.
    let (jobs, inbox) = mpsc::channel::<Job>(1024);
    let thread = Arbiter::new();
    thread.spawn_fn(move || {
        actix_web::rt::spawn(send_all(url, inbox));
    });
    (thread, jobs)
}

/// Sends every copy that arrives on `inbox` to `url`, from the thread it runs on.
async fn send_all(url: String, mut inbox: mpsc::Receiver<Job>) {
    // The client is made on the thread that uses it: awc is per thread.
    let client = influx_gateway::node::client::http_client(None, CONNECTIONS);
    while let Some(job) = inbox.recv().await {
        let send = client
            .post(format!("{url}{}", job.target))
            .send_body(job.body);
        actix_web::rt::spawn(async move {
            let answer = send.await.map(|r| r.status()).map_err(|e| e.to_string());
            // The request may have gone: nobody is left to tell.
            let _ = job.answer.send(answer);
        });
    }
}

/// `body` in `parts` contiguous slices of about equal length, each cut just after a newline.
fn split(body: &Bytes, parts: usize) -> Vec<Bytes> {
    let mut slices = Vec::with_capacity(parts);
    let mut start = 0;
    for part in 1..parts {
        let target = (body.len() * part / parts).max(start);
        let end = memchr::memchr(b'\n', &body[target..]).map_or(body.len(), |n| target + n + 1);
        slices.push(body.slice(start..end));
        start = end;
    }
    slices.push(body.slice(start..));
    slices
}

async fn forward(req: HttpRequest, body: Bytes, upstreams: web::Data<Upstreams>) -> HttpResponse {
    let query = req
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let bodies = if upstreams.split {
        split(&body, upstreams.urls.len())
    } else {
        vec![body; upstreams.urls.len()]
    };
    match &upstreams.relays {
        // The floor of the stack: no allocation here that the gateway's own path would not make
        // (the URL, as awc wants it, and the list of answers `join_all` gathers).
        None => {
            let sends = upstreams.urls.iter().zip(bodies).map(|(url, body)| {
                upstreams
                    .client
                    .post(format!("{url}{}{query}", req.path()))
                    .send_body(body)
            });
            let answers = join_all(sends).await;
            answer(
                answers
                    .into_iter()
                    .map(|answer| answer.map(|r| r.status()).map_err(|e| e.to_string())),
            )
        }
        Some(relays) => {
            let target = format!("{}{query}", req.path());
            let handed = relays.iter().zip(bodies).map(|(jobs, body)| async {
                let (answer, answered) = oneshot::channel();
                let target = target.clone();
                jobs.send(Job {
                    target,
                    body,
                    answer,
                })
                .await
                .map_err(|_| "the sending thread is gone".to_owned())?;
                answered
                    .await
                    .map_err(|_| "the sending thread is gone".to_owned())?
            });
            answer(join_all(handed).await)
        }
    }
}

/// 204 when every upstream answered 2xx; else the first other status, or 502 with the error.
fn answer(answers: impl IntoIterator<Item = Result<StatusCode, String>>) -> HttpResponse {
    for answer in answers {
        match answer {
            Ok(status) if status.is_success() => {}
            Ok(status) => return HttpResponse::build(status).finish(),
            Err(e) => return HttpResponse::BadGateway().body(e),
        }
    }
    HttpResponse::NoContent().finish()
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut flag = |name: &str| match args.iter().position(|a| a == name) {
        Some(at) => {
            args.remove(at);
            true
        }
        None => false,
    };
    let split = flag("--split");
    let placement = match (flag("--threads"), flag("--on-workers")) {
        (_, true) => Placement::Workers,
        (true, false) => Placement::Threads,
        (false, false) => Placement::Requests,
    };
    let Some((listen, urls)) = args.split_first().filter(|(_, urls)| !urls.is_empty()) else {
        eprintln!(
            "usage: forward_floor [--split] [--threads | --on-workers] LISTEN_ADDR UPSTREAM_URL..."
        );
        return ExitCode::from(2);
    };
    let urls: Vec<String> = urls.to_vec();
    influx_gateway::memory::tune();
    let served = actix_web::rt::System::new().block_on(async move {
        // One sending thread per upstream, shared by every worker, as node actors are; or, with
        // --on-workers, upstream i's sender on worker i % W.
        let (_threads, relays, on_workers): (Vec<Arbiter>, Vec<mpsc::Sender<Job>>, _) =
            match placement {
                Placement::Requests => (Vec::new(), Vec::new(), None),
                Placement::Threads => {
                    let (threads, relays) = urls.iter().cloned().map(relay).unzip();
                    (threads, relays, None)
                }
                Placement::Workers => {
                    let (relays, inboxes) = urls
                        .iter()
                        .map(|url| {
                            let (jobs, inbox) = mpsc::channel::<Job>(1024);
                            (jobs, Some((url.clone(), inbox)))
                        })
                        .unzip();
                    (
                        Vec::new(),
                        relays,
                        Some(Arc::new(Mutex::new(OnWorkers { next: 0, inboxes }))),
                    )
                }
            };
        let threads = placement != Placement::Requests;
        let workers = workers();
        HttpServer::new(move || {
            // The factory runs once on each worker's thread: it starts that worker's senders there.
            if let Some(on_workers) = &on_workers {
                on_workers
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .start_here(workers);
            }
            App::new()
                .app_data(web::PayloadConfig::new(64 << 20))
                .app_data(web::Data::new(Upstreams {
                    client: influx_gateway::node::client::http_client(None, CONNECTIONS),
                    urls: urls.clone().into(),
                    split,
                    relays: threads.then(|| relays.clone()),
                }))
                .default_service(web::to(forward))
        })
        .tcp_nodelay(true)
        .workers(workers)
        .bind(listen.as_str())?
        .run()
        .await
    });
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("forward_floor: {e}");
            ExitCode::FAILURE
        }
    }
}
