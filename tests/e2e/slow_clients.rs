//! Slow clients cannot lock the others out: connections that send half a request head,
//! promise a body and send part of it, or trickle a body a byte at a time are answered
//! 408 (where an answer can still be sent) and closed once their deadline passes, and a
//! new client is served meanwhile, past the connection cap.
//!
//! Nothing here waits on a clock: every wait is on a socket, bounded only so that a
//! server that never closes fails the test instead of hanging it.

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use crate::kit::*;

/// The connection cap the server is started with; the test opens three times as many
/// slow connections.
const CONNECTIONS_MAX: usize = 4;

/// How long a test waits on a socket for the server to answer or close, at most: far
/// beyond the deadlines below, it only turns a server that never closes into a failure.
const SOCKET_WAIT_FAILS_AFTER: Duration = Duration::from_secs(60);

/// What a trickling client waits for an answer before it sends its next byte.
const TRICKLE_WAIT: Duration = Duration::from_millis(250);

/// The ways a client can be slow.
#[derive(Debug, Clone, Copy)]
enum Slow {
    /// Half a request head, then silence.
    HalfHead,
    /// A token request's head promising 64 bytes of form, 13 of them sent.
    HalfOAuthBody,
    /// An admin API request's head promising 64 bytes of JSON, 6 of them sent.
    HalfJsonBody,
    /// A token request's form, one byte at a time.
    TrickledOAuthBody,
    /// A promised body that `GET /healthz` never reads, half sent.
    HalfUnreadBody,
    /// A chunked body that `GET /healthz` never reads, one byte at a time.
    TrickledUnreadChunks,
}

const KINDS: [Slow; 6] = [
    Slow::HalfHead,
    Slow::HalfOAuthBody,
    Slow::HalfJsonBody,
    Slow::TrickledOAuthBody,
    Slow::HalfUnreadBody,
    Slow::TrickledUnreadChunks,
];

impl Slow {
    /// What the client sends at once, and what it then trickles (empty: nothing).
    fn bytes(self, host: &str, admin: &str) -> (String, String) {
        let form = "application/x-www-form-urlencoded";
        let head = |request: &str, headers: &str| {
            format!("{request} HTTP/1.1\r\nHost: {host}\r\n{headers}\r\n")
        };
        match self {
            Slow::HalfHead => (
                format!("POST /oauth/token HTTP/1.1\r\nHost: {host}\r\nContent-Ty"),
                String::new(),
            ),
            Slow::HalfOAuthBody => (
                head(
                    "POST /oauth/token",
                    &format!("Content-Type: {form}\r\nContent-Length: 64\r\n"),
                ) + "grant_type=cl",
                String::new(),
            ),
            Slow::HalfJsonBody => (
                head(
                    "POST /api/v1/users",
                    &format!(
                        "Authorization: Bearer {admin}\r\nContent-Type: application/json\r\nContent-Length: 64\r\n"
                    ),
                ) + "{\"emai",
                String::new(),
            ),
            Slow::TrickledOAuthBody => (
                head(
                    "POST /oauth/token",
                    &format!("Content-Type: {form}\r\nContent-Length: 4096\r\n"),
                ),
                "grant_type=client_credentials&scope=".repeat(200),
            ),
            Slow::HalfUnreadBody => (
                head("GET /healthz", "Content-Length: 100\r\n") + "hello",
                String::new(),
            ),
            Slow::TrickledUnreadChunks => (
                head("GET /healthz", "Transfer-Encoding: chunked\r\n"),
                "1\r\na\r\n".repeat(2000),
            ),
        }
    }

    /// How the answer must begin, and what it must say.
    fn expected(self) -> (&'static str, &'static [&'static str]) {
        const LATE: &str = "the request body did not arrive whole within 1000 ms of its headers";
        match self {
            Slow::HalfHead => ("HTTP/1.1 408", &[]),
            Slow::HalfOAuthBody | Slow::TrickledOAuthBody => (
                "HTTP/1.1 408",
                &["connection: close", "\"error\":\"invalid_request\"", LATE],
            ),
            Slow::HalfJsonBody => (
                "HTTP/1.1 408",
                &["connection: close", "\"error\":\"request_timeout\"", LATE],
            ),
            Slow::HalfUnreadBody | Slow::TrickledUnreadChunks => ("HTTP/1.1 200", &[]),
        }
    }
}

/// Opens a slow connection of `kind` and sends what it sends at once.
fn open(server: &Server, kind: Slow, admin: &str) -> (TcpStream, String) {
    let host = server.base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(host).unwrap_or_else(|err| panic!("connect: {err}"));
    let (first, trickle) = kind.bytes(host, admin);
    stream
        .write_all(first.as_bytes())
        .unwrap_or_else(|err| panic!("{kind:?}: {err}"));
    (stream, trickle)
}

/// Sends `trickle` a byte at a time, each after waiting on the socket for an answer,
/// then reads until the server closes; returns everything the server sent.
fn trickle_then_read(kind: Slow, mut stream: TcpStream, trickle: &str) -> String {
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    stream
        .set_read_timeout(Some(TRICKLE_WAIT))
        .unwrap_or_else(|err| panic!("{err}"));
    for byte in trickle.as_bytes() {
        match stream.read(&mut buffer) {
            Ok(0) => return String::from_utf8_lossy(&answer).into_owned(),
            Ok(n) => {
                answer.extend_from_slice(&buffer[..n]);
                break;
            }
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(err) => panic!("{kind:?}: reading while trickling: {err}"),
        }
        // The server may close its side first; what it answered is still to be read.
        if stream.write_all(std::slice::from_ref(byte)).is_err() {
            break;
        }
    }
    stream
        .set_read_timeout(Some(SOCKET_WAIT_FAILS_AFTER))
        .unwrap_or_else(|err| panic!("{err}"));
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buffer[..n]),
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!(
                    "{kind:?}: the server kept the connection open {SOCKET_WAIT_FAILS_AFTER:?} past its deadline; it had sent {:?}",
                    String::from_utf8_lossy(&answer)
                )
            }
            // A reset after the answer: what was read before it stands.
            Err(err) if err.kind() == ErrorKind::ConnectionReset && !answer.is_empty() => break,
            Err(err) => panic!("{kind:?}: {err}"),
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn slow_clients_past_the_connection_cap_are_cut_off_and_a_new_client_is_served() {
    let dir = temp();
    let cap = CONNECTIONS_MAX.to_string();
    let server = Server::start(
        dir.path(),
        &[
            "--request-head-timeout-ms",
            "1000",
            "--request-body-timeout-ms",
            "1000",
            "--client-disconnect-timeout-ms",
            "500",
            "--connections-max",
            &cap,
        ],
    );
    assert!(
        server
            .banner
            .iter()
            .any(|line| line.starts_with("  connections: at most ")),
        "{:?}",
        server.banner
    );
    let admin = server.admin_token();
    let slow: Vec<(Slow, TcpStream, String)> = (0..3 * CONNECTIONS_MAX)
        .map(|n| KINDS[n % KINDS.len()])
        .map(|kind| {
            let (stream, trickle) = open(&server, kind, &admin);
            (kind, stream, trickle)
        })
        .collect();
    let answers = std::thread::scope(|scope| {
        let readers: Vec<_> = slow
            .into_iter()
            .map(|(kind, stream, trickle)| {
                scope.spawn(move || (kind, trickle_then_read(kind, stream, &trickle)))
            })
            .collect();
        // A new client, while every slot is held by a slow one: it waits in the backlog
        // until a deadline frees a slot, and is served.
        let health = http()
            .get(server.url("/healthz"))
            .send()
            .unwrap_or_else(|err| panic!("a new client's /healthz: {err}"));
        assert_eq!(health.status(), 200);
        readers
            .into_iter()
            .map(|reader| reader.join().unwrap_or_else(|_| panic!("a reader failed")))
            .collect::<Vec<_>>()
    });
    for (kind, answer) in answers {
        let (status, says) = kind.expected();
        assert!(
            answer.starts_with(status) && says.iter().all(|said| answer.contains(said)),
            "{kind:?}: expected {status} saying {says:?}, got {answer:?}"
        );
    }
    // Still up, and a whole request on time is served as ever.
    let health = http()
        .get(server.url("/healthz"))
        .send()
        .unwrap_or_else(|err| panic!("/healthz after the slow clients: {err}"));
    assert_eq!(health.status(), 200);
    let (code, log) = server.stop_and_keep();
    assert_eq!(code, Some(0), "{log}");
    let errors: Vec<&str> = log.lines().filter(|line| line.contains("ERROR")).collect();
    assert!(errors.is_empty(), "the server logged errors: {errors:#?}");
}

#[test]
fn a_connection_cap_or_a_read_deadline_of_zero_is_refused_at_start() {
    let dir = temp();
    let shown = dir.path().display().to_string();
    for flag in [
        "--connections-max",
        "--request-head-timeout-ms",
        "--request-body-timeout-ms",
        "--connection-idle-timeout-ms",
        "--client-disconnect-timeout-ms",
        "--listen-backlog-max",
        "--mcp-connect-timeout-ms",
    ] {
        let run = writ(&["serve", "--data-dir", &shown, flag, "0"]);
        assert_eq!(run.code, Some(2), "{flag} 0: {}", run.stderr);
        assert!(
            run.stderr
                .contains(&format!("invalid value '0' for '{flag} <")),
            "{flag} 0: {}",
            run.stderr
        );
    }
}
