//! The admin endpoints that edit one collection of the document (routes,
//! services) and a route's plugin attachments.

use std::sync::Arc;

use http::StatusCode;
use serde_json::{Value, json};

use super::handlers::{bad_request, current, not_found, parse_body, write};
use super::{Caller, Reply};
use crate::config::document::{Collection, ROUTES, merge_patch};
use crate::control::ControlPlane;

/// Lists, reads and edits the items of one collection.
pub(super) async fn collection(
    shared: &Arc<ControlPlane>,
    caller: &Caller<'_>,
    c: Collection,
    method: &str,
    rest: &[&str],
    body: &[u8],
) -> Reply {
    let what = &c.list[..c.list.len() - 1];
    match (method, rest) {
        ("GET", []) => Reply::ok(&json!(c.items(&current(shared)))),
        ("GET", [id]) => match c.get(&current(shared), id) {
            Some(v) => Reply::ok(v),
            None => not_found(what, id),
        },
        ("POST", []) => create(shared, caller, c, body).await,
        ("PUT", [id]) => replace(shared, caller, c, id, body).await,
        ("PATCH", [id]) => patch(shared, caller, c, id, body).await,
        ("DELETE", [id]) => delete(shared, caller, c, id).await,
        _ => Reply::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{method} is not allowed here"),
        ),
    }
}

/// `/routes/{id}/plugins[/{index}]`: the route's plugin attachments, by position.
/// A route's plugin attachments, by index.
pub(super) async fn attachments(
    shared: &Arc<ControlPlane>,
    caller: &Caller<'_>,
    method: &str,
    route: &str,
    rest: &[&str],
    body: &[u8],
) -> Reply {
    let doc = current(shared);
    let Some(r) = ROUTES.get(&doc, route) else {
        return not_found("route", route);
    };
    let list = r
        .get("plugins")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let index = match rest {
        [] => None,
        [i] => match i.parse::<usize>() {
            Ok(i) if i < list.len() || method == "PUT" && i == list.len() => Some(i),
            _ => return not_found("plugin attachment", i),
        },
        _ => return not_found("endpoint", &rest.join("/")),
    };
    if method == "GET" {
        return Reply::ok(&index.map_or(json!(list), |i| list[i].clone()));
    }
    let item = if method == "DELETE" {
        Value::Null
    } else {
        match parse_body(body) {
            Ok(v) => v,
            Err(r) => return r,
        }
    };
    write(shared, caller, |doc| {
        edit_attachments(doc, route, method, index, item)
    })
    .await
}

/// `POST /<collection>`: adds an item whose key is new.
async fn create(
    shared: &Arc<ControlPlane>,
    caller: &Caller<'_>,
    c: Collection,
    body: &[u8],
) -> Reply {
    let what = &c.list[..c.list.len() - 1];
    let item = match parse_body(body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    write(shared, caller, |doc| {
        if item.get(c.key).and_then(Value::as_str).is_none() {
            return Err(bad_request(format!(
                "the {what} needs a string `{}`",
                c.key
            )));
        }
        if !c.insert(doc, item) {
            return Err(Reply::error(
                StatusCode::CONFLICT,
                "conflict",
                format!("that {what} exists; use PUT or PATCH"),
            ));
        }
        Ok(())
    })
    .await
}

/// `PUT /<collection>/<id>`: the item, whole (created if absent).
async fn replace(
    shared: &Arc<ControlPlane>,
    caller: &Caller<'_>,
    c: Collection,
    id: &str,
    body: &[u8],
) -> Reply {
    let what = &c.list[..c.list.len() - 1];
    let mut item = match parse_body(body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if !item.is_object() {
        return bad_request(format!("the {what} must be an object"));
    }
    item[c.key] = json!(id);
    let id = id.to_string();
    write(shared, caller, move |doc| {
        c.put(doc, &id, item);
        Ok(())
    })
    .await
}

/// `PATCH /<collection>/<id>`: a JSON merge patch (RFC 7396) of the item.
async fn patch(
    shared: &Arc<ControlPlane>,
    caller: &Caller<'_>,
    c: Collection,
    id: &str,
    body: &[u8],
) -> Reply {
    let what = &c.list[..c.list.len() - 1];
    let patch = match parse_body(body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    write(shared, caller, |doc| {
        let Some(item) = c.get_mut(doc, id) else {
            return Err(not_found(what, id));
        };
        merge_patch(item, &patch);
        item[c.key] = json!(id);
        Ok(())
    })
    .await
}

/// `DELETE /<collection>/<id>`.
async fn delete(shared: &Arc<ControlPlane>, caller: &Caller<'_>, c: Collection, id: &str) -> Reply {
    let what = &c.list[..c.list.len() - 1];
    write(shared, caller, |doc| {
        if c.remove(doc, id) {
            Ok(())
        } else {
            Err(not_found(what, id))
        }
    })
    .await
}

/// The attachment edit itself, run under the control lock by `write`.
fn edit_attachments(
    doc: &mut Value,
    route: &str,
    method: &str,
    index: Option<usize>,
    item: Value,
) -> Result<(), Reply> {
    let Some(r) = ROUTES.get_mut(doc, route) else {
        return Err(not_found("route", route));
    };
    let mut list = r
        .get("plugins")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    // The list may have changed since `index` was checked (a concurrent
    // DELETE): check again under the control lock, which `write` holds.
    let fits = index.is_none_or(|i| i < list.len() || method == "PUT" && i == list.len());
    if !fits {
        return Err(not_found(
            "plugin attachment",
            &index.unwrap_or(0).to_string(),
        ));
    }
    match (method, index) {
        ("POST", None) => list.push(item),
        ("PUT", Some(i)) if i == list.len() => list.push(item),
        ("PUT", Some(i)) => list[i] = item,
        ("PATCH", Some(i)) => merge_patch(&mut list[i], &item),
        ("DELETE", Some(i)) => {
            list.remove(i);
        }
        _ => {
            return Err(Reply::error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "not allowed here",
            ));
        }
    }
    r["plugins"] = Value::Array(list);
    Ok(())
}
