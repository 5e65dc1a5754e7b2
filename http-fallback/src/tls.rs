//! HTTPS for the fallback: several certificates, each chosen by the names
//! it carries (its DNS subject alternative names, `*.` wildcards one label
//! deep) for the SNI name a client sends, all loaded from PEM files.
//!
//! [`Certs::reload`] reads every file again and swaps the whole set in at
//! once; a set that does not load (a missing file, a key that does not
//! match, a certificate without names) is refused with its reason and the
//! old set keeps serving. Connections already open keep their own.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// One certificate chain and its key, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The loaded set: by exact name, by wildcard parent, and the first as the
/// default for clients that send no SNI.
#[derive(Debug, Default)]
struct Table {
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    first: Option<Arc<CertifiedKey>>,
}

/// The certificates the fallback serves, reloadable.
#[derive(Debug)]
pub struct Certs {
    files: Vec<CertFiles>,
    current: ArcSwap<Table>,
}

impl Certs {
    /// Loads every file; all must load.
    pub fn load(files: Vec<CertFiles>) -> Result<Arc<Certs>, String> {
        let table = load_table(&files)?;
        Ok(Arc::new(Certs {
            files,
            current: ArcSwap::from_pointee(table),
        }))
    }

    /// Reads every file again: the new set replaces the old whole, or, if
    /// any file fails, nothing changes and the reason is returned.
    pub fn reload(&self) -> Result<usize, String> {
        let table = load_table(&self.files)?;
        let n = table.exact.len() + table.wildcard.len();
        self.current.store(Arc::new(table));
        Ok(n)
    }

    /// The files, for watching.
    pub fn files(&self) -> &[CertFiles] {
        &self.files
    }

    /// A server configuration that picks from this set per handshake.
    pub fn server_config(self: &Arc<Certs>) -> Arc<rustls::ServerConfig> {
        let mut config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

impl ResolvesServerCert for Certs {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let table = self.current.load();
        let Some(name) = hello.server_name() else {
            return table.first.clone();
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(c) = table.exact.get(&name) {
            return Some(c.clone());
        }
        let parent = name.split_once('.').map(|(_, p)| p)?;
        table.wildcard.get(parent).cloned()
    }
}

fn load_table(files: &[CertFiles]) -> Result<Table, String> {
    if files.is_empty() {
        return Err("no certificates configured".into());
    }
    let provider = rustls::crypto::ring::default_provider();
    let mut table = Table::default();
    for f in files {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&f.cert)
            .and_then(|it| it.collect::<Result<_, _>>())
            .map_err(|e| format!("{}: {e}", f.cert.display()))?;
        let Some(leaf) = chain.first() else {
            return Err(format!("{}: no certificate in it", f.cert.display()));
        };
        let key = PrivateKeyDer::from_pem_file(&f.key)
            .map_err(|e| format!("{}: {e}", f.key.display()))?;
        let names = dns_names(leaf).map_err(|e| format!("{}: {e}", f.cert.display()))?;
        let certified = CertifiedKey::from_der(chain, key, &provider)
            .map_err(|e| format!("{} with {}: {e}", f.cert.display(), f.key.display()))?;
        let certified = Arc::new(certified);
        for n in names {
            match n.strip_prefix("*.") {
                Some(parent) => table.wildcard.insert(parent.to_string(), certified.clone()),
                None => table.exact.insert(n, certified.clone()),
            };
        }
        table.first.get_or_insert(certified);
    }
    Ok(table)
}

/// The DNS names a certificate is for, lower case.
fn dns_names(der: &CertificateDer<'_>) -> Result<Vec<String>, String> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der.as_ref()).map_err(|e| e.to_string())?;
    let names: Vec<String> = cert
        .subject_alternative_name()
        .map_err(|e| e.to_string())?
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|g| match g {
                    GeneralName::DNSName(n) => Some(n.trim_end_matches('.').to_ascii_lowercase()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        return Err("the certificate names no DNS name (subject alternative names)".into());
    }
    Ok(names)
}
