//! Request decoding with AWS-style errors. axum's own extractors answer
//! rejections in plain text; the API reads the raw body itself and maps each
//! failure to an [`Fault`] with a JSON body instead.

use crate::api::error::{codes, Fault};
use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

/// Largest accepted request body. The biggest legitimate request (a describe
/// with many ids and filters) is a few KiB.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Header naming the region an action is called in.
pub const REGION_HEADER: &str = "x-peering-region";

/// Reads the whole body, refusing more than [`MAX_BODY_BYTES`]. `to_bytes`
/// fails on the length limit or on a broken stream; in the latter case the
/// client is gone and never sees the answer, so every failure is reported as
/// the limit.
pub async fn read_body(body: Body) -> Result<axum::body::Bytes, Fault> {
    axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            Fault::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                codes::TOO_LARGE,
                format!("The request body exceeds {MAX_BODY_BYTES} bytes"),
            )
        })
}

/// Decodes an action's parameters. An empty body means "no parameters"
/// (`{}`). The body must be a JSON object; unknown fields, missing required
/// fields and wrongly typed values each get their own code.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Fault> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        Fault::bad_request(
            codes::MALFORMED_JSON,
            format!("The request body is not valid JSON: {e}"),
        )
    })?;
    if !value.is_object() {
        return Err(Fault::bad_request(
            codes::MALFORMED_JSON,
            "The request body must be a JSON object",
        ));
    }
    serde_json::from_value(value).map_err(|e| {
        let msg = e.to_string();
        let code = if msg.starts_with("unknown field") {
            codes::UNKNOWN_PARAMETER
        } else if msg.starts_with("missing field") {
            codes::MISSING_PARAMETER
        } else {
            codes::INVALID_PARAMETER_VALUE
        };
        Fault::bad_request(code, format!("Invalid request parameters: {msg}"))
    })
}

/// The region of the call, from the `X-Peering-Region` header. Required for
/// every action: the model checks it against the configured regions.
pub fn region(headers: &HeaderMap) -> Result<String, Fault> {
    let value = headers.get(REGION_HEADER).ok_or_else(|| {
        Fault::bad_request(
            codes::MISSING_PARAMETER,
            "The X-Peering-Region header is required",
        )
    })?;
    let region = value.to_str().map_err(|_| {
        Fault::bad_request(
            codes::INVALID_PARAMETER_VALUE,
            "The X-Peering-Region header is not valid text",
        )
    })?;
    if region.is_empty() {
        return Err(Fault::bad_request(
            codes::MISSING_PARAMETER,
            "The X-Peering-Region header is empty",
        ));
    }
    Ok(region.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::types::CreateVpcRequest;

    fn code(r: Result<CreateVpcRequest, Fault>) -> String {
        r.unwrap_err().code
    }

    #[test]
    fn decode_errors_are_classified() {
        assert_eq!(
            decode::<CreateVpcRequest>(br#"{"CidrBlock":"10.0.0.0/16"}"#)
                .unwrap()
                .cidr_block,
            "10.0.0.0/16"
        );
        assert_eq!(code(decode(b"{")), codes::MALFORMED_JSON);
        assert_eq!(code(decode(b"[1]")), codes::MALFORMED_JSON);
        assert_eq!(code(decode(b"")), codes::MISSING_PARAMETER);
        assert_eq!(code(decode(br#"{"CidrBlock":5}"#)), "InvalidParameterValue");
        assert_eq!(
            code(decode(br#"{"CidrBlock":"x","Bogus":1}"#)),
            codes::UNKNOWN_PARAMETER
        );
    }
}
