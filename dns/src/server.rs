//! Sockets: binding the DNS listeners and running hickory's `Server` on
//! them until a shutdown future resolves.
//!
//! Each configured address is served over UDP and TCP on the same port. UDP
//! gets several sockets bound with SO_REUSEPORT so the kernel spreads
//! queries over them and every core serves. Port 0 picks one free port for
//! both protocols, so tests can bind anywhere and read the port back.

use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::time::Duration;

use hickory_server::Server;
use socket2::{Domain, Protocol, Socket, Type};
use tracing::info;

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

/// Serves DNS on `listeners` with `handler` until `shutdown` resolves, then
/// stops accepting and lets queries in flight finish.
pub async fn serve(
    listeners: Listeners,
    handler: Handler,
    tcp_idle_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let mut server = Server::new(handler);
    for udp in listeners.udp {
        server.register_socket(tokio::net::UdpSocket::from_std(udp)?);
    }
    for tcp in listeners.tcp {
        server.register_listener(
            tokio::net::TcpListener::from_std(tcp)?,
            tcp_idle_timeout,
            // responses queued per connection
            16,
        );
    }
    tokio::select! {
        r = server.block_until_done() => r.map_err(io::Error::other),
        () = shutdown => {
            info!("DNS server shutting down");
            server.shutdown_gracefully().await.map_err(io::Error::other)
        }
    }
}
