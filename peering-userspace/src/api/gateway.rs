//! The gateway API: what remote agents read and write, served from a
//! [`Feed`].
//!
//! - `GET /v1/gateway/sync?since=N&wait=S`: the credential's region view
//!   (a delta from revision N, or the full view when N is absent, newer
//!   than the controller, or compacted), every held tunnel key, the tunnel
//!   settings and the gateway registry. When the controller is still at
//!   revision N, the answer waits for the next revision, up to S seconds
//!   (at most [`wire::MAX_WAIT_SECS`]; 0 or absent: no wait).
//! - `POST /v1/gateway/register {"Endpoint":"198.18.0.1:51900"}`:
//!   registers or renews the region's gateway; answers `{"GatewayId":N}`.
//! - `POST /v1/gateway/rotation-request`: asks for an early key rotation;
//!   answers `{"Return":true}`.
//!
//! Every route takes `Authorization: Bearer <gateway secret>` (a
//! credential from `peering-controld create-gateway`). The region is the
//! credential's, never the request's. An account token is refused with 403
//! `GatewayCredentialRequired`; an unknown or revoked secret with 401
//! `AuthFailure`. In the other direction, [`compose`] makes the account
//! actions refuse a gateway credential with 403 `AccountTokenRequired`.
//!
//! Tunnel keys are in the answers: the daemon only serves this API over
//! TLS, or on a loopback address (see `peering-controld serve`).

pub mod wire;

use crate::api::auth;
use crate::api::blocking;
use crate::api::error::{codes, json_response, Fault};
use crate::api::extract;
use crate::control::clock::unix_ms;
use crate::control::feed::{Feed, GatewayIdentity};
use crate::control::store::{Store, StoreError};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::json;
use std::net::SocketAddrV4;
use std::sync::Arc;
use std::time::Duration;
use wire::{
    RegisterReply, RegisterRequest, SyncReply, ViewUpdate, WireGateway, WireKey, WireSettings,
    MAX_WAIT_SECS, REGISTER_PATH, ROTATION_PATH, SYNC_PATH,
};

/// Longest bearer value looked up. Real secrets are far shorter; anything
/// longer is refused before any store work.
pub const MAX_SECRET_LEN: usize = 256;

/// Tells account tokens apart from unknown secrets, so that the gateway API
/// can say "wrong kind of credential" instead of "invalid credential".
pub trait AccountTokens: Send + Sync + 'static {
    fn is_account_token(&self, token: &str) -> Result<bool, StoreError>;
}

impl<S: Store + Send + Sync + 'static> AccountTokens for S {
    fn is_account_token(&self, token: &str) -> Result<bool, StoreError> {
        Ok(self.authenticate(token)?.is_some())
    }
}

/// What the gateway routes share.
pub struct GatewayApi {
    pub feed: Arc<dyn Feed>,
    pub accounts: Arc<dyn AccountTokens>,
}

/// The gateway routes alone (no fallback, so they merge into any router).
pub fn router(feed: Arc<dyn Feed>, accounts: Arc<dyn AccountTokens>) -> Router {
    let api = Arc::new(GatewayApi { feed, accounts });
    Router::new()
        .route(SYNC_PATH, get(sync).fallback(method_not_allowed))
        .route(REGISTER_PATH, post(register).fallback(method_not_allowed))
        .route(ROTATION_PATH, post(rotation).fallback(method_not_allowed))
        .with_state(api)
}

/// The account API (`account`, e.g. [`crate::api::router`]) with the
/// gateway routes: account routes refuse gateway credentials, gateway
/// routes refuse account tokens.
pub fn compose(account: Router, feed: Arc<dyn Feed>, accounts: Arc<dyn AccountTokens>) -> Router {
    account
        .layer(axum::middleware::from_fn_with_state(
            feed.clone(),
            refuse_gateway_credentials,
        ))
        .merge(router(feed, accounts))
}

async fn method_not_allowed() -> Response {
    Fault::new(
        StatusCode::METHOD_NOT_ALLOWED,
        codes::METHOD_NOT_ALLOWED,
        "Method not allowed: the gateway API is GET /v1/gateway/sync and POST \
         /v1/gateway/register, /v1/gateway/rotation-request",
    )
    .into_response()
}

/// After an account route refused a token (401), checks whether it was a
/// gateway credential and says so. Only refused requests pay the lookup.
async fn refuse_gateway_credentials(
    State(feed): State<Arc<dyn Feed>>,
    req: Request,
    next: Next,
) -> Response {
    let token = auth::bearer(req.headers())
        .ok()
        .filter(|t| t.len() <= MAX_SECRET_LEN);
    let resp = next.run(req).await;
    let Some(token) = token.filter(|_| resp.status() == StatusCode::UNAUTHORIZED) else {
        return resp;
    };
    match blocking(move || Ok(feed.authenticate_gateway(&token)?)).await {
        Ok(Some(who)) => {
            tracing::info!(credential = %who.credential_id, "gateway credential refused on an account action");
            Fault::new(
                StatusCode::FORBIDDEN,
                codes::ACCOUNT_TOKEN_REQUIRED,
                "Gateway credentials cannot call account actions; use an account token",
            )
            .into_response()
        }
        _ => resp,
    }
}

/// The identity behind the request's bearer secret.
async fn authenticate(
    api: &Arc<GatewayApi>,
    headers: &HeaderMap,
) -> Result<GatewayIdentity, Fault> {
    let secret = auth::bearer(headers)?;
    if secret.len() > MAX_SECRET_LEN {
        return Err(invalid_credential());
    }
    let api = api.clone();
    blocking(move || {
        if let Some(who) = api.feed.authenticate_gateway(&secret)? {
            return Ok(who);
        }
        if api.accounts.is_account_token(&secret)? {
            return Err(Fault::new(
                StatusCode::FORBIDDEN,
                codes::GATEWAY_CREDENTIAL_REQUIRED,
                "Account tokens cannot use the gateway API; use a gateway credential \
                 (peering-controld create-gateway)",
            ));
        }
        Err(invalid_credential())
    })
    .await
}

fn invalid_credential() -> Fault {
    Fault::new(
        StatusCode::UNAUTHORIZED,
        codes::AUTH_FAILURE,
        "The gateway credential is not valid (unknown or revoked)",
    )
}

/// `since` and `wait` of a sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncQuery {
    pub since: Option<u64>,
    pub wait: Duration,
}

/// Parses `since=N&wait=S`; unknown or repeated parameters are refused,
/// and `wait` above [`MAX_WAIT_SECS`] is cut to it.
pub fn parse_sync_query(query: Option<&str>) -> Result<SyncQuery, Fault> {
    let mut since = None;
    let mut wait = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match name {
            "since" => &mut since,
            "wait" => &mut wait,
            _ => {
                return Err(Fault::bad_request(
                    codes::UNKNOWN_PARAMETER,
                    format!("Unknown query parameter {name:?}; sync takes since and wait"),
                ))
            }
        };
        let parsed = value.parse::<u64>().map_err(|_| {
            Fault::bad_request(
                codes::INVALID_PARAMETER_VALUE,
                format!("{name} must be a whole number, not {value:?}"),
            )
        })?;
        if slot.replace(parsed).is_some() {
            return Err(Fault::bad_request(
                codes::INVALID_PARAMETER_VALUE,
                format!("{name} is given twice"),
            ));
        }
    }
    Ok(SyncQuery {
        since,
        wait: Duration::from_secs(wait.unwrap_or(0).min(MAX_WAIT_SECS)),
    })
}

async fn sync(State(api): State<Arc<GatewayApi>>, headers: HeaderMap, uri: Uri) -> Response {
    let result = async {
        let query = parse_sync_query(uri.query())?;
        let who = authenticate(&api, &headers).await?;
        let mut revisions = api.feed.revisions();
        let current = *revisions.borrow_and_update();
        if query.since == Some(current) && !query.wait.is_zero() {
            // Err: the feed stopped publishing; answer what there is.
            let _ = tokio::time::timeout(query.wait, revisions.wait_for(|r| *r > current)).await;
        }
        let feed = api.feed.clone();
        let region = who.region.clone();
        let reply = blocking(move || sync_reply(&*feed, &region, query.since)).await?;
        tracing::debug!(
            credential = %who.credential_id,
            since = ?query.since,
            revision = reply.revision,
            full = matches!(reply.view, ViewUpdate::Full(_)),
            "gateway sync"
        );
        Ok::<_, Fault>(reply)
    }
    .await;
    match result {
        Ok(reply) => json_response(StatusCode::OK, &reply),
        Err(f) => f.into_response(),
    }
}

/// The answer to a sync from `since` for `region`.
pub fn sync_reply(feed: &dyn Feed, region: &str, since: Option<u64>) -> Result<SyncReply, Fault> {
    let latest = *feed.revisions().borrow();
    let view = match since {
        Some(since) if since <= latest => match feed.changes(region, since) {
            Ok(delta) => ViewUpdate::Delta(delta),
            Err(StoreError::Compacted { .. }) => ViewUpdate::Full(feed.view(region)?),
            Err(e) => return Err(e.into()),
        },
        // None, or a revision this controller has not reached (the
        // gateway talked to a controller of another deployment, or the
        // store was restored from a backup): start over.
        _ => ViewUpdate::Full(feed.view(region)?),
    };
    let keys = feed.tunnel_keys()?.iter().map(WireKey::encode).collect();
    let settings = feed.tunnel_settings()?.as_ref().map(WireSettings::encode);
    let gateways = feed.gateways()?.iter().map(WireGateway::encode).collect();
    Ok(SyncReply {
        revision: view.revision(),
        view,
        keys,
        settings,
        gateways,
    })
}

async fn register(State(api): State<Arc<GatewayApi>>, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        let who = authenticate(&api, &headers).await?;
        let bytes = extract::read_body(body).await?;
        let req: RegisterRequest = extract::decode(&bytes)?;
        let endpoint = parse_endpoint(&req.endpoint)?;
        let feed = api.feed.clone();
        let region = who.region.clone();
        let id = blocking(move || Ok(feed.register_gateway(&region, endpoint, unix_ms())?)).await?;
        tracing::info!(credential = %who.credential_id, region = %who.region, %endpoint, gateway_id = id, "gateway registered");
        Ok::<_, Fault>(RegisterReply { gateway_id: id })
    }
    .await;
    match result {
        Ok(reply) => json_response(StatusCode::OK, &reply),
        Err(f) => f.into_response(),
    }
}

/// A gateway's underlay endpoint: a unicast IPv4 address and a port.
pub fn parse_endpoint(text: &str) -> Result<SocketAddrV4, Fault> {
    let bad = |why: &str| {
        Fault::bad_request(
            codes::INVALID_PARAMETER_VALUE,
            format!("Endpoint {text:?} {why}"),
        )
    };
    let ep: SocketAddrV4 = text
        .parse()
        .map_err(|_| bad("is not an IPv4 address and port (198.18.0.1:51900)"))?;
    let ip = ep.ip();
    if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() {
        return Err(bad("is not a unicast address"));
    }
    if ep.port() == 0 {
        return Err(bad("has port 0"));
    }
    Ok(ep)
}

async fn rotation(State(api): State<Arc<GatewayApi>>, headers: HeaderMap) -> Response {
    let result = async {
        let who = authenticate(&api, &headers).await?;
        let feed = api.feed.clone();
        blocking(move || Ok(feed.request_rotation()?)).await?;
        tracing::info!(credential = %who.credential_id, region = %who.region, "early key rotation requested");
        Ok::<_, Fault>(())
    }
    .await;
    match result {
        Ok(()) => json_response(StatusCode::OK, &json!({"Return": true})),
        Err(f) => f.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_query_parses() {
        let q = |s| parse_sync_query(Some(s));
        assert_eq!(
            q("").unwrap(),
            SyncQuery {
                since: None,
                wait: Duration::ZERO
            }
        );
        assert_eq!(
            q("since=5&wait=10").unwrap(),
            SyncQuery {
                since: Some(5),
                wait: Duration::from_secs(10)
            }
        );
        assert_eq!(q("wait=999").unwrap().wait, Duration::from_secs(30));
        assert_eq!(parse_sync_query(None).unwrap().since, None);
        for bad in [
            "since=-1",
            "since=x",
            "wait=1.5",
            "since=1&since=2",
            "region=us-east-1",
            "since",
        ] {
            assert!(q(bad).is_err(), "{bad}");
        }
        assert_eq!(q("region=x").unwrap_err().code, codes::UNKNOWN_PARAMETER);
    }

    #[test]
    fn endpoints_parse() {
        assert_eq!(
            parse_endpoint("198.18.0.1:51900").unwrap(),
            "198.18.0.1:51900".parse().unwrap()
        );
        for bad in [
            "",
            "198.18.0.1",
            "198.18.0.1:0",
            "0.0.0.0:51900",
            "255.255.255.255:1",
            "224.0.0.1:1",
            "[::1]:1",
            "host:1",
        ] {
            assert!(parse_endpoint(bad).is_err(), "{bad}");
        }
    }
}
