//! dev (in progress)

pub mod issuer;
