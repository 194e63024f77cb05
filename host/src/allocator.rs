//! Options of the gateway binary's allocator (mimalloc v3, chosen in
//! `main.rs`), set before anything else runs.
//!
//! mimalloc's defaults keep freed pages for a second, commit whole arenas up
//! front and advise huge pages: on the 1,000-route memory case that held
//! 137 MB where glibc's malloc held 52 MB. Without the huge-page advice (the
//! crate's `no_thp` feature), purging at once and committing on demand, it is
//! back to glibc's figure (50.6 MB), for 9 `madvise` calls in 8,000 requests.

use libmimalloc_sys::{mi_option_set, mi_option_t};

/// `mi_option_arena_eager_commit` in mimalloc v3's `mi_option_e` (default 2).
const ARENA_EAGER_COMMIT: mi_option_t = 4;
/// `mi_option_purge_delay` in mimalloc v3's `mi_option_e`, in ms (default 1000).
const PURGE_DELAY: mi_option_t = 15;

/// Sets the options, unless the operator set them with `MIMALLOC_*`
/// variables (mimalloc's own way, which then wins). Call it first in `main`,
/// before any other thread exists.
pub fn tune() {
    for (option, env, value) in [
        (ARENA_EAGER_COMMIT, "MIMALLOC_ARENA_EAGER_COMMIT", 0),
        (PURGE_DELAY, "MIMALLOC_PURGE_DELAY", 0),
    ] {
        if std::env::var_os(env).is_none() {
            // SAFETY: `mi_option_set` writes mimalloc's option table, which is
            // not synchronised; `main` calls this before it starts a thread.
            // There is no safe way: the only other one is the environment,
            // whose writes are `unsafe` in a running process too.
            #[allow(unsafe_code)]
            unsafe {
                mi_option_set(option, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The option numbers are mimalloc's enum positions, not names: a
    /// mimalloc whose enum moved would make `tune` set other options. Its
    /// documented defaults identify the two.
    #[test]
    fn the_option_numbers_name_the_options_we_mean() {
        // SAFETY: reads of the option table; no test writes it.
        #[allow(unsafe_code)]
        let (eager, delay) = unsafe {
            (
                libmimalloc_sys::mi_option_get(ARENA_EAGER_COMMIT),
                libmimalloc_sys::mi_option_get(PURGE_DELAY),
            )
        };
        assert_eq!((eager, delay), (2, 1000));
    }
}
