//! The fleet's consumers in etcd, one key each, so that a new API key is a
//! small write, not a version of a document holding every key (etcd refuses
//! values over 1.5 MiB by default):
//! - `{prefix}/consumers/{name}`: a consumer (a `consumer` record as JSON);
//! - `{prefix}/consumers/{name}/keys/{id}`: one of its keys (a `key` record).
//!
//! Every node reads them all at each (re)connection, watches them from the
//! revision it read at, and keeps them in its [`crate::credentials`] store,
//! whose journal in `state_dir` is the copy a node restarted while etcd is
//! down serves from.

use etcd_client::{DeleteOptions, EventType, GetOptions, Txn, TxnOp};

use super::{FleetError, Store};
use crate::credentials::Record;

/// Keys per read page (a page stays far below the client's message limit).
const PAGE: i64 = 1000;
/// Operations per transaction (etcd's default `--max-txn-ops` is 128).
const TXN_OPS: usize = 100;

impl Store {
    /// `{prefix}/consumers/`.
    pub fn consumers_prefix(&self) -> String {
        self.key("consumers/")
    }

    /// Every consumer and key, read page by page at one revision, and that revision.
    pub async fn consumers(&self) -> Result<(Vec<Record>, i64), FleetError> {
        let prefix = self.consumers_prefix();
        let end = range_end(&prefix);
        let mut client = self.client();
        let mut out = Vec::new();
        let mut start = prefix.clone().into_bytes();
        let mut at = 0;
        loop {
            let mut opts = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
            if at > 0 {
                opts = opts.with_revision(at);
            }
            let resp = client.get(start.clone(), Some(opts)).await?;
            if at == 0 {
                at = resp.header().map_or(0, |h| h.revision());
            }
            for kv in resp.kvs() {
                match serde_json::from_slice::<Record>(kv.value()) {
                    Ok(r) => out.push(r),
                    Err(e) => {
                        tracing::error!(key = %String::from_utf8_lossy(kv.key()), error = %e, "ignoring an unreadable consumer record in etcd")
                    }
                }
            }
            match (resp.more(), resp.kvs().last()) {
                (true, Some(last)) => {
                    start = last.key().to_vec();
                    start.push(0);
                }
                _ => return Ok((out, at)),
            }
        }
    }

    /// Writes `records` (consumers, keys, deletions; checked by the caller),
    /// in transactions of at most [`TXN_OPS`] operations, in order.
    pub async fn write_consumers(&self, records: &[Record]) -> Result<(), FleetError> {
        let prefix = self.consumers_prefix();
        let mut ops = Vec::new();
        for r in records {
            match r {
                Record::Consumer { name, .. } => {
                    ops.push(TxnOp::put(
                        format!("{prefix}{name}"),
                        super::store::encode(r)?,
                        None,
                    ));
                }
                Record::Key(k) => ops.push(TxnOp::put(
                    format!("{prefix}{}/keys/{}", k.consumer, k.id),
                    super::store::encode(r)?,
                    None,
                )),
                Record::DeleteKey { consumer, id } => {
                    ops.push(TxnOp::delete(format!("{prefix}{consumer}/keys/{id}"), None));
                }
                Record::DeleteConsumer { name } => {
                    ops.push(TxnOp::delete(format!("{prefix}{name}"), None));
                    let keys = format!("{prefix}{name}/");
                    ops.push(TxnOp::delete(
                        keys,
                        Some(DeleteOptions::new().with_prefix()),
                    ));
                }
                // Disabling is written as the key with `enabled: false`;
                // stamps stay on each node.
                Record::Disable { .. } | Record::Used { .. } => {}
            }
        }
        let mut client = self.client();
        for chunk in ops.chunks(TXN_OPS) {
            client.txn(Txn::new().and_then(chunk.to_vec())).await?;
        }
        Ok(())
    }
}

/// The record a watch event under `prefix` stands for.
pub fn event_record(prefix: &str, event: &etcd_client::Event) -> Option<Record> {
    let kv = event.kv()?;
    match event.event_type() {
        EventType::Put => match serde_json::from_slice::<Record>(kv.value()) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::error!(error = %e, "ignoring an unreadable consumer record in etcd");
                None
            }
        },
        EventType::Delete => {
            let key = std::str::from_utf8(kv.key()).ok()?;
            let rest = key.strip_prefix(prefix)?;
            match rest.split('/').collect::<Vec<_>>()[..] {
                [name] => Some(Record::DeleteConsumer {
                    name: name.to_string(),
                }),
                [consumer, "keys", id] => Some(Record::DeleteKey {
                    consumer: consumer.to_string(),
                    id: id.to_string(),
                }),
                _ => None,
            }
        }
    }
}

/// The end of the range of keys starting with `prefix`.
fn range_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    end
}
