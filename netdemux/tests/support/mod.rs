//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod frames;
pub mod netns;
