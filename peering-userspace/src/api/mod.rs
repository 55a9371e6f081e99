//! The HTTP/JSON API of `peering-controld`: a thin adapter over
//! [`crate::control`].
//!
//! Conventions:
//! - `POST /v1/{Action}` with a JSON object body (EC2 parameter names, e.g.
//!   `POST /v1/CreateVpc {"CidrBlock":"10.1.0.0/16"}`); an empty body is `{}`.
//!   Answers are EC2-shaped JSON: `{"Vpc":{...}}`, `{"VpcPeeringConnections":
//!   [...]}`, `{"Return":true}`. See [`actions::ACTIONS`] and [`types`].
//! - `Authorization: Bearer <token>` on every action; the token names the
//!   calling account (401 `MissingAuthenticationToken` / `AuthFailure`).
//! - `X-Peering-Region: <region>` names the region the call is made in. It
//!   is required for every action except `DescribeRegions` and
//!   `GetCallerIdentity` (400 `MissingParameter`); there is no default, so a
//!   misconfigured client cannot act in the wrong region by accident.
//! - Errors: `{"Error":{"Code":"...","Message":"..."}}` with the status from
//!   [`crate::control::ApiError::http_status`]; request-level problems are
//!   400 (`MalformedJson`, `UnknownParameter`, `MissingParameter`,
//!   `InvalidParameterValue`, `InvalidAction`), 413 for bodies over
//!   [`extract::MAX_BODY_BYTES`], 404/405 for other paths and methods.
//! - `GET /v1/healthz`: no authentication.
//! - The gateway API (`/v1/gateway/...`, region views, tunnel keys, the
//!   gateway registry) is in [`gateway`]; it takes gateway credentials only.

pub mod actions;
pub mod auth;
pub mod daemon;
pub mod error;
pub mod extract;
pub mod filters;
pub mod gateway;
pub mod listener;
pub mod sg_actions;
pub mod tls;
pub mod types;

use crate::api::error::{codes, json_response, Fault};
use crate::control::account::Call;
use crate::control::clock::{Clock, SystemClock};
use crate::control::store::Store;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::json;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

/// What the handlers share.
pub struct App<S> {
    pub store: Arc<S>,
    pub clock: Arc<dyn Clock + Send + Sync>,
}

impl<S> App<S> {
    /// An app on the system clock.
    pub fn new(store: Arc<S>) -> Self {
        App {
            store,
            clock: Arc::new(SystemClock),
        }
    }
}

/// The API router over `app`.
pub fn router<S: Store + Send + Sync + 'static>(app: App<S>) -> Router {
    Router::new()
        .route("/v1/healthz", get(healthz))
        .route("/v1/{action}", post(action::<S>))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(Arc::new(app))
}

/// Serves `router` in plain HTTP on `listener` until `shutdown` completes,
/// holding at most [`listener::MAX_CONNECTIONS`] connections at once.
/// Refuses a listener on an address that is not loopback: tokens and
/// tunnel keys cross the network only inside TLS ([`serve_tls`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    if !local.ip().is_loopback() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "plain HTTP on {local} is refused: only loopback addresses may serve without TLS"
            ),
        ));
    }
    let listener = listener::Limited::new(listener, listener::MAX_CONNECTIONS);
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Serves `router` over HTTPS on `listener` until `shutdown` completes,
/// with the same connection limit as [`serve`] (handshakes included; see
/// [`tls`]).
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    config: Arc<rustls::ServerConfig>,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tls::TlsListener::new(listener, config, listener::MAX_CONNECTIONS)?;
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Runs blocking store work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Fault> + Send + 'static,
) -> Result<T, Fault> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(Fault::internal(format!("worker failed: {e}"))))
}

async fn healthz() -> Response {
    json_response(StatusCode::OK, &json!({"Status": "ok"}))
}

async fn not_found() -> Response {
    Fault::new(
        StatusCode::NOT_FOUND,
        codes::NOT_FOUND,
        "No such resource; actions are POST /v1/{Action}",
    )
    .into_response()
}

async fn method_not_allowed() -> Response {
    Fault::new(
        StatusCode::METHOD_NOT_ALLOWED,
        codes::METHOD_NOT_ALLOWED,
        "Method not allowed; actions are POST /v1/{Action}",
    )
    .into_response()
}

async fn action<S: Store + Send + Sync + 'static>(
    State(app): State<Arc<App<S>>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let name = match &path {
        Ok(Path(name)) => name.clone(),
        Err(_) => String::new(),
    };
    let mut account = None;
    let result = run_action(&app, &name, &headers, body, &mut account).await;
    let status = match &result {
        Ok(_) => StatusCode::OK,
        Err(f) => f.status,
    };
    let code = result.as_ref().err().map(|f| f.code.as_str()).unwrap_or("");
    // The action comes from the client: log unknown ones escaped and cut
    // short so they cannot forge log lines.
    let shown = if actions::is_action(&name) {
        name.clone()
    } else {
        format!("{:?}", name.chars().take(64).collect::<String>())
    };
    tracing::info!(
        action = %shown,
        account = account.as_deref().unwrap_or("-"),
        status = status.as_u16(),
        code,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "request"
    );
    match result {
        Ok(value) => json_response(StatusCode::OK, &value),
        Err(f) => f.into_response(),
    }
}

async fn run_action<S: Store + Send + Sync + 'static>(
    app: &Arc<App<S>>,
    name: &str,
    headers: &HeaderMap,
    body: Body,
    account_out: &mut Option<String>,
) -> Result<serde_json::Value, Fault> {
    let token = auth::bearer(headers)?;
    let store = app.store.clone();
    let account = blocking(move || Ok(store.authenticate(&token)?))
        .await?
        .ok_or_else(auth::auth_failure)?;
    *account_out = Some(account.to_string());
    if !actions::is_action(name) {
        return Err(actions::unknown_action(name));
    }
    let region = if actions::REGIONLESS_ACTIONS.contains(&name) {
        extract::region(headers).unwrap_or_default()
    } else {
        extract::region(headers)?
    };
    let bytes = extract::read_body(body).await?;
    let call = Call::at(account, region, app.clock.now());
    let store = app.store.clone();
    let name = name.to_owned();
    blocking(move || actions::execute(&*store, &name, &call, &bytes)).await
}
