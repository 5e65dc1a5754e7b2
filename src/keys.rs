//! `meridian tls` and `meridian token`: the credentials a cluster runs on.
//!
//! - `tls ca` writes a CA (`ca.pem`, `ca.key`); `tls cert` writes a
//!   certificate it signs for a role — `node` (server and client, with the
//!   node's host names and addresses), `operator` or `agent` (client, an
//!   agent bound to its regions) — with the role and regions as URI SANs
//!   (see `meridian_consensus::auth`).
//! - `token new` prints a new bearer token once and appends only its hash
//!   to a token file; `token secret` writes a cluster secret.
//!
//! Every key, token file and secret is written readable by its owner only.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use meridian_consensus::auth::{self, Role, Scope};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::EXIT_CONFIG;

/// Writes `contents` to `path`, readable by the owner only; refuses to
/// overwrite unless `force`.
fn write_private(path: &Path, contents: &str, force: bool) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).mode(0o600);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut f = options
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    f.write_all(contents.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn write_public(path: &Path, contents: &str, force: bool) -> Result<(), String> {
    if !force && path.exists() {
        return Err(format!(
            "{} exists already (--force replaces it)",
            path.display()
        ));
    }
    std::fs::write(path, contents).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The current year, for certificate validity.
fn this_year() -> i32 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // 365.2425 days a year: close enough for a validity period
    1970 + i32::try_from(secs / 31_556_952).unwrap_or(0)
}

fn finish(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("meridian: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `meridian tls ca --dir DIR`.
pub fn tls_ca(dir: &Path, name: &str, years: i32, force: bool) -> ExitCode {
    finish((|| {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let year = this_year();
        params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
        params.not_after = rcgen::date_time_ymd(year + years, 1, 1);
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
        write_private(&dir.join("ca.key"), &key.serialize_pem(), force)?;
        write_public(&dir.join("ca.pem"), &cert.pem(), force)?;
        println!(
            "wrote {} and {} (keep ca.key offline; every node needs ca.pem)",
            dir.join("ca.pem").display(),
            dir.join("ca.key").display()
        );
        Ok(())
    })())
}

/// What `meridian tls cert` is asked for.
pub struct CertRequest {
    pub dir: PathBuf,
    pub role: String,
    pub name: String,
    pub hosts: Vec<String>,
    pub regions: Vec<String>,
    pub years: i32,
    pub force: bool,
}

/// `meridian tls cert --role ROLE --name NAME ...`.
pub fn tls_cert(req: &CertRequest) -> ExitCode {
    let Some(role) = Role::parse(&req.role) else {
        eprintln!(
            "meridian: --role: expected node, operator or agent, got {:?}",
            req.role
        );
        return ExitCode::from(2);
    };
    if role == Role::Node && req.hosts.is_empty() {
        eprintln!(
            "meridian: a node certificate needs --host: each name or address peers reach it at"
        );
        return ExitCode::from(2);
    }
    if role == Role::Agent && req.regions.is_empty() {
        eprintln!("meridian: an agent certificate needs --region: the regions it reports for");
        return ExitCode::from(2);
    }
    if role != Role::Agent && !req.regions.is_empty() {
        eprintln!("meridian: only agent certificates name regions");
        return ExitCode::from(2);
    }
    if let Some(r) = req
        .regions
        .iter()
        .find(|r| !meridian_config::node::is_region_name(r))
    {
        eprintln!("meridian: --region: {r:?} is not a region name");
        return ExitCode::from(2);
    }
    if !req
        .name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        || req.name.is_empty()
    {
        eprintln!(
            "meridian: --name: letters, digits, '-', '_' and '.', got {:?}",
            req.name
        );
        return ExitCode::from(2);
    }
    finish((|| {
        let ca_pem = std::fs::read_to_string(req.dir.join("ca.pem"))
            .map_err(|e| format!("cannot read {}: {e}", req.dir.join("ca.pem").display()))?;
        let ca_key_pem = std::fs::read_to_string(req.dir.join("ca.key"))
            .map_err(|e| format!("cannot read {}: {e}", req.dir.join("ca.key").display()))?;
        let ca_key = KeyPair::from_pem(&ca_key_pem)
            .map_err(|e| format!("{}: {e}", req.dir.join("ca.key").display()))?;
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key)
            .map_err(|e| format!("{}: {e}", req.dir.join("ca.pem").display()))?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
        params
            .distinguished_name
            .push(DnType::CommonName, req.name.as_str());
        params.distinguished_name.push(
            DnType::OrganizationalUnitName,
            format!("meridian-{}", role.name()),
        );
        let mut sans = Vec::new();
        for host in &req.hosts {
            match host.parse::<std::net::IpAddr>() {
                Ok(ip) => sans.push(SanType::IpAddress(ip)),
                Err(_) => sans.push(SanType::DnsName(
                    host.as_str()
                        .try_into()
                        .map_err(|e| format!("--host {host:?}: {e}"))?,
                )),
            }
        }
        let uri = |u: String| -> Result<SanType, String> {
            Ok(SanType::URI(
                u.as_str().try_into().map_err(|e| format!("{u}: {e}"))?,
            ))
        };
        sans.push(uri(auth::role_uri(role))?);
        for r in &req.regions {
            sans.push(uri(auth::region_uri(r))?);
        }
        params.subject_alt_names = sans;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = match role {
            Role::Node => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            _ => vec![ExtendedKeyUsagePurpose::ClientAuth],
        };
        let year = this_year();
        params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
        params.not_after = rcgen::date_time_ymd(year + req.years, 1, 1);
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(|e| format!("cannot sign: {e}"))?;
        let pem = req.dir.join(format!("{}.pem", req.name));
        let key_path = req.dir.join(format!("{}.key", req.name));
        write_private(&key_path, &key.serialize_pem(), req.force)?;
        write_public(&pem, &cert.pem(), req.force)?;
        println!(
            "wrote {} and {} ({} certificate for {})",
            pem.display(),
            key_path.display(),
            role.name(),
            req.name
        );
        Ok(())
    })())
}

/// `meridian token new --scope SCOPE [--region R]... --file FILE`.
pub fn token_new(scope: &str, regions: Vec<String>, file: &Path) -> ExitCode {
    let Some(scope) = Scope::parse(scope) else {
        eprintln!("meridian: --scope: expected read, write, admin or probe, got {scope:?}");
        return ExitCode::from(2);
    };
    if (scope == Scope::Probe) == regions.is_empty() {
        eprintln!(
            "meridian: {}",
            if scope == Scope::Probe {
                "a probe token needs --region: the regions it may report for"
            } else {
                "only probe tokens take --region"
            }
        );
        return ExitCode::from(2);
    }
    if let Some(r) = regions
        .iter()
        .find(|r| !meridian_config::node::is_region_name(r))
    {
        eprintln!("meridian: --region: {r:?} is not a region name");
        return ExitCode::from(2);
    }
    // the file must stay readable by nodes after this line is added
    let existing = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            eprintln!("meridian: cannot read {}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = auth::parse_tokens(&file.display().to_string(), &existing) {
        eprintln!("meridian: not adding to a token file that does not read: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let (token, entry) = auth::new_token(scope, regions.into_iter().collect::<BTreeSet<_>>());
    let mut text = if existing.is_empty() {
        "# Meridian token hashes: ID SCOPE REGIONS SHA256 (meridian token new)\n".to_string()
    } else {
        existing
    };
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&entry.line());
    text.push('\n');
    // written whole to a temporary file and renamed: a node reloading the
    // file never sees half of it
    let tmp = file.with_extension("tmp");
    let written = write_private(&tmp, &text, true)
        .and_then(|()| std::fs::rename(&tmp, file).map_err(|e| e.to_string()));
    if let Err(e) = written {
        eprintln!("meridian: {e}");
        return ExitCode::FAILURE;
    }
    eprintln!(
        "added token {} ({}) to {}; it is shown once, here:",
        entry.id,
        scope.name(),
        file.display()
    );
    println!("{token}");
    ExitCode::SUCCESS
}

/// `meridian token secret --file FILE`.
pub fn token_secret(file: &Path, force: bool) -> ExitCode {
    finish(
        write_private(file, &format!("{}\n", auth::new_secret()), force).map(|()| {
            println!(
                "wrote a cluster secret to {}: give every node the same file (cluster.secret)",
                file.display()
            )
        }),
    )
}
