//! The API's request handling below HTTP: the region header
//! (`extract::region`), body decoding (`extract::decode`), every action
//! and the describe filters (`filters::apply`), run against an in-memory
//! store. Whatever the bytes, a call answers a result or an AWS-style
//! client error (4xx, a code, a message), and a refused call changes
//! nothing.
//!
//! Input: lines `ACCOUNT REGION ACTION BODY`, run in order on one store.
//! ACCOUNT picks one of [`ACCOUNTS`] by its first byte; REGION is the raw
//! `X-Peering-Region` header value; BODY is the rest of the line. Ids are
//! sequential (`vpc-00000000000000001`, …), so a script can refer to what
//! it created.

use axum::http::{HeaderMap, HeaderValue};
use peering_userspace::api::{
    actions::{execute_with, REGIONLESS_ACTIONS},
    error::Fault,
    extract::{region, REGION_HEADER},
};
use peering_userspace::control::{
    account::{AccountId, Call},
    config::Config,
    ids::SequentialIds,
    state::State,
    store::{MemoryStore, Store},
};

pub const ACCOUNTS: [&str; 2] = ["111111111111", "222222222222"];
/// Calls per input: bounds the cost of one run.
pub const MAX_CALLS: usize = 64;
const NOW: u64 = 1_700_000_000;

pub fn check(data: &[u8]) {
    successes(data);
}

/// Runs the calls of `data`, checking each; returns how many succeeded.
pub fn successes(data: &[u8]) -> usize {
    let mut ok = 0;
    let store = MemoryStore::new(State::new(Config::default()));
    let mut ids = SequentialIds(0);
    for line in data.split(|&b| b == b'\n').take(MAX_CALLS) {
        let mut fields = line.splitn(4, |&b| b == b' ');
        let (Some(account), Some(region_value), Some(action)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let body = fields.next().unwrap_or_default();
        let account = ACCOUNTS[usize::from(account.first().copied().unwrap_or(0)) % 2];
        let account = AccountId::parse(account).expect("valid account");
        let action = String::from_utf8_lossy(action);
        // As the daemon does: regionless actions take a missing region.
        let region = match region_of(region_value) {
            Ok(region) => region,
            Err(()) if REGIONLESS_ACTIONS.contains(&&*action) => String::new(),
            Err(()) => continue,
        };
        let call = Call::at(account, region, NOW);
        let before = store.revision().expect("memory store");
        match execute_with(&store, &mut ids, &action, &call, body) {
            Ok(value) => {
                assert!(value.is_object(), "{action}: {value}");
                ok += 1;
            }
            Err(fault) => {
                assert_client_error(&fault, &action);
                assert_eq!(
                    store.revision().expect("memory store"),
                    before,
                    "{action} refused but wrote"
                );
            }
        }
    }
    ok
}

/// The region header's value through the API's own extractor; a refusal
/// must itself be a client error.
fn region_of(raw: &[u8]) -> Result<String, ()> {
    let mut headers = HeaderMap::new();
    if !raw.is_empty() && raw != b"-" {
        let Ok(value) = HeaderValue::from_bytes(raw) else {
            return Err(());
        };
        headers.insert(REGION_HEADER, value);
    }
    region(&headers).map_err(|fault| assert_client_error(&fault, "region header"))
}

/// An AWS-style client error: 4xx, a code of letters and dots, a message.
fn assert_client_error(fault: &Fault, what: &str) {
    assert!(fault.status.is_client_error(), "{what}: {fault:?}");
    assert!(!fault.code.is_empty(), "{what}: {fault:?}");
    assert!(
        fault
            .code
            .bytes()
            .all(|b| b.is_ascii_alphabetic() || b == b'.'),
        "{what}: {fault:?}"
    );
    assert!(!fault.message.is_empty(), "{what}: {fault:?}");
}
