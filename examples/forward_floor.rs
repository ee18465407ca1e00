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
//! ```text
//! forward_floor [--split] 127.0.0.1:9000 http://127.0.0.1:9001 [http://127.0.0.1:9002 ...]
//! ```

use std::{process::ExitCode, rc::Rc};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;
use futures_util::future::join_all;

/// Connections per upstream and worker: what a node's client allows by default
/// (`write.max_in_flight` 8, plus two).
const CONNECTIONS: usize = 10;

/// What each worker thread holds: its own client (awc is per thread) and the upstream URLs.
struct Upstreams {
    client: awc::Client,
    urls: Rc<[String]>,
    split: bool,
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
    let sends = upstreams.urls.iter().zip(bodies).map(|(url, body)| {
        upstreams
            .client
            .post(format!("{url}{}{query}", req.path()))
            .send_body(body)
    });
    for answer in join_all(sends).await {
        match answer {
            Ok(response) if response.status().is_success() => {}
            Ok(response) => return HttpResponse::build(response.status()).finish(),
            Err(e) => return HttpResponse::BadGateway().body(e.to_string()),
        }
    }
    HttpResponse::NoContent().finish()
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let split = args.first().is_some_and(|a| a == "--split");
    if split {
        args.remove(0);
    }
    let Some((listen, urls)) = args.split_first().filter(|(_, urls)| !urls.is_empty()) else {
        eprintln!("usage: forward_floor [--split] LISTEN_ADDR UPSTREAM_URL...");
        return ExitCode::from(2);
    };
    let urls: Vec<String> = urls.to_vec();
    influx_gateway::memory::tune();
    let served = actix_web::rt::System::new().block_on(async move {
        HttpServer::new(move || {
            App::new()
                .app_data(web::PayloadConfig::new(64 << 20))
                .app_data(web::Data::new(Upstreams {
                    client: influx_gateway::node::client::http_client(None, CONNECTIONS),
                    urls: urls.clone().into(),
                    split,
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
