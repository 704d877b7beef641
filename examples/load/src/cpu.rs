//! The CPU time each measured process has spent: the service (from its `/metrics`),
//! this tool, and each `--pid`.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::http::Request;
use http_body_util::Full;

use crate::LoadArgs;
use crate::client::{HttpClient, send};

/// CPU seconds spent so far by each measured process: `service` (from its `/metrics`,
/// when it reports `process_cpu_seconds_total`), `load` (this tool), and each `--pid`.
pub(crate) async fn cpu_now(
    client: &HttpClient,
    base: &str,
    args: &LoadArgs,
) -> BTreeMap<String, f64> {
    let mut cpu = BTreeMap::new();
    if let Ok(text) = metrics_text(client, base).await
        && let Some(seconds) = process_stats::sample(&text, "process_cpu_seconds_total")
    {
        cpu.insert("service".to_owned(), seconds);
    }
    if let Some(own) = process_stats::own() {
        cpu.insert("load".to_owned(), own.cpu_seconds);
    }
    for (name, pid) in &args.pids {
        if let Some(seconds) = process_stats::tree_cpu_seconds(*pid) {
            cpu.insert(name.clone(), seconds);
        }
    }
    cpu
}

async fn metrics_text(client: &HttpClient, base: &str) -> Result<String, String> {
    let request = Request::builder()
        .uri(format!("{base}/metrics"))
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let (_, bytes) = send(client, request).await?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
