//! Who is calling, and what they may do.
//!
//! Three kinds of caller reach a node's API, and they are told apart:
//!
//! - **nodes** of the cluster: by a certificate of role `node` (mutual
//!   TLS), or, on a cluster without TLS, by the cluster secret every node
//!   shares. Only nodes may send Raft RPCs, and only nodes may forward a
//!   write another node took in.
//! - **operators** and their tools: by a certificate of role `operator`
//!   (all scopes) or a bearer token with one scope: `read`, `write`
//!   (implies read) or `admin` (implies write: membership and cluster
//!   set-up).
//! - **probe agents**: by a certificate of role `agent` or a token of scope
//!   `probe`, each bound to the regions it may report for.
//!
//! Certificates carry their role (and an agent's regions) as URI subject
//! alternative names, `urn:meridian:role:ROLE` and
//! `urn:meridian:region:NAME`, as `meridian tls cert` writes them; a
//! certificate from the cluster's CA without a role is no one.
//!
//! Tokens are `mrd_ID_SECRET`. A node keeps only their SHA-256 in its
//! token file (one per line: `ID SCOPE REGIONS SHA256`), finds a presented
//! token's entry by its id and compares the hashes in constant time, so
//! neither the file nor the comparison gives a token away.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::sync::{Arc, RwLock};

use crate::resources::StoredToken;

use ring::digest::{digest, SHA256};
use serde::{Deserialize, Serialize};

/// The prefix of every token.
const TOKEN_PREFIX: &str = "mrd_";

/// A scope a token grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Read,
    Write,
    Admin,
    Probe,
}

impl Scope {
    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "read" => Some(Scope::Read),
            "write" => Some(Scope::Write),
            "admin" => Some(Scope::Admin),
            "probe" => Some(Scope::Probe),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
            Scope::Probe => "probe",
        }
    }

    /// Whether this scope covers `need`: admin ⊃ write ⊃ read; probe is
    /// apart.
    fn covers(self, need: Scope) -> bool {
        match (self, need) {
            (Scope::Probe, Scope::Probe) => true,
            (Scope::Probe, _) | (_, Scope::Probe) => false,
            (have, need) => have >= need,
        }
    }
}

/// The role a certificate names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Node,
    Operator,
    Agent,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "node" => Some(Role::Node),
            "operator" => Some(Role::Operator),
            "agent" => Some(Role::Agent),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Node => "node",
            Role::Operator => "operator",
            Role::Agent => "agent",
        }
    }
}

/// The URI SAN that names a certificate's role.
pub fn role_uri(role: Role) -> String {
    format!("urn:meridian:role:{}", role.name())
}

/// The URI SAN that binds an agent certificate to a region.
pub fn region_uri(region: &str) -> String {
    format!("urn:meridian:region:{region}")
}

/// What a verified client certificate says about its holder.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CertIdentity {
    /// The subject's common name, for logs.
    pub name: String,
    pub role: Option<Role>,
    pub regions: BTreeSet<String>,
    /// DNS names and IP addresses the certificate is valid for: a node's
    /// must include the host of its address in the membership.
    pub hosts: BTreeSet<String>,
}

impl CertIdentity {
    /// Reads the identity from a DER certificate (already verified against
    /// the CA by the TLS handshake).
    pub fn from_der(der: &[u8]) -> Result<CertIdentity, String> {
        use x509_parser::extensions::GeneralName;
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| format!("unreadable certificate: {e}"))?;
        let mut id = CertIdentity {
            name: cert
                .subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .unwrap_or("")
                .to_string(),
            ..CertIdentity::default()
        };
        let mut roles = BTreeSet::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::URI(uri) => {
                        if let Some(r) = uri.strip_prefix("urn:meridian:role:") {
                            roles.insert(r.to_string());
                        } else if let Some(r) = uri.strip_prefix("urn:meridian:region:") {
                            id.regions.insert(r.to_string());
                        }
                    }
                    GeneralName::DNSName(d) => {
                        id.hosts.insert(d.to_ascii_lowercase());
                    }
                    GeneralName::IPAddress(bytes) => {
                        let ip: Option<std::net::IpAddr> = match bytes.len() {
                            4 => <[u8; 4]>::try_from(*bytes).ok().map(Into::into),
                            16 => <[u8; 16]>::try_from(*bytes).ok().map(Into::into),
                            _ => None,
                        };
                        if let Some(ip) = ip {
                            id.hosts.insert(ip.to_string());
                        }
                    }
                    _ => {}
                }
            }
        }
        // one role or none: a certificate naming two is refused as no one
        if roles.len() == 1 {
            id.role = roles.iter().next().and_then(|r| Role::parse(r));
        }
        Ok(id)
    }
}

/// Who made a request, as far as this node can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A member of the cluster. `hosts` are its certificate's names; with
    /// the cluster secret instead of TLS there are none to check.
    Node {
        name: String,
        hosts: Option<BTreeSet<String>>,
    },
    /// An operator, a tool or an agent.
    Client {
        name: String,
        scope: Scope,
        /// For `probe`: the regions it may report for.
        regions: BTreeSet<String>,
    },
    /// No credential, or one that means nothing here.
    Anonymous,
    /// The node runs with `cluster.insecure: true`: no checks.
    Insecure,
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Node { name, .. } => write!(f, "node {name}"),
            Principal::Client { name, scope, .. } => write!(f, "{name} ({})", scope.name()),
            Principal::Anonymous => f.write_str("anonymous"),
            Principal::Insecure => f.write_str("anyone (insecure)"),
        }
    }
}

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Only a cluster node.
    Node,
    /// A client with this scope (or better), or a node.
    Scope(Scope),
    /// A client with this scope; nodes are not enough.
    ClientScope(Scope),
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No credential, or an invalid one: 401.
    Unauthenticated(String),
    /// A valid credential without the right: 403.
    Forbidden(String),
}

impl Principal {
    /// Whether this principal may use a route that needs `need`.
    pub fn allows(&self, need: Need) -> Result<(), Denied> {
        let scope_name = |s: Scope| s.name();
        match (self, need) {
            (Principal::Insecure, _) => Ok(()),
            (Principal::Anonymous, Need::Node) => Err(Denied::Unauthenticated(
                "only cluster nodes may call this: present a node certificate or the cluster secret"
                    .into(),
            )),
            (Principal::Anonymous, Need::Scope(s) | Need::ClientScope(s)) => {
                Err(Denied::Unauthenticated(format!(
                    "a credential with the {} scope is required: a bearer token (Authorization: Bearer) or a client certificate",
                    scope_name(s)
                )))
            }
            (Principal::Node { .. }, Need::Node | Need::Scope(_)) => Ok(()),
            (Principal::Node { name, .. }, Need::ClientScope(s)) => Err(Denied::Forbidden(format!(
                "node {name} may not do this: it needs an operator credential with the {} scope",
                scope_name(s)
            ))),
            (Principal::Client { name, .. }, Need::Node) => Err(Denied::Forbidden(format!(
                "{name} is not a cluster node: only nodes may call this"
            ))),
            (Principal::Client { name, scope, .. }, Need::Scope(s) | Need::ClientScope(s)) => {
                if scope.covers(s) {
                    Ok(())
                } else {
                    Err(Denied::Forbidden(format!(
                        "{name} has the {} scope; this needs {}",
                        scope.name(),
                        scope_name(s)
                    )))
                }
            }
        }
    }

    /// Whether this principal may report for, or read the checks of,
    /// `region`.
    pub fn may_probe(&self, region: &str) -> Result<(), Denied> {
        match self {
            Principal::Insecure => Ok(()),
            Principal::Node { name, .. } => {
                Err(Denied::Forbidden(format!("node {name} is no probe agent")))
            }
            Principal::Client {
                scope: Scope::Probe,
                regions,
                name,
            } => {
                if regions.contains(region) {
                    Ok(())
                } else {
                    Err(Denied::Forbidden(format!(
                        "{name} may probe only for {}, not {region:?}",
                        regions.iter().cloned().collect::<Vec<_>>().join(", ")
                    )))
                }
            }
            other => other.allows(Need::Scope(Scope::Probe)),
        }
    }

    /// The principal a verified client certificate stands for.
    pub fn from_cert(cert: &CertIdentity) -> Principal {
        let name = if cert.name.is_empty() {
            "(unnamed certificate)".to_string()
        } else {
            cert.name.clone()
        };
        match cert.role {
            Some(Role::Node) => Principal::Node {
                name,
                hosts: Some(cert.hosts.clone()),
            },
            Some(Role::Operator) => Principal::Client {
                name,
                scope: Scope::Admin,
                regions: BTreeSet::new(),
            },
            Some(Role::Agent) => Principal::Client {
                name,
                scope: Scope::Probe,
                regions: cert.regions.clone(),
            },
            None => Principal::Anonymous,
        }
    }
}

/// One entry of a token file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenEntry {
    pub id: String,
    pub scope: Scope,
    pub regions: BTreeSet<String>,
    /// SHA-256 of the whole token.
    pub hash: [u8; 32],
}

impl TokenEntry {
    /// The line `meridian token new` writes for this entry.
    pub fn line(&self) -> String {
        let regions = if self.regions.is_empty() {
            "-".to_string()
        } else {
            self.regions.iter().cloned().collect::<Vec<_>>().join(",")
        };
        format!(
            "{} {} {} {}",
            self.id,
            self.scope.name(),
            regions,
            hex(&self.hash)
        )
    }
}

/// The tokens a node accepts (hashes only) and the cluster secret.
#[derive(Clone, Default)]
pub struct Credentials {
    /// From the node's token file.
    tokens: Vec<TokenEntry>,
    /// Created through the API, from the replicated state: replaced on
    /// every state that changes them, so a revoked token stops working on
    /// a node as soon as it applies the revocation.
    replicated: Arc<RwLock<Replicated>>,
    /// SHA-256 of the cluster secret, when nodes prove themselves with it.
    secret: Option<[u8; 32]>,
    /// `cluster.insecure`: everyone may do everything.
    insecure: bool,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("tokens", &self.tokens.len())
            .field("replicated", &self.read_replicated().entries.len())
            .field("secret", &self.secret.is_some())
            .field("insecure", &self.insecure)
            .finish()
    }
}

impl Credentials {
    pub fn new(tokens: Vec<TokenEntry>, secret: Option<&str>, insecure: bool) -> Credentials {
        Credentials {
            tokens,
            replicated: Default::default(),
            secret: secret.map(sha256),
            insecure,
        }
    }

    /// Everything is allowed: `cluster.insecure: true`.
    pub fn insecure() -> Credentials {
        Credentials {
            insecure: true,
            ..Credentials::default()
        }
    }

    /// Who presents `bearer` (the `Authorization: Bearer` value, if any)
    /// over a connection with client certificate `cert` (if any). A bearer
    /// credential, when given, decides; an invalid one is an error, never
    /// a fall back to the certificate.
    pub fn principal(
        &self,
        bearer: Option<&str>,
        cert: Option<&CertIdentity>,
    ) -> Result<Principal, Denied> {
        if self.insecure {
            return Ok(Principal::Insecure);
        }
        if let Some(presented) = bearer {
            let hash = sha256(presented);
            if let Some(secret) = &self.secret {
                if same(&hash, secret) {
                    return Ok(Principal::Node {
                        name: "(cluster secret)".into(),
                        hosts: None,
                    });
                }
            }
            let id = token_id(presented);
            // one comparison per entry whatever matched: the time taken
            // says nothing about which token, or how much of one, was right
            let replicated = self.read_replicated();
            let mut found = None;
            for entry in self.tokens.iter().chain(&replicated.entries) {
                let hit = same(&hash, &entry.hash) & (Some(entry.id.as_str()) == id);
                if hit {
                    found = Some(entry);
                }
            }
            return match found {
                Some(e) => Ok(Principal::Client {
                    name: format!("token {}", e.id),
                    scope: e.scope,
                    regions: e.regions.clone(),
                }),
                None => Err(Denied::Unauthenticated(
                    "the bearer token is not valid (unknown, revoked or mistyped)".into(),
                )),
            };
        }
        Ok(cert.map_or(Principal::Anonymous, Principal::from_cert))
    }
}

/// The API's tokens as last applied.
#[derive(Default)]
struct Replicated {
    source: BTreeMap<String, StoredToken>,
    entries: Vec<TokenEntry>,
}

impl Credentials {
    fn read_replicated(&self) -> std::sync::RwLockReadGuard<'_, Replicated> {
        self.replicated.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the replicated state's tokens (when they changed).
    pub fn set_replicated(&self, tokens: &BTreeMap<String, StoredToken>) {
        if self.read_replicated().source == *tokens {
            return;
        }
        let entries = tokens
            .iter()
            .filter_map(|(id, t)| {
                Some(TokenEntry {
                    id: id.clone(),
                    scope: t.scope,
                    regions: t.regions.clone(),
                    hash: unhex32(&t.sha256)?,
                })
            })
            .collect();
        *self.replicated.write().unwrap_or_else(|p| p.into_inner()) = Replicated {
            source: tokens.clone(),
            entries,
        };
    }

    /// Whether a token id is taken (in the file or the state).
    pub fn has_token_id(&self, id: &str) -> bool {
        self.tokens.iter().any(|t| t.id == id)
            || self.read_replicated().entries.iter().any(|t| t.id == id)
    }

    /// The token file's entries (hashes only).
    pub fn file_tokens(&self) -> &[TokenEntry] {
        &self.tokens
    }
}

/// The hex form of a token's hash, as the state keeps it.
pub fn hash_hex(entry: &TokenEntry) -> String {
    hex(&entry.hash)
}

/// The id part of a token, if it has the token's shape.
fn token_id(token: &str) -> Option<&str> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    let (id, _) = rest.split_once('_')?;
    Some(id)
}

fn sha256(s: &str) -> [u8; 32] {
    let d = digest(&SHA256, s.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Equal, in time independent of where they differ.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Random bytes from the operating system.
pub(crate) fn random<const N: usize>() -> [u8; N] {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut out = [0u8; N];
    SystemRandom::new()
        .fill(&mut out)
        .expect("the operating system's random source");
    out
}

/// A new token with `scope` (and `regions`, for probe): the token, to hand
/// out once, and the entry to keep.
pub fn new_token(scope: Scope, regions: BTreeSet<String>) -> (String, TokenEntry) {
    let id = hex(&random::<6>());
    let token = format!("{TOKEN_PREFIX}{id}_{}", hex(&random::<32>()));
    let entry = TokenEntry {
        id,
        scope,
        regions,
        hash: sha256(&token),
    };
    (token, entry)
}

/// A new cluster secret.
pub fn new_secret() -> String {
    hex(&random::<32>())
}

/// Parses a token file; errors name the file and line.
pub fn parse_tokens(file: &str, text: &str) -> Result<Vec<TokenEntry>, String> {
    let mut out: Vec<TokenEntry> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = |m: String| format!("{file}:{}: {m}", i + 1);
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [id, scope, regions, hash] = fields[..] else {
            return Err(at(format!(
                "expected `ID SCOPE REGIONS SHA256` (as `meridian token new` writes), got {} fields; \
                 a plain token does not belong here, only its hash",
                fields.len()
            )));
        };
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(at(format!("a token id is letters and digits, got {id:?}")));
        }
        if out.iter().any(|e| e.id == id) {
            return Err(at(format!("token id {id} appears twice")));
        }
        let scope = Scope::parse(scope).ok_or_else(|| {
            at(format!(
                "expected a scope (read, write, admin, probe), got {scope:?}"
            ))
        })?;
        let regions: BTreeSet<String> = if regions == "-" {
            BTreeSet::new()
        } else {
            regions.split(',').map(str::to_string).collect()
        };
        match (scope, regions.is_empty()) {
            (Scope::Probe, true) => {
                return Err(at(
                    "a probe token must name the regions it may report for".into()
                ))
            }
            (Scope::Probe, false) => {}
            (_, false) => return Err(at("only probe tokens name regions (use -)".into())),
            (_, true) => {}
        }
        let hash = unhex32(hash)
            .ok_or_else(|| at("expected the token's SHA-256 as 64 hex digits".into()))?;
        out.push(TokenEntry {
            id: id.to_string(),
            scope,
            regions,
            hash,
        });
    }
    Ok(out)
}

/// Reads a token file.
pub fn load_tokens(path: &Path) -> Result<Vec<TokenEntry>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse_tokens(&path.display().to_string(), &text)
}

/// Reads the cluster secret file: one line, at least 32 characters.
pub fn load_secret(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let secret = text.trim();
    if secret.len() < 32 || secret.contains(char::is_whitespace) {
        return Err(format!(
            "{}: the cluster secret must be one word of at least 32 characters \
             (meridian token secret writes one)",
            path.display()
        ));
    }
    Ok(secret.to_string())
}

/// A warning when a file holding keys or tokens can be read by others
/// than its owner.
pub fn exposure_warning(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o077 != 0).then(|| {
        format!(
            "{} can be read by other users (mode {:o}): chmod 600 it",
            path.display(),
            mode & 0o777
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book(entries: Vec<TokenEntry>) -> Credentials {
        Credentials::new(entries, Some("s3cret-s3cret-s3cret-s3cret-s3cret"), false)
    }

    #[test]
    fn a_token_is_known_by_its_hash_and_id() {
        let (token, entry) = new_token(Scope::Write, BTreeSet::new());
        let text = format!("# tokens\n{}\n", entry.line());
        let parsed = parse_tokens("t", &text).unwrap();
        assert_eq!(parsed, vec![entry.clone()]);
        assert!(!text.contains(&token[12..]), "only the hash is stored");
        let creds = book(parsed);
        let p = creds.principal(Some(&token), None).unwrap();
        assert_eq!(p.allows(Need::Scope(Scope::Read)), Ok(()));
        assert_eq!(p.allows(Need::Scope(Scope::Write)), Ok(()));
        assert!(matches!(
            p.allows(Need::Scope(Scope::Admin)),
            Err(Denied::Forbidden(_))
        ));
        assert!(matches!(p.allows(Need::Node), Err(Denied::Forbidden(_))));
        // one character off, another id, no token at all
        let mut wrong = token.clone();
        wrong.pop();
        wrong.push('x');
        assert!(matches!(
            creds.principal(Some(&wrong), None),
            Err(Denied::Unauthenticated(_))
        ));
        assert!(creds.principal(Some("mrd_000000000000_00"), None).is_err());
        assert_eq!(creds.principal(None, None), Ok(Principal::Anonymous));
        assert!(matches!(
            Principal::Anonymous.allows(Need::Scope(Scope::Read)),
            Err(Denied::Unauthenticated(_))
        ));
    }

    #[test]
    fn the_cluster_secret_is_a_node_and_nothing_else_is() {
        let creds = book(Vec::new());
        let node = creds
            .principal(Some("s3cret-s3cret-s3cret-s3cret-s3cret"), None)
            .unwrap();
        assert_eq!(node.allows(Need::Node), Ok(()));
        assert!(node.allows(Need::ClientScope(Scope::Admin)).is_err());
        let (admin, entry) = new_token(Scope::Admin, BTreeSet::new());
        let creds = book(vec![entry]);
        let admin = creds.principal(Some(&admin), None).unwrap();
        assert!(matches!(
            admin.allows(Need::Node),
            Err(Denied::Forbidden(_))
        ));
        assert_eq!(admin.allows(Need::ClientScope(Scope::Admin)), Ok(()));
    }

    #[test]
    fn a_probe_token_reports_only_for_its_regions() {
        let (token, entry) = new_token(Scope::Probe, BTreeSet::from(["eu-west".to_string()]));
        let creds = book(vec![entry]);
        let p = creds.principal(Some(&token), None).unwrap();
        assert_eq!(p.may_probe("eu-west"), Ok(()));
        assert!(matches!(p.may_probe("us-east"), Err(Denied::Forbidden(_))));
        assert!(p.allows(Need::Scope(Scope::Read)).is_err());
        assert!(p.allows(Need::Scope(Scope::Write)).is_err());
        let (write, entry) = new_token(Scope::Write, BTreeSet::new());
        let w = book(vec![entry]).principal(Some(&write), None).unwrap();
        assert!(w.may_probe("eu-west").is_err(), "write is not probe");
    }

    #[test]
    fn token_file_errors_name_the_line() {
        let check = |text: &str, want: &str| {
            let e = parse_tokens("tokens", text).unwrap_err();
            assert!(e.contains(want), "{e}");
        };
        let hash = "ab".repeat(32);
        check(
            "plain-old-token\n",
            "tokens:1: expected `ID SCOPE REGIONS SHA256`",
        );
        check(
            &format!("\n\na1 root - {hash}\n"),
            "tokens:3: expected a scope",
        );
        check(&format!("a1 probe - {hash}\n"), "must name the regions");
        check(
            &format!("a1 read eu {hash}\n"),
            "only probe tokens name regions",
        );
        check("a1 read - abc\n", "64 hex digits");
        check(
            &format!("a1 read - {hash}\na1 write - {hash}\n"),
            "tokens:2: token id a1 appears twice",
        );
    }

    #[test]
    fn insecure_allows_everything() {
        let p = Credentials::insecure().principal(None, None).unwrap();
        assert_eq!(p.allows(Need::Node), Ok(()));
        assert_eq!(p.may_probe("anywhere"), Ok(()));
    }
}
