//! Chooses between sending a query to one node and sending it to every node.
//!
//! The rule when in doubt is to broadcast: a read sent to every node costs a little work and
//! still gets one node's answer, while a mutation sent to one node leaves the replicas different.

use crate::influxql::{classify_query, StatementKind};

/// Where a query goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Reads only: one healthy node answers, with fallback to the next.
    Read,
    /// Every node applies the whole query, in order with the writes it receives.
    Broadcast {
        /// How many statements the query has (1 when they could not be counted).
        statements: usize,
    },
}

/// The `q` of a request, as far as the gateway could find it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryText {
    /// The request has this `q`.
    Found(String),
    /// The request has no `q`: the node will say so.
    Absent,
    /// The request carries a body the gateway does not decode (multipart, say): `q` may be in it.
    Unknown,
}

/// Plans a query.
///
/// Broadcast: any mutation; any statement the classifier does not know; a query that does not lex
/// (the gateway's lexer must never be the reason a mutation reaches one node only); a `q` that
/// could not be found.
pub fn plan(q: &QueryText) -> Plan {
    let q = match q {
        QueryText::Found(q) => q,
        QueryText::Absent => return Plan::Read,
        QueryText::Unknown => return Plan::Broadcast { statements: 1 },
    };
    match classify_query(q) {
        Ok(statements)
            if statements
                .iter()
                .all(|s| matches!(s.kind, StatementKind::Read | StatementKind::NodeLocal)) =>
        {
            Plan::Read
        }
        Ok(statements) => Plan::Broadcast {
            statements: statements.len().max(1),
        },
        Err(_) => Plan::Broadcast { statements: 1 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(q: &str) -> Plan {
        plan(&QueryText::Found(q.to_owned()))
    }

    #[test]
    fn reads_go_to_one_node() {
        assert_eq!(plan_of("SELECT * FROM cpu"), Plan::Read);
        assert_eq!(plan_of("SHOW DATABASES; SHOW QUERIES"), Plan::Read);
        assert_eq!(plan_of(""), Plan::Read);
        assert_eq!(plan(&QueryText::Absent), Plan::Read);
    }

    #[test]
    fn mutations_and_doubt_go_everywhere() {
        assert_eq!(
            plan_of("SELECT * FROM cpu; CREATE DATABASE x"),
            Plan::Broadcast { statements: 2 }
        );
        assert_eq!(
            plan_of("create database x"),
            Plan::Broadcast { statements: 1 }
        );
        assert_eq!(
            plan_of("CREATE DATABASE 'x"),
            Plan::Broadcast { statements: 1 }
        );
        assert_eq!(
            plan_of("SELEC 1; DROP DATABASE x"),
            Plan::Broadcast { statements: 2 }
        );
        assert_eq!(plan(&QueryText::Unknown), Plan::Broadcast { statements: 1 });
    }

    #[test]
    fn a_cast_before_a_division_does_not_hide_a_mutation() {
        assert_eq!(
            plan_of("SELECT v::field / 2 FROM cpu; DROP DATABASE w1"),
            Plan::Broadcast { statements: 2 }
        );
        assert_eq!(
            plan_of("SELECT v::tag / 2 FROM cpu; DROP DATABASE w1 /"),
            Plan::Broadcast { statements: 2 }
        );
    }
}
