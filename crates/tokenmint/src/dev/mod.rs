//! The local development stack behind `tokenmint dev`, the integration tests and the bench: an OIDC issuer, a GitHub API stand-in and a Lambda Runtime API stand-in, never the real services.

pub mod github_standin;
pub mod issuer;
pub mod lambda_runtime;
mod stack;

pub use stack::{
    DevStack, DevStackError, DevStackOptions, DEV_APP_ID, DEV_AUDIENCE, DEV_INSTALLATION_ID,
    DEV_REPOSITORY, DEV_REPOSITORY_ID, DEV_ROLE_ARN, DEV_ROLE_SUB, DEV_ROLE_TRUST_FILE,
};
