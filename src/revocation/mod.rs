//! Token revocation: which `(iss, jti)` and `(iss, sub, before)` entries are in force.
//!
//! [`RevocationList`] is the in-memory index the request path consults on every request,
//! cached tokens included (conf/README.md §3.5). Persistence (file / redis stores) sits behind it and
//! replays into it; nothing here does I/O.
//!
//! Entries key on `(iss, jti)`, never on the token string or a hash of it: ECDSA signatures
//! are malleable (conf/HARDENING.md A6), so one token has several valid encodings, but all of them
//! carry the same `jti`.

pub mod file_log;
pub mod list;
pub mod redis_store;
mod replay;
pub mod service;
pub mod store;
#[cfg(test)]
mod test_support;

pub use list::RevocationList;
