//! The command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Meridian: a global load balancer that is the authoritative DNS for your
/// zone and answers each client with the best endpoints for it.
#[derive(Debug, Parser)]
#[command(name = "meridian", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Which node a `cluster` command talks to, and with what identity.
#[derive(Debug, clap::Args)]
pub struct Target {
    /// A node config: its own API is the default target, and its TLS
    /// files are used (its certificate is a node's: enough for `status`
    /// and `health`; give --cert/--key of an operator to change things).
    #[arg(long, short, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// The node's API address (host:port).
    #[arg(long, value_name = "HOST:PORT", global = true)]
    pub api: Option<String>,
    /// A file holding a bearer token (`meridian token new`); or set
    /// MERIDIAN_TOKEN.
    #[arg(long, value_name = "FILE", global = true)]
    pub token_file: Option<PathBuf>,
    /// TLS: the cluster's CA certificate.
    #[arg(long, value_name = "FILE", global = true)]
    pub ca: Option<PathBuf>,
    /// TLS: this client's certificate (`meridian tls cert --role operator`).
    #[arg(long, value_name = "FILE", global = true, requires = "key")]
    pub cert: Option<PathBuf>,
    /// TLS: this client's private key.
    #[arg(long, value_name = "FILE", global = true, requires = "cert")]
    pub key: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum TlsCommand {
    /// Create a CA: DIR/ca.pem (give it to every node and client) and
    /// DIR/ca.key (keep it offline).
    Ca {
        #[arg(long, default_value = "pki")]
        dir: PathBuf,
        /// The CA's common name.
        #[arg(long, default_value = "Meridian cluster CA")]
        name: String,
        /// Years of validity.
        #[arg(long, default_value_t = 10)]
        years: i32,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
    /// Create a certificate signed by DIR's CA: DIR/NAME.pem and DIR/NAME.key.
    ///
    /// Example: meridian tls cert --role node --name n1 --host 10.0.0.1 --host n1.example.net
    Cert {
        #[arg(long, default_value = "pki")]
        dir: PathBuf,
        /// node (a cluster member), operator (may do everything through
        /// the API) or agent (reports probes for its --region).
        #[arg(long)]
        role: String,
        /// The holder's name (the file names and the common name).
        #[arg(long)]
        name: String,
        /// For a node: a name or address peers reach it at (repeat).
        #[arg(long = "host")]
        hosts: Vec<String>,
        /// For an agent: a region it reports for (repeat).
        #[arg(long = "region")]
        regions: Vec<String>,
        /// Years of validity.
        #[arg(long, default_value_t = 2)]
        years: i32,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a new bearer token and add its hash (only) to a token file.
    ///
    /// Example: meridian token new --scope probe --region eu-west --file tokens
    New {
        /// read, write, admin or probe.
        #[arg(long)]
        scope: String,
        /// For a probe token: a region it may report for (repeat).
        #[arg(long = "region")]
        regions: Vec<String>,
        /// The token file nodes read (cluster.tokens).
        #[arg(long)]
        file: PathBuf,
    },
    /// Write a new cluster secret: how nodes prove themselves to each
    /// other without TLS.
    Secret {
        #[arg(long)]
        file: PathBuf,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Leader, term, members, each node's applied index, version and lag.
    Status {
        /// Print the raw JSON of every node's status.
        #[arg(long)]
        json: bool,
    },
    /// Start a new cluster with the target node as its only member.
    Init,
    /// Add a node (started with the same TLS CA, not yet a member): it
    /// becomes a learner, catches up, then votes.
    Join {
        /// The new node's id (never reuse the id of a removed node).
        #[arg(long)]
        id: u64,
        /// The new node's API address (its `cluster.advertise`).
        #[arg(long, value_name = "HOST:PORT")]
        addr: String,
    },
    /// Remove a node from the cluster.
    Leave {
        #[arg(long)]
        id: u64,
    },
    /// Each checked endpoint: the verdict, and each probe region's vote,
    /// its age and the measured RTT.
    Health {
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// Replace the cluster's zone spec with this file, all or nothing: it is
    /// validated first, and an invalid spec changes nothing.
    Apply {
        /// The zone spec (zones.yaml).
        zones: PathBuf,
    },
    /// Print the whole replicated state (spec, health, API tokens' hashes,
    /// audit log, cookie secrets) with its version, as JSON: keep it
    /// where secrets are kept. Needs `admin`.
    Backup,
    /// Bring a cluster back to a backup: onto a cluster with no spec yet,
    /// or any with --force. The state version moves past the backup's.
    Restore {
        /// A file `meridian cluster backup` wrote.
        file: PathBuf,
        /// Replace a cluster's state that has a spec.
        #[arg(long)]
        force: bool,
    },
}

/// `meridian ctl`: which node, with what identity, and how to print.
#[derive(Debug, clap::Args)]
pub struct CtlArgs {
    /// The node's API: a URL (https://node1:8440) or host:port; or set
    /// MERIDIAN_SERVER.
    #[arg(long, global = true, value_name = "URL")]
    pub server: Option<String>,
    /// A bearer token; or set MERIDIAN_TOKEN (better: the token does not
    /// show in the process list), or use --token-file.
    #[arg(long, global = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// A file holding a bearer token.
    #[arg(long, global = true, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// TLS: the cluster's CA certificate.
    #[arg(long, value_name = "FILE", global = true)]
    pub ca: Option<PathBuf>,
    /// TLS: this client's certificate (`meridian tls cert --role operator`).
    #[arg(long, value_name = "FILE", global = true, requires = "key")]
    pub cert: Option<PathBuf>,
    /// TLS: this client's private key.
    #[arg(long, value_name = "FILE", global = true, requires = "cert")]
    pub key: Option<PathBuf>,
    /// Output: a table, or the API's JSON or YAML.
    #[arg(long, short, global = true, value_enum, default_value = "table")]
    pub output: Output,
    #[command(subcommand)]
    pub command: CtlCommand,
}

/// How `meridian ctl` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
    Yaml,
}

/// What `ctl get` and `ctl delete` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CtlKind {
    /// The whole spec (get only).
    Spec,
    Zones,
    /// ZONE
    Zone,
    /// ZONE: its static record sets.
    Records,
    /// ZONE NAME TYPE
    Record,
    /// ZONE NAME TYPE
    Steered,
    Pools,
    /// POOL
    Pool,
    /// POOL
    Endpoints,
    /// POOL ENDPOINT
    Endpoint,
    /// POOL: its health check.
    Check,
    Regions,
    /// REGION
    Region,
}

#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// Show resources: `get pools`, `get pool web`, `get endpoints web`,
    /// `get record glb.example.com www A`, `get spec -o yaml`.
    Get {
        #[arg(value_enum)]
        kind: CtlKind,
        names: Vec<String>,
    },
    /// Replace the whole spec with a file, atomically; --dry-run shows
    /// what would change.
    Apply {
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: PathBuf,
        #[arg(long)]
        dry_run: bool,
        /// Apply only if the spec's ETag is still this (the ETag of GET /v1/spec).
        #[arg(long, value_name = "ETAG")]
        if_match: Option<String>,
    },
    /// Create or replace one resource from a file (YAML or JSON, the zone
    /// file's schema for it): `put pool web -f pool.yaml`,
    /// `put endpoint web eu-2 -f ep.yaml`, `put record glb.example.com www A -f rr.yaml`.
    Put {
        #[arg(value_enum)]
        kind: CtlKind,
        names: Vec<String>,
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: PathBuf,
        /// Replace only if the resource's ETag is still this.
        #[arg(long, value_name = "ETAG")]
        if_match: Option<String>,
    },
    /// Delete a resource: `delete pool web`, `delete endpoint web eu-1`.
    Delete {
        #[arg(value_enum)]
        kind: CtlKind,
        names: Vec<String>,
    },
    /// Set one endpoint's weight.
    SetWeight {
        pool: String,
        endpoint: String,
        weight: u16,
    },
    /// Take an endpoint out of new answers (clients on it finish).
    Drain { pool: String, endpoint: String },
    /// Put an endpoint back in service.
    Enable { pool: String, endpoint: String },
    /// Take an endpoint out of service.
    Disable { pool: String, endpoint: String },
    /// Each checked endpoint: the verdict and each region's vote.
    Health,
    /// The answer a name gets for a client, with each step's decision.
    Explain {
        name: String,
        #[arg(value_name = "TYPE", default_value = "A")]
        rtype: String,
        /// An address or a subnet, as ECS would carry it.
        #[arg(long, value_name = "IP[/PREFIX]")]
        client: Option<String>,
    },
    /// Members, leader, lag and staleness, as the node sees them.
    Cluster,
    /// Who changed what, when, with which token.
    Audit {
        /// The newest this many entries.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Only entries after this sequence number.
        #[arg(long)]
        after: Option<u64>,
    },
    /// API tokens (admin): create, list, revoke.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Create a token; it is printed once.
    Create {
        /// read, write, admin or probe.
        #[arg(long)]
        scope: String,
        /// For probe: a region it may report for (repeat).
        #[arg(long = "region")]
        regions: Vec<String>,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Every token, by id and scope (never the token itself).
    List,
    /// Revoke a token created through the API.
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage a running cluster through its REST API (/v1).
    ///
    /// Example: MERIDIAN_TOKEN=... meridian ctl --server 127.0.0.1:8440 set-weight web eu-west-1 80
    Ctl(CtlArgs),
    /// Serve DNS for the zones in the node config's zone spec.
    ///
    /// SIGHUP reloads the zone spec: a valid one replaces the served zones
    /// atomically, an invalid one is logged and the old one keeps serving.
    Serve {
        /// Node config (meridian.yaml).
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// A zone spec to fill the cluster with if it has none yet; a
        /// cluster that already has a spec keeps it.
        #[arg(long, value_name = "ZONES")]
        seed: Option<PathBuf>,
    },
    /// Operate a cluster through one of its nodes' API.
    Cluster {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Validate a node config and its zone spec, listing every error.
    ///
    /// Exits 0 when both are valid, 78 otherwise.
    Check {
        /// Node config (meridian.yaml); its `zones` file is checked too.
        #[arg(long, short, value_name = "FILE", required_unless_present = "zones")]
        config: Option<PathBuf>,
        /// A zone spec to check on its own.
        #[arg(long, value_name = "FILE")]
        zones: Option<PathBuf>,
    },
    /// Show the answer a name gets for a client, with each steering step's
    /// decision and reasons.
    ///
    /// Example: meridian explain --config meridian.yaml www.glb.example.com A --client 192.0.2.0/24
    Explain {
        /// Node config (meridian.yaml): its zone spec and GeoIP databases.
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// The name to ask for.
        name: String,
        /// The record type (A, AAAA, CNAME, ...).
        #[arg(value_name = "TYPE", default_value = "A")]
        rtype: String,
        /// The client: an address, or a subnet as ECS would carry it.
        #[arg(long, value_name = "IP[/PREFIX]")]
        client: Option<String>,
        /// Seed for weighted draws, to repeat a random choice.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Write the demo GeoIP databases (City and ASN, the ones `meridian dev`
    /// uses) into a directory: documentation prefixes on three continents.
    DemoGeoip {
        /// Directory to write city.mmdb and asn.mmdb into.
        dir: PathBuf,
    },
    /// Run a probe agent for one region: fetch the region's checks from the
    /// cluster, run them, and report the results.
    ///
    /// Example: meridian probe --region eu-west --cluster https://n1:8443,https://n2:8443 --token-file probe.token
    Probe {
        /// The probe region this agent checks from (as declared under
        /// `regions` in the zone spec).
        #[arg(long)]
        region: String,
        /// Base URLs of cluster nodes' APIs, comma-separated; tried in turn.
        #[arg(long, value_delimiter = ',', required = true)]
        cluster: Vec<String>,
        /// A file holding the probe token (one line); not needed with an
        /// agent certificate.
        #[arg(long, value_name = "FILE", required_unless_present = "cert")]
        token_file: Option<PathBuf>,
        /// TLS: the CA that signed the nodes' certificates, and this agent's
        /// own certificate and key for a cluster that requires them.
        #[arg(long, value_name = "FILE", requires_all = ["cert", "key"])]
        ca: Option<PathBuf>,
        #[arg(long, value_name = "FILE", requires = "ca")]
        cert: Option<PathBuf>,
        #[arg(long, value_name = "FILE", requires = "ca")]
        key: Option<PathBuf>,
        /// Most probes in flight at once.
        #[arg(long, default_value_t = 512)]
        concurrency: usize,
        /// A network checks may reach even if denied (repeat): link-local
        /// and metadata addresses are denied unless listed here.
        #[arg(long = "allow", value_name = "CIDR")]
        allow: Vec<ipnet::IpNet>,
        /// A network checks may never reach (repeat).
        #[arg(long = "deny", value_name = "CIDR")]
        deny: Vec<ipnet::IpNet>,
        /// Name in reports (default: region/pid).
        #[arg(long)]
        name: Option<String>,
        /// Log level (a tracing filter).
        #[arg(long, default_value = "info")]
        log: String,
        /// Serve the agent's Prometheus metrics at /metrics on this
        /// address.
        #[arg(long, value_name = "HOST:PORT", requires = "metrics_tokens")]
        metrics: Option<std::net::SocketAddr>,
        /// A token file (`meridian token new --scope read --file F`) whose
        /// tokens may read the metrics.
        #[arg(long, value_name = "FILE", requires = "metrics")]
        metrics_tokens: Option<PathBuf>,
    },
    /// Create the CA and certificates a cluster's mutual TLS runs on.
    Tls {
        #[command(subcommand)]
        command: TlsCommand,
    },
    /// Create bearer tokens for operators and agents, or a cluster secret.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Serve a built-in example zone (glb.example.com) for trying Meridian.
    Dev {
        /// Where to listen (UDP and TCP).
        #[arg(long, default_value = "127.0.0.1:5300")]
        listen: SocketAddr,
        /// Where the REST API listens (loopback only).
        #[arg(long, default_value = "127.0.0.1:8440")]
        api: SocketAddr,
        /// Where the HTTP fallback listens (loopback only).
        #[arg(long, default_value = "127.0.0.1:8080")]
        http: SocketAddr,
    },
}
