//! The fleet's keys in etcd, and the only code that reads or writes them.
//!
//! ```text
//! {prefix}/config                  the live config: a Record (version, author, summary, document)
//! {prefix}/history/{version:020}   the last RETAINED records, same shape
//! {prefix}/plugins/names/{name}    a PluginRecord: which blob is plugin `name`
//! {prefix}/plugins/blobs/{sha256}/{chunk:06}   the component, in CHUNK-byte pieces
//! {prefix}/nodes/{id}              each node's status, on its own lease
//! ```
//! A config write is one transaction on the `config` key's revision: it puts
//! the record and its history entry and drops the oldest entry, or, when
//! someone wrote first, does nothing and reports the conflict.

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{Bootstrap, FleetError};

/// Config versions kept in etcd for listing and rollback.
pub const RETAINED: u64 = 100;

/// Plugin blobs are stored in pieces of this size: etcd refuses requests over
/// 1.5 MiB by default, and Python or JavaScript components are 12–40 MB.
pub const CHUNK: usize = 1 << 20;

/// One config version as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    /// 1 for the first config written to this prefix, then +1 per write.
    pub version: u64,
    /// The etcd revision it was written at (filled on read).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub revision: i64,
    /// When it was written (RFC 3339).
    pub at: String,
    /// Who wrote it (admin token name, or `--author`).
    pub author: String,
    /// What changed against the version before.
    pub summary: String,
    /// The document (environment references not substituted).
    pub document: Value,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// Which blob a plugin name stands for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PluginRecord {
    /// Hex SHA-256 of the component.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// How many chunks it is stored in.
    pub chunks: u32,
    /// When it was pushed (RFC 3339).
    pub at: String,
    /// Who pushed it.
    pub author: String,
}

/// The fleet's store: an etcd client and the prefix.
#[derive(Clone)]
pub struct Store {
    client: Client,
    prefix: String,
}

impl Store {
    /// Connects to the endpoints in `b` (a dead cluster fails here, within
    /// the connect timeout).
    pub async fn connect(b: &Bootstrap) -> Result<Self, FleetError> {
        // A member without a leader refuses at once instead of holding the
        // request; a proposal lost in an election fails after the timeout
        // (not etcd's own 5 s and more), so a writer can retry promptly.
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(std::time::Duration::from_secs(2))
            .with_timeout(std::time::Duration::from_secs(3))
            .with_require_leader(true)
            .with_keep_alive(
                std::time::Duration::from_secs(5),
                std::time::Duration::from_secs(3),
            );
        if let (Some(u), Some(p)) = (&b.etcd.username, &b.etcd.password) {
            opts = opts.with_user(u, p);
        }
        if let Some(t) = &b.etcd.tls {
            opts = opts.with_tls(tls_options(b, t)?);
        }
        let client = Client::connect(&b.etcd.endpoints, Some(opts)).await?;
        Ok(Self {
            client,
            prefix: b.etcd.prefix.clone(),
        })
    }

    /// The prefix every key lives under.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `{prefix}/{rest}`.
    pub fn key(&self, rest: &str) -> String {
        format!("{}/{rest}", self.prefix)
    }

    /// A client handle (cheap: a clone of the channel).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The live config and the cluster revision it was read at.
    pub async fn config(&self) -> Result<(Option<Record>, i64), FleetError> {
        let key = self.key("config");
        let resp = self.client().get(key.as_str(), None).await?;
        let at = resp.header().map_or(0, |h| h.revision());
        let rec = match resp.kvs().first() {
            Some(kv) => Some(decode_record(&key, kv.value(), kv.mod_revision())?),
            None => None,
        };
        Ok((rec, at))
    }

    /// Writes `document` as the version after `base` (`None`: there is no
    /// config yet). When the live config is no longer `base`, nothing is
    /// written and the answer is [`FleetError::Conflict`]; while a staged
    /// rollout is under way, [`FleetError::RolloutActive`].
    pub async fn write_config(
        &self,
        document: Value,
        author: &str,
        base: Option<&Record>,
    ) -> Result<Record, FleetError> {
        let key = self.key("config");
        let mut rec = next_record(document, author, base);
        let bytes = encode(&rec)?;
        let mut ops = vec![
            TxnOp::put(key.as_str(), bytes.clone(), None),
            TxnOp::put(self.history_key(rec.version), bytes, None),
        ];
        if rec.version > RETAINED {
            ops.push(TxnOp::delete(
                self.history_key(rec.version - RETAINED),
                None,
            ));
        }
        let txn = Txn::new()
            .when([self.guard(base), self.no_canary()])
            .and_then(ops)
            .or_else(self.reread());
        let resp = self.client().txn(txn).await?;
        if !resp.succeeded() {
            return Err(self.refusal(&resp, base));
        }
        rec.revision = resp.header().map_or(0, |h| h.revision());
        Ok(rec)
    }

    /// The config key is still at `base` (absent when `None`).
    pub(super) fn guard(&self, base: Option<&Record>) -> Compare {
        let key = self.key("config");
        match base {
            Some(b) => Compare::mod_revision(key, CompareOp::Equal, b.revision),
            None => Compare::version(key, CompareOp::Equal, 0),
        }
    }

    /// No staged rollout is under way.
    pub(super) fn no_canary(&self) -> Compare {
        Compare::version(self.key("canary"), CompareOp::Equal, 0)
    }

    /// What a refused transaction reads back to say why.
    pub(super) fn reread(&self) -> [TxnOp; 2] {
        [
            TxnOp::get(self.key("config"), None),
            TxnOp::get(self.key("canary"), None),
        ]
    }

    /// Why a transaction guarded by [`Self::guard`] and [`Self::no_canary`]
    /// was refused, from what [`Self::reread`] read.
    pub(super) fn refusal(
        &self,
        resp: &etcd_client::TxnResponse,
        base: Option<&Record>,
    ) -> FleetError {
        let mut found = resp.op_responses().into_iter().filter_map(|r| match r {
            TxnOpResponse::Get(g) => Some(
                g.kvs()
                    .first()
                    .map(|kv| (kv.value().to_vec(), kv.mod_revision())),
            ),
            _ => None,
        });
        let config = found.next().flatten();
        let canary = found.next().flatten();
        let version_of = |v: &[u8], key: &str| {
            serde_json::from_slice::<Value>(v)
                .ok()
                .and_then(|v| {
                    v.get("version")
                        .and_then(Value::as_u64)
                        .or_else(|| v.pointer("/record/version").and_then(Value::as_u64))
                })
                .unwrap_or_else(|| {
                    tracing::warn!(key, "unreadable record");
                    0
                })
        };
        if let Some((v, _)) = canary {
            return FleetError::RolloutActive {
                version: version_of(&v, "canary"),
            };
        }
        FleetError::Conflict {
            base: base.map_or(0, |b| b.version),
            current: config.map_or(0, |(v, _)| version_of(&v, "config")),
        }
    }

    /// `{prefix}/history/{version:020}`.
    pub(super) fn history_key(&self, version: u64) -> String {
        self.key(&format!("history/{version:020}"))
    }

    /// The retained versions, oldest first.
    pub async fn history(&self) -> Result<Vec<Record>, FleetError> {
        let prefix = self.key("history/");
        let resp = self
            .client()
            .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
            .await?;
        resp.kvs()
            .iter()
            .map(|kv| decode_record(&prefix, kv.value(), kv.mod_revision()))
            .collect()
    }

    /// Version `n`, if retained.
    pub async fn version(&self, n: u64) -> Result<Option<Record>, FleetError> {
        let key = self.history_key(n);
        let resp = self.client().get(key.as_str(), None).await?;
        resp.kvs()
            .first()
            .map(|kv| decode_record(&key, kv.value(), kv.mod_revision()))
            .transpose()
    }

    /// Stores `bytes` as plugin `name`: the chunks first, then the name
    /// record, so a node that sees the record finds the whole blob.
    pub async fn push_plugin(
        &self,
        name: &str,
        bytes: &[u8],
        author: &str,
    ) -> Result<PluginRecord, FleetError> {
        let sha = hex::encode(Sha256::digest(bytes));
        let chunks: Vec<&[u8]> = bytes.chunks(CHUNK).collect();
        let mut client = self.client();
        for (i, c) in chunks.iter().enumerate() {
            client
                .put(self.chunk_key(&sha, i), c.to_vec(), None)
                .await?;
        }
        let rec = PluginRecord {
            sha256: sha,
            size: bytes.len() as u64,
            chunks: u32::try_from(chunks.len()).unwrap_or(u32::MAX),
            at: crate::telemetry::access_log::rfc3339(std::time::SystemTime::now()),
            author: author.to_string(),
        };
        let value = serde_json::to_vec(&rec).map_err(|e| FleetError::Etcd(e.to_string()))?;
        client
            .put(self.key(&format!("plugins/names/{name}")), value, None)
            .await?;
        Ok(rec)
    }

    fn chunk_key(&self, sha: &str, i: usize) -> String {
        self.key(&format!("plugins/blobs/{sha}/{i:06}"))
    }

    /// Every pushed plugin name and its record, and the revision read at.
    pub async fn plugins(&self) -> Result<(Vec<(String, PluginRecord)>, i64), FleetError> {
        let prefix = self.key("plugins/names/");
        let resp = self
            .client()
            .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
            .await?;
        let at = resp.header().map_or(0, |h| h.revision());
        let mut out = Vec::new();
        for kv in resp.kvs() {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            let name = key.strip_prefix(&prefix).unwrap_or(&key).to_string();
            out.push((name, decode_plugin(&key, kv.value())?));
        }
        Ok((out, at))
    }

    /// Plugin `name`'s record.
    pub async fn plugin(&self, name: &str) -> Result<PluginRecord, FleetError> {
        let key = self.key(&format!("plugins/names/{name}"));
        let resp = self.client().get(key.as_str(), None).await?;
        match resp.kvs().first() {
            Some(kv) => decode_plugin(&key, kv.value()),
            None => Err(FleetError::NoPlugin(name.to_string())),
        }
    }

    /// The component `rec` names, read chunk by chunk (each well under the
    /// client's message limit) and refused unless it hashes to `rec.sha256`.
    pub async fn plugin_blob(&self, name: &str, rec: &PluginRecord) -> Result<Vec<u8>, FleetError> {
        let mut client = self.client();
        let mut bytes = Vec::with_capacity(usize::try_from(rec.size).unwrap_or(0));
        for i in 0..rec.chunks as usize {
            let key = self.chunk_key(&rec.sha256, i);
            let resp = client.get(key.as_str(), None).await?;
            let Some(kv) = resp.kvs().first() else {
                return Err(FleetError::Corrupt {
                    key,
                    message: "chunk missing".into(),
                });
            };
            bytes.extend_from_slice(kv.value());
        }
        let actual = hex::encode(Sha256::digest(&bytes));
        if actual != rec.sha256 {
            return Err(FleetError::HashMismatch {
                name: name.to_string(),
                expected: rec.sha256.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Writes this node's status on `lease`.
    pub async fn put_node(&self, id: &str, status: &Value, lease: i64) -> Result<(), FleetError> {
        self.client()
            .put(
                self.key(&format!("nodes/{id}")),
                status.to_string(),
                Some(PutOptions::new().with_lease(lease)),
            )
            .await?;
        Ok(())
    }

    /// Every live node's status.
    pub async fn nodes(&self) -> Result<Vec<Value>, FleetError> {
        let prefix = self.key("nodes/");
        let resp = self
            .client()
            .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
            .await?;
        Ok(resp
            .kvs()
            .iter()
            .filter_map(|kv| serde_json::from_slice(kv.value()).ok())
            .collect())
    }
}

/// The record after `base` (version 1 when there is none), by `author`.
pub(super) fn next_record(document: Value, author: &str, base: Option<&Record>) -> Record {
    Record {
        version: base.map_or(1, |b| b.version + 1),
        revision: 0,
        at: crate::telemetry::access_log::rfc3339(std::time::SystemTime::now()),
        author: author.to_string(),
        summary: match base {
            Some(b) => crate::versions::summarize(&b.document, &document),
            None => "initial config".into(),
        },
        document,
    }
}

pub(super) fn encode(v: &impl Serialize) -> Result<Vec<u8>, FleetError> {
    serde_json::to_vec(v).map_err(|e| FleetError::Etcd(e.to_string()))
}

pub(super) fn decode_record(key: &str, value: &[u8], revision: i64) -> Result<Record, FleetError> {
    let mut rec: Record = serde_json::from_slice(value).map_err(|e| FleetError::Corrupt {
        key: key.to_string(),
        message: e.to_string(),
    })?;
    rec.revision = revision;
    Ok(rec)
}

fn decode_plugin(key: &str, value: &[u8]) -> Result<PluginRecord, FleetError> {
    serde_json::from_slice(value).map_err(|e| FleetError::Corrupt {
        key: key.to_string(),
        message: e.to_string(),
    })
}

fn tls_options(
    b: &Bootstrap,
    t: &super::bootstrap::EtcdTls,
) -> Result<etcd_client::TlsOptions, FleetError> {
    let read = |p: &std::path::Path| {
        let path = b.base.join(p);
        std::fs::read(&path).map_err(|e| FleetError::Local {
            path,
            message: e.to_string(),
        })
    };
    let mut tls = etcd_client::TlsOptions::new();
    if let Some(ca) = &t.ca {
        tls = tls.ca_certificate(etcd_client::Certificate::from_pem(read(ca)?));
    }
    if let (Some(c), Some(k)) = (&t.cert, &t.key) {
        tls = tls.identity(etcd_client::Identity::from_pem(read(c)?, read(k)?));
    }
    Ok(tls)
}
