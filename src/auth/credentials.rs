//! Reading the credentials of a request as InfluxDB 1.x does, and writing the ones the nodes get.

use actix_web::http::header::HeaderValue;
use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};

use super::AuthError;
use crate::config::NodeCredentials;

/// What a client presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub user: String,
    /// Password, in clear as sent.
    pub password: String,
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
