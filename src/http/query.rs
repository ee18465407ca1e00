//! `GET|POST /query`: reads go to one node, mutations to every node; `/api/v2/query` is refused.

use actix_web::{
    body::{BodySize, BoxBody, MessageBody, SizedStream},
    http::{header, Method, StatusCode},
    web, HttpRequest, HttpResponse,
};
use bytes::Bytes;
use flate2::{write::GzEncoder, Compression};
use std::io::Write;

use super::{auth, body, respond, ApiError, QueryClient};
use crate::{
    auth::User,
    gateway::Gateway,
    metrics::{Metrics, QueryPlan},
    node::{
        client::forwardable, client::FORWARDED_REQUEST_HEADERS, ForwardedQuery, NodeHandle, NodeId,
        NodeState,
    },
    query::{
        self,
        deny::Denied,
        queries::{self, QueryOp},
        BroadcastOutcome, Classified, ClientParams, Plan, QueryText, ScatterError,
    },
    router::Router,
};

/// Names the node that answered a read, for operators following a query.
const ANSWERED_BY: &str = "X-Influx-Gateway-Node";

/// Handles `GET|POST /query`.
pub async fn query(
    req: HttpRequest,
    payload: web::Payload,
    gateway: web::Data<Gateway>,
    client: web::Data<QueryClient>,
    metrics: web::Data<Metrics>,
) -> Result<HttpResponse, ApiError> {
    let refused = |e: ApiError| {
        metrics.query_plan(QueryPlan::Refused);
        e
    };
    let user = auth::authenticate(&gateway, &req).await.map_err(refused)?;
    let body = body::read(&req, payload, &gateway).await?;
    let q = query_text(&req, &body);
    // Lexed and classified once, for the rights check, the statement filter and the planner.
    let classified = Classified::of(&q);
    let db = request_db(&req, &body);
    check_query(&gateway, user, &classified, db.as_deref()).map_err(refused)?;
    let client_authorization = req.headers().get(header::AUTHORIZATION);
    let node_authorization = auth::node_authorization(&gateway, client_authorization);
    let mut headers = Vec::new();
    for name in FORWARDED_REQUEST_HEADERS {
        let value = if name == header::AUTHORIZATION {
            node_authorization.clone()
        } else {
            req.headers().get(&name).cloned()
        };
        if let Some(value) = value {
            headers.push((name, value));
        }
    }
    // The body was decoded once here; the node gets it plain.
    let forwarded = ForwardedQuery {
        method: req.method().clone(),
        query_string: auth::node_query_string(&gateway, req.query_string()),
        headers,
        body,
    };
    query::deny::check(gateway.deny_rules(), &classified).map_err(|denied| {
        let status = match denied {
            Denied::Statement { .. } => StatusCode::FORBIDDEN,
            Denied::Unreadable(_) => StatusCode::BAD_REQUEST,
        };
        refused(ApiError::new(status, denied.to_string()))
    })?;
    if let Classified::Statements(statements) = &classified {
        if let Some(op) = query::queries::query_op(statements) {
            let form = is_form(&req).then_some(&forwarded.body[..]);
            let params = ClientParams::new(&forwarded.query_string, form, node_authorization);
            metrics.query_plan(QueryPlan::Read);
            return across_nodes(&gateway, &client.0, &params, op).await;
        }
    }
    // One placement for the whole request: a move that ends meanwhile changes the next one's.
    let reads = gateway.layouts().reads();
    let router: &Router = &reads;
    let sharded = gateway.layouts().current().is_sharded();
    if matches!(classified, Classified::Unknown) && sharded {
        // What the nodes would do with it depends on where data lives, and the gateway cannot
        // read it (the planner says the same of the layout reads follow).
        return Err(refused(ApiError::bad_request(
            query::planner::UNREAD_ON_SHARDS,
        )));
    }
    if reads.is_earlier() && (router.is_sharded() || sharded) && writes_back(&classified) {
        // Computed by each node from its own data: right only once the data is where the
        // configured routes put it.
        return Err(refused(ApiError::new(
            StatusCode::CONFLICT,
            "the routes changed and the data has not moved yet: run a rebalance \
             (POST /cluster/rebalance) before writing query results back",
        )));
    }
    match query::plan(classified, router, db.as_deref()) {
        Plan::Read { shard } => {
            metrics.query_plan(QueryPlan::Read);
            let order = match shard {
                Some(shard) => gateway.replica_read_order(&router.shards()[shard].replicas),
                None => gateway.next_read_order(),
            };
            let response = read_from(&gateway, &client.0, &order, &forwarded).await?;
            // The answer streams on after this returns: a move does not settle (and delete what
            // it reads) before it has gone out.
            if reads.detach() {
                let gateway = gateway.clone();
                return Ok(
                    response.map_body(move |_, body| BoxBody::new(HeldRead { body, gateway }))
                );
            }
            Ok(response)
        }
        Plan::Scatter(statements) => {
            let QueryText::Found(text) = &q else {
                return Err(ApiError::bad_request("missing required parameter \"q\""));
            };
            let form = is_form(&req).then_some(&forwarded.body[..]);
            let params = ClientParams::new(&forwarded.query_string, form, node_authorization);
            metrics.query_plan(QueryPlan::Scatter);
            match query::scatter(&**gateway, router, &client.0, text, &statements, &params).await {
                Ok(body) => {
                    metrics.merged(statements.len());
                    Ok(merged(&req, body))
                }
                // A parse error or bad credentials: every node says the same about the whole
                // query, and its own words (offsets in the whole `q`) are the right answer.
                Err(ScatterError::Refused { .. }) => {
                    let order = gateway.next_read_order();
                    read_from(&gateway, &client.0, &order, &forwarded).await
                }
                Err(e) => Err(ApiError::unavailable(e.to_string())),
            }
        }
        Plan::Refused(why) => Err(refused(ApiError::bad_request(why))),
        Plan::OnShard { shard } => {
            metrics.query_plan(QueryPlan::OnShard);
            let nodes: Vec<&NodeHandle> = router.shards()[shard]
                .replicas
                .iter()
                .map(|&n| &gateway.nodes()[n])
                .collect();
            mutate(&gateway, &nodes, &forwarded, 1).await
        }
        Plan::Broadcast { statements } => {
            metrics.query_plan(QueryPlan::Broadcast);
            let nodes: Vec<&NodeHandle> = gateway.nodes().iter().collect();
            mutate(&gateway, &nodes, &forwarded, statements).await
        }
    }
}

/// Whether some statement of the query writes query results back (`SELECT ... INTO`, `CREATE
/// CONTINUOUS QUERY`).
fn writes_back(q: &Classified<'_>) -> bool {
    match q {
        Classified::Statements(statements) => statements
            .iter()
            .any(|s| crate::influxql::into::write_back(s).is_some()),
        _ => false,
    }
}

/// Has every one of `nodes` apply (or queue) a mutation, and answers with what they said.
async fn mutate(
    gateway: &Gateway,
    nodes: &[&NodeHandle],
    forwarded: &ForwardedQuery,
    statements: usize,
) -> Result<HttpResponse, ApiError> {
    let timeout = gateway.config().query.timeout;
    match query::broadcast(nodes, gateway.order(), forwarded, statements, timeout).await {
        BroadcastOutcome::Answered(answer) => Ok(respond(&answer)),
        BroadcastOutcome::Incomplete(why) => Err(ApiError::unavailable(why)),
    }
}

/// Answers `/api/v2/query`: Flux cannot be run on InfluxDB 1.x nodes.
pub async fn query_v2() -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "Flux queries are not supported: the nodes behind this gateway run InfluxDB 1.x; \
         send InfluxQL to /query instead (GET or POST, q=..., db=...)",
    ))
}

/// Applies `limits.max_statements` and, with gateway users, the user's rights, before any node is
/// asked.
fn check_query(
    gateway: &Gateway,
    user: Option<&User>,
    q: &Classified<'_>,
    db: Option<&str>,
) -> Result<(), ApiError> {
    let unchecked = user.is_none_or(User::is_admin);
    let statements = match q {
        Classified::Statements(statements) => statements,
        Classified::Unknown if !unchecked => return Err(ApiError::bad_request(
            "the gateway cannot read a multipart query to check its rights; send q as a form field or URL parameter",
        )),
        Classified::Absent | Classified::Unknown => return Ok(()),
        // The node words the parse error; only a non-admin's unreadable query is refused here.
        Classified::Unlexable(_) if unchecked => return Ok(()),
        Classified::Unlexable(e) => {
            return Err(ApiError::bad_request(format!("error parsing query: {e}")))
        }
    };
    let limit = gateway.limits().max_statements;
    if statements.len() > limit {
        return Err(ApiError::bad_request(format!(
            "a query may hold at most {limit} statements (limits.max_statements); this one holds {}",
            statements.len()
        )));
    }
    match user {
        Some(user) => user.authorize_query(statements, db).map_err(auth::refusal),
        None => Ok(()),
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

/// `SHOW QUERIES` from every node that answers, or a `KILL QUERY` sent to the node owning the id.
/// A node that refuses (credentials, say) is answered as it answered.
async fn across_nodes(
    gateway: &Gateway,
    client: &awc::Client,
    params: &ClientParams,
    op: QueryOp,
) -> Result<HttpResponse, ApiError> {
    let timeout = gateway.config().query.timeout;
    let ask = |node: NodeId, q: String| {
        let request = params.request(&q, None);
        async move {
            let (_, mut answer) = query::read(gateway.nodes(), &[node], client, &request, timeout)
                .await
                .map_err(|e| e.to_string())?;
            let status = answer.status();
            let body = answer
                .body()
                .limit(MAX_LISTING)
                .await
                .map_err(|e| format!("answer cut short: {e}"))?;
            if !status.is_success() {
                return Ok(Err(HttpResponse::build(status)
                    .content_type("application/json")
                    .body(body)));
            }
            serde_json::from_slice::<serde_json::Value>(&body)
                .map(Ok)
                .map_err(|e| format!("unreadable answer: {e}"))
        }
    };
    let answer = match op {
        QueryOp::Show => {
            // Nodes known down are not waited for; the others are asked at once.
            let up: Vec<NodeId> = (0..gateway.nodes().len())
                .filter(|&n| gateway.nodes()[n].status().state() != NodeState::Down)
                .collect();
            let asked = futures_util::future::join_all(
                up.iter().map(|&n| ask(n, "SHOW QUERIES".to_owned())),
            )
            .await;
            let mut lists = Vec::new();
            let mut unasked: Vec<String> = (0..gateway.nodes().len())
                .filter(|n| !up.contains(n))
                .map(|n| gateway.nodes()[n].status().name().to_owned())
                .collect();
            for (&node, answer) in up.iter().zip(asked) {
                match answer {
                    Ok(Ok(list)) if list["results"][0]["error"].is_null() => {
                        lists.push((node, list));
                    }
                    Ok(Err(refused)) => return Ok(refused),
                    _ => unasked.push(gateway.nodes()[node].status().name().to_owned()),
                }
            }
            if lists.is_empty() {
                return Err(ApiError::unavailable(format!(
                    "no node answered SHOW QUERIES ({})",
                    unasked.join(", ")
                )));
            }
            queries::merge_lists(&lists, &unasked)
        }
        QueryOp::Kill(id) => match queries::owner(id, gateway.nodes().len()) {
            None => queries::no_such_query(id),
            Some((node, qid)) => match ask(node, format!("KILL QUERY {qid}")).await {
                Ok(Ok(answer)) => {
                    let gone = answer["results"][0]["error"]
                        .as_str()
                        .is_some_and(|e| e.starts_with("no such query id"));
                    if gone {
                        queries::no_such_query(id)
                    } else {
                        answer
                    }
                }
                Ok(Err(refused)) => return Ok(refused),
                Err(why) => {
                    return Err(ApiError::unavailable(format!(
                        "node {} owns query {id} and could not be asked to kill it: {why}",
                        gateway.nodes()[node].status().name()
                    )))
                }
            },
        },
    };
    Ok(HttpResponse::Ok().json(answer))
}

/// Largest answer to `SHOW QUERIES` read from one node.
const MAX_LISTING: usize = 16 * 1024 * 1024;

/// A streamed answer read from a node of the earlier layout while data moves: it holds the move
/// from settling until it is sent or dropped.
struct HeldRead {
    body: BoxBody,
    gateway: web::Data<Gateway>,
}

impl MessageBody for HeldRead {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Bytes, Self::Error>>> {
        std::pin::Pin::new(&mut self.get_mut().body).poll_next(cx)
    }
}

impl Drop for HeldRead {
    fn drop(&mut self) {
        self.gateway.layouts().end_read();
    }
}

/// A merged answer, gzip-compressed when the client accepts it, as influxd compresses its
/// successful answers (its errors go out plain, and so do the gateway's).
fn merged(req: &HttpRequest, body: Bytes) -> HttpResponse {
    let mut response = HttpResponse::Ok();
    response.content_type("application/json");
    if !accepts_gzip(req) {
        return response.body(body);
    }
    let mut encoder = GzEncoder::new(Vec::with_capacity(body.len() / 4), Compression::fast());
    match encoder.write_all(&body).and_then(|()| encoder.finish()) {
        Ok(compressed) => response
            .insert_header((header::CONTENT_ENCODING, "gzip"))
            .body(compressed),
        // Writing to memory does not fail; if it did, the plain answer is still right.
        Err(_) => response.body(body),
    }
}

fn accepts_gzip(req: &HttpRequest) -> bool {
    req.headers()
        .get_all(header::ACCEPT_ENCODING)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            coding
                .split(';')
                .next()
                .is_some_and(|c| c.trim().eq_ignore_ascii_case("gzip"))
        })
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
