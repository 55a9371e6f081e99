//! Bearer-token authentication. Tokens are issued by
//! `peering-controld create-account` and stored hashed; a request's token
//! names its account. Tokens are never logged.

use crate::api::error::{codes, Fault};
use axum::http::{header, HeaderMap, StatusCode};

/// The token of `Authorization: Bearer <token>`.
pub fn bearer(headers: &HeaderMap) -> Result<String, Fault> {
    let value = headers.get(header::AUTHORIZATION).ok_or_else(|| {
        Fault::new(
            StatusCode::UNAUTHORIZED,
            codes::MISSING_AUTH,
            "Request is missing an Authorization: Bearer token",
        )
    })?;
    let bad = || {
        Fault::new(
            StatusCode::UNAUTHORIZED,
            codes::AUTH_FAILURE,
            "The Authorization header must be 'Bearer <token>'",
        )
    };
    let value = value.to_str().map_err(|_| bad())?;
    let (scheme, token) = value.split_once(' ').ok_or_else(bad)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(bad());
    }
    Ok(token.to_owned())
}

/// The answer to a token that belongs to no account.
pub fn auth_failure() -> Fault {
    Fault::new(
        StatusCode::UNAUTHORIZED,
        codes::AUTH_FAILURE,
        "The token is not valid",
    )
}

/// Compares two secrets in time independent of where they first differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn parses_bearer() {
        assert_eq!(bearer(&with("Bearer abc")).unwrap(), "abc");
        assert_eq!(bearer(&with("bearer  abc ")).unwrap(), "abc");
        assert_eq!(
            bearer(&HeaderMap::new()).unwrap_err().code,
            codes::MISSING_AUTH
        );
        for bad in ["Basic abc", "Bearer", "Bearer ", "abc"] {
            assert_eq!(bearer(&with(bad)).unwrap_err().code, codes::AUTH_FAILURE);
        }
        assert!(constant_time_eq(b"ab", b"ab"));
        assert!(!constant_time_eq(b"ab", b"ac"));
        assert!(!constant_time_eq(b"ab", b"abc"));
    }
}
