//! Test support shared by the engine's integration tests (each test binary uses a part of it).
#![allow(dead_code)]

pub(crate) mod crash_disk;
