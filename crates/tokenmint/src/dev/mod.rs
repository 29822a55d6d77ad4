//! dev (in progress)
