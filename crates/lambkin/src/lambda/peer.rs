//! Who is at the other end of a Runtime API connection. An instance's Runtime API serves its
//! runtime alone: a connection is served only when the client's socket is held by the
//! instance's process or one of its descendants (a runtime that a `bootstrap` script runs as its
//! child, a GreengrassContainer's runtime under its sandbox init), so another local process can
//! neither take the instance's events nor answer them. Decided once per connection, at accept.
//!
//! Loopback TCP carries no peer credentials, so the client's socket is found the way `ss -p`
//! finds it: the kernel's socket diagnostics (`sock_diag(7)`) look up the socket whose local
//! address is the connection's remote address and whose remote address is ours, and answer
//! its inode; a process holds it when one of its `/proc/PID/fd` links reads
//! `socket:[INODE]`. When that lookup finds nothing (a client that closed already, a kernel
//! without `tcp_diag`), the same row is searched for in `/proc/net/tcp` and `tcp6`; that is
//! the slow way (the kernel walks every bucket of its connection table to print it:
//! milliseconds on a host with a large table), so it is not the first. A GreengrassContainer
//! keeps the host's network namespace, so the host's table holds its runtime's sockets too,
//! and the host's `/proc` shows the container's processes under their host pids, below the
//! sandbox's monitor.
//!
//! Descendants are found through their parent pids: a process that detaches from the tree (a
//! double fork, whose orphan the kernel hands to init) is no longer the instance's.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The client's end of a loopback TCP connection, as the kernel's socket table lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerSocket {
    pub inode: u64,
    /// The user that created the socket.
    pub uid: u32,
}

/// Who holds the client's end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// This process of the instance's tree holds it.
    Runtime { pid: u32 },
    /// No process of the instance's tree holds it.
    Stranger(PeerSocket),
}

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The client's socket is not in the table: it closed already.
    #[error("no socket of this host connects {peer} to {ours}")]
    NotFound { peer: SocketAddr, ours: SocketAddr },
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
}

/// The proc filesystem the checks read: the host's `/proc`, or in tests a directory shaped like
/// it.
#[derive(Debug, Clone)]
pub struct Procfs {
    root: PathBuf,
    /// Whether sockets are looked up through the kernel's socket diagnostics first (only for
    /// the host's own `/proc`: the kernel knows nothing of another directory's tables).
    sock_diag: bool,
}

impl Procfs {
    /// The host's `/proc` (its `net/` is the host's network namespace).
    pub fn host() -> Self {
        Self {
            root: "/proc".into(),
            sock_diag: true,
        }
    }

    /// A directory shaped like `/proc`, its socket tables read from its `net/`.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            sock_diag: false,
        }
    }

    /// Who holds the client's end of the connection from `peer` to `ours` (the accepted
    /// connection's remote and local addresses): `runtime` itself first (most runtimes are the
    /// process the instance started), then its descendants.
    pub fn identify(
        &self,
        runtime: u32,
        ours: SocketAddr,
        peer: SocketAddr,
    ) -> Result<Peer, PeerError> {
        let socket = self.peer_socket(ours, peer)?;
        Ok(match self.holder_in_tree(runtime, socket.inode) {
            Some(pid) => Peer::Runtime { pid },
            None => Peer::Stranger(socket),
        })
    }

    /// [`Self::identify`]'s common case alone, cheap enough to run on the host's thread (one
    /// kernel lookup, one fd directory): `runtime` itself holds the client's socket. `None`
    /// leaves the question to `identify`.
    pub fn runtime_itself(&self, runtime: u32, ours: SocketAddr, peer: SocketAddr) -> Option<u32> {
        if !self.sock_diag {
            return None;
        }
        let socket = sock_diag::lookup(ours, peer).ok()??;
        self.holds(runtime, &socket_link(socket.inode))
            .then_some(runtime)
    }

    /// Which of `pids` holds the client's socket (one kernel lookup, one fd directory each),
    /// as cheap as [`Self::runtime_itself`] per process.
    pub fn held_by(&self, pids: &[u32], ours: SocketAddr, peer: SocketAddr) -> Option<u32> {
        if !self.sock_diag || pids.is_empty() {
            return None;
        }
        let socket = sock_diag::lookup(ours, peer).ok()??;
        let link = socket_link(socket.inode);
        pids.iter().copied().find(|pid| self.holds(*pid, &link))
    }

    /// The client's socket of the TCP connection from `peer` to `ours`.
    pub fn peer_socket(&self, ours: SocketAddr, peer: SocketAddr) -> Result<PeerSocket, PeerError> {
        if self.sock_diag {
            match sock_diag::lookup(ours, peer) {
                Ok(Some(socket)) => return Ok(socket),
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "socket diagnostics failed; reading the socket tables")
                }
            }
        }
        self.table_socket(ours, peer)
    }

    /// The client's socket, from the text tables `/proc/net/tcp` and `tcp6`.
    fn table_socket(&self, ours: SocketAddr, peer: SocketAddr) -> Result<PeerSocket, PeerError> {
        // The kernel lists an IPv4 connection in `tcp`, or in `tcp6` under IPv4-mapped
        // addresses when the client's socket is a dual-stack IPv6 one.
        let tables: [(&str, Option<(String, String)>); 2] = match (ours.ip(), peer.ip()) {
            (IpAddr::V4(o), IpAddr::V4(p)) => [
                ("net/tcp", Some((v4(p, peer.port()), v4(o, ours.port())))),
                (
                    "net/tcp6",
                    Some((
                        v6(p.to_ipv6_mapped(), peer.port()),
                        v6(o.to_ipv6_mapped(), ours.port()),
                    )),
                ),
            ],
            (IpAddr::V6(o), IpAddr::V6(p)) => [
                ("net/tcp6", Some((v6(p, peer.port()), v6(o, ours.port())))),
                ("net/tcp", None),
            ],
            _ => [("net/tcp", None), ("net/tcp6", None)],
        };
        for (table, wanted) in tables {
            let Some((local, remote)) = wanted else {
                continue;
            };
            let path = self.root.join(table);
            let text = match std::fs::read(&path) {
                Ok(text) => text,
                // No IPv6 in this kernel: no `tcp6`.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => return Err(PeerError::Read { path, source }),
            };
            if let Some(socket) = find_row(&text, local.as_bytes(), remote.as_bytes()) {
                return Ok(socket);
            }
        }
        Err(PeerError::NotFound { peer, ours })
    }

    /// The first process holding socket `inode`: `root`, then its descendants, nearest first.
    pub fn holder_in_tree(&self, root: u32, inode: u64) -> Option<u32> {
        let link = socket_link(inode);
        if self.holds(root, &link) {
            return Some(root);
        }
        let parents = self.parents();
        let mut generation = vec![root];
        // A tree has no more generations than processes; the bound keeps a table read while
        // pids were reused (a loop of parents) from holding the check forever.
        for _ in 0..parents.len() {
            if generation.is_empty() {
                break;
            }
            let children: Vec<u32> = parents
                .iter()
                .filter(|(_, ppid)| generation.contains(ppid))
                .map(|(pid, _)| *pid)
                .collect();
            if let Some(pid) = children.iter().find(|pid| self.holds(**pid, &link)) {
                return Some(*pid);
            }
            generation = children;
        }
        None
    }

    /// Some process holding `socket`, for the log: only processes of the socket's user are
    /// looked at (the creator of a socket usually holds it), and one search runs at a time (a
    /// flood of refused connections must not become a flood of scans).
    pub fn holder(&self, socket: PeerSocket) -> Option<u32> {
        static SEARCHING: Mutex<()> = Mutex::new(());
        let _searching = SEARCHING.try_lock().ok()?;
        let link = socket_link(socket.inode);
        self.pids().into_iter().find(|pid| {
            std::fs::metadata(self.root.join(pid.to_string())).is_ok_and(|m| m.uid() == socket.uid)
                && self.holds(*pid, &link)
        })
    }

    /// Whether process `pid` has an fd whose link reads `link`. A process that is gone or that
    /// we may not look into holds nothing.
    fn holds(&self, pid: u32, link: &[u8]) -> bool {
        let Ok(fds) = std::fs::read_dir(self.root.join(format!("{pid}/fd"))) else {
            return false;
        };
        fds.flatten().any(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|target| target.as_os_str().as_bytes() == link)
        })
    }

    /// When process `pid` started (clock ticks after boot, `/proc/PID/stat`'s 22nd field):
    /// with the pid, it names one process, never a later one given the same pid.
    pub fn start_time(&self, pid: u32) -> Option<u64> {
        let text = std::fs::read(self.root.join(format!("{pid}/stat"))).ok()?;
        let end = text.iter().rposition(|b| *b == b')')?;
        let field = text[end + 1..]
            .split(|b| *b == b' ')
            .filter(|f| !f.is_empty())
            .nth(19)?;
        std::str::from_utf8(field).ok()?.parse().ok()
    }

    /// Whether the process `pid` that started at `started` still runs (a zombie has ended).
    pub fn still_running(&self, pid: u32, started: u64) -> bool {
        let Ok(text) = std::fs::read(self.root.join(format!("{pid}/stat"))) else {
            return false;
        };
        let Some(end) = text.iter().rposition(|b| *b == b')') else {
            return false;
        };
        let mut fields = text[end + 1..]
            .split(|b| *b == b' ')
            .filter(|f| !f.is_empty());
        let state = fields.next();
        let start = fields
            .nth(18)
            .and_then(|f| std::str::from_utf8(f).ok()?.parse::<u64>().ok());
        state != Some(b"Z".as_slice()) && start == Some(started)
    }

    /// Every process's pid.
    fn pids(&self) -> Vec<u32> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect()
    }

    /// The inodes of the TCP sockets listening on `port` on the loopback interface (bound to
    /// a loopback or the wildcard address), from `net/tcp` and `net/tcp6`.
    pub fn loopback_listeners(&self, port: u16) -> Vec<u64> {
        const LOCAL_V4: [&str; 2] = ["0100007F", "00000000"];
        const LOCAL_V6: [&str; 3] = [
            "00000000000000000000000001000000",
            "00000000000000000000000000000000",
            "0000000000000000FFFF00000100007F",
        ];
        let port = format!("{port:04X}");
        let mut found = Vec::new();
        for table in ["net/tcp", "net/tcp6"] {
            let Ok(text) = std::fs::read_to_string(self.root.join(table)) else {
                continue;
            };
            for row in text.lines().skip(1) {
                let fields: Vec<&str> = row.split_whitespace().collect();
                let (Some(local), Some(state), Some(inode)) =
                    (fields.get(1), fields.get(3), fields.get(9))
                else {
                    continue;
                };
                let Some((addr, p)) = local.split_once(':') else {
                    continue;
                };
                let loopback = LOCAL_V4.contains(&addr) || LOCAL_V6.contains(&addr);
                if *state == "0A" && p == port && loopback {
                    if let Ok(inode) = inode.parse() {
                        found.push(inode);
                    }
                }
            }
        }
        found
    }

    /// `(pid, parent pid)` of every process.
    fn parents(&self) -> Vec<(u32, u32)> {
        self.pids()
            .into_iter()
            .filter_map(|pid| Some((pid, parent_of(&self.root.join(format!("{pid}/stat")))?)))
            .collect()
    }
}

/// An fd link of socket `inode`, as `/proc/PID/fd` shows it.
fn socket_link(inode: u64) -> Vec<u8> {
    format!("socket:[{inode}]").into_bytes()
}

/// The parent pid in a `/proc/PID/stat`: the field after the state, after the command name
/// (which may hold spaces and parentheses, so the last `)` ends it).
fn parent_of(stat: &Path) -> Option<u32> {
    let text = std::fs::read(stat).ok()?;
    let end = text.iter().rposition(|b| *b == b')')?;
    let mut fields = text[end + 1..]
        .split(|b| *b == b' ')
        .filter(|f| !f.is_empty());
    let _state = fields.next()?;
    std::str::from_utf8(fields.next()?).ok()?.parse().ok()
}

/// An IPv4 address and port as `/proc/net/tcp` prints them: the address's 32 bits as the host
/// stores them, in hex, then the port.
fn v4(ip: std::net::Ipv4Addr, port: u16) -> String {
    format!("{:08X}:{port:04X}", u32::from_ne_bytes(ip.octets()))
}

/// An IPv6 address and port as `/proc/net/tcp6` prints them: four 32-bit words as the host
/// stores them, in hex, then the port.
fn v6(ip: std::net::Ipv6Addr, port: u16) -> String {
    let octets = ip.octets();
    let mut text = String::with_capacity(37);
    for word in octets.chunks_exact(4) {
        let word = u32::from_ne_bytes([word[0], word[1], word[2], word[3]]);
        text.push_str(&format!("{word:08X}"));
    }
    text.push_str(&format!(":{port:04X}"));
    text
}

/// The row of a `/proc/net/tcp{,6}` table with this local and remote address:
/// `sl local rem st tx:rx tr:when retrnsmt uid timeout inode …`.
fn find_row(table: &[u8], local: &[u8], remote: &[u8]) -> Option<PeerSocket> {
    table.split(|b| *b == b'\n').skip(1).find_map(|row| {
        let mut fields = row.split(|b| *b == b' ').filter(|f| !f.is_empty());
        let _slot = fields.next()?;
        if fields.next()? != local || fields.next()? != remote {
            return None;
        }
        let mut rest = fields.skip(4);
        let uid = std::str::from_utf8(rest.next()?).ok()?.parse().ok()?;
        let _timeout = rest.next()?;
        let inode = std::str::from_utf8(rest.next()?).ok()?.parse().ok()?;
        Some(PeerSocket { inode, uid })
    })
}

/// One exact lookup through `NETLINK_SOCK_DIAG`: a `SOCK_DIAG_BY_FAMILY` request without
/// `NLM_F_DUMP` for one TCP connection, answered with that socket's `inet_diag_msg` or an
/// error (`linux/inet_diag.h`, `linux/sock_diag.h`). The messages are built and read as bytes
/// in the host's byte order, the ports and addresses in network order.
mod sock_diag {
    use std::io;
    use std::net::{IpAddr, SocketAddr};
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{
        recv, sendto, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol,
        SockType,
    };

    use super::PeerSocket;

    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const NLMSG_ERROR: u16 = 2;
    const NLM_F_REQUEST: u16 = 1;
    const NLMSG_HEADER_LEN: usize = 16;
    /// `struct inet_diag_req_v2`.
    const REQUEST_LEN: usize = 56;
    /// `struct inet_diag_msg`: family, state, timer, retrans, the socket id (48 bytes), expires,
    /// rqueue, wqueue, uid, inode.
    const MESSAGE_LEN: usize = 72;
    const AF_INET: u8 = 2;
    const AF_INET6: u8 = 10;
    const IPPROTO_TCP: u8 = 6;
    const TCP_LISTEN: u8 = 10;

    /// The socket whose local address is `peer` and remote address `ours`; `None` when the
    /// kernel knows no such connection (or cannot answer for TCP: no `tcp_diag`).
    pub(super) fn lookup(ours: SocketAddr, peer: SocketAddr) -> io::Result<Option<PeerSocket>> {
        let Some(request) = request(ours, peer) else {
            return Ok(None);
        };
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkSockDiag,
        )?;
        sendto(
            fd.as_raw_fd(),
            &request,
            &NetlinkAddr::new(0, 0),
            MsgFlags::empty(),
        )?;
        // The kernel answers while it handles the request, so the answer is queued by now;
        // not waiting keeps a kernel that does not answer from holding the check.
        let mut answer = [0u8; 1024];
        let n = recv(fd.as_raw_fd(), &mut answer, MsgFlags::MSG_DONTWAIT)?;
        parse(&answer[..n], ours, peer)
    }

    /// The request for the socket at `peer` connected to `ours`; none for mixed families.
    pub(super) fn request(ours: SocketAddr, peer: SocketAddr) -> Option<Vec<u8>> {
        let (family, local, remote) = match (peer.ip(), ours.ip()) {
            (IpAddr::V4(p), IpAddr::V4(o)) => (AF_INET, padded(p.octets()), padded(o.octets())),
            (IpAddr::V6(p), IpAddr::V6(o)) => (AF_INET6, p.octets(), o.octets()),
            _ => return None,
        };
        let mut message = Vec::with_capacity(NLMSG_HEADER_LEN + REQUEST_LEN);
        message.extend(((NLMSG_HEADER_LEN + REQUEST_LEN) as u32).to_ne_bytes());
        message.extend(SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        message.extend(NLM_F_REQUEST.to_ne_bytes());
        message.extend(1u32.to_ne_bytes()); // sequence number
        message.extend(0u32.to_ne_bytes()); // port id: the kernel fills it in
        message.extend([family, IPPROTO_TCP, 0, 0]); // no extensions; padding
        message.extend(u32::MAX.to_ne_bytes()); // every state
        message.extend(peer.port().to_be_bytes());
        message.extend(ours.port().to_be_bytes());
        message.extend(local);
        message.extend(remote);
        message.extend(0u32.to_ne_bytes()); // any interface
        message.extend([0xff; 8]); // INET_DIAG_NOCOOKIE: any socket with these addresses
        Some(message)
    }

    /// An IPv4 address in the 16 bytes of `idiag_src`/`idiag_dst` (the first word).
    fn padded(octets: [u8; 4]) -> [u8; 16] {
        let mut address = [0u8; 16];
        address[..4].copy_from_slice(&octets);
        address
    }

    /// The socket in the kernel's answer, if it is the connection asked for: an exact lookup
    /// falls back to a listening socket on the same port, and a socket in `TIME_WAIT` has no
    /// inode (no process holds it).
    pub(super) fn parse(
        answer: &[u8],
        ours: SocketAddr,
        peer: SocketAddr,
    ) -> io::Result<Option<PeerSocket>> {
        let u16_at = |at: usize| answer.get(at..at + 2).map(|b| [b[0], b[1]]);
        let u32_at = |at: usize| {
            answer
                .get(at..at + 4)
                .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        };
        let truncated = || io::Error::new(io::ErrorKind::InvalidData, "short sock_diag answer");
        let kind = u16_at(4).map(u16::from_ne_bytes).ok_or_else(truncated)?;
        if kind == NLMSG_ERROR {
            let errno = u32_at(NLMSG_HEADER_LEN).ok_or_else(truncated)? as i32;
            return match -errno {
                0 => Ok(None),
                e if e == nix::errno::Errno::ENOENT as i32 => Ok(None),
                e => Err(io::Error::from_raw_os_error(e)),
            };
        }
        if kind != SOCK_DIAG_BY_FAMILY || answer.len() < NLMSG_HEADER_LEN + MESSAGE_LEN {
            return Err(truncated());
        }
        let msg = NLMSG_HEADER_LEN;
        let state = answer[msg + 1];
        let sport = u16_at(msg + 4).map(u16::from_be_bytes);
        let dport = u16_at(msg + 6).map(u16::from_be_bytes);
        let (Some(uid), Some(inode)) = (u32_at(msg + 64), u32_at(msg + 68)) else {
            return Err(truncated());
        };
        if state == TCP_LISTEN
            || inode == 0
            || sport != Some(peer.port())
            || dport != Some(ours.port())
        {
            return Ok(None);
        }
        Ok(Some(PeerSocket {
            inode: u64::from(inode),
            uid,
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr, TcpListener, TcpStream};
    use std::os::unix::fs::symlink;

    #[test]
    fn addresses_are_printed_as_the_kernel_prints_them() {
        if cfg!(target_endian = "little") {
            assert_eq!(v4(Ipv4Addr::LOCALHOST, 0x1f90), "0100007F:1F90");
            assert_eq!(
                v6(Ipv4Addr::LOCALHOST.to_ipv6_mapped(), 80),
                "0000000000000000FFFF00000100007F:0050"
            );
            assert_eq!(
                v6(Ipv6Addr::LOCALHOST, 80),
                "00000000000000000000000001000000:0050"
            );
        }
    }

    #[test]
    fn a_start_time_names_one_process() {
        let dir = tempfile::tempdir().unwrap();
        let stat = "7 (a (b) c) S 1 7 7 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 1 0 4242 100 1";
        std::fs::create_dir(dir.path().join("7")).unwrap();
        std::fs::write(dir.path().join("7/stat"), stat).unwrap();
        let procfs = Procfs::at(dir.path());
        assert_eq!(procfs.start_time(7), Some(4242));
        assert_eq!(procfs.start_time(8), None);
        assert!(procfs.still_running(7, 4242));
        assert!(
            !procfs.still_running(7, 4243),
            "another process with that pid"
        );
        std::fs::write(dir.path().join("7/stat"), stat.replace(") S ", ") Z ")).unwrap();
        assert!(!procfs.still_running(7, 4242), "a zombie has ended");
        let me = std::process::id();
        let host = Procfs::host();
        assert!(host.start_time(me).is_some());
        assert_eq!(host.start_time(me), host.start_time(me));
    }

    /// A directory shaped like `/proc`: a socket table, and processes with parents and fds.
    struct FakeProc(tempfile::TempDir);

    impl FakeProc {
        fn new(tcp: &str) -> Self {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir(dir.path().join("net")).unwrap();
            std::fs::write(dir.path().join("net/tcp"), tcp).unwrap();
            Self(dir)
        }

        fn process(&self, pid: u32, comm: &str, ppid: u32, fds: &[&str]) {
            let dir = self.0.path().join(pid.to_string());
            std::fs::create_dir_all(dir.join("fd")).unwrap();
            std::fs::write(
                dir.join("stat"),
                format!("{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194560"),
            )
            .unwrap();
            for (n, target) in fds.iter().enumerate() {
                symlink(target, dir.join(format!("fd/{n}"))).unwrap();
            }
        }

        fn procfs(&self) -> Procfs {
            Procfs::at(self.0.path())
        }
    }

    const TABLE: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:A000 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 100 1 0000000000000000 100 0 0 10 0
   1: 0100007F:A000 0100007F:B000 01 00000000:00000000 00:00000000 00000000     0        0 101 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:B000 0100007F:A000 01 00000000:00000000 00:00000000 00000000  1000        0 202 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:C000 0100007F:A000 01 00000000:00000000 00:00000000 00000000    65534        0 303 1 0000000000000000 20 4 30 10 -1
";

    fn addr(port: u16) -> SocketAddr {
        (Ipv4Addr::LOCALHOST, port).into()
    }

    #[test]
    fn the_client_s_row_is_the_one_whose_local_address_is_the_peer() {
        if cfg!(target_endian = "big") {
            return;
        }
        let proc = FakeProc::new(TABLE);
        let procfs = proc.procfs();
        // Not the server's own accepted socket (101), which has the same two addresses swapped.
        assert_eq!(
            procfs.peer_socket(addr(0xA000), addr(0xB000)).unwrap(),
            PeerSocket {
                inode: 202,
                uid: 1000
            }
        );
        assert_eq!(
            procfs.peer_socket(addr(0xA000), addr(0xC000)).unwrap(),
            PeerSocket {
                inode: 303,
                uid: 65534
            }
        );
        assert!(matches!(
            procfs.peer_socket(addr(0xA000), addr(0xD000)),
            Err(PeerError::NotFound { .. })
        ));
    }

    #[test]
    fn the_runtime_its_descendants_and_nobody_else_hold_the_socket() {
        if cfg!(target_endian = "big") {
            return;
        }
        let proc = FakeProc::new(TABLE);
        // 10 is the instance's process; 11 its child, 12 a grandchild whose name has a `) `.
        proc.process(10, "bootstrap", 1, &["/dev/null", "pipe:[7]"]);
        proc.process(11, "sh", 10, &["/dev/null"]);
        proc.process(12, "py) S 1 (x", 11, &["socket:[9]", "socket:[202]"]);
        proc.process(20, "other", 1, &["socket:[303]"]);
        let procfs = proc.procfs();
        assert_eq!(
            procfs.identify(10, addr(0xA000), addr(0xB000)).unwrap(),
            Peer::Runtime { pid: 12 }
        );
        assert_eq!(
            procfs.identify(12, addr(0xA000), addr(0xB000)).unwrap(),
            Peer::Runtime { pid: 12 }
        );
        let stranger = procfs.identify(10, addr(0xA000), addr(0xC000)).unwrap();
        assert_eq!(
            stranger,
            Peer::Stranger(PeerSocket {
                inode: 303,
                uid: 65534
            })
        );
        // A subtree that does not hold it: the parent of the holder is not its descendant.
        assert_eq!(procfs.holder_in_tree(11, 303), None);
        assert_eq!(procfs.holder_in_tree(20, 303), Some(20));
        // Parents that loop (pids reused while the table was read) end the walk.
        proc.process(30, "a", 31, &[]);
        proc.process(31, "b", 30, &[]);
        assert_eq!(procfs.holder_in_tree(30, 202), None);
    }

    /// The real table: a connection this process makes to itself is found, and this process
    /// holds it; another process's tree (a child that did not inherit the socket) does not.
    #[test]
    fn a_connection_of_this_process_is_its_own() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, peer) = listener.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        let procfs = Procfs::host();
        let me = std::process::id();
        let ours = accepted.local_addr().unwrap();
        assert_eq!(
            procfs.identify(me, ours, peer).unwrap(),
            Peer::Runtime { pid: me }
        );
        assert_eq!(procfs.runtime_itself(me, ours, peer), Some(me));
        assert_eq!(
            procfs.runtime_itself(std::os::unix::process::parent_id(), ours, peer),
            None
        );
        let mut other = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let seen = procfs.identify(other.id(), ours, peer);
        other.kill().unwrap();
        other.wait().unwrap();
        let Peer::Stranger(socket) = seen.unwrap() else {
            panic!("a child that did not inherit the socket holds it");
        };
        assert_eq!(procfs.holder(socket), Some(me));
    }

    /// Both ways of finding the client's socket agree, for an IPv4 client and for a
    /// dual-stack IPv6 one connected to the IPv4 listener (the kernel lists it in `tcp6`).
    #[test]
    fn the_kernel_s_lookup_and_its_tables_agree() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let v4 = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
        let mapped = TcpStream::connect((Ipv4Addr::LOCALHOST.to_ipv6_mapped(), port)).ok();
        let me = std::process::id();
        for client in std::iter::once(&v4).chain(mapped.as_ref()) {
            let (accepted, peer) = listener.accept().unwrap();
            let ours = accepted.local_addr().unwrap();
            let tables = Procfs::at("/proc").peer_socket(ours, peer).unwrap();
            let looked_up = sock_diag::lookup(ours, peer).unwrap();
            assert_eq!(looked_up, Some(tables), "{:?}", client.local_addr());
            assert_eq!(
                Procfs::host().identify(me, ours, peer).unwrap(),
                Peer::Runtime { pid: me }
            );
        }
        // A connection that does not exist is not found, in neither way.
        let ours = listener.local_addr().unwrap();
        let nobody: SocketAddr = (Ipv4Addr::LOCALHOST, 1).into();
        assert_eq!(sock_diag::lookup(ours, nobody).unwrap(), None);
        assert!(matches!(
            Procfs::host().peer_socket(ours, nobody),
            Err(PeerError::NotFound { .. })
        ));
    }

    #[test]
    fn the_kernel_s_answer_is_read_with_care() {
        let ours = addr(0xA000);
        let peer = addr(0xB000);
        let request = sock_diag::request(ours, peer).unwrap();
        assert_eq!(request.len(), 72);
        assert_eq!(&request[24..28], &[0xB0, 0x00, 0xA0, 0x00]);
        assert!(sock_diag::request(ours, (Ipv6Addr::LOCALHOST, 1).into()).is_none());
        let answer = |state: u8, sport: u16, inode: u32| {
            let mut a = vec![0u8; 16 + 72];
            a[..4].copy_from_slice(&88u32.to_ne_bytes());
            a[4..6].copy_from_slice(&20u16.to_ne_bytes());
            a[17] = state;
            a[20..22].copy_from_slice(&sport.to_be_bytes());
            a[22..24].copy_from_slice(&0xA000u16.to_be_bytes());
            a[80..84].copy_from_slice(&1000u32.to_ne_bytes());
            a[84..88].copy_from_slice(&inode.to_ne_bytes());
            a
        };
        assert_eq!(
            sock_diag::parse(&answer(1, 0xB000, 7), ours, peer).unwrap(),
            Some(PeerSocket {
                inode: 7,
                uid: 1000
            })
        );
        // A listener, a socket without an inode, another connection: not the client.
        for other in [
            answer(10, 0xB000, 7),
            answer(6, 0xB000, 0),
            answer(1, 0xC000, 7),
        ] {
            assert_eq!(sock_diag::parse(&other, ours, peer).unwrap(), None);
        }
        let mut error = vec![0u8; 36];
        error[4..6].copy_from_slice(&2u16.to_ne_bytes());
        error[16..20].copy_from_slice(&(-2i32).to_ne_bytes());
        assert_eq!(sock_diag::parse(&error, ours, peer).unwrap(), None);
        error[16..20].copy_from_slice(&(-13i32).to_ne_bytes());
        assert!(sock_diag::parse(&error, ours, peer).is_err());
        assert!(sock_diag::parse(&answer(1, 0xB000, 7)[..40], ours, peer).is_err());
    }

    /// What one check costs, on the real `/proc` (a measurement, not a test: run it with
    /// `cargo test -p lambkin --lib peer::tests::cost -- --ignored --nocapture`).
    #[test]
    #[ignore = "a measurement"]
    fn cost_of_one_check() {
        const ROUNDS: u32 = 2000;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, peer) = listener.accept().unwrap();
        let ours = accepted.local_addr().unwrap();
        let procfs = Procfs::host();
        let me = std::process::id();
        let parent = std::os::unix::process::parent_id();
        let mut other = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let time = |what: &str, check: &dyn Fn()| {
            let start = std::time::Instant::now();
            for _ in 0..ROUNDS {
                check();
            }
            println!("{what}: {:?}", start.elapsed() / ROUNDS);
        };
        println!(
            "{} processes, {} IPv4 sockets",
            procfs.pids().len(),
            std::fs::read_to_string("/proc/net/tcp")
                .unwrap()
                .lines()
                .count()
                - 1
        );
        time("the socket, from the kernel's lookup", &|| {
            procfs.peer_socket(ours, peer).unwrap();
        });
        time("the socket, from the tables", &|| {
            Procfs::at("/proc").peer_socket(ours, peer).unwrap();
        });
        time("the runtime itself holds it, on the host's thread", &|| {
            assert_eq!(procfs.runtime_itself(me, ours, peer), Some(me));
        });
        time("the runtime itself holds it", &|| {
            assert_eq!(
                procfs.identify(me, ours, peer).unwrap(),
                Peer::Runtime { pid: me }
            );
        });
        time("a child of the runtime holds it", &|| {
            assert_eq!(
                procfs.identify(parent, ours, peer).unwrap(),
                Peer::Runtime { pid: me }
            );
        });
        time("a stranger holds it", &|| {
            let found = procfs.identify(other.id(), ours, peer).unwrap();
            assert!(matches!(found, Peer::Stranger(_)));
        });
        let socket = procfs.peer_socket(ours, peer).unwrap();
        time("the stranger's pid, for the log", &|| {
            assert_eq!(procfs.holder(socket), Some(me));
        });
        other.kill().unwrap();
        other.wait().unwrap();
    }
}
