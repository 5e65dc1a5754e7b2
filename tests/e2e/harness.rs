//! Starting `meridian`, querying it with `dig`, and parsing what dig prints.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_meridian");

/// Every process installs the rustls provider before anything uses TLS.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A running `meridian serve` process, killed on drop.
pub struct Process {
    child: Child,
    /// Its first DNS address.
    pub addr: SocketAddr,
    stderr: Arc<Mutex<Vec<String>>>,
}

/// A `meridian serve` on a config in its own temporary directory.
pub struct Server {
    process: Process,
    pub dir: tempfile::TempDir,
}

impl std::ops::Deref for Server {
    type Target = Process;
    fn deref(&self) -> &Process {
        &self.process
    }
}

impl std::ops::DerefMut for Server {
    fn deref_mut(&mut self) -> &mut Process {
        &mut self.process
    }
}

/// The `dns:` section of [`Server::start`].
pub const UNLIMITED_DNS: &str = "  listen: [\"127.0.0.1:0\"]\n  udp_sockets: 2\n  rrl: {enabled: false}\n  amplification_factor: 0\n";

impl Server {
    /// Writes `zones` and a node config listening on 127.0.0.1:0 into a
    /// temporary directory and starts `meridian serve` on them. The
    /// tests' loops of queries from one address measure answers: response
    /// rate limiting and the amplification bound are off (their own tests
    /// turn them on, see `abuse.rs`).
    pub fn start(zones: &str) -> Server {
        Server::start_with(zones, UNLIMITED_DNS)
    }

    /// As [`Server::start`], with the given body of the `dns:` section.
    pub fn start_with(zones: &str, dns_section: &str) -> Server {
        Server::start_config(
            zones,
            &format!("dns:\n{dns_section}log:\n  level: info\nzones: zones.yaml\n"),
        )
    }

    /// Starts `meridian serve` with this zone spec and node config.
    pub fn start_config(zones: &str, config: &str) -> Server {
        Server::start_files(zones, config, &[])
    }

    /// As [`Server::start_config`], with more files beside the config.
    pub fn start_files(zones: &str, config: &str, files: &[(&str, Vec<u8>)]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, bytes) in files {
            std::fs::write(dir.path().join(name), bytes).expect("write file");
        }
        std::fs::write(dir.path().join("zones.yaml"), zones).expect("write zones");
        let config_path = dir.path().join("meridian.yaml");
        std::fs::write(&config_path, config).expect("write config");
        Server {
            process: Process::spawn(&config_path),
            dir,
        }
    }

    pub fn zones_path(&self) -> PathBuf {
        self.dir.path().join("zones.yaml")
    }
}

impl Process {
    /// Starts `meridian serve --config CONFIG` and waits for its first DNS
    /// address on stdout.
    pub fn spawn(config_path: &Path) -> Process {
        install_crypto_provider();
        let mut child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(config_path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start meridian");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = stderr.clone();
        let err = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                sink.lock().expect("lock").push(line);
            }
        });
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        let addr = loop {
            line.clear();
            if out.read_line(&mut line).unwrap_or(0) == 0 {
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "meridian exited before listening:\n{}",
                    stderr.lock().expect("lock").join("\n")
                );
            }
            if let Some(rest) = line.strip_prefix("meridian: DNS listening on ") {
                let addr = rest.split_whitespace().next().expect("address");
                break addr.parse().expect("socket address");
            }
        };
        // keep draining stdout so the child never blocks on a full pipe
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = out.read_to_end(&mut sink);
        });
        Process {
            child,
            addr,
            stderr,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process with SIGKILL and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Runs dig against this server with `args` (name, type, options).
    pub fn dig(&self, args: &[&str]) -> Dig {
        dig(self.addr, args)
    }

    /// Sends SIGHUP.
    pub fn hangup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits (bounded) until a stderr line contains `needle`, counting only
    /// lines after the first `skip`.
    pub fn wait_for_log(&self, needle: &str, skip: usize) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self
                .stderr
                .lock()
                .expect("lock")
                .iter()
                .skip(skip)
                .any(|l| l.contains(needle))
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn log_len(&self) -> usize {
        self.stderr.lock().expect("lock").len()
    }

    pub fn logs(&self) -> String {
        self.stderr.lock().expect("lock").join("\n")
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs dig at `addr`: no recursion, a short timeout, and one retry, so a
/// datagram lost on a busy loopback does not read as a missing answer.
pub fn dig(addr: SocketAddr, args: &[&str]) -> Dig {
    let out = Command::new("dig")
        .arg(format!("@{}", addr.ip()))
        .args(["-p", &addr.port().to_string()])
        .args(["+norec", "+time=2", "+tries=2", "+nocookie"])
        .args(args)
        .output()
        .expect("run dig (install bind9-dnsutils)");
    Dig::parse(&String::from_utf8_lossy(&out.stdout))
}

/// One resource record as dig prints it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rr {
    pub name: String,
    pub ttl: u32,
    pub rtype: String,
    pub data: String,
}

/// What dig printed, parsed.
#[derive(Debug, Default)]
pub struct Dig {
    pub status: String,
    pub flags: Vec<String>,
    pub question: String,
    pub answer: Vec<Rr>,
    pub authority: Vec<Rr>,
    pub additional: Vec<Rr>,
    /// `; EDNS: version: 0, flags: do; udp: 1232` → (version, udp, flags)
    pub edns: Option<(u8, u16, String)>,
    /// `; CLIENT-SUBNET: 192.0.2.0/24/24` → `192.0.2.0/24/24`
    pub ecs: Option<String>,
    pub raw: String,
}

impl Dig {
    pub fn parse(text: &str) -> Dig {
        let mut d = Dig {
            raw: text.to_string(),
            ..Dig::default()
        };
        let mut section = "";
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix(";; ->>HEADER<<-") {
                if let Some(s) = rest.split("status: ").nth(1) {
                    d.status = s.split(',').next().unwrap_or("").trim().to_string();
                }
            } else if let Some(rest) = line.strip_prefix(";; flags:") {
                let flags = rest.split(';').next().unwrap_or("");
                d.flags = flags.split_whitespace().map(str::to_string).collect();
            } else if let Some(rest) = line.strip_prefix("; EDNS: version: ") {
                let version = rest
                    .split(',')
                    .next()
                    .unwrap_or("0")
                    .trim()
                    .parse()
                    .unwrap_or(0);
                let udp = rest
                    .split("udp: ")
                    .nth(1)
                    .and_then(|u| u.trim().parse().ok())
                    .unwrap_or(0);
                let flags = rest
                    .split("flags:")
                    .nth(1)
                    .and_then(|f| f.split(';').next())
                    .unwrap_or("")
                    .trim()
                    .to_string();
                d.edns = Some((version, udp, flags));
            } else if let Some(rest) = line.strip_prefix("; CLIENT-SUBNET: ") {
                d.ecs = Some(rest.trim().to_string());
            } else if line.starts_with(";; QUESTION SECTION:") {
                section = "question";
            } else if line.starts_with(";; ANSWER SECTION:") {
                section = "answer";
            } else if line.starts_with(";; AUTHORITY SECTION:") {
                section = "authority";
            } else if line.starts_with(";; ADDITIONAL SECTION:") {
                section = "additional";
            } else if line.trim().is_empty() {
                section = "";
            } else if section == "question" {
                d.question = line.trim_start_matches(';').to_string();
            } else if !line.starts_with(';') && !section.is_empty() {
                let mut f = line.split_whitespace();
                let (Some(name), Some(ttl), Some(_class), Some(rtype)) =
                    (f.next(), f.next(), f.next(), f.next())
                else {
                    continue;
                };
                let rr = Rr {
                    name: name.to_string(),
                    ttl: ttl.parse().unwrap_or(0),
                    rtype: rtype.to_string(),
                    data: f.collect::<Vec<_>>().join(" "),
                };
                match section {
                    "answer" => d.answer.push(rr),
                    "authority" => d.authority.push(rr),
                    "additional" => d.additional.push(rr),
                    _ => {}
                }
            }
        }
        d
    }

    pub fn has_flag(&self, f: &str) -> bool {
        self.flags.iter().any(|x| x == f)
    }

    /// The data of answer records of type `t`, sorted.
    pub fn answers(&self, t: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .answer
            .iter()
            .filter(|r| r.rtype == t)
            .map(|r| r.data.clone())
            .collect();
        v.sort();
        v
    }
}

/// A DNS query in wire form: one question, RD clear, optional OPT.
pub fn query_bytes(id: u16, name: &str, qtype: u16, opcode: u8, qdcount: u16) -> Vec<u8> {
    let mut q = Vec::new();
    q.extend_from_slice(&id.to_be_bytes());
    q.push(opcode << 3);
    q.push(0);
    q.extend_from_slice(&qdcount.to_be_bytes());
    q.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    for _ in 0..qdcount {
        for label in name.trim_end_matches('.').split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&1u16.to_be_bytes());
    }
    q
}

/// Appends an OPT record carrying one ECS option with the given raw
/// fields (family, source prefix, scope prefix, address octets as sent).
pub fn with_ecs(mut query: Vec<u8>, family: u16, source: u8, scope: u8, addr: &[u8]) -> Vec<u8> {
    let option_len = 4 + addr.len() as u16;
    query[11] = 1; // ARCOUNT
    query.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0]); // root, OPT, 1232, ttl 0
    query.extend_from_slice(&(4 + option_len).to_be_bytes());
    query.extend_from_slice(&8u16.to_be_bytes());
    query.extend_from_slice(&option_len.to_be_bytes());
    query.extend_from_slice(&family.to_be_bytes());
    query.push(source);
    query.push(scope);
    query.extend_from_slice(addr);
    query
}

/// Sends `packet` over UDP and returns the reply, or None after a timeout.
pub fn udp_exchange(addr: SocketAddr, packet: &[u8]) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    sock.send_to(packet, addr).expect("send");
    let mut buf = [0u8; 65535];
    sock.recv(&mut buf).ok().map(|n| buf[..n].to_vec())
}

/// Sends `packet` with a length prefix over TCP and returns the reply.
pub fn tcp_exchange(addr: SocketAddr, packet: &[u8]) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    s.write_all(&(packet.len() as u16).to_be_bytes()).ok()?;
    s.write_all(packet).ok()?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len).ok()?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf).ok()?;
    Some(buf)
}

/// RCODE (low 4 bits) of a reply.
pub fn rcode(reply: &[u8]) -> u8 {
    reply[3] & 0x0f
}

/// Runs `meridian` with `args` and returns (exit code, stdout, stderr).
pub fn run(args: &[&str], cwd: &Path) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run meridian");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An HTTP/2 client connection with prior knowledge (h2c) to `to`, its
/// connection driven by a task of its own.
pub async fn h2c<B>(
    to: &str,
) -> (
    hyper::client::conn::http2::SendRequest<B>,
    tokio::task::JoinHandle<hyper::Result<()>>,
)
where
    B: hyper::body::Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let stream = tokio::net::TcpStream::connect(to).await.expect("connect");
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    (send, tokio::spawn(conn))
}

/// A GET over HTTP/1.1 with an optional bearer token: (status, body).
pub fn http_get(addr: &str, path: &str, token: Option<&str>) -> (u16, String) {
    http(addr, "GET", path, token, "")
}

/// One HTTP/1.1 request over plain TCP: the status and the body.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    let s = TcpStream::connect(addr).expect("connect");
    http_exchange(s, addr, method, path, token, body)
}

/// Sends one request on `s` and reads the reply to its end: the status
/// and the body (a chunked body, as axum streams one, with its chunks
/// joined).
pub fn http_exchange(
    mut s: TcpStream,
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let raw = String::from_utf8_lossy(&raw);
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The value of the Prometheus sample `name` whose labels include every
/// pair of `labels`, from a scrape in the text format.
pub fn metric(scrape: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            (n == name).then_some((rest, value))
        })
        .find(|(rest, _)| {
            labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|(_, v)| v.parse().ok())
}
