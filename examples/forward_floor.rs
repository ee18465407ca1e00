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
//! ```text
//! forward_floor [--split] [--threads] 127.0.0.1:9000 http://127.0.0.1:9001 [http://127.0.0.1:9002 ...]
//! ```

use std::{process::ExitCode, rc::Rc};

use actix::Arbiter;
use actix_web::{http::StatusCode, web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;
use futures_util::future::join_all;
use tokio::sync::{mpsc, oneshot};

/// Connections per upstream and worker: what a node's client allows by default
/// (`write.max_in_flight` 8, plus two).
const CONNECTIONS: usize = 10;

/// What each worker thread holds: its own client (awc is per thread) and the upstream URLs.
struct Upstreams {
    client: awc::Client,
    urls: Rc<[String]>,
    split: bool,
    /// With `--threads`: the way to each upstream's sending thread, in the order of `urls`.
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
    let (jobs, mut inbox) = mpsc::channel::<Job>(1024);
    let thread = Arbiter::new();
    thread.spawn_fn(move || {
        // The client is made on the thread that uses it: awc is per thread.
        let client = influx_gateway::node::client::http_client(None, CONNECTIONS);
        actix_web::rt::spawn(async move {
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
        });
    });
    (thread, jobs)
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
    let target = format!("{}{query}", req.path());
    let answers = match &upstreams.relays {
        None => {
            let sends = upstreams.urls.iter().zip(bodies).map(|(url, body)| {
                upstreams
                    .client
                    .post(format!("{url}{target}"))
                    .send_body(body)
            });
            join_all(sends)
                .await
                .into_iter()
                .map(|answer| answer.map(|r| r.status()).map_err(|e| e.to_string()))
                .collect()
        }
        Some(relays) => {
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
            join_all(handed).await
        }
    };
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
    let (split, threads) = (flag("--split"), flag("--threads"));
    let Some((listen, urls)) = args.split_first().filter(|(_, urls)| !urls.is_empty()) else {
        eprintln!("usage: forward_floor [--split] [--threads] LISTEN_ADDR UPSTREAM_URL...");
        return ExitCode::from(2);
    };
    let urls: Vec<String> = urls.to_vec();
    influx_gateway::memory::tune();
    let served = actix_web::rt::System::new().block_on(async move {
        // One sending thread per upstream, shared by every worker, as node actors are.
        let (_threads, relays): (Vec<Arbiter>, Vec<mpsc::Sender<Job>>) = if threads {
            urls.iter().cloned().map(relay).unzip()
        } else {
            (Vec::new(), Vec::new())
        };
        HttpServer::new(move || {
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
