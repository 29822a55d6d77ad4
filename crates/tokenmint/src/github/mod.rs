//! GitHub App client: App JWT, installation lookup, token minting and revocation, and the check of what GitHub granted.

mod client;
mod permissions;
mod signer;

pub use client::{
    Call, GithubClient, GithubError, GithubSettings, InstallationToken, MintRequest, MintedToken,
    Rejection,
};
pub use permissions::{Level, PermissionError, Permissions};
pub use signer::{AppSigner, SignError, SsmAppKey, SsmKeyError, SSM_KEY_REFRESH};
