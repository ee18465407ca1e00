//! `GET|POST /query`: reads go to one node, mutations to every node.

use actix_web::{
    body::SizedStream,
    http::{header, Method, StatusCode},
    web, HttpRequest, HttpResponse,
};
use bytes::Bytes;

use super::{body, respond, ApiError, QueryClient};
use crate::{
    gateway::Gateway,
    node::{client::forwardable, client::FORWARDED_REQUEST_HEADERS, ForwardedQuery},
    query::{self, deny::Denied, BroadcastOutcome, ClientParams, Plan, QueryText, ScatterError},
    router::NodeId,
};

/// Names the node that answered a read, for operators following a query.
const ANSWERED_BY: &str = "X-Influx-Gateway-Node";

/// Handles `GET|POST /query`.
pub async fn query(
    req: HttpRequest,
    payload: web::Payload,
    gateway: web::Data<Gateway>,
    client: web::Data<QueryClient>,
) -> Result<HttpResponse, ApiError> {
    let body = body::read(&req, payload, gateway.config().write.max_body_size).await?;
    let q = query_text(&req, &body);
    let mut headers = Vec::new();
    for name in FORWARDED_REQUEST_HEADERS {
        if let Some(value) = req.headers().get(&name) {
            headers.push((name, value.clone()));
        }
    }
    // The body was decoded once here; the node gets it plain.
    let forwarded = ForwardedQuery {
        method: req.method().clone(),
        query_string: req.query_string().to_owned(),
        headers,
        body,
    };
    query::deny::check(&gateway.config().query.deny, &q).map_err(|denied| {
        let status = match denied {
            Denied::Statement { .. } => StatusCode::FORBIDDEN,
            Denied::Unreadable(_) => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, denied.to_string())
    })?;
    let timeout = gateway.config().query.timeout;
    let db = request_db(&req, &forwarded.body);
    match query::plan(&q, gateway.router(), db.as_deref()) {
        Plan::Read { shard } => {
            let order = match shard {
                Some(shard) => gateway.shard_read_order(shard),
                None => gateway.next_read_order(),
            };
            read_from(&gateway, &client.0, &order, &forwarded).await
        }
        Plan::Scatter(statements) => {
            let QueryText::Found(text) = &q else {
                return Err(ApiError::bad_request("missing required parameter \"q\""));
            };
            let form = is_form(&req).then_some(&forwarded.body[..]);
            let authorization = req.headers().get(header::AUTHORIZATION).cloned();
            let params = ClientParams::new(req.query_string(), form, authorization);
            match query::scatter(&gateway, &client.0, text, &statements, &params).await {
                Ok(body) => Ok(HttpResponse::Ok()
                    .content_type("application/json")
                    .body(body)),
                // A parse error or bad credentials: every node says the same about the whole
                // query, and its own words (offsets in the whole `q`) are the right answer.
                Err(ScatterError::Refused { .. }) => {
                    let order = gateway.next_read_order();
                    read_from(&gateway, &client.0, &order, &forwarded).await
                }
                Err(e) => Err(ApiError::unavailable(e.to_string())),
            }
        }
        Plan::Refused(why) => Err(ApiError::bad_request(why)),
        Plan::Broadcast { statements } => {
            match query::broadcast(
                gateway.nodes(),
                gateway.order(),
                &forwarded,
                statements,
                timeout,
            )
            .await
            {
                BroadcastOutcome::Answered(answer) => Ok(respond(&answer)),
                BroadcastOutcome::Incomplete(why) => Err(ApiError::unavailable(why)),
            }
        }
    }
}

/// Sends a read to the first node of `order` that answers and streams its answer back.
async fn read_from(
    gateway: &Gateway,
    client: &awc::Client,
    order: &[NodeId],
    forwarded: &ForwardedQuery,
) -> Result<HttpResponse, ApiError> {
    let timeout = gateway.config().query.timeout;
    let (node, answer) = query::read(gateway.nodes(), order, client, forwarded, timeout)
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    Ok(stream(gateway.nodes()[node].status().name(), answer))
}

/// Whether the request's body is an urlencoded form, whose values InfluxDB reads first.
fn is_form(req: &HttpRequest) -> bool {
    matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH)
        && media_type(req) == "application/x-www-form-urlencoded"
}

fn media_type(req: &HttpRequest) -> String {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// The `db` parameter as InfluxDB reads it (a form body's first), for routing unqualified sources.
fn request_db(req: &HttpRequest, body: &Bytes) -> Option<String> {
    form_value(req, body, "db")
}

/// The `q` parameter as InfluxDB reads it: Go's `FormValue`, where a form body's values come
/// before the URL's. A multipart body may hold `q` as a field or a file: the gateway does not
/// decode those, so it reports `q` as unknown and the query is broadcast.
fn query_text(req: &HttpRequest, body: &Bytes) -> QueryText {
    let form_body = matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH);
    if form_body && media_type(req) == "multipart/form-data" {
        return QueryText::Unknown;
    }
    match form_value(req, body, "q") {
        Some(q) => QueryText::Found(q),
        None => QueryText::Absent,
    }
}

/// Go's `FormValue`: a form body's value first, then the URL's.
fn form_value(req: &HttpRequest, body: &Bytes, name: &str) -> Option<String> {
    let find = |encoded: &[u8]| {
        url::form_urlencoded::parse(encoded)
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    };
    is_form(req)
        .then(|| find(body))
        .flatten()
        .or_else(|| find(req.query_string().as_bytes()))
}

/// Passes a node's answer on as it arrives: chunked answers stay chunked and are never held whole.
fn stream(node: &str, answer: awc::ClientResponse) -> HttpResponse {
    let mut response = HttpResponse::build(answer.status());
    for (name, value) in answer.headers() {
        if forwardable(name) {
            response.append_header((name.clone(), value.clone()));
        }
    }
    response.insert_header((ANSWERED_BY, node.to_owned()));
    let length = answer
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match length {
        Some(length) => response.body(SizedStream::new(length, answer)),
        None => response.streaming(answer),
    }
}
