//! Who the client is and what it may do.
//!
//! By default the gateway does not look at credentials: they pass through to the nodes, which
//! decide as InfluxDB does. With `auth.enabled`, the gateway checks them itself against
//! `auth.users` (bcrypt or argon2 hashes, never plain text) before any node is contacted, applies
//! each user's rights per database, and sends the nodes `auth.node_credentials` instead of the
//! client's.
//!
//! Credentials are read as InfluxDB 1.x reads them: `u` and `p` in the URL, else the
//! `Authorization` header (`Basic`, or 1.8's `Token user:password`).

use std::{
    collections::{HashMap, HashSet},
    sync::Mutex,
};

use actix_web::http::header::HeaderValue;
use argon2::{
    password_hash::{
        rand_core::{OsRng, RngCore},
        PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
    },
    Argon2,
};
use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
use sha2::{Digest, Sha256};

use crate::{
    config::{AuthConfig, ConfigError, NodeCredentials},
    influxql::{
        classify::{Statement, StatementKind},
        sources::{self, Reads},
    },
};

/// How many verified (user, password) pairs are remembered, so that a hash is not recomputed for
/// every request (bcrypt and argon2 are slow on purpose).
const VERIFIED_CACHE: usize = 1024;

/// Checks that every `auth.users[].password_hash` is a hash the gateway can verify.
pub fn check_hashes(config: &AuthConfig) -> Result<(), ConfigError> {
    for (i, user) in config.users.iter().enumerate() {
        Hash::parse(&user.password_hash)
            .map_err(|why| ConfigError::invalid(format!("auth.users[{i}].password_hash"), why))?;
    }
    Ok(())
}

/// A stored password hash.
enum Hash<'a> {
    Bcrypt(&'a str),
    Argon2(Box<PasswordHash<'a>>),
}

impl<'a> Hash<'a> {
    fn parse(text: &'a str) -> Result<Self, String> {
        if text.starts_with("$2a$") || text.starts_with("$2b$") || text.starts_with("$2y$") {
            // Checked by verifying against a dummy password: bcrypt has no separate parser.
            return match bcrypt::verify("", text) {
                Ok(_) => Ok(Hash::Bcrypt(text)),
                Err(e) => Err(format!("not a valid bcrypt hash: {e}")),
            };
        }
        if text.starts_with("$argon2") {
            return PasswordHash::new(text)
                .map(|hash| Hash::Argon2(Box::new(hash)))
                .map_err(|e| format!("not a valid argon2 hash: {e}"));
        }
        Err(
            "not a bcrypt ($2b$…) or argon2 ($argon2id$…) hash; passwords are never stored in \
             clear: make one with `influx-gateway hash-password`"
                .to_owned(),
        )
    }

    fn verify(&self, password: &str) -> bool {
        match self {
            Hash::Bcrypt(hash) => bcrypt::verify(password, hash).unwrap_or(false),
            Hash::Argon2(hash) => Argon2::default()
                .verify_password(password.as_bytes(), hash)
                .is_ok(),
        }
    }
}

/// An argon2id hash of `password` with a fresh salt, in the PHC form `auth.users` takes.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| e.to_string())
}

/// What a client presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub user: String,
    /// Password, in clear as sent.
    pub password: String,
}

/// Why a client is refused; the texts are InfluxDB 1.x's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credentials, or none the gateway can read: 401.
    #[error("unable to parse authentication credentials")]
    Missing,
    /// Unknown user or wrong password: 401.
    #[error("authorization failed")]
    Failed,
    /// A known user without the right: 403.
    #[error("{0}")]
    Forbidden(String),
}

/// Reads the credentials of a request as InfluxDB 1.x does: `u` and `p` in the URL's query
/// string first, then the `Authorization` header.
pub fn credentials(
    query_string: &str,
    authorization: Option<&HeaderValue>,
) -> Result<Credentials, AuthError> {
    let mut user = None;
    let mut password = None;
    for (key, value) in url::form_urlencoded::parse(query_string.as_bytes()) {
        match &*key {
            "u" if user.is_none() => user = Some(value.into_owned()),
            "p" if password.is_none() => password = Some(value.into_owned()),
            _ => {}
        }
    }
    if let (Some(user), Some(password)) = (user, password) {
        if !user.is_empty() && !password.is_empty() {
            return Ok(Credentials { user, password });
        }
    }
    let header = authorization
        .and_then(|v| v.to_str().ok())
        .ok_or(AuthError::Missing)?;
    let (scheme, value) = header.trim().split_once(' ').ok_or(AuthError::Missing)?;
    let pair = if scheme.eq_ignore_ascii_case("basic") {
        let decoded = BASE64
            .decode(value.trim())
            .map_err(|_| AuthError::Missing)?;
        String::from_utf8(decoded).map_err(|_| AuthError::Missing)?
    } else if scheme.eq_ignore_ascii_case("token") {
        value.trim().to_owned()
    } else {
        return Err(AuthError::Missing);
    };
    let (user, password) = pair.split_once(':').ok_or(AuthError::Missing)?;
    Ok(Credentials {
        user: user.to_owned(),
        password: password.to_owned(),
    })
}

/// Turns InfluxDB 1.8's `Token user:password` into `Basic`, which every 1.x node reads. Other
/// schemes pass unchanged; a token without `:` (a 2.x API token) carries no 1.x credentials, so
/// none are passed on.
pub fn v2_token_to_basic(value: &HeaderValue) -> Result<Option<HeaderValue>, String> {
    let text = value
        .to_str()
        .map_err(|_| "the Authorization header is not text".to_owned())?;
    let Some((scheme, token)) = text.trim().split_once(' ') else {
        return Ok(Some(value.clone()));
    };
    if !scheme.eq_ignore_ascii_case("token") {
        return Ok(Some(value.clone()));
    }
    if !token.contains(':') {
        return Ok(None);
    }
    let basic = format!("Basic {}", BASE64.encode(token.trim()));
    HeaderValue::from_str(&basic)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// `query_string` without its `u` and `p` parameters (keys compared decoded, so that `%75=` is
/// a `u` too); everything else is kept as written.
pub fn without_credentials(query_string: &str) -> String {
    query_string
        .split('&')
        .filter(|pair| {
            let key = pair.split('=').next().unwrap_or_default();
            let key: String = url::form_urlencoded::parse(key.as_bytes())
                .map(|(k, _)| k.into_owned())
                .collect();
            key != "u" && key != "p"
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// The `Authorization` header for `auth.node_credentials`.
pub fn basic(credentials: &NodeCredentials) -> Option<HeaderValue> {
    let pair = format!("{}:{}", credentials.username, credentials.password);
    HeaderValue::from_str(&format!("Basic {}", BASE64.encode(pair))).ok()
}

/// A user, resolved from the configuration.
#[derive(Debug)]
pub struct User {
    name: String,
    password_hash: String,
    admin: bool,
    read: Vec<String>,
    write: Vec<String>,
}

impl User {
    /// The user name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the user may do anything.
    pub fn is_admin(&self) -> bool {
        self.admin
    }

    fn may(list: &[String], db: &str) -> bool {
        list.iter().any(|d| d == "*" || d == db)
    }

    /// Refuses a write to `db` without the right.
    pub fn authorize_write(&self, db: &str) -> Result<(), AuthError> {
        if self.admin || Self::may(&self.write, db) {
            Ok(())
        } else {
            Err(AuthError::Forbidden(format!(
                "user {:?} may not write to database {db:?}",
                self.name
            )))
        }
    }

    /// Refuses a query unless the user may run every one of its statements; `db` is the
    /// request's `db`, which unqualified names read.
    pub fn authorize_query(
        &self,
        statements: &[Statement<'_>],
        db: Option<&str>,
    ) -> Result<(), AuthError> {
        if self.admin {
            return Ok(());
        }
        for statement in statements {
            self.authorize_statement(statement, db)?;
        }
        Ok(())
    }

    fn authorize_statement(
        &self,
        statement: &Statement<'_>,
        db: Option<&str>,
    ) -> Result<(), AuthError> {
        let text = statement_text(statement);
        let refuse = |why: String| {
            AuthError::Forbidden(format!("user {:?} may not run {text:?}: {why}", self.name))
        };
        match statement.kind {
            StatementKind::Read => {
                let databases = match sources::reads(statement) {
                    // Database names and retention policies are visible to every user, as the
                    // nodes' SHOW DATABASES would be without gateway users.
                    Reads::Schema { merge: true } => return Ok(()),
                    Reads::Schema { merge: false } => {
                        return Err(refuse("only admins may list users and grants".into()))
                    }
                    Reads::Sources { on, sources, .. } => sources
                        .into_iter()
                        .map(|s| s.db.or_else(|| on.clone()))
                        .collect(),
                    Reads::Everything { on } => vec![on],
                };
                for database in databases {
                    let database = database.as_deref().or(db).unwrap_or_default();
                    if !Self::may(&self.read, database) {
                        return Err(refuse(format!("no read right on database {database:?}")));
                    }
                }
                Ok(())
            }
            StatementKind::Mutation if deletes_data(statement) => {
                let database = sources::on_database(&statement.tokens)
                    .or_else(|| db.map(str::to_owned))
                    .unwrap_or_default();
                if Self::may(&self.write, &database) {
                    Ok(())
                } else {
                    Err(refuse(format!("no write right on database {database:?}")))
                }
            }
            StatementKind::Mutation | StatementKind::NodeLocal | StatementKind::Unknown => {
                Err(refuse("only admins may run it".into()))
            }
        }
    }
}

/// `DELETE`, `DROP SERIES` and `DROP MEASUREMENT` remove data from one database: InfluxDB lets
/// users with the write right on it run them.
fn deletes_data(statement: &Statement<'_>) -> bool {
    let word = |i: usize| statement.tokens.get(i);
    let is = |i: usize, k: &str| word(i).is_some_and(|t| t.is_keyword(k));
    is(0, "DELETE") || (is(0, "DROP") && (is(1, "SERIES") || is(1, "MEASUREMENT")))
}

fn statement_text(statement: &Statement<'_>) -> String {
    statement
        .tokens
        .iter()
        .map(|t| t.text)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The configured users, with a cache of verified passwords.
#[derive(Debug)]
pub struct Users {
    users: HashMap<String, User>,
    /// Digests of (secret, user, password) already verified.
    verified: Mutex<HashSet<[u8; 32]>>,
    /// A random secret, so that the cache's digests say nothing about passwords.
    secret: [u8; 32],
}

impl Users {
    /// The users of a validated `auth` section; fails only if the OS has no random source.
    pub fn new(config: &AuthConfig) -> Result<Self, String> {
        let users = config
            .users
            .iter()
            .map(|u| {
                let user = User {
                    name: u.name.clone(),
                    password_hash: u.password_hash.clone(),
                    admin: u.admin,
                    read: u.read.clone(),
                    write: u.write.clone(),
                };
                (u.name.clone(), user)
            })
            .collect();
        // From the OS: a seeded PRNG's output could be replayed, and with it the cache's digests
        // tried against guessed passwords.
        let mut secret = [0u8; 32];
        OsRng
            .try_fill_bytes(&mut secret)
            .map_err(|e| format!("no random source for the password cache: {e}"))?;
        Ok(Users {
            users,
            verified: Mutex::new(HashSet::new()),
            secret,
        })
    }

    /// The user `credentials` name if that pair was verified already; never hashes, so it may run
    /// on the event loop.
    pub fn verified(&self, credentials: &Credentials) -> Option<&User> {
        self.users
            .get(&credentials.user)
            .filter(|_| self.lock().contains(&self.digest(credentials)))
    }

    /// The user called `name`, whatever the password: for a caller that has just verified it.
    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    fn digest(&self, credentials: &Credentials) -> [u8; 32] {
        Sha256::new()
            .chain_update(self.secret)
            .chain_update(credentials.user.as_bytes())
            .chain_update([0])
            .chain_update(credentials.password.as_bytes())
            .finalize()
            .into()
    }

    /// The user `credentials` name, if the password is right. May take tens of milliseconds the
    /// first time a pair is seen: call it off the event loop.
    pub fn authenticate(&self, credentials: &Credentials) -> Result<&User, AuthError> {
        let user = self.users.get(&credentials.user).ok_or(AuthError::Failed)?;
        let digest = self.digest(credentials);
        if self.lock().contains(&digest) {
            return Ok(user);
        }
        let verified = Hash::parse(&user.password_hash)
            .map(|hash| hash.verify(&credentials.password))
            .unwrap_or(false);
        if !verified {
            return Err(AuthError::Failed);
        }
        let mut cache = self.lock();
        if cache.len() >= VERIFIED_CACHE {
            cache.clear();
        }
        cache.insert(digest);
        Ok(user)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<[u8; 32]>> {
        // The set holds no invariant a panic could break.
        self.verified.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::influxql::classify::classify_query;

    fn users(yaml: &str) -> Users {
        let config: AuthConfig = serde_yaml::from_str(yaml).unwrap();
        config.validate().unwrap();
        check_hashes(&config).unwrap();
        Users::new(&config).unwrap()
    }

    fn header(v: &str) -> HeaderValue {
        HeaderValue::from_str(v).unwrap()
    }

    #[test]
    fn credentials_are_read_as_influxdb_reads_them() {
        let alice = Credentials {
            user: "alice".into(),
            password: "s3cret".into(),
        };
        assert_eq!(
            credentials("db=x&u=alice&p=s3cret", None),
            Ok(alice.clone())
        );
        let basic = header(&format!("Basic {}", BASE64.encode("alice:s3cret")));
        assert_eq!(credentials("db=x", Some(&basic)), Ok(alice.clone()));
        assert_eq!(
            credentials("", Some(&header("Token alice:s3cret"))),
            Ok(alice.clone())
        );
        // The URL wins over the header, as in InfluxDB.
        assert_eq!(
            credentials("u=alice&p=s3cret", Some(&header("Token bob:x"))),
            Ok(alice)
        );
        assert_eq!(credentials("db=x", None), Err(AuthError::Missing));
        assert_eq!(
            credentials("", Some(&header("Bearer abc"))),
            Err(AuthError::Missing)
        );
        assert_eq!(
            credentials("", Some(&header("Basic !!!"))),
            Err(AuthError::Missing)
        );
    }

    #[test]
    fn credentials_are_taken_out_of_what_the_nodes_get() {
        assert_eq!(
            without_credentials("db=x&u=alice&q=SELECT+1&p=pw&%75=bob&pretty=true"),
            "db=x&q=SELECT+1&pretty=true"
        );
        assert_eq!(without_credentials("q=u%3Dx"), "q=u%3Dx");
    }

    #[test]
    fn a_v2_token_becomes_basic() {
        let basic = v2_token_to_basic(&header("Token alice:s3cret"))
            .unwrap()
            .unwrap();
        assert_eq!(
            basic.to_str().unwrap(),
            format!("Basic {}", BASE64.encode("alice:s3cret"))
        );
        assert_eq!(
            v2_token_to_basic(&header("Token my-api-token")).unwrap(),
            None
        );
        let other = header("Basic xyz");
        assert_eq!(v2_token_to_basic(&other).unwrap(), Some(other));
    }

    #[test]
    fn both_hash_kinds_verify_and_plain_text_is_refused() {
        let argon = hash_password("pw-a").unwrap();
        let bcrypt = bcrypt::hash("pw-b", 4).unwrap();
        let u = users(&format!(
            "enabled: true\nusers:\n  - {{name: a, password_hash: '{argon}', admin: true}}\n  - {{name: b, password_hash: '{bcrypt}'}}\n"
        ));
        let try_ = |user: &str, password: &str| {
            u.authenticate(&Credentials {
                user: user.into(),
                password: password.into(),
            })
            .map(|u| u.name().to_owned())
        };
        assert_eq!(try_("a", "pw-a"), Ok("a".into()));
        assert_eq!(try_("a", "pw-a"), Ok("a".into())); // from the cache
        assert_eq!(try_("a", "pw-b"), Err(AuthError::Failed));
        assert_eq!(try_("b", "pw-b"), Ok("b".into()));
        assert_eq!(try_("nobody", "pw-b"), Err(AuthError::Failed));

        let plain: AuthConfig =
            serde_yaml::from_str("enabled: true\nusers: [{name: a, password_hash: hunter2}]")
                .unwrap();
        let err = check_hashes(&plain).unwrap_err().to_string();
        assert!(
            err.starts_with("auth.users[0].password_hash: not a bcrypt"),
            "{err}"
        );
    }

    #[test]
    fn the_cache_secret_comes_from_the_os_not_a_seeded_generator() {
        let config: AuthConfig = serde_yaml::from_str("enabled: false").unwrap();
        fastrand::seed(7);
        let first = Users::new(&config).unwrap();
        fastrand::seed(7);
        let second = Users::new(&config).unwrap();
        assert_ne!(first.secret, second.secret);
        assert_ne!(first.secret, [0; 32]);
    }

    #[test]
    fn rights_per_database() {
        let hash = bcrypt::hash("x", 4).unwrap();
        let u = users(&format!(
            "enabled: true\nusers:\n  - {{name: grafana, password_hash: '{hash}', read: [app], write: [app]}}\n"
        ));
        let grafana = &u.users["grafana"];
        let check = |q: &str, db: Option<&str>| {
            grafana
                .authorize_query(&classify_query(q).unwrap(), db)
                .is_ok()
        };
        assert!(check("SELECT * FROM cpu", Some("app")));
        assert!(check("SELECT * FROM app.autogen.cpu", None));
        assert!(!check("SELECT * FROM cpu", Some("other")));
        assert!(!check(
            "SELECT * FROM cpu; SELECT * FROM other..cpu",
            Some("app")
        ));
        assert!(!check(
            "SELECT * FROM (SELECT v FROM other..cpu)",
            Some("app")
        ));
        assert!(check("SHOW MEASUREMENTS ON app", None));
        assert!(!check("SHOW MEASUREMENTS ON other", Some("app")));
        assert!(check("SHOW DATABASES", None));
        assert!(!check("SHOW USERS", None));
        assert!(check("DROP MEASUREMENT cpu", Some("app")));
        assert!(check("DELETE FROM cpu WHERE time < now()", Some("app")));
        assert!(!check("DROP MEASUREMENT cpu", Some("other")));
        assert!(!check("CREATE DATABASE x", None));
        assert!(!check("SHOW QUERIES", None));
        assert!(!check("SELECT * INTO other..cpu FROM cpu", Some("app")));
        assert!(grafana.authorize_write("app").is_ok());
        assert!(grafana.authorize_write("other").is_err());
    }
}
