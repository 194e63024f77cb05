//! Attacks on the enforcement point, one test per vector, mostly as raw bytes
//! over TCP (an HTTP client would normalise the request itself). Each asserts
//! the exact status and what the upstreams did or did not receive.

mod admin;
mod authority;
mod identity;
mod paths;
mod policies;
mod slow;

use serde_json::json;

use crate::support::*;

/// The quickstart's shape: `/static/*` and a `/*` catch-all open (upstream
/// `open`), `/api/admin/*` behind jwt-auth (upstream `admin`).
pub struct Site {
    pub gw: TestGateway,
    pub open: Upstream,
    pub admin: Upstream,
}

/// An HS256 secret for the protected route.
pub const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";

impl Site {
    pub async fn start(head: &str) -> Self {
        let open = Upstream::start("open", Behavior::Echo).await;
        let admin = Upstream::start("admin", Behavior::Echo).await;
        let jwt = attach(
            "jwt-auth",
            json!({ "algorithms": ["HS256"], "secret": SECRET }),
        );
        let yaml = format!(
            "{head}services:\n  - name: open\n    instances: [{{ url: \"{}\" }}]\n  - name: admin\n    instances: [{{ url: \"{}\" }}]\nroutes:\n  - {{ id: static, match: {{ path: /static/* }}, upstream: open }}\n  - {{ id: all, match: {{ path: /* }}, upstream: open }}\n  - id: admin\n    match: {{ path: /api/admin/* }}\n    upstream: admin\n    plugins: [{jwt}]\n",
            open.url(),
            admin.url(),
        );
        let gw = start_with(&yaml, &["jwt-auth"]).await;
        Self { gw, open, admin }
    }

    /// Neither upstream got anything.
    pub fn untouched(&self, vector: &str) {
        assert_eq!(
            self.open.hits(),
            0,
            "{vector}: open got {:?}",
            self.open.received()
        );
        assert_eq!(
            self.admin.hits(),
            0,
            "{vector}: admin got {:?}",
            self.admin.received()
        );
    }
}
