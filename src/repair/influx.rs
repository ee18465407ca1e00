//! What a repair asks of one influxd, directly rather than through its actor: its schema, the
//! bounds of a measurement, a chunk of points as a stream, and the statements that recreate its
//! databases, retention policies and continuous queries.

use std::time::Duration;

use actix_web::http::header::{self, HeaderValue};
use bytes::{Buf, BytesMut};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::Value;

use super::lines::{FieldType, Schema, SeriesPart};
pub use crate::influxql::quote::{ident, literal};

/// Points per piece of a chunked answer: a piece is parsed whole, so this bounds its memory.
const CHUNK_SIZE: usize = 10_000;

/// Largest buffered answer (schema statements, not points).
const MAX_ANSWER: usize = 64 * 1024 * 1024;

/// Why a node could not answer a repair's question.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InfluxError {
    /// No answer: cannot connect, timed out, or the answer broke off.
    #[error("{node}: {message}")]
    Unreachable {
        /// The node's URL.
        node: String,
        /// What failed.
        message: String,
    },
    /// The node answered with an error status.
    #[error("{node} answered {status}: {message}")]
    Answered {
        /// The node's URL.
        node: String,
        /// HTTP status.
        status: u16,
        /// InfluxDB's error text.
        message: String,
    },
    /// The statement failed on the node.
    #[error("{node}: {statement}: {message}")]
    Statement {
        /// The node's URL.
        node: String,
        /// The statement.
        statement: String,
        /// InfluxDB's error text.
        message: String,
    },
}

impl InfluxError {
    /// Whether another replica, or the same one later, may answer.
    pub fn is_retryable(&self) -> bool {
        match self {
            InfluxError::Unreachable { .. } => true,
            InfluxError::Answered { status, .. } => *status >= 500,
            InfluxError::Statement { .. } => false,
        }
    }
}

/// A retention policy's settings, as `SHOW RETENTION POLICIES` gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Its name.
    pub name: String,
    /// `duration`, e.g. `168h0m0s` (`0s`: forever).
    pub duration: String,
    /// `shardGroupDuration`.
    pub shard_duration: String,
    /// `replicaN`.
    pub replication: u64,
    /// Whether it is the database's default.
    pub default: bool,
}

/// A continuous query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContinuousQuery {
    /// Its database.
    pub db: String,
    /// Its name.
    pub name: String,
    /// The whole `CREATE CONTINUOUS QUERY` statement.
    pub query: String,
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    results: Vec<StatementResult>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct StatementResult {
    #[serde(default)]
    series: Vec<SeriesPart>,
    error: Option<String>,
}

/// One influxd, as a repair reads and writes it.
#[derive(Clone)]
pub struct Influx {
    http: awc::Client,
    url: String,
    authorization: Option<HeaderValue>,
    timeout: Duration,
}

impl Influx {
    /// The node at `url`, reached with `http`, as the user in `authorization`; `timeout` bounds the
    /// wait for each answer's head.
    pub fn new(
        http: awc::Client,
        url: &str,
        authorization: Option<HeaderValue>,
        timeout: Duration,
    ) -> Influx {
        Influx {
            http,
            url: url.to_owned(),
            authorization,
            timeout,
        }
    }

    /// Its URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Databases, without `_internal` (each node's own monitoring).
    pub async fn databases(&self) -> Result<Vec<String>, InfluxError> {
        Ok(self
            .column(None, "SHOW DATABASES", 0)
            .await?
            .into_iter()
            .filter(|db| db != "_internal")
            .collect())
    }

    /// The retention policies of `db`.
    pub async fn retention_policies(&self, db: &str) -> Result<Vec<RetentionPolicy>, InfluxError> {
        let q = format!("SHOW RETENTION POLICIES ON {}", ident(db));
        let mut policies = Vec::new();
        for series in self.series(Some(db), &q).await? {
            let at = |name: &str| series.columns.iter().position(|c| c == name);
            let (Some(n), Some(d), Some(s), Some(r), Some(def)) = (
                at("name"),
                at("duration"),
                at("shardGroupDuration"),
                at("replicaN"),
                at("default"),
            ) else {
                return Err(self.shape(&q));
            };
            for row in &series.values {
                let text = |i: usize| row.get(i).and_then(Value::as_str).unwrap_or("").to_owned();
                policies.push(RetentionPolicy {
                    name: text(n),
                    duration: text(d),
                    shard_duration: text(s),
                    replication: row.get(r).and_then(Value::as_u64).unwrap_or(1),
                    default: row.get(def).and_then(Value::as_bool).unwrap_or(false),
                });
            }
        }
        Ok(policies)
    }

    /// The measurements of `db` (in any retention policy).
    pub async fn measurements(&self, db: &str) -> Result<Vec<String>, InfluxError> {
        self.column(Some(db), "SHOW MEASUREMENTS", 0).await
    }

    /// The series keys of `measurement` in `db`, as influxd writes them (escaped).
    pub async fn series_keys(
        &self,
        db: &str,
        measurement: &str,
    ) -> Result<Vec<String>, InfluxError> {
        let q = format!("SHOW SERIES FROM {}", ident(measurement));
        self.column(Some(db), &q, 0).await
    }

    /// The tag keys of `measurement` in `db`.
    pub async fn tag_keys(&self, db: &str, measurement: &str) -> Result<Vec<String>, InfluxError> {
        let q = format!("SHOW TAG KEYS FROM {}", ident(measurement));
        self.column(Some(db), &q, 0).await
    }

    /// The field types of `measurement` in `db`.`rp`.
    pub async fn schema(
        &self,
        db: &str,
        rp: &str,
        measurement: &str,
    ) -> Result<Schema, InfluxError> {
        let q = format!("SHOW FIELD KEYS FROM {}.{}", ident(rp), ident(measurement));
        let mut schema = Schema::default();
        for series in self.series(Some(db), &q).await? {
            for row in &series.values {
                let (Some(field), Some(kind)) = (
                    row.first().and_then(Value::as_str),
                    row.get(1)
                        .and_then(Value::as_str)
                        .and_then(FieldType::parse),
                ) else {
                    return Err(self.shape(&q));
                };
                schema.insert(field, kind);
            }
        }
        Ok(schema)
    }

    /// The type `field` of `db`.`rp`.`measurement` has in `[start, end)` (`None`: no value
    /// there). Asked in msgpack, which keeps what JSON loses: an integer from a float like `1`.
    /// Exact when the span lies within one shard group (chunks of `repair.chunk` do, as long as
    /// it is no longer than the policy's shard duration); over several, influxd reports one type.
    #[allow(clippy::too_many_arguments)]
    pub async fn field_type(
        &self,
        db: &str,
        rp: &str,
        measurement: &str,
        field: &str,
        (start, end): (i64, i64),
        integers: FieldType,
    ) -> Result<Option<FieldType>, InfluxError> {
        let q = format!(
            "SELECT first({}) FROM {}.{} WHERE time >= {start} AND time < {end}",
            ident(field),
            ident(rp),
            ident(measurement)
        );
        let form = [("q", q.as_str()), ("db", db), ("epoch", "ns")];
        let mut response = self
            .send_accepting(&form, Some("application/x-msgpack"))
            .await?;
        let body = response
            .body()
            .limit(MAX_ANSWER)
            .await
            .map_err(|e| self.unreachable(e))?;
        let answer =
            rmpv::decode::read_value(&mut &body[..]).map_err(|e| InfluxError::Statement {
                node: self.url.clone(),
                statement: q.clone(),
                message: format!("unreadable msgpack answer: {e}"),
            })?;
        let member = |value: &rmpv::Value, name: &str| -> Option<rmpv::Value> {
            value
                .as_map()?
                .iter()
                .find(|(k, _)| k.as_str() == Some(name))
                .map(|(_, v)| v.clone())
        };
        let first = |value: rmpv::Value| value.as_array().and_then(|a| a.first().cloned());
        let result = member(&answer, "results").and_then(first);
        let error =
            member(&answer, "error").or_else(|| result.as_ref().and_then(|r| member(r, "error")));
        if let Some(error) = error {
            return Err(InfluxError::Statement {
                node: self.url.clone(),
                statement: q,
                message: error.as_str().unwrap_or("unreadable error").to_owned(),
            });
        }
        let value = result
            .and_then(|result| member(&result, "series"))
            .and_then(first)
            .and_then(|series| member(&series, "values"))
            .and_then(first)
            .and_then(|row| row.as_array().and_then(|r| r.get(1).cloned()));
        Ok(match value {
            Some(rmpv::Value::F64(_) | rmpv::Value::F32(_)) => Some(FieldType::Float),
            Some(rmpv::Value::Integer(_)) => Some(integers),
            Some(rmpv::Value::String(_)) => Some(FieldType::String),
            Some(rmpv::Value::Boolean(_)) => Some(FieldType::Boolean),
            _ => None,
        })
    }

    /// The first and last timestamps of `measurement` in `db`.`rp`, if it holds any point.
    pub async fn bounds(
        &self,
        db: &str,
        rp: &str,
        measurement: &str,
    ) -> Result<Option<(i64, i64)>, InfluxError> {
        let from = format!("{}.{}", ident(rp), ident(measurement));
        let first = self
            .first_time(
                db,
                &format!("SELECT * FROM {from} ORDER BY time ASC LIMIT 1"),
            )
            .await?;
        let last = self
            .first_time(
                db,
                &format!("SELECT * FROM {from} ORDER BY time DESC LIMIT 1"),
            )
            .await?;
        Ok(first.zip(last))
    }

    async fn first_time(&self, db: &str, q: &str) -> Result<Option<i64>, InfluxError> {
        Ok(self
            .series(Some(db), q)
            .await?
            .first()
            .and_then(|s| s.values.first())
            .and_then(|row| row.first())
            .and_then(Value::as_i64))
    }

    /// Every continuous query.
    pub async fn continuous_queries(&self) -> Result<Vec<ContinuousQuery>, InfluxError> {
        let mut queries = Vec::new();
        for series in self.series(None, "SHOW CONTINUOUS QUERIES").await? {
            for row in &series.values {
                if let (Some(name), Some(query)) = (
                    row.first().and_then(Value::as_str),
                    row.get(1).and_then(Value::as_str),
                ) {
                    queries.push(ContinuousQuery {
                        db: series.name.clone(),
                        name: name.to_owned(),
                        query: query.to_owned(),
                    });
                }
            }
        }
        Ok(queries)
    }

    /// The users' names.
    pub async fn users(&self) -> Result<Vec<String>, InfluxError> {
        self.column(None, "SHOW USERS", 0).await
    }

    /// Runs a statement that changes the node (`CREATE DATABASE` and the like).
    pub async fn execute(&self, db: Option<&str>, q: &str) -> Result<(), InfluxError> {
        self.results(db, q).await.map(|_| ())
    }

    /// Opens the points of `db`.`rp`.`measurement` in `[start, end)`, every series apart, for
    /// reading piece by piece.
    pub async fn chunk(
        &self,
        db: &str,
        rp: &str,
        measurement: &str,
        start: i64,
        end: i64,
    ) -> Result<ChunkReader, InfluxError> {
        let q = format!(
            "SELECT * FROM {}.{} WHERE time >= {start} AND time < {end} GROUP BY *",
            ident(rp),
            ident(measurement)
        );
        let chunk_size = CHUNK_SIZE.to_string();
        let form = [
            ("q", q.as_str()),
            ("db", db),
            ("epoch", "ns"),
            ("chunked", "true"),
            ("chunk_size", chunk_size.as_str()),
        ];
        let response = self.send(&form).await?;
        Ok(ChunkReader {
            idle: self.timeout,
            node: self.url.clone(),
            statement: q,
            response,
            buffer: BytesMut::new(),
            pending: Vec::new(),
            done: false,
        })
    }

    async fn send(&self, form: &[(&str, &str)]) -> Result<awc::ClientResponse, InfluxError> {
        self.send_accepting(form, None).await
    }

    async fn send_accepting(
        &self,
        form: &[(&str, &str)],
        accept: Option<&'static str>,
    ) -> Result<awc::ClientResponse, InfluxError> {
        let mut request = self
            .http
            .post(format!("{}/query", self.url))
            .timeout(self.timeout);
        if let Some(accept) = accept {
            request = request.insert_header((header::ACCEPT, accept));
        }
        if let Some(auth) = &self.authorization {
            request = request.insert_header((header::AUTHORIZATION, auth.clone()));
        }
        let mut response = request
            .send_form(&form)
            .await
            .map_err(|e| self.unreachable(e))?;
        if !response.status().is_success() {
            let body = response.body().limit(64 * 1024).await.unwrap_or_default();
            return Err(InfluxError::Answered {
                node: self.url.clone(),
                status: response.status().as_u16(),
                message: crate::node::client::error_message(&body),
            });
        }
        Ok(response)
    }

    async fn results(
        &self,
        db: Option<&str>,
        q: &str,
    ) -> Result<Vec<StatementResult>, InfluxError> {
        let mut form = vec![("q", q), ("epoch", "ns")];
        if let Some(db) = db {
            form.push(("db", db));
        }
        let mut response = self.send(&form).await?;
        let body = response
            .body()
            .limit(MAX_ANSWER)
            .await
            .map_err(|e| self.unreachable(e))?;
        let answer: Answer = serde_json::from_slice(&body).map_err(|e| InfluxError::Statement {
            node: self.url.clone(),
            statement: q.to_owned(),
            message: format!("unreadable answer: {e}"),
        })?;
        if let Some(message) = answer
            .error
            .or_else(|| answer.results.iter().find_map(|r| r.error.clone()))
        {
            return Err(InfluxError::Statement {
                node: self.url.clone(),
                statement: q.to_owned(),
                message,
            });
        }
        Ok(answer.results)
    }

    /// The series `q` answers in `db` (a small answer: aggregates, not points).
    pub async fn select(&self, db: &str, q: &str) -> Result<Vec<SeriesPart>, InfluxError> {
        self.series(Some(db), q).await
    }

    async fn series(&self, db: Option<&str>, q: &str) -> Result<Vec<SeriesPart>, InfluxError> {
        Ok(self
            .results(db, q)
            .await?
            .into_iter()
            .flat_map(|r| r.series)
            .collect())
    }

    async fn column(
        &self,
        db: Option<&str>,
        q: &str,
        i: usize,
    ) -> Result<Vec<String>, InfluxError> {
        Ok(self
            .series(db, q)
            .await?
            .iter()
            .flat_map(|s| &s.values)
            .filter_map(|row| row.get(i).and_then(Value::as_str).map(str::to_owned))
            .collect())
    }

    fn unreachable(&self, error: impl std::fmt::Display) -> InfluxError {
        InfluxError::Unreachable {
            node: self.url.clone(),
            message: error.to_string(),
        }
    }

    fn shape(&self, q: &str) -> InfluxError {
        InfluxError::Statement {
            node: self.url.clone(),
            statement: q.to_owned(),
            message: "answer not in the expected shape".to_owned(),
        }
    }
}

/// A chunk's points, read from a chunked answer one series part at a time.
pub struct ChunkReader {
    /// Longest wait for the next bytes of the answer.
    idle: Duration,
    node: String,
    statement: String,
    response: awc::ClientResponse,
    buffer: BytesMut,
    pending: Vec<SeriesPart>,
    done: bool,
}

impl ChunkReader {
    /// The next series part, or `None` at the end of the answer.
    pub async fn next(&mut self) -> Result<Option<SeriesPart>, InfluxError> {
        loop {
            if let Some(part) = self.pending.pop() {
                return Ok(Some(part));
            }
            if let Some(end) = memchr::memchr(b'\n', &self.buffer) {
                let line = self.buffer.split_to(end + 1);
                self.parse(&line[..end])?;
                continue;
            }
            if self.done {
                let rest = std::mem::take(&mut self.buffer);
                if rest.iter().all(u8::is_ascii_whitespace) {
                    return Ok(None);
                }
                self.parse(&rest)?;
                continue;
            }
            let next = tokio::time::timeout(self.idle, self.response.next()).await;
            match next {
                Ok(Some(Ok(bytes))) => self.buffer.extend_from_slice(bytes.chunk()),
                Ok(Some(Err(e))) => {
                    return Err(InfluxError::Unreachable {
                        node: self.node.clone(),
                        message: format!("answer broke off: {e}"),
                    })
                }
                Ok(None) => self.done = true,
                Err(_) => {
                    return Err(InfluxError::Unreachable {
                        node: self.node.clone(),
                        message: format!(
                            "answer stalled for {}",
                            crate::units::format_duration(self.idle)
                        ),
                    })
                }
            }
        }
    }

    fn parse(&mut self, line: &[u8]) -> Result<(), InfluxError> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let statement_error = |message: String| InfluxError::Statement {
            node: self.node.clone(),
            statement: self.statement.clone(),
            message,
        };
        let answer: Answer = serde_json::from_slice(line)
            .map_err(|e| statement_error(format!("unreadable answer: {e}")))?;
        if let Some(message) = answer
            .error
            .or_else(|| answer.results.iter().find_map(|r| r.error.clone()))
        {
            return Err(statement_error(message));
        }
        // Popped from the back: reversed so that parts come out in the node's order.
        self.pending = answer.results.into_iter().flat_map(|r| r.series).collect();
        self.pending.reverse();
        Ok(())
    }
}

/// A series key as `SHOW SERIES` writes it (`m,k=v,...`, line protocol's escaping) split into
/// its measurement and tags, unescaped; `None` when it is not one.
pub fn parse_series_key(key: &str) -> Option<(String, Vec<(String, String)>)> {
    let mut parts = split_commas(key).into_iter();
    let measurement = unescape(&parts.next()?);
    let mut tags = Vec::new();
    for part in parts {
        let mut kv = split_unescaped_once(&part, '=');
        let value = kv.pop()?;
        let key = kv.pop()?;
        tags.push((key, value));
    }
    Some((measurement, tags))
}

/// `text` cut at every comma not escaped by a backslash, escapes kept.
fn split_commas(text: &str) -> Vec<String> {
    let mut pieces = vec![String::new()];
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ',' {
            pieces.push(String::new());
            continue;
        }
        let Some(piece) = pieces.last_mut() else {
            continue;
        };
        piece.push(c);
        if c == '\\' && matches!(chars.peek(), Some(',' | '=' | ' ')) {
            if let Some(escaped) = chars.next() {
                piece.push(escaped);
            }
        }
    }
    pieces
}

/// `text` cut at its first `sep` not escaped, both sides unescaped; one piece when there is none.
fn split_unescaped_once(text: &str, sep: char) -> Vec<String> {
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            c if c == sep && !escaped => {
                return vec![unescape(&text[..i]), unescape(&text[i + 1..])];
            }
            _ => escaped = false,
        }
    }
    vec![unescape(text)]
}

fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' && matches!(chars.peek(), Some(',' | '=' | ' ')) {
            continue;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_keys_are_split_and_unescaped() {
        assert_eq!(
            parse_series_key(r"m\ x,a=1\,y,b\=c=q\ r,d=e\f"),
            Some((
                "m x".to_owned(),
                vec![
                    ("a".to_owned(), "1,y".to_owned()),
                    ("b=c".to_owned(), "q r".to_owned()),
                    ("d".to_owned(), r"e\f".to_owned()),
                ]
            ))
        );
        assert_eq!(parse_series_key("m"), Some(("m".to_owned(), vec![])));
        assert_eq!(parse_series_key("m,novalue"), None);
    }
}
