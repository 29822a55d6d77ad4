//! The local development stack behind `tokenmint dev` and the integration tests: an OIDC issuer and a GitHub API stand-in, never the real services.

pub mod github_standin;
pub mod issuer;
