//! Names and values written into InfluxQL the gateway sends.

/// An InfluxQL identifier, quoted.
pub fn ident(name: &str) -> String {
    let mut quoted = String::with_capacity(name.len() + 2);
    quoted.push('"');
    for c in name.chars() {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

/// An InfluxQL string literal.
pub fn literal(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('\'');
    for c in value.chars() {
        if c == '\'' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('\'');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_strings_are_quoted_and_escaped() {
        assert_eq!(ident("cpu"), "\"cpu\"");
        assert_eq!(ident("a \"b\"\\c"), "\"a \\\"b\\\"\\\\c\"");
        assert_eq!(literal("it's a \\ b"), r"'it\'s a \\ b'");
    }
}
