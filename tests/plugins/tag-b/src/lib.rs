//! Hot-swap test plugin, version "b" (see `tag.rs`).
const TAG: &str = "b";
include!("../../tag.rs");
