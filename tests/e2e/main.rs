//! End-to-end tests: each starts the real `meridian` binary on a free
//! loopback port with a temporary config and queries it with the real `dig`
//! (package bind9-dnsutils) or, for what dig cannot send, raw sockets.

mod abuse;
mod api;
mod bigstate;
mod cli;
mod cluster;
mod dns;
mod fallback;
mod geo;
mod harness;
mod probes;
mod proxy;
mod readme;
mod reload;
mod security;
mod steering;
