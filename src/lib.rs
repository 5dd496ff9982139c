//! Portcullis: a JWT-validating API gateway and edge proxy on Pingora.
//!
//! The binary (`src/main.rs`) is a thin CLI; everything it runs lives here so that benches and unit
//! tests can reach it without a server.

pub mod auth;
pub mod metrics;
