//! Tests for `crate::iam`.
