//! Hot-swap test plugin, version "a" (see `tag.rs`).
const TAG: &str = "a";
include!("../../tag.rs");
