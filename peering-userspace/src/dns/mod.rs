//! The region's DNS resolver, as AmazonProvidedDNS: each VPC's hosts ask
//! it at the VPC's base + 2 address, and it answers the private names of
//! the addresses they may see (their own VPC's, and those of peers whose
//! owners allowed it), NXDOMAIN for any other private name and REFUSED for
//! the rest of the namespace.
//!
//! - [`name`]: private names and reverse names (sans-IO);
//! - [`table`]: who may resolve what, from the region view (sans-IO);
//! - [`wire`]: one DNS message in, one out, through hickory-proto
//!   (sans-IO);
//! - [`server`]: the sockets, and the addresses on the gateway (IO).

pub mod name;
pub mod server;
pub mod table;
pub mod wire;
