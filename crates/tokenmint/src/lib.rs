//! tokenmint: exchange a CI job's OIDC identity token for a short-lived credential whose scope is fixed at deploy time.
//!
//! # Layout
//!
//! Every decision lives in this crate; the binaries are thin adapters.
//!
//! - [`config`]: the TOML file, parsed once into validated types (issuers, brokers, GitHub App).
//! - [`oidc`]: JOSE parsing, issuer selection, discovery, the JWKS cache, signature and claim checks.
//! - [`policy`]: a broker's trust policy, compiled from `[broker.claims]`, evaluated against verified claims.
//! - [`iam`]: AWS IAM trust-policy documents for web identity, parsed and evaluated the way STS does.
//! - [`explain`]: `policy explain`, every verification check and condition for one broker and one token or claim set.
//! - [`lint`]: `policy lint`, stable-ID findings for risky trust policies in configs and AWS IAM trust-policy JSON, as text, JSON or SARIF.
//! - [`github`]: the GitHub App client (App JWT, installation lookup, mint, revoke) and permission vocabulary.
//! - [`audit`]: the tamper-evident audit log (SQLite by default), its writer, verifier and reader.
//! - [`limits`]: per-broker and per-subject rate limits (GCRA, time as a parameter, bounded memory).
//! - [`exchange`]: the one function that runs an exchange: verify, authorize, mint, audit.
//! - [`octo_sts`]: the query of octo-sts's `/sts/exchange`, mapped onto a broker and its repository.
//! - [`http`]: the axum router shared by the server and the Lambda, and the one place errors map to statuses.
//! - [`sts`]: the AWS STS-compatible endpoint (`AssumeRoleWithWebIdentity`, `GetCallerIdentity`) for `[[role]]` trust policies.
//! - [`logging`]: the JSON log line format, with span fields such as `request_id` on every line.
//! - [`metrics`]: the Prometheus registry behind `GET /metrics`, its series created at start.
//! - [`dev`]: the local OIDC issuer, GitHub API stand-in and Lambda Runtime API stand-in behind `tokenmint dev`, the tests and the bench.
//! - [`keys`]: RSA signing keys and compact JWS signing.
//! - [`client`]: the CI-side client behind `tokenmint exchange`.
//! - [`lambda`]: the AWS Lambda function: github-token-broker compatible invoke mode, http mode over the shared router, the Runtime API loop.
//! - [`aws`]: AWS credentials and endpoints from the environment, SigV4 signing, the SSM client.
//! - [`clock`]: the one place that reads the wall clock.

// Shipped code never slices a string at a computed byte offset: on input that
// puts a multi-byte character there, that panics (the fuzzer found one).
#![cfg_attr(not(test), warn(clippy::string_slice))]

pub mod audit;
pub mod aws;
pub mod client;
pub mod clock;
pub mod config;
pub mod dev;
pub mod exchange;
pub mod explain;
pub mod github;
pub mod http;
pub mod iam;
pub mod keys;
pub mod lambda;
pub mod limits;
pub mod lint;
pub mod logging;
pub mod metrics;
mod net;
pub mod octo_sts;
pub mod oidc;
pub mod policy;
pub mod sts;
mod text;
