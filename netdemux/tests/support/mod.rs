//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod api;
pub mod frames;
pub mod netns;
