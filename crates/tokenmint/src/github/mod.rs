//! GitHub App client: App JWT, installation lookup, token minting and revocation, and the check of what GitHub granted.

mod permissions;

pub use permissions::{Level, PermissionError, Permissions};
