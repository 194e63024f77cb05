//! The path is canonical before routing: no encoding picks another route
//! (and so another policy) than the one the upstream would serve.

use super::Site;
use crate::support::raw::{get_raw, status_of};
use crate::support::*;

/// `target` must land on the protected route (401 from jwt-auth), and reach
/// no upstream.
async fn reaches_the_protected_route(target: &str) {
    let site = Site::start("").await;
    let resp = get_raw(site.gw.addr, target).await;
    assert_eq!(status_of(&resp), 401, "{target}: {resp:.300}");
    site.untouched(target);
    site.gw.stop().await;
}

/// `target` has no canonical form: 400 `invalid_path`, no upstream reached.
async fn is_refused(target: &str) {
    let site = Site::start("").await;
    let resp = get_raw(site.gw.addr, target).await;
    assert_eq!(status_of(&resp), 400, "{target}: {resp:.300}");
    site.untouched(target);
    site.gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_dot_segments_lowercase() {
    reaches_the_protected_route("/static/%2e%2e/api/admin/users").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_dot_segments_uppercase() {
    reaches_the_protected_route("/static/%2E%2E/api/admin/users").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_encoded_dot_segment() {
    reaches_the_protected_route("/static/.%2e/api/admin/users").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_dot_segments() {
    reaches_the_protected_route("/static/../api/admin/users").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_unreserved_character() {
    reaches_the_protected_route("/api/%61dmin/users").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_slashes() {
    reaches_the_protected_route("//api//admin///users").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_dot_segments() {
    reaches_the_protected_route("/./api/./admin/users").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_dot_with_encoded_slash() {
    is_refused("/static/..%2fapi/admin/users").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_slash_inside_a_segment() {
    is_refused("/api%2Fadmin/users").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_backslash() {
    is_refused("/static/..%5capi/admin/users").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn literal_backslash() {
    is_refused("/static\\..\\api\\admin\\users").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_nul_and_line_breaks() {
    is_refused("/static/a%00b").await;
    is_refused("/static/a%0d%0aX-Injected:%20yes").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn climbing_above_the_root() {
    is_refused("/../etc/passwd").await;
    is_refused("/static/%2e%2e/%2e%2e/etc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_gets_the_canonical_path_and_the_query_as_sent() {
    let site = Site::start("").await;
    let resp = get_raw(site.gw.addr, "/static/a/./b//c%7e%2fx%3F?q=%2e%2e&r=..").await;
    // `%2f` is refused by default; the same without it is forwarded canonical.
    assert_eq!(status_of(&resp), 400, "{resp:.200}");
    let resp = get_raw(site.gw.addr, "/static/a/./b//c%7e%3f?q=%2e%2e&r=..").await;
    assert_eq!(status_of(&resp), 200, "{resp:.200}");
    let got = site.open.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].uri, "/static/a/b/c~%3F?q=%2e%2e&r=..");
    assert_eq!(site.admin.hits(), 0);
    site.gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escaped_slashes_can_be_kept_for_apis_that_need_them() {
    let site = Site::start("path_normalization: { escaped_slashes: keep }\n").await;
    let resp = get_raw(site.gw.addr, "/static/files/a%2fb%5Cc").await;
    assert_eq!(status_of(&resp), 200, "{resp:.200}");
    assert_eq!(site.open.received()[0].uri, "/static/files/a%2Fb%5Cc");
    // Kept inside its segment: it never splits a path into another route's.
    let resp = get_raw(site.gw.addr, "/static/..%2fapi/admin/users").await;
    assert_eq!(status_of(&resp), 200, "{resp:.200}");
    assert_eq!(site.open.received()[1].uri, "/static/..%2Fapi/admin/users");
    assert_eq!(site.admin.hits(), 0);
    site.gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_escaped_slashes_value_is_a_config_error() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let yaml = format!(
        "path_normalization: {{ escaped_slashes: decode }}\n{}",
        json_routes(&up, "", &[("r", "/*", vec![])])
    );
    let err = TestGateway::try_start(&yaml).await.err().expect("rejected");
    assert!(err.contains("path_normalization.escaped_slashes"), "{err}");
}
