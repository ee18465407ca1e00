//! Just enough InfluxQL to route a query: a lexer, statement splitting and classification.

pub mod classify;
pub mod condition;
pub mod from;
pub mod into;
pub mod lexer;
pub mod quote;
pub mod select;
pub mod sources;

pub use classify::{classify_query, Statement, StatementKind};
pub use lexer::{LexError, Lexer, Token, TokenKind};
