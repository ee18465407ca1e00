//! `auth:` — the gateway's own users, as the YAML gives them. Whether a `password_hash` is one the
//! gateway can verify is checked where hashes are understood (`auth::Users`).

use std::collections::HashSet;

use serde::Deserialize;

use super::ConfigError;

/// `auth:` — the gateway's own users.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Whether the gateway checks credentials itself (otherwise they pass through).
    pub enabled: bool,
    /// The users, when enabled.
    pub users: Vec<UserConfig>,
    /// What the gateway sends to the nodes when enabled (nothing if absent).
    pub node_credentials: Option<NodeCredentials>,
}

/// `auth.users[]`: one user.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// The user name, as sent in `u` or `Authorization`.
    pub name: String,
    /// A bcrypt (`$2b$…`) or argon2 (`$argon2id$…`) hash, e.g. from `influx-gateway hash-password`.
    pub password_hash: String,
    /// May do anything, like an InfluxDB admin.
    #[serde(default)]
    pub admin: bool,
    /// Databases the user may read (`*`: all).
    #[serde(default)]
    pub read: Vec<String>,
    /// Databases the user may write to, and delete from (`*`: all).
    #[serde(default)]
    pub write: Vec<String>,
}

/// `auth.node_credentials`: the InfluxDB user the gateway acts as on the nodes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeCredentials {
    /// User name on every node.
    pub username: String,
    /// Its password (the nodes need it in clear).
    pub password: String,
}

impl AuthConfig {
    /// Checks that an enabled `auth` has users and that their names are unique and not empty.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.enabled && self.users.is_empty() {
            return Err(ConfigError::invalid(
                "auth.users",
                "auth is enabled but no user is configured: nobody could use the gateway",
            ));
        }
        let mut names = HashSet::new();
        for (i, user) in self.users.iter().enumerate() {
            if user.name.is_empty() {
                return Err(ConfigError::invalid(
                    format!("auth.users[{i}].name"),
                    "must not be empty",
                ));
            }
            if !names.insert(user.name.as_str()) {
                return Err(ConfigError::invalid(
                    format!("auth.users[{i}].name"),
                    format!("{:?} is defined twice", user.name),
                ));
            }
        }
        Ok(())
    }
}
