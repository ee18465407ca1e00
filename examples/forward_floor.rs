//! The floor of the gateway's stack: actix-web and awc forwarding each request body, unread, to
//! every upstream, answering 204 once all of them answered 2xx. No parsing, no routing, no actor,
//! no queue: what the benchmark's null-sink rows would show if the gateway itself cost nothing
//! beyond its HTTP server and client. It keeps the gateway's allocator settings (without them a
//! body's pages are faulted in afresh for every request, a sixth of this program's CPU).
//!
//! ```text
//! forward_floor 127.0.0.1:9000 http://127.0.0.1:9001 [http://127.0.0.1:9002 ...]
//! ```

use std::{process::ExitCode, rc::Rc};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;
use futures_util::future::join_all;

/// What each worker thread holds: its own client (awc is per thread) and the upstream URLs.
struct Upstreams {
    client: awc::Client,
    urls: Rc<[String]>,
}

async fn forward(req: HttpRequest, body: Bytes, upstreams: web::Data<Upstreams>) -> HttpResponse {
    let query = req
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let sends = upstreams.urls.iter().map(|url| {
        upstreams
            .client
            .post(format!("{url}{}{query}", req.path()))
            .send_body(body.clone())
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
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((listen, urls)) = args.split_first().filter(|(_, urls)| !urls.is_empty()) else {
        eprintln!("usage: forward_floor LISTEN_ADDR UPSTREAM_URL...");
        return ExitCode::from(2);
    };
    let urls: Vec<String> = urls.to_vec();
    influx_gateway::memory::tune();
    let served = actix_web::rt::System::new().block_on(async move {
        HttpServer::new(move || {
            App::new()
                .app_data(web::PayloadConfig::new(64 << 20))
                .app_data(web::Data::new(Upstreams {
                    client: awc::Client::default(),
                    urls: urls.clone().into(),
                }))
                .default_service(web::to(forward))
        })
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
