//! A bounded background load: a few keep-alive clients hammering one URL until
//! told to stop (or a hard cap on count and time is reached), counting failures.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Hard caps so that a broken test can never load the machine forever.
const MAX_REQUESTS: usize = 200_000;
const MAX_TIME: Duration = Duration::from_secs(120);

/// A running load.
pub struct Load {
    stop: Arc<AtomicBool>,
    pub ok: Arc<AtomicUsize>,
    pub failed: Arc<AtomicUsize>,
    pub first_failure: Arc<std::sync::Mutex<Option<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Starts `workers` clients sending `GET url` back to back.
    pub fn start(url: String, workers: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let first_failure = Arc::new(std::sync::Mutex::new(None));
        let started = Instant::now();
        let tasks = (0..workers)
            .map(|_| {
                let (stop, ok, failed, first, url) = (
                    stop.clone(),
                    ok.clone(),
                    failed.clone(),
                    first_failure.clone(),
                    url.clone(),
                );
                tokio::spawn(async move {
                    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
                    while !stop.load(Ordering::Relaxed)
                        && ok.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed)
                            < MAX_REQUESTS
                        && started.elapsed() < MAX_TIME
                    {
                        let uri: http::Uri = url.parse().expect("url");
                        let outcome = match client.get(uri).await {
                            Ok(resp) => {
                                let status = resp.status();
                                match resp.into_body().collect().await {
                                    Ok(_) if status == 200 => Ok(()),
                                    Ok(b) => Err(format!(
                                        "status {status}: {}",
                                        String::from_utf8_lossy(&b.to_bytes())
                                    )),
                                    Err(e) => Err(format!("body: {e}")),
                                }
                            }
                            Err(e) => Err(format!("{e:?}")),
                        };
                        match outcome {
                            Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                            Err(e) => {
                                first.lock().unwrap().get_or_insert(e);
                                failed.fetch_add(1, Ordering::Relaxed)
                            }
                        };
                    }
                })
            })
            .collect();
        Self {
            stop,
            ok,
            failed,
            first_failure,
            tasks,
        }
    }

    pub fn ok(&self) -> usize {
        self.ok.load(Ordering::Relaxed)
    }

    /// Stops the clients and returns (ok, failed, first failure).
    pub async fn finish(self) -> (usize, usize, Option<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        let first = self.first_failure.lock().unwrap().clone();
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            first,
        )
    }
}
