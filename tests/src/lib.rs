//! Helpers for Strata's end-to-end tests.
