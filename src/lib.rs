//! Portcullis: a JWT-validating API gateway and edge proxy on Pingora.
//!
//! The binary (`src/main.rs`) is a thin CLI; everything it runs lives here so that benches and unit
//! tests can reach it without a server.

pub mod access_log;
pub mod admin;
pub mod auth;
pub mod clock;
pub mod config;
pub mod connection;
pub mod forwarding;
pub mod grpc;
pub mod hygiene;
pub mod issuer;
pub mod keys;
pub mod metric_handles;
pub mod metrics;
pub mod pipeline;
#[cfg(test)]
mod properties;
pub mod proxy;
pub mod rate_limit;
pub mod redis_link;
pub mod reload;
pub mod request_body;
pub mod respond;
pub mod revocation;
pub mod routing;
pub mod runtime;
pub mod server;
pub mod shared_limit;
pub mod shutdown;
pub mod state;
pub mod status_page;
pub mod telemetry;
pub mod tools;
pub mod upstream;
pub mod websocket;
