//! The agent's side of the probe API over HTTP(S): tries the cluster's
//! nodes in turn, starting from the last one that answered.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::agent::Cluster;
use crate::health::Report;
use crate::targets::CheckList;

/// How long a node may hold a check-list request open (the server waits
/// less than this for a change).
pub const LONG_POLL: Duration = Duration::from_secs(30);

/// Cluster nodes reached over HTTP with a probe token (or, under mutual
/// TLS, the client's agent certificate alone).
pub struct HttpCluster {
    urls: Vec<String>,
    token: Option<String>,
    client: reqwest::Client,
    /// Index of the node that last answered.
    current: AtomicUsize,
}

impl HttpCluster {
    /// `urls` are base URLs (`https://n1:8443`); `client` carries any TLS
    /// identity and must not follow redirects.
    pub fn new(urls: Vec<String>, token: Option<String>, client: reqwest::Client) -> HttpCluster {
        HttpCluster {
            urls: urls
                .into_iter()
                .map(|u| u.trim_end_matches('/').to_string())
                .collect(),
            token,
            client,
            current: AtomicUsize::new(0),
        }
    }

    /// Sends the request built by `req` to each node in turn until one
    /// answers with success; otherwise says what each node answered.
    async fn each<T: DeserializeOwned>(
        &self,
        req: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> Result<T, String> {
        let n = self.urls.len();
        let start = self.current.load(Ordering::Relaxed);
        let mut errors = Vec::new();
        for i in 0..n {
            let at = (start + i) % n;
            let url = &self.urls[at];
            let request = match &self.token {
                Some(t) => req(url).bearer_auth(t),
                None => req(url),
            };
            match self.attempt(request).await {
                Ok(v) => {
                    self.current.store(at, Ordering::Relaxed);
                    return Ok(v);
                }
                Err(e) => errors.push(format!("{url}: {e}")),
            }
        }
        Err(errors.join("; "))
    }

    async fn attempt<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, String> {
        let resp = req.send().await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            return Err(format!(
                "HTTP {status}: {}",
                text.chars().take(300).collect::<String>()
            ));
        }
        serde_json::from_slice(&body).map_err(|e| format!("not a Meridian answer: {e}"))
    }
}

impl Cluster for HttpCluster {
    async fn checks(&self, region: &str, known: Option<u64>) -> Result<CheckList, String> {
        self.each(|base| {
            // region names are plain tokens (checked where they are read)
            let url = match known {
                Some(k) => format!("{base}/probe/checks?region={region}&known={k}"),
                None => format!("{base}/probe/checks?region={region}"),
            };
            self.client.get(url).timeout(LONG_POLL)
        })
        .await
    }

    async fn report(&self, report: Report) -> Result<(), String> {
        let _: serde_json::Value = self
            .each(|base| {
                self.client
                    .post(format!("{base}/probe/report"))
                    .json(&report)
                    .timeout(Duration::from_secs(15))
            })
            .await?;
        Ok(())
    }
}
