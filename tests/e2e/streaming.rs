//! Bodies stream through without buffering: 100 MB each way through the real
//! binary while its RSS stays flat.

use crate::support::client::stream_through;
use crate::support::*;

const SIZE: u64 = 100 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_megabytes_each_way_with_flat_memory() {
    let drain = Upstream::start("drain", Behavior::Drain).await;
    let source = Upstream::start("source", Behavior::Stream(SIZE)).await;
    let gw = GatewayProcess::spawn(
        &format!(
            "services:\n  - name: drain\n    instances: [{{ url: \"{}\" }}]\n  - name: source\n    instances: [{{ url: \"{}\" }}]\nroutes:\n  - {{ id: up, match: {{ path: /upload }}, upstream: drain }}\n  - {{ id: down, match: {{ path: /download }}, upstream: source }}\n",
            drain.url(),
            source.url()
        ),
        &[],
    );
    // Warm up so that the baseline includes the runtime's steady state.
    stream_through(&gw.url("/upload"), 1024 * 1024).await;
    let before = gw.rss_kib();

    let (status, reply) = stream_through(&gw.url("/upload"), SIZE).await;
    assert_eq!(status, 200);
    let counted: u64 = String::from_utf8_lossy(&drain.last().body)
        .parse()
        .unwrap_or(0);
    assert_eq!(counted, SIZE, "the upstream received every byte");
    assert!(reply > 0);
    let after_upload = gw.rss_kib();

    let (status, got) = stream_through(&gw.url("/download"), 0).await;
    assert_eq!(status, 200);
    assert_eq!(got, SIZE);
    let after_download = gw.rss_kib();

    let growth = after_upload.max(after_download).saturating_sub(before);
    eprintln!(
        "streaming: RSS {before} KiB before, {after_upload} after 100 MB up, {after_download} after 100 MB down"
    );
    assert!(
        growth < 32 * 1024,
        "RSS grew {growth} KiB (before {before} KiB)"
    );
}
