//! Cross-module tests of the model and the stores.

mod lpm;
mod peering_auth;
mod peering_lifecycle;
mod routes;
mod security_groups;
mod store;
mod support;
mod tunnel_store;
mod view;
mod vpc;
