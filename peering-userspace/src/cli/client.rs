//! The HTTP side of `peerctl`: one blocking POST per command.

use crate::api::types::ErrorResponse;
use crate::cli::args::Request;
use crate::https::Timeouts;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// How long one call may take end to end.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// Why a call did not succeed.
#[derive(Debug)]
pub enum CallError {
    /// The service answered with an AWS-style error.
    Service {
        status: u16,
        code: String,
        message: String,
    },
    /// No usable answer: connection failure, timeout, or a body that is not
    /// the API's.
    Transport(String),
}

/// How long establishing a connection (TCP and TLS) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends `req` to `endpoint` (certificate verified against `ca_file`) and
/// returns the JSON answer.
pub fn call(
    endpoint: &str,
    ca_file: Option<&Path>,
    token: &str,
    region: Option<&str>,
    req: &Request,
) -> Result<Value, CallError> {
    let agent = crate::https::agent(
        ca_file,
        Timeouts {
            connect: CONNECT_TIMEOUT,
            global: Some(TIMEOUT),
        },
    )
    .map_err(|e| CallError::Transport(format!("{e:#}")))?;
    let url = format!("{endpoint}/v1/{}", req.action);
    let mut builder = agent
        .post(&url)
        .header("Authorization", format!("Bearer {token}"))
        .header("Accept", "application/json");
    if let Some(region) = region {
        builder = builder.header("X-Peering-Region", region);
    }
    let body = serde_json::to_string(&req.body).map_err(|e| CallError::Transport(e.to_string()))?;
    let mut resp = builder
        .content_type("application/json")
        .send(body)
        .map_err(|e| {
            CallError::Transport(format!(
                "Could not connect to the endpoint URL: \"{url}\" ({})",
                crate::https::describe(endpoint, ca_file, &e)
            ))
        })?;
    let status = resp.status().as_u16();
    let text = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| CallError::Transport(format!("reading the response from {url}: {e}")))?;
    if (200..300).contains(&status) {
        return serde_json::from_str(&text).map_err(|e| {
            CallError::Transport(format!("the response from {url} is not JSON: {e}"))
        });
    }
    match serde_json::from_str::<ErrorResponse>(&text) {
        Ok(e) => Err(CallError::Service {
            status,
            code: e.error.code,
            message: e.error.message,
        }),
        Err(_) => Err(CallError::Transport(format!(
            "unexpected HTTP {status} from {url}: {}",
            text.chars().take(200).collect::<String>()
        ))),
    }
}
