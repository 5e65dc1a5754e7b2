//! Sockets: binding the DNS listeners and serving them until a shutdown
//! future resolves.
//!
//! Each configured address is served over UDP and TCP on the same port. UDP
//! gets several sockets bound with SO_REUSEPORT so the kernel spreads
//! queries over them and every core serves; each socket has its own thread
//! that receives, answers and sends with no task, channel or allocation of
//! buffers per packet (hickory's UDP path spends several times our lookup on
//! those, see BENCHMARKS.md). TCP is served by a loop of our own: bounded
//! connections (in total and per client address, see `meridian_net`), an
//! idle timeout per connection, a back-off when file descriptors run out,
//! and queries answered in order. Both answer through the same
//! [`Handler`]. Port 0 picks one free port for both
//! protocols, so tests can bind anywhere and read the port back.

use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use hickory_proto::op::{Header, ResponseCode};
use hickory_proto::rr::RecordType;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncoder};
use hickory_server::net::xfer;
use hickory_server::server::Request;
use hickory_server::zone_handler::{MessageResponseBuilder, Queries};
use meridian_net::Gate;
use socket2::{Domain, Protocol, Socket, Type};
use tracing::{debug, error, info, warn};

use crate::cookies::Verdict;
use crate::handler::Answered;
use crate::rrl::{Action, Rrl};
use crate::stats::{self, Transport};
use crate::Handler;

/// Receive buffer asked for on each UDP socket; the kernel caps it at
/// `net.core.rmem_max`.
const UDP_RECV_BUFFER: usize = 4 << 20;
/// Pending TCP connections.
const TCP_BACKLOG: i32 = 1024;
/// Attempts at finding a port free for both UDP and TCP when given port 0.
const PORT_ATTEMPTS: usize = 32;

/// Bound, not yet served sockets.
#[derive(Debug)]
pub struct Listeners {
    pub udp: Vec<UdpSocket>,
    pub tcp: Vec<TcpListener>,
    /// One per configured address, with the port actually bound.
    pub addrs: Vec<SocketAddr>,
}

impl Listeners {
    /// Binds every address over UDP (`udp_per_addr` sockets each) and TCP.
    pub fn bind(addrs: &[SocketAddr], udp_per_addr: usize) -> io::Result<Listeners> {
        let mut out = Listeners {
            udp: Vec::new(),
            tcp: Vec::new(),
            addrs: Vec::new(),
        };
        for &addr in addrs {
            let (first, tcp, bound) = bind_pair(addr)?;
            out.udp.push(first);
            for _ in 1..udp_per_addr.max(1) {
                out.udp.push(bind_udp(bound)?);
            }
            out.tcp.push(tcp);
            out.addrs.push(bound);
        }
        Ok(out)
    }
}

/// Binds UDP and TCP on the same port; with port 0, retries until a port is
/// free for both.
fn bind_pair(addr: SocketAddr) -> io::Result<(UdpSocket, TcpListener, SocketAddr)> {
    let attempts = if addr.port() == 0 { PORT_ATTEMPTS } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        let udp = bind_udp(addr).map_err(|e| with_addr(e, "UDP", addr))?;
        let bound = udp.local_addr()?;
        match bind_tcp(bound) {
            Ok(tcp) => return Ok((udp, tcp, bound)),
            Err(e) => last = Some(with_addr(e, "TCP", bound)),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no port free for both UDP and TCP")))
}

fn with_addr(e: io::Error, proto: &str, addr: SocketAddr) -> io::Error {
    io::Error::new(e.kind(), format!("cannot bind {proto} {addr}: {e}"))
}

fn new_socket(addr: SocketAddr, ty: Type, proto: Protocol) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), ty, Some(proto))?;
    if addr.is_ipv6() {
        // so [::]:53 and 0.0.0.0:53 can both be bound
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    Ok(socket)
}

fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = new_socket(addr, Type::DGRAM, Protocol::UDP)?;
    socket.set_reuse_port(true)?;
    // best effort: a smaller buffer only means drops under bursts
    let _ = socket.set_recv_buffer_size(UDP_RECV_BUFFER);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = new_socket(addr, Type::STREAM, Protocol::TCP)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(TCP_BACKLOG)?;
    Ok(socket.into())
}

/// How long a UDP thread blocks in receive before it looks at the stop
/// flag.
const UDP_POLL: Duration = Duration::from_millis(200);
/// Largest datagram read: anything a client may send.
#[cfg(not(target_os = "linux"))]
const UDP_MAX_QUERY: usize = 65_535;

/// Datagrams received or sent per system call.
#[cfg(target_os = "linux")]
const BATCH: usize = 16;
/// Largest query read in batches; a longer datagram is dropped as
/// truncated (DNS queries are far smaller).
#[cfg(target_os = "linux")]
const BATCH_MAX_QUERY: usize = 4096;

/// Serves one UDP socket until `stop` is set, receiving and sending up to
/// [`BATCH`] datagrams per system call (`recvmmsg`/`sendmmsg`): under load
/// the per-packet system call was most of the server's CPU time.
#[cfg(target_os = "linux")]
fn udp_loop(socket: UdpSocket, handler: Handler, stop: Arc<AtomicBool>) {
    use std::io::{IoSlice, IoSliceMut};
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{
        recvmmsg, sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrLike, SockaddrStorage,
    };

    if let Err(e) = socket
        .set_nonblocking(false)
        .and_then(|()| socket.set_read_timeout(Some(UDP_POLL)))
    {
        warn!(%e, "cannot configure a UDP socket; it is not served");
        return;
    }
    let fd = socket.as_raw_fd();
    let mut bufs = vec![[0u8; BATCH_MAX_QUERY]; BATCH];
    let mut outs: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(1232)).collect();
    let mut rx = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut tx = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut got: Vec<(usize, SockaddrStorage)> = Vec::with_capacity(BATCH);
    let mut dests: Vec<Option<SockaddrStorage>> = Vec::with_capacity(BATCH);
    let no_cmsgs: [ControlMessage<'_>; 0] = [];
    while !stop.load(Ordering::Relaxed) {
        got.clear();
        {
            let mut iovs: [[IoSliceMut<'_>; 1]; BATCH] = {
                let mut each = bufs.iter_mut();
                std::array::from_fn(|_| [IoSliceMut::new(each.next().expect("BATCH buffers"))])
            };
            // blocks (up to the socket's read timeout) for the first
            // datagram, then takes whatever else is queued
            match recvmmsg(fd, &mut rx, iovs.iter_mut(), MsgFlags::MSG_WAITFORONE, None) {
                Ok(results) => {
                    for r in results {
                        if let Some(addr) = r.address {
                            if !r.flags.contains(MsgFlags::MSG_TRUNC) {
                                got.push((r.bytes, addr));
                            }
                        }
                    }
                }
                Err(e) => {
                    if !matches!(e, nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) {
                        debug!(%e, "UDP receive error");
                    }
                    continue;
                }
            }
        }
        dests.clear();
        // the rate limiter's clock, and the batch's arrival, read once
        let now = handler.rrl().map_or(0, Rrl::now);
        let received = Instant::now();
        let mut ready = 0;
        for (i, (n, addr)) in got.iter().enumerate() {
            let Some(src) = socket_addr(addr) else {
                continue;
            };
            if answer_datagram(
                &handler,
                &bufs[i][..*n],
                src,
                received,
                now,
                &mut outs[ready],
            ) {
                dests.push(Some(*addr));
                ready += 1;
            }
        }
        let mut sent = 0;
        while sent < ready {
            let mut slices: [[IoSlice<'_>; 1]; BATCH] =
                std::array::from_fn(|_| [IoSlice::new(&[])]);
            for (slot, o) in slices.iter_mut().zip(&outs[sent..ready]) {
                *slot = [IoSlice::new(o)];
            }
            match sendmmsg(
                fd,
                &mut tx,
                slices[..ready - sent].iter(),
                &dests[sent..ready],
                no_cmsgs,
                MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(results) => {
                    let n = results.count();
                    if n == 0 {
                        break;
                    }
                    sent += n;
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    // drop the message that failed, keep the rest
                    debug!(%e, dst = ?dests[sent].as_ref().map(|d| d.family()), "UDP send failed");
                    sent += 1;
                }
            }
        }
    }
}

#[cfg(target_os = "linux")]
fn socket_addr(a: &nix::sys::socket::SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4(std::net::SocketAddrV4::from(*v4)));
    }
    a.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6(std::net::SocketAddrV6::from(*v6)))
}

/// Serves one UDP socket until `stop` is set, one datagram at a time.
#[cfg(not(target_os = "linux"))]
fn udp_loop(socket: UdpSocket, handler: Handler, stop: Arc<AtomicBool>) {
    if let Err(e) = socket
        .set_nonblocking(false)
        .and_then(|()| socket.set_read_timeout(Some(UDP_POLL)))
    {
        warn!(%e, "cannot configure a UDP socket; it is not served");
        return;
    }
    let mut packet = vec![0u8; UDP_MAX_QUERY];
    let mut out = Vec::with_capacity(4096);
    while !stop.load(Ordering::Relaxed) {
        let (n, src) = match socket.recv_from(&mut packet) {
            Ok(r) => r,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => {
                // e.g. ICMP errors surfacing from earlier sends: keep going
                debug!(%e, "UDP receive error");
                continue;
            }
        };
        let now = handler.rrl().map_or(0, Rrl::now);
        if answer_datagram(&handler, &packet[..n], src, Instant::now(), now, &mut out) {
            if let Err(e) = socket.send_to(&out, src) {
                debug!(%e, %src, "UDP send failed");
            }
        }
    }
}

/// Works out the reply to one datagram into `out`; false when nothing is
/// to be sent. A panic while answering drops that one query: it is logged
/// (the first time at error level, with the query's shape) and the socket's
/// thread goes on answering, where it used to end silently and leave the
/// socket unserved.
fn answer_datagram(
    handler: &Handler,
    packet: &[u8],
    src: SocketAddr,
    received: Instant,
    now: u64,
    out: &mut Vec<u8>,
) -> bool {
    let answered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        answer(handler, packet, src, xfer::Protocol::Udp, out)
    }));
    match answered {
        Ok(Some(answered)) => {
            let elapsed = received.elapsed().as_nanos() as u64;
            stats::count(out, Transport::Udp, answered.seen, elapsed);
            // a client with a valid server cookie is no spoofed source:
            // not rate limited
            match handler.rrl().filter(|_| answered.verdict != Verdict::Valid) {
                None => true,
                Some(rrl) => match rrl.check(src.ip(), out, answered.subject, now) {
                    Action::Send => true,
                    Action::Slip => {
                        crate::rrl::slip(out);
                        true
                    }
                    Action::Drop => false,
                },
            }
        }
        Ok(None) => false,
        Err(_) => {
            out.clear();
            let shape = QueryShape::of(packet);
            if PANICKED.swap(true, Ordering::Relaxed) {
                debug!(%shape, "a query made answering panic; dropped");
            } else {
                error!(
                    %shape,
                    "a query made answering panic; it is dropped and the socket goes on \
                     (later ones are logged at debug level)"
                );
            }
            false
        }
    }
}

/// Whether a query has made answering panic since the process started.
static PANICKED: AtomicBool = AtomicBool::new(false);

/// The panic hook prints every panic to stderr; a query that makes the UDP
/// path panic, sent in a flood, would print one each. After the first, the
/// UDP threads' panics are left to [`answer_datagram`]'s log.
fn quiet_repeated_udp_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let udp = std::thread::current()
                .name()
                .is_some_and(|n| n.starts_with("dns-udp-"));
            if !(udp && PANICKED.load(Ordering::Relaxed)) {
                default(info);
            }
        }));
    });
}

/// What a log line may say of a query that made answering panic: its
/// size and header counts, and its first question's type (never its
/// bytes).
struct QueryShape<'a>(&'a [u8]);

impl QueryShape<'_> {
    fn of(packet: &[u8]) -> QueryShape<'_> {
        QueryShape(packet)
    }
}

impl std::fmt::Display for QueryShape<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = self.0;
        let word = |i: usize| p.get(i..i + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
        write!(f, "{} bytes", p.len())?;
        if let (Some(flags), Some(qd), Some(an), Some(ns), Some(ar)) =
            (word(2), word(4), word(6), word(8), word(10))
        {
            write!(
                f,
                ", opcode {}, counts {qd}/{an}/{ns}/{ar}",
                (flags >> 11) & 0xF
            )?;
        }
        // the first question's type, after its name's labels
        let mut i = 12;
        while let Some(&len) = p.get(i) {
            if len == 0 || len & 0xC0 != 0 {
                i += if len == 0 { 1 } else { 2 };
                if let Some(t) = word(i) {
                    write!(f, ", qtype {}", RecordType::from(t))?;
                }
                break;
            }
            i += 1 + usize::from(len);
        }
        Ok(())
    }
}

/// Works out the reply to one message into `out`, and what its query's
/// cookie proved and what it is about; `None` when nothing is to be sent. Like hickory's own
/// path: shorter than a header, a response, or from port 0 is dropped; a
/// message that does not decode gets a header-only FORMERR.
fn answer(
    handler: &Handler,
    packet: &[u8],
    src: SocketAddr,
    protocol: xfer::Protocol,
    out: &mut Vec<u8>,
) -> Option<Answered> {
    if src.port() == 0 {
        return None;
    }
    // the unit tests' stand-in for a bug: a query for this name panics
    #[cfg(test)]
    if packet.windows(12).any(|w| w == b"\x0bpanic-query") {
        panic!("a query that panics");
    }
    // what hickory lets through or answers without the question: a broken
    // ECS or COOKIE option, an option past its OPT, bytes after the last
    // record get FORMERR with the question and an OPT (RFC 6891 §7, RFC
    // 7871 §6)
    match crate::wire::parse(packet) {
        // shorter than a header, or a response
        crate::wire::Parsed::Drop => return None,
        crate::wire::Parsed::FormErr(f) => {
            f.reply(handler.max_udp_payload(), out);
            return Some(Answered::bare(Verdict::Absent));
        }
        // the common query: answered from pre-encoded records
        crate::wire::Parsed::Hot(q) => {
            let udp = matches!(protocol, xfer::Protocol::Udp);
            let incoming = crate::hot::Incoming {
                query: &q,
                packet,
                source: src.ip(),
                udp,
            };
            if let Some(answered) = handler.answer_hot(&incoming, out) {
                return Some(answered);
            }
        }
        crate::wire::Parsed::Other => {}
    }
    // `wire::parse` dropped short messages and responses; the header is
    // read again for the FORMERR of a message hickory cannot decode
    let header = Header::read(&mut BinDecoder::new(packet)).ok()?;
    match Request::from_bytes(packet.to_vec(), src, protocol) {
        Ok(request) => handler.respond(&request, packet.len(), out).ok(),
        Err(_) => {
            out.clear();
            // no question can be echoed from a message that did not decode
            let queries = Queries::read(&mut BinDecoder::new(&[]), 0).ok()?;
            let msg = MessageResponseBuilder::new(&queries, None)
                .error_msg(&header.metadata, ResponseCode::FormErr);
            let written = msg.destructive_emit(&mut BinEncoder::new(out)).is_ok();
            written.then_some(Answered::bare(Verdict::Absent))
        }
    }
}

/// Serves DNS on `listeners` with `handler` until `shutdown` resolves, then
/// stops accepting and lets queries in flight finish.
pub async fn serve(
    listeners: Listeners,
    handler: Handler,
    tcp: TcpLimits,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    quiet_repeated_udp_panics();
    let stop = Arc::new(AtomicBool::new(false));
    let mut udp_threads = Vec::new();
    for (i, udp) in listeners.udp.into_iter().enumerate() {
        let (h, stop) = (handler.clone(), stop.clone());
        udp_threads.push(
            std::thread::Builder::new()
                .name(format!("dns-udp-{i}"))
                .spawn(move || udp_loop(udp, h, stop))?,
        );
    }
    // stops the UDP threads however this function ends
    struct StopOnDrop(Arc<AtomicBool>, Vec<std::thread::JoinHandle<()>>);
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
            for t in self.1.drain(..) {
                let _ = t.join();
            }
        }
    }
    let _udp = StopOnDrop(stop, udp_threads);

    let gate = Gate::new(tcp.max_connections, tcp.max_per_client);
    let connections = Connections::default();
    let mut accepting = tokio::task::JoinSet::new();
    for listener in listeners.tcp {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        accepting.spawn(tcp_accept_loop(
            listener,
            handler.clone(),
            gate.clone(),
            connections.clone(),
            tcp,
        ));
    }
    shutdown.await;
    info!("DNS server shutting down");
    // stop accepting; connections in flight end with their idle timeout
    accepting.shutdown().await;
    Ok(())
}

/// Bounds on DNS over TCP (Knot's `tcp-max-clients`, `tcp-idle-timeout`
/// and NSD's per-connection query count).
#[derive(Debug, Clone, Copy)]
pub struct TcpLimits {
    /// A connection with no query for this long is closed.
    pub idle_timeout: Duration,
    /// Open connections, all clients together; when every place is taken,
    /// the connection idle the longest is closed for a new one.
    pub max_connections: usize,
    /// Open connections from one client (an IPv4 address, an IPv6 /64).
    pub max_per_client: usize,
    /// Queries one connection may ask; it is closed after the answer to
    /// the last.
    pub max_queries: u32,
}

impl Default for TcpLimits {
    fn default() -> Self {
        TcpLimits {
            idle_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_per_client: 32,
            max_queries: 10_000,
        }
    }
}

/// Every open connection, in the order of its last progress (accepted,
/// or a query answered): the first is the one that has done nothing for
/// the longest, idle or stuck part-way through a message or an answer,
/// and is closed first when a new client finds every place taken.
#[derive(Clone, Default)]
struct Connections(Arc<std::sync::Mutex<ConnectionsInner>>);

#[derive(Default)]
struct ConnectionsInner {
    next: u64,
    open: std::collections::BTreeMap<u64, Arc<tokio::sync::Notify>>,
}

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, ConnectionsInner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A connection opens: its place in the order, and what tells it to
    /// close.
    fn enter(&self) -> (u64, Arc<tokio::sync::Notify>) {
        let mut inner = self.lock();
        let key = inner.next;
        inner.next += 1;
        let notify = Arc::new(tokio::sync::Notify::new());
        inner.open.insert(key, notify.clone());
        (key, notify)
    }

    /// The connection at `key` made progress: to the back of the order.
    fn touch(&self, key: &mut u64) {
        let mut inner = self.lock();
        if let Some(notify) = inner.open.remove(key) {
            *key = inner.next;
            inner.next += 1;
            inner.open.insert(*key, notify);
        }
    }

    fn leave(&self, key: u64) {
        self.lock().open.remove(&key);
    }

    /// Tells the connection that has made no progress for the longest to
    /// close; false when there is none.
    fn evict_oldest(&self) -> bool {
        let oldest = self.lock().open.pop_first();
        match oldest {
            Some((_, notify)) => {
                notify.notify_one();
                true
            }
            None => false,
        }
    }
}

async fn tcp_accept_loop(
    listener: tokio::net::TcpListener,
    handler: Handler,
    gate: Gate,
    connections: Connections,
    limits: TcpLimits,
) {
    let mut last_warning = None;
    loop {
        let (stream, peer, admitted) = meridian_net::accept_evicting(
            &listener,
            |_| &gate,
            "dns-tcp",
            &mut last_warning,
            || connections.evict_oldest(),
        )
        .await;
        let (handler, gate) = (handler.clone(), gate.clone());
        let connections = connections.clone();
        tokio::spawn(async move {
            let _held = admitted;
            let (mut key, evicted) = connections.enter();
            let served = tcp_connection(
                stream,
                peer,
                &handler,
                &gate,
                &connections,
                &mut key,
                limits,
            );
            let ended = tokio::select! {
                r = served => r,
                () = evicted.notified() => Ok(()),
            };
            connections.leave(key);
            if let Err(e) = ended {
                debug!(%peer, %e, "DNS TCP connection ended");
            }
        });
    }
}

/// How long the rest of a message may take once its length has come
/// (Knot's `tcp-io-timeout` is 500 ms): a client that drips a message
/// holds its place for no longer.
const TCP_MESSAGE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a client may wait before its next query while the listener is
/// more than half full (NSD gives 200 ms), in place of the idle timeout:
/// silent connections cannot hold every place (RFC 7766 §6.2.3).
const TCP_BUSY_IDLE: Duration = Duration::from_millis(200);

/// How long the rest of a message, or the writing of an answer, may take
/// while the listener is more than half full (Knot's `tcp-io-timeout`).
const TCP_BUSY_IO: Duration = Duration::from_millis(500);

/// Answers the queries of one connection in order (RFC 7766 pipelining),
/// until the client closes it, sends something that is not a query, is
/// idle for `idle` between queries (less while the listener is busy), or
/// takes longer than [`TCP_MESSAGE_TIMEOUT`] over the rest of a message.
async fn tcp_connection(
    mut stream: tokio::net::TcpStream,
    peer: SocketAddr,
    handler: &Handler,
    gate: &Gate,
    connections: &Connections,
    key: &mut u64,
    limits: TcpLimits,
) -> io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = stream.set_nodelay(true);
    let idle = limits.idle_timeout;
    let mut packet = Vec::new();
    let mut out = Vec::with_capacity(4096);
    for _ in 0..limits.max_queries {
        let mut len = [0u8; 2];
        let wait = if gate.busy() {
            idle.min(TCP_BUSY_IDLE)
        } else {
            idle
        };
        match tokio::time::timeout(wait, stream.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(()),
        }
        let io = if gate.busy() {
            TCP_BUSY_IO
        } else {
            TCP_MESSAGE_TIMEOUT
        };
        let n = usize::from(u16::from_be_bytes(len));
        packet.resize(n, 0);
        let rest = idle.min(io);
        match tokio::time::timeout(rest, stream.read_exact(&mut packet)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(()),
        }
        let received = Instant::now();
        let Some(answered) = answer(handler, &packet, peer, xfer::Protocol::Tcp, &mut out) else {
            // not a query (shorter than a header, or a response): hang up,
            // as NSD does
            return Ok(());
        };
        let elapsed = received.elapsed().as_nanos() as u64;
        stats::count(&out, Transport::Tcp, answered.seen, elapsed);
        let Ok(reply_len) = u16::try_from(out.len()) else {
            continue;
        };
        let mut frame = Vec::with_capacity(2 + out.len());
        frame.extend_from_slice(&reply_len.to_be_bytes());
        frame.extend_from_slice(&out);
        let write = if gate.busy() { TCP_BUSY_IO } else { idle };
        tokio::time::timeout(write, stream.write_all(&frame))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the client does not read"))??;
        connections.touch(key);
    }
    // the connection's last query answered
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handler::GeoHandle;
    use crate::SnapshotHandle;

    fn query(id: u16, name: &str) -> Vec<u8> {
        let mut q = id.to_be_bytes().to_vec();
        q.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        for label in name.split('.').filter(|l| !l.is_empty()) {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        q
    }

    #[test]
    fn a_query_that_panics_does_not_stop_the_socket() {
        let spec = meridian_config::zone::parse(
            "t.yaml",
            "zones:
  example.com:
    soa: {rname: hostmaster.example.com.}
    ns: [{name: ns.example.net.}]
    records:
      - {name: www, type: A, value: 192.0.2.1}
",
        )
        .expect("valid");
        let snap = crate::Snapshot::build(&spec, &Default::default(), 1, 1).expect("builds");
        let handler = Handler::new(SnapshotHandle::new(snap), GeoHandle::default(), 1232);
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = socket.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let served = {
            let stop = stop.clone();
            std::thread::spawn(move || udp_loop(socket, handler, stop))
        };
        let client = UdpSocket::bind("127.0.0.1:0").expect("bind");
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        // the panicking query gets nothing; the next one is answered
        client
            .send_to(&query(1, "panic-query.example.com"), addr)
            .expect("send");
        client
            .send_to(&query(2, "www.example.com"), addr)
            .expect("send");
        let mut reply = [0u8; 512];
        let (n, _) = client
            .recv_from(&mut reply)
            .expect("an answer after the panic");
        assert_eq!(&reply[..2], &2u16.to_be_bytes(), "{:?}", &reply[..n]);
        assert_eq!(reply[3] & 0x0F, 0, "NOERROR");
        stop.store(true, Ordering::Relaxed);
        served.join().expect("the socket's thread ended in a panic");
    }

    #[test]
    fn a_query_shape_says_no_more_than_its_shape() {
        let shape = QueryShape::of(&query(7, "secret.example.com")).to_string();
        assert_eq!(shape, "36 bytes, opcode 0, counts 1/0/0/0, qtype A");
        assert_eq!(QueryShape::of(&[1, 2]).to_string(), "2 bytes");
    }
}
