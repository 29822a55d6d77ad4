//! dev (in progress)

pub mod github_standin;
