//! Helpers shared by the integration tests (`mod support;` in a test file).
#![allow(dead_code)]

pub mod fake_apiserver;
