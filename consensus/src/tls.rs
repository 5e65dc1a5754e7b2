//! Mutual TLS between nodes (and between the `meridian cluster` commands
//! and a node): every side presents a certificate signed by the cluster's
//! CA and accepts only peers whose certificate that CA signed.
//!
//! The server side is served by [`crate::http::serve`], which completes
//! each handshake on its connection's own task, so one slow or hostile
//! client never holds up accepting the next connection.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use meridian_config::node::TlsConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// A TLS file that could not be used, named.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct TlsError {
    pub path: PathBuf,
    pub message: String,
}

fn fail(path: &Path, message: impl std::fmt::Display) -> TlsError {
    TlsError {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// A loaded identity: the client and server configurations built from it.
#[derive(Clone)]
pub struct Tls {
    pub client: Arc<ClientConfig>,
    pub server: Arc<ServerConfig>,
}

impl Tls {
    /// Loads the certificate, key and CA, and builds both configurations.
    pub fn load(files: &TlsConfig) -> Result<Tls, TlsError> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
            .and_then(|it| it.collect::<Result<_, _>>())
            .map_err(|e| fail(&files.cert, format!("cannot read the certificate: {e}")))?;
        if certs.is_empty() {
            return Err(fail(&files.cert, "no certificate in the file"));
        }
        let key = PrivateKeyDer::from_pem_file(&files.key)
            .map_err(|e| fail(&files.key, format!("cannot read the private key: {e}")))?;
        let mut roots = RootCertStore::empty();
        let cas = CertificateDer::pem_file_iter(&files.ca)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| fail(&files.ca, format!("cannot read the CA certificate: {e}")))?;
        for ca in cas {
            roots
                .add(ca)
                .map_err(|e| fail(&files.ca, format!("not a usable CA certificate: {e}")))?;
        }
        if roots.is_empty() {
            return Err(fail(&files.ca, "no CA certificate in the file"));
        }
        let roots = Arc::new(roots);
        let verifier = WebPkiClientVerifier::builder(roots.clone())
            .build()
            .map_err(|e| fail(&files.ca, e))?;
        let server = ServerConfig::builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs.clone(), key.clone_key())
            .map_err(|e| fail(&files.key, format!("does not match the certificate: {e}")))?;
        let client = ClientConfig::builder()
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .map_err(|e| fail(&files.key, format!("does not match the certificate: {e}")))?;
        Ok(Tls {
            client: Arc::new(client),
            server: Arc::new(server),
        })
    }
}

/// The HTTP client every node-to-node and command-to-node request uses:
/// with the node's identity when TLS is configured, and `bearer` (the
/// cluster secret, or an operator's token) on every request when given.
pub fn http_client(tls: Option<&Tls>, bearer: Option<&str>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        // shorter than the listeners' idle timeout, so a pooled connection
        // is not reused just as the server closes it
        .pool_idle_timeout(Duration::from_secs(5));
    if let Some(b) = bearer {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Ok(mut v) = reqwest::header::HeaderValue::from_str(&format!("Bearer {b}")) {
            v.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, v);
        }
        builder = builder.default_headers(headers);
    }
    let builder = match tls {
        Some(t) => builder.tls_backend_preconfigured((*t.client).clone()),
        None => builder,
    };
    builder
        .build()
        .expect("a client with a valid TLS configuration")
}
