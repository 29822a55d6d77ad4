//! exchange (in progress)
