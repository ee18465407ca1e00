//! What a user may do: write to a database, run the statements of a query.

use super::AuthError;
use crate::{
    config::UserConfig,
    influxql::{
        classify::{Statement, StatementKind},
        sources::{self, Reads},
    },
};

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
    /// The user `config` describes.
    pub(super) fn new(config: &UserConfig) -> Self {
        User {
            name: config.name.clone(),
            password_hash: config.password_hash.clone(),
            admin: config.admin,
            read: config.read.clone(),
            write: config.write.clone(),
        }
    }

    /// The stored hash of the user's password.
    pub(super) fn password_hash(&self) -> &str {
        &self.password_hash
    }

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

#[cfg(test)]
mod tests {
    use crate::{auth::tests::users, influxql::classify::classify_query};

    #[test]
    fn rights_per_database() {
        let hash = bcrypt::hash("x", 4).unwrap();
        let u = users(&format!(
            "enabled: true\nusers:\n  - {{name: grafana, password_hash: '{hash}', read: [app], write: [app]}}\n"
        ));
        let grafana = u.user("grafana").unwrap();
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
