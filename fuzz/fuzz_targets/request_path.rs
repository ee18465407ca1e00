//! Any request through the parsers it meets on its way: the query string, credentials, gzip, the
//! statement filter, the planner, rights checks and the line-protocol router. No panic, and a
//! gzip body never inflates past the limit.
#![no_main]

use std::sync::OnceLock;

use actix_web::http::header::HeaderValue;
use bytes::Bytes;
use influx_gateway::{
    auth::{self, Users},
    blueprint::Blueprint,
    http::gunzip,
    influxql::{classify::classify_query, select, sources},
    query::{self, deny, ClientParams, QueryText},
};
use libfuzzer_sys::fuzz_target;

mod common;

/// Inflated bodies are capped here, as `write.max_body_size` caps them in the gateway.
const LIMIT: usize = 1 << 20;

fn config() -> &'static Blueprint {
    static CONFIG: OnceLock<Blueprint> = OnceLock::new();
    CONFIG.get_or_init(|| {
        common::blueprint(
            "routes:
  - {measurement: cpu, shard: s1}
  - {measurement_prefix: h, by_tag: customer_id}
auth:
  enabled: true
  users:
    - {name: u, password_hash: \"$2b$04$mZMAWz2g7HyvuXdl1lEgmOINAkxIf6L3HQOC2QUIviHUarxJS1DVa\", read: [db], write: [db]}
",
        )
    })
}

fn users() -> &'static Users {
    static USERS: OnceLock<Users> = OnceLock::new();
    USERS.get_or_init(|| Users::new(&config().config.auth).expect("random source"))
}

fuzz_target!(|data: &[u8]| {
    // Fields separated by 0xff: query string, Authorization header, body; the first byte's low
    // bit says whether the body is gzip.
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut fields = rest.splitn(3, |&b| b == 0xff);
    let query_string = String::from_utf8_lossy(fields.next().unwrap_or_default());
    let authorization = fields.next().and_then(|h| HeaderValue::from_bytes(h).ok());
    let raw_body = fields.next().unwrap_or_default();

    let _ = auth::credentials(&query_string, authorization.as_ref());
    if let Some(header) = &authorization {
        let _ = auth::v2_token_to_basic(header);
    }

    let body = if flags & 1 == 1 {
        match gunzip(raw_body, LIMIT) {
            Ok(inflated) => {
                assert!(inflated.len() <= LIMIT);
                inflated
            }
            Err(_) => return,
        }
    } else {
        Bytes::copy_from_slice(raw_body)
    };
    let form = (flags & 2 == 2).then_some(&body[..]);
    let params = ClientParams::new(&query_string, form, None);
    drop(params);

    let value = |name: &str| {
        url::form_urlencoded::parse(query_string.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    let db = value("db");
    if let Some(q) = value("q") {
        let q = QueryText::Found(q);
        let _ = deny::check(&deny::default_rules(), &query::Classified::of(&q));
        let _ = query::plan(query::Classified::of(&q), &config().router, db.as_deref());
        if let QueryText::Found(text) = &q {
            if let Ok(statements) = classify_query(text) {
                for statement in &statements {
                    let _ = select::shape(statement);
                    let _ = sources::reads(statement);
                }
                // A non-admin user (password "pw"), whose rights depend on every statement.
                let user = users()
                    .authenticate(&auth::Credentials {
                        user: "u".into(),
                        password: "pw".into(),
                    })
                    .expect("the fuzz user's password");
                let _ = user.authorize_query(&statements, db.as_deref());
            }
        }
    }

    let routed = config().router.route(db.as_deref().unwrap_or("db"), &body, None);
    drop(routed);
});
