//! The AWS Lambda function (`bootstrap`): configuration from the environment, the invoke mode (a drop-in for github-token-broker), the http mode (the shared router behind a Function URL or API Gateway), and the Runtime API loop.
//!
//! The mode is chosen by `TOKENMINT_MODE` at deploy time, never by a payload.
//! A configuration error is reported through the Runtime API's
//! `/runtime/init/error`, so callers see its message instead of
//! `Runtime.ExitError`. See `docs/lambda-reference.md`.

pub mod config;
pub mod http_mode;
pub mod invoke;
pub mod payload;
pub mod runtime;

pub use config::{ConfigError, Env, LambdaConfig, LogLevel, Mode};
pub use http_mode::HttpHandler;
pub use invoke::{InvokeError, InvokeHandler};
pub use runtime::{Invocation, InvocationError, RuntimeApi, RuntimeError};

use crate::clock::Clock;
use std::sync::Arc;

/// Why the function could not start. Each is posted to `/runtime/init/error`.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The Lambda environment variables.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The SSM client (invoke mode).
    #[error("set up SSM: {0}")]
    Ssm(#[from] crate::aws::AwsError),
    /// The tokenmint config file (http mode).
    #[error("load TOKENMINT_CONFIG: {0}")]
    TokenmintConfig(#[from] crate::config::ConfigError),
    /// Opening the audit store or building the clients (http mode).
    #[error("start tokenmint: {0}")]
    Start(#[from] crate::exchange::StartError),
}

/// Why [`run`] returned.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The Runtime API is unreachable or misbehaved.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// Initialisation failed (and was reported to `/runtime/init/error`).
    #[error("initialise: {0}")]
    Init(#[source] InitError),
}

/// The handler for the configured mode.
#[derive(Debug)]
pub enum Handler {
    /// github-token-broker compatible.
    Invoke(Box<InvokeHandler>),
    /// tokenmint's HTTP API.
    Http(HttpHandler),
}

impl Handler {
    /// Builds the handler for `config` (http mode opens the audit store).
    pub async fn new(config: LambdaConfig, clock: Arc<dyn Clock>) -> Result<Self, InitError> {
        match config.mode {
            Mode::Invoke(invoke) => Ok(Self::Invoke(Box::new(InvokeHandler::new(*invoke, clock)?))),
            Mode::Http { config_path } => {
                let config = Arc::new(crate::config::Config::load(&config_path)?);
                let service = crate::exchange::Service::start(config, clock).await?;
                Ok(Self::Http(HttpHandler::new(crate::http::router(Arc::new(
                    service,
                )))))
            }
        }
    }

    /// Runs one invocation.
    pub async fn handle(&self, invocation: &Invocation) -> Result<Vec<u8>, InvocationError> {
        match self {
            Self::Invoke(h) => h.handle(invocation).await,
            Self::Http(h) => h.handle(invocation).await,
        }
    }
}

/// Initialises from `env` and serves invocations until the Runtime API goes
/// away. An init failure is posted to `/runtime/init/error` and returned.
pub async fn run(env: &Env, clock: Arc<dyn Clock>) -> Result<(), RunError> {
    let api = RuntimeApi::new(env.get("AWS_LAMBDA_RUNTIME_API"))?;
    let initialised = match LambdaConfig::from_env(env) {
        Ok(config) => Handler::new(config, clock).await,
        Err(e) => Err(e.into()),
    };
    let handler = match initialised {
        Ok(handler) => handler,
        Err(error) => {
            tracing::error!(error = %error, "initialise");
            api.init_error(&InvocationError {
                message: error.to_string(),
                error_type: "Runtime.ConfigError",
            })
            .await?;
            return Err(RunError::Init(error));
        }
    };
    tracing::info!(
        mode = match handler {
            Handler::Invoke(_) => "invoke",
            Handler::Http(_) => "http",
        },
        "ready"
    );
    loop {
        let invocation = api.next().await?;
        match handler.handle(&invocation).await {
            Ok(body) => api.respond(&invocation.request_id, body).await?,
            Err(error) => api.fail(&invocation.request_id, &error).await?,
        }
    }
}
