//! Test support shared by the engine's integration tests (each test binary uses a part of it).
#![allow(dead_code)]

pub mod crash_disk;
