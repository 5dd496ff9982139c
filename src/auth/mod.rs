pub mod jwk;
pub mod provider;
