//! The `callout` interface: HTTP requests to the services the attachment is
//! granted, sent by the host (see [`crate::plugin::callout`]).

use crate::plugin::bindings::callout::{self, Error, Request, Response};
use crate::plugin::state::PluginState;

/// Most callouts one `send-all` may start: a plugin cannot open a flood of
/// upstream requests from one hook.
const MAX_AT_ONCE: usize = 32;

impl callout::Host for PluginState {
    async fn send(&mut self, request: Request) -> Result<Response, Error> {
        let mut answers = self.send_all(vec![request]).await;
        answers
            .pop()
            .unwrap_or_else(|| Err(Error::InvalidRequest("no answer".into())))
    }

    async fn send_all(&mut self, requests: Vec<Request>) -> Vec<Result<Response, Error>> {
        if requests.len() > MAX_AT_ONCE {
            let msg = format!("at most {MAX_AT_ONCE} callouts at once");
            return requests
                .iter()
                .map(|_| Err(Error::InvalidRequest(msg.clone())))
                .collect();
        }
        for r in &requests {
            self.note(|| format!("callout {} {} {}", r.service, r.method, r.path));
        }
        if let Some(script) = &self.shared.script {
            return requests.iter().map(|r| script.callout(r)).collect();
        }
        match self.callouts.as_mut() {
            Some(scope) => scope.send_all(requests).await,
            // During `init`, or on an attachment that lists no `callouts`.
            None => requests
                .iter()
                .map(|r| {
                    Err(Error::NotGranted(format!(
                        "`{}`: this attachment grants no callouts (list the services it may call in its `callouts`), or the call came from `init`",
                        r.service
                    )))
                })
                .collect(),
        }
    }
}
