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

mod credentials;
mod policy;
mod users;

pub use self::{
    credentials::{basic, credentials, v2_token_to_basic, without_credentials, Credentials},
    policy::User,
    users::{check_hashes, hash_password, Users},
};

// Here rather than in one step's module: reading credentials, checking the password and checking
// the rights all refuse with it.

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AuthConfig;

    // `pub(super)`: both the password checks and the rights are tested on configured users.

    /// The users of an `auth` section, checked as a configuration load checks them.
    pub(super) fn users(yaml: &str) -> Users {
        let config: AuthConfig = serde_yaml::from_str(yaml).unwrap();
        config.validate().unwrap();
        check_hashes(&config).unwrap();
        Users::new(&config).unwrap()
    }
}
