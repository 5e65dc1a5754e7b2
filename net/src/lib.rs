//! Bounded accepting, shared by every TCP listener Meridian runs (the API
//! and DNS over TCP).
//!
//! - [`Gate`]: caps open connections in total and per client (an IPv4
//!   address, an IPv6 /64); a connection over either cap is closed at
//!   once, and the per-client table never holds more entries than the
//!   total cap. The total is also held to a quarter of the process's file
//!   descriptors, so two listeners at their caps leave room for files. A
//!   gate more than half full is [`Gate::busy`]: servers then give new
//!   clients less time.
//! - [`accept_with`]: accepts the next connection, backing off (and saying so,
//!   at most every ten seconds) when file descriptors run out instead of
//!   spinning on the error.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

/// Caps on open connections.
#[derive(Clone)]
pub struct Gate {
    open: Arc<Semaphore>,
    per_peer: Arc<PerPeer>,
    max_per_peer: usize,
    max: usize,
}

/// What a client is counted as: an IPv4 address, or an IPv6 /64 (one
/// host commonly holds a whole /64).
fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

/// A quarter of the soft limit on open files (unlimited: no bound).
fn fd_budget() -> usize {
    use nix::sys::resource::{getrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, _)) => usize::try_from(soft / 4).unwrap_or(usize::MAX),
        Err(_) => usize::MAX,
    }
}

#[derive(Default)]
struct PerPeer(Mutex<HashMap<IpAddr, usize>>);

/// One admitted connection: its places under both caps, given back when
/// dropped.
pub struct Admitted {
    _permit: OwnedSemaphorePermit,
    table: Arc<PerPeer>,
    ip: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut map = self.table.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

impl Gate {
    /// A gate for `max_connections` (at most a quarter of the open-file
    /// limit) and `max_per_peer` from one client.
    pub fn new(max_connections: usize, max_per_peer: usize) -> Gate {
        let max = max_connections.min(fd_budget()).max(1);
        Gate {
            open: Arc::new(Semaphore::new(max)),
            per_peer: Arc::default(),
            max_per_peer,
            max,
        }
    }

    /// The total cap in force.
    pub fn capacity(&self) -> usize {
        self.max
    }

    /// More than half the places are taken.
    pub fn busy(&self) -> bool {
        self.open.available_permits() < self.max / 2
    }

    /// Whether the per-client cap would admit one more connection from
    /// `ip`.
    pub fn has_room_for(&self, ip: IpAddr) -> bool {
        let map = self.per_peer.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&client_key(ip)).copied().unwrap_or(0) < self.max_per_peer
    }

    /// Every place is taken.
    pub fn full(&self) -> bool {
        self.open.available_permits() == 0
    }

    /// A place for a connection from `ip`, if both caps allow one.
    pub fn admit(&self, ip: IpAddr) -> Option<Admitted> {
        let permit = self.open.clone().try_acquire_owned().ok()?;
        self.admit_with(ip, permit)
    }

    /// [`Gate::admit`], waiting up to `wait` for a place in total (one
    /// being given back).
    pub async fn admit_within(&self, ip: IpAddr, wait: Duration) -> Option<Admitted> {
        let permit = tokio::time::timeout(wait, self.open.clone().acquire_owned())
            .await
            .ok()?
            .ok()?;
        self.admit_with(ip, permit)
    }

    fn admit_with(&self, ip: IpAddr, permit: OwnedSemaphorePermit) -> Option<Admitted> {
        let ip = client_key(ip);
        let mut map = self.per_peer.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= self.max_per_peer {
            return None;
        }
        *n += 1;
        Some(Admitted {
            _permit: permit,
            table: self.per_peer.clone(),
            ip,
        })
    }
}

/// Whether an accept error means the process (or system) is out of file
/// descriptors: EMFILE or ENFILE.
fn out_of_fds(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// Accepts the next connection on `listener` that the gate for its
/// client address admits (a listener can keep places for its own peers
/// that strangers cannot fill). When descriptors run out it waits 100 ms
/// before trying again (the kernel keeps the pending connections queued)
/// and warns at most every ten seconds; `what` names the listener in that
/// warning.
pub async fn accept_with<'g>(
    listener: &TcpListener,
    gate_for: impl Fn(IpAddr) -> &'g Gate,
    what: &str,
    last_warning: &mut Option<Instant>,
) -> (TcpStream, SocketAddr, Admitted) {
    accept_evicting(listener, gate_for, what, last_warning, || false).await
}

/// How long a new connection waits for the place of one [`accept_evicting`]
/// asked to close.
const EVICTION_WAIT: Duration = Duration::from_millis(200);

/// [`accept_with`], where a connection that finds every place taken asks
/// `evict` to close one (Knot's and NSD's way with idle DNS connections):
/// when it did, the new connection waits a moment for that place.
pub async fn accept_evicting<'g>(
    listener: &TcpListener,
    gate_for: impl Fn(IpAddr) -> &'g Gate,
    what: &str,
    last_warning: &mut Option<Instant>,
    evict: impl Fn() -> bool,
) -> (TcpStream, SocketAddr, Admitted) {
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                if out_of_fds(&e) {
                    if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                        warn!(%e, listener = what, "out of file descriptors: not accepting connections for a moment");
                        *last_warning = Some(Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                } else {
                    debug!(%e, listener = what, "accept failed");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                continue;
            }
        };
        let gate = gate_for(addr.ip());
        let admitted = match gate.admit(addr.ip()) {
            // only for a client the per-client cap would take: else the
            // place freed would go to nobody
            None if gate.full() && gate.has_room_for(addr.ip()) && evict() => {
                gate.admit_within(addr.ip(), EVICTION_WAIT).await
            }
            other => other,
        };
        match admitted {
            Some(admitted) => return (stream, addr, admitted),
            None => {
                if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                    warn!(%addr, listener = what, "connections refused: over the connection cap");
                    *last_warning = Some(Instant::now());
                } else {
                    debug!(%addr, listener = what, "connection refused: over the connection cap");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_per_address_and_in_total() {
        let gate = Gate::new(3, 2);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let a1 = gate.admit(a).unwrap();
        let _a2 = gate.admit(a).unwrap();
        assert!(gate.admit(a).is_none(), "per address");
        let _b1 = gate.admit(b).unwrap();
        assert!(gate.admit(b).is_none(), "in total");
        drop(a1);
        assert!(gate.admit(a).is_some(), "a place given back");
    }

    #[test]
    fn an_ipv6_client_is_its_64() {
        let gate = Gate::new(10, 2);
        let _x = gate.admit("2001:db8:1:2::1".parse().unwrap()).unwrap();
        let _y = gate.admit("2001:db8:1:2::ffff".parse().unwrap()).unwrap();
        assert!(gate
            .admit("2001:db8:1:2:abcd::9".parse().unwrap())
            .is_none());
        assert!(gate.admit("2001:db8:1:3::1".parse().unwrap()).is_some());
        assert!(!gate.busy());
    }
}
