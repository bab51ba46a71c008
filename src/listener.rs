//! What the listening socket lets in, so that many or slow clients cannot take the
//! server's descriptors and lock everyone else out: the descriptor limit raised at start,
//! a cap on open connections derived from it, the accept backlog, and the deadlines for
//! reading a request (the head's is actix's; the body's is `http::read_deadline`).
//!
//! It owns no request and decides nothing about one; `serve` applies what it computes.

use std::net::SocketAddr;
use std::time::Duration;

/// Default of `--request-head-timeout-ms`: from a connection's first byte to the end of its
/// request's headers.
pub const REQUEST_HEAD_TIMEOUT_MS_DEFAULT: u64 = 5_000;

/// Default of `--connection-idle-timeout-ms`: how long a kept-alive connection may wait
/// for its next request.
pub const CONNECTION_IDLE_TIMEOUT_MS_DEFAULT: u64 = 5_000;

/// Default of `--client-disconnect-timeout-ms`: how long a connection being closed may take
/// to take the rest of its answer and shut down.
pub const CLIENT_DISCONNECT_TIMEOUT_MS_DEFAULT: u64 = 1_000;

/// Default of `--listen-backlog-max`: connections the kernel queues for the server to
/// accept (it queues them while every worker is at its share of `--connections-max`).
pub const LISTEN_BACKLOG_MAX_DEFAULT: u32 = 1_024;

/// Descriptors kept out of the connection cap for everything else the process opens: the
/// ledger's segment files and snapshots, checkpoint and key files, the PostgreSQL pools
/// (at most 6 connections), the runtime's own, and audit replays reading segments.
pub const DESCRIPTORS_RESERVED: u64 = 256;

/// The largest cap `--connections-max` defaults to, whatever the descriptor limit: each
/// open connection holds buffers (12 to 16 KiB of resident memory per stalled one,
/// measured with tools/slowloris.py), so a limit of a million descriptors must not
/// become a million connections' worth of memory.
pub const CONNECTIONS_MAX_DEFAULT_CEILING: u64 = 16_384;

/// The process's open-file limit, after trying to raise it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptors {
    /// The soft limit found at start.
    pub before: u64,
    /// The soft limit in force now (the hard limit when raising worked).
    pub now: u64,
}

/// Raises the soft limit on open descriptors to the hard limit (the default soft limit,
/// often 1,024, is what a crowd of slow clients exhausts first). Says what it got; a
/// failure leaves the limit as it was and is logged.
pub fn raise_descriptor_limit() -> Descriptors {
    let before = match rlimit::getrlimit(rlimit::Resource::NOFILE) {
        Ok((soft, _hard)) => soft,
        Err(err) => {
            tracing::warn!(%err, "cannot read the open-file limit; assuming 1024");
            return Descriptors {
                before: 1_024,
                now: 1_024,
            };
        }
    };
    let now = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(now) => now,
        Err(err) => {
            tracing::warn!(%err, before, "cannot raise the open-file limit; keeping it");
            before
        }
    };
    tracing::info!(before, now, "open-file limit");
    Descriptors { before, now }
}

/// The default connection cap for a descriptor limit: what is left after
/// [`DESCRIPTORS_RESERVED`], halved so that every connection may hold one outbound call
/// of its own (an MCP server, a connection provider, a client metadata document), at most
/// [`CONNECTIONS_MAX_DEFAULT_CEILING`], at least 1.
pub fn connections_max_for(descriptors: u64) -> u64 {
    (descriptors.saturating_sub(DESCRIPTORS_RESERVED) / 2).clamp(1, CONNECTIONS_MAX_DEFAULT_CEILING)
}

/// The workers' count (one per core, as actix chooses) and each one's share of `total`
/// connections: actix caps connections per worker, so the cap is split evenly, rounding
/// down (and at least one each).
pub fn per_worker(total: u64) -> (usize, usize) {
    let workers = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let share = usize::try_from(total).unwrap_or(usize::MAX) / workers;
    (workers, share.max(1))
}

/// Binds `addr` with a listen backlog of `backlog` (the standard library's bind always
/// asks for 128).
pub fn bind(addr: SocketAddr, backlog: u32) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // As the standard library's bind does: a restart can take the port while connections
    // of the previous process are in TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(socket.into())
}

/// Milliseconds as a duration.
pub fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_cap_leaves_the_reserve_and_one_outbound_call_each() {
        assert_eq!(connections_max_for(1_024), 384);
        assert_eq!(connections_max_for(20_000), 9_872);
        assert_eq!(
            connections_max_for(1 << 20),
            CONNECTIONS_MAX_DEFAULT_CEILING
        );
        assert_eq!(connections_max_for(100), 1);
    }

    #[test]
    fn the_cap_is_split_between_the_workers_rounding_down() {
        let (workers, share) = per_worker(1_000);
        assert_eq!(share, (1_000 / workers).max(1));
        assert_eq!(per_worker(0).1, 1);
    }
}
