//! The host side of `wit/plugin.wit`: the methods of `context`, `request-head`
//! and `response-head`, and the `host` interface. All synchronous and cheap but
//! `rate-limit`, which may talk to Redis.

mod callout;
mod interface;

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use wasmtime::component::Resource;

use super::bindings::types::Header;
use super::bindings::{ContextRes, RequestHeadRes, ResponseHeadRes, types};
use super::names::HeaderNames;
use super::state::PluginState;
use crate::exchange::{Phase, ResponseHead};

fn get(headers: &HeaderMap, name: &str) -> Option<Vec<u8>> {
    headers.get(name).map(|v| v.as_bytes().to_vec())
}

fn get_all(headers: &HeaderMap, name: &str) -> Vec<Vec<u8>> {
    headers
        .get_all(name)
        .iter()
        .map(|v| v.as_bytes().to_vec())
        .collect()
}

/// Every header of `headers`, as the WIT `header` list.
pub(super) fn all(headers: &HeaderMap) -> Vec<Header> {
    headers
        .iter()
        .map(|(k, v)| Header {
            name: k.as_str().to_string(),
            value: v.as_bytes().to_vec(),
        })
        .collect()
}

fn parse(
    names: &mut HeaderNames,
    plugin: &str,
    name: &str,
    value: Vec<u8>,
) -> Option<(HeaderName, HeaderValue)> {
    // The value is owned already: validate it in place instead of copying.
    match (
        names.parse(name),
        HeaderValue::from_maybe_shared(bytes::Bytes::from(value)),
    ) {
        (Ok(n), Ok(v)) => Some((n, v)),
        _ => {
            tracing::warn!(
                plugin,
                header = name,
                "plugin set an invalid header; ignored"
            );
            None
        }
    }
}

impl PluginState {
    fn req_headers(&self) -> Option<&HeaderMap> {
        self.view().map(|e| &e.req.headers)
    }

    fn resp_headers(&self) -> Option<&HeaderMap> {
        self.response().map(|r| &r.headers)
    }

    fn edit_req(&mut self, f: impl FnOnce(&mut HeaderMap)) {
        if let Some(e) = self.view_mut() {
            f(&mut e.req.headers);
        }
    }

    fn edit_resp(&mut self, f: impl FnOnce(&mut HeaderMap)) {
        if let Some(r) = self.response_mut() {
            f(&mut r.headers);
        }
    }

    /// The response head, in the response phase only.
    fn response(&self) -> Option<&ResponseHead> {
        self.view()
            .filter(|v| v.phase == Phase::Response)
            .map(|v| &v.resp)
    }

    fn response_mut(&mut self) -> Option<&mut ResponseHead> {
        self.view_mut()
            .filter(|v| v.phase == Phase::Response)
            .map(|v| &mut v.resp)
    }
}

impl types::Host for PluginState {}

impl types::HostContext for PluginState {
    fn request_id(&mut self, _: Resource<ContextRes>) -> String {
        self.view()
            .and_then(|e| e.request_id.to_str().ok())
            .map(str::to_string)
            .unwrap_or_default()
    }

    fn route_id(&mut self, _: Resource<ContextRes>) -> String {
        self.view()
            .map(|e| e.route_id.to_string())
            .unwrap_or_default()
    }

    fn client_ip(&mut self, _: Resource<ContextRes>) -> String {
        self.view()
            .map(|e| e.client_ip.to_string())
            .unwrap_or_default()
    }

    fn path_param(&mut self, _: Resource<ContextRes>, name: String) -> Option<String> {
        let e = self.view()?;
        e.params
            .iter()
            .find(|(k, _)| **k == *name)
            .map(|(_, v)| v.clone())
    }

    fn attribute(&mut self, _: Resource<ContextRes>, name: String) -> Option<String> {
        self.view()?.attribute(&name).map(str::to_string)
    }

    fn set_attribute(&mut self, _: Resource<ContextRes>, name: String, value: String) {
        // `tls.*` comes from the handshake; a plugin must not be able to forge it.
        if name.starts_with("tls.") {
            tracing::debug!(attribute = %name, "plugin tried to set a read-only attribute");
            return;
        }
        if let Some(e) = self.view_mut() {
            e.set_attribute(name, value);
        }
    }

    fn set_response_headers(&mut self, _: Resource<ContextRes>, headers: Vec<Header>) {
        if !self.serving {
            return;
        }
        let plugin = &self.shared.name;
        let e = &mut self.view;
        for h in headers {
            if let Some(pair) = parse(&mut self.names, plugin, &h.name, h.value) {
                e.response_headers.retain(|(n, _)| *n != pair.0);
                e.response_headers.push(pair);
            }
        }
    }

    fn drop(&mut self, _: Resource<ContextRes>) -> wasmtime::Result<()> {
        Ok(())
    }
}

impl types::HostRequestHead for PluginState {
    fn method(&mut self, _: Resource<RequestHeadRes>) -> String {
        self.view()
            .map(|e| e.req.method.to_string())
            .unwrap_or_default()
    }

    fn scheme(&mut self, _: Resource<RequestHeadRes>) -> String {
        self.view()
            .map(|e| e.req.scheme.to_string())
            .unwrap_or_default()
    }

    fn authority(&mut self, _: Resource<RequestHeadRes>) -> Option<String> {
        let e = self.view()?;
        (!e.req.host.is_empty()).then(|| e.req.host.to_string())
    }

    fn path(&mut self, _: Resource<RequestHeadRes>) -> String {
        self.view()
            .map(|e| e.req.uri.path().to_string())
            .unwrap_or_default()
    }

    fn query(&mut self, _: Resource<RequestHeadRes>) -> Option<String> {
        self.view()?.req.uri.query().map(str::to_string)
    }

    fn header(&mut self, _: Resource<RequestHeadRes>, name: String) -> Option<Vec<u8>> {
        get(self.req_headers()?, &name)
    }

    fn header_all(&mut self, _: Resource<RequestHeadRes>, name: String) -> Vec<Vec<u8>> {
        self.req_headers()
            .map(|h| get_all(h, &name))
            .unwrap_or_default()
    }

    fn headers(&mut self, _: Resource<RequestHeadRes>) -> Vec<Header> {
        self.req_headers().map(all).unwrap_or_default()
    }

    fn set_header(&mut self, _: Resource<RequestHeadRes>, name: String, value: Vec<u8>) {
        if let Some((n, v)) = parse(&mut self.names, &self.shared.name, &name, value) {
            self.edit_req(|h| {
                h.insert(n, v);
            });
        }
    }

    fn append_header(&mut self, _: Resource<RequestHeadRes>, name: String, value: Vec<u8>) {
        if let Some((n, v)) = parse(&mut self.names, &self.shared.name, &name, value) {
            self.edit_req(|h| {
                h.append(n, v);
            });
        }
    }

    fn remove_header(&mut self, _: Resource<RequestHeadRes>, name: String) {
        self.edit_req(|h| {
            h.remove(name.as_str());
        });
    }

    fn set_path(&mut self, _: Resource<RequestHeadRes>, path: String) -> Result<(), String> {
        let e = self.view_mut().ok_or("no request")?;
        if !path.starts_with('/') {
            return Err(format!("path `{path}` must start with `/`"));
        }
        let pq = match e.req.uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path,
        };
        e.req.uri = pq.parse().map_err(|err| format!("invalid path: {err}"))?;
        Ok(())
    }

    fn set_query(
        &mut self,
        _: Resource<RequestHeadRes>,
        query: Option<String>,
    ) -> Result<(), String> {
        let e = self.view_mut().ok_or("no request")?;
        let pq = match query {
            Some(q) if !q.is_empty() => format!("{}?{q}", e.req.uri.path()),
            _ => e.req.uri.path().to_string(),
        };
        e.req.uri = pq.parse().map_err(|err| format!("invalid query: {err}"))?;
        Ok(())
    }

    fn drop(&mut self, _: Resource<RequestHeadRes>) -> wasmtime::Result<()> {
        Ok(())
    }
}

impl types::HostResponseHead for PluginState {
    fn status(&mut self, _: Resource<ResponseHeadRes>) -> u16 {
        self.response().map_or(0, |r| r.status.as_u16())
    }

    fn set_status(&mut self, _: Resource<ResponseHeadRes>, status: u16) {
        let Ok(s) = StatusCode::from_u16(status) else {
            return;
        };
        if let Some(r) = self.response_mut() {
            r.status = s;
        }
    }

    fn header(&mut self, _: Resource<ResponseHeadRes>, name: String) -> Option<Vec<u8>> {
        get(self.resp_headers()?, &name)
    }

    fn header_all(&mut self, _: Resource<ResponseHeadRes>, name: String) -> Vec<Vec<u8>> {
        self.resp_headers()
            .map(|h| get_all(h, &name))
            .unwrap_or_default()
    }

    fn headers(&mut self, _: Resource<ResponseHeadRes>) -> Vec<Header> {
        self.resp_headers().map(all).unwrap_or_default()
    }

    fn set_header(&mut self, _: Resource<ResponseHeadRes>, name: String, value: Vec<u8>) {
        if let Some((n, v)) = parse(&mut self.names, &self.shared.name, &name, value) {
            self.edit_resp(|h| {
                h.insert(n, v);
            });
        }
    }

    fn append_header(&mut self, _: Resource<ResponseHeadRes>, name: String, value: Vec<u8>) {
        if let Some((n, v)) = parse(&mut self.names, &self.shared.name, &name, value) {
            self.edit_resp(|h| {
                h.append(n, v);
            });
        }
    }

    fn remove_header(&mut self, _: Resource<ResponseHeadRes>, name: String) {
        self.edit_resp(|h| {
            h.remove(name.as_str());
        });
    }

    fn drop(&mut self, _: Resource<ResponseHeadRes>) -> wasmtime::Result<()> {
        Ok(())
    }
}
