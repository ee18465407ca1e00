//! The configured users: their password hashes, checked at load and verified at login, with
//! a cache of the logins already verified.

use std::{
    collections::{HashMap, HashSet},
    sync::Mutex,
};

use argon2::{
    password_hash::{
        rand_core::{OsRng, RngCore},
        PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
    },
    Argon2,
};
use sha2::{Digest, Sha256};

use super::{AuthError, Credentials, User};
use crate::config::{AuthConfig, ConfigError};

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
            .map(|u| (u.name.clone(), User::new(u)))
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
        let verified = Hash::parse(user.password_hash())
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
    use crate::auth::tests::users;

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
}
