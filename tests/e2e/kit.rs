//! The test kit: run the real `writ` binary, make real ledgers, find records' bytes.
//!
//! The suite runs on either store. By default every ledger is embedded. With
//! `WRIT_E2E_STORE=postgres` (the second pass of `tools/test.sh`), every data directory a
//! test hands the kit without choosing a store gets a scratch PostgreSQL database of its
//! own on the test server, made on first use and named `writ_e2e_<WRIT_E2E_RUN>_...` so
//! that the pass can drop its databases afterwards: `writ serve`, the load harness,
//! `export`, `replay`, `admin` and `verify` of that directory are then pointed at it with
//! `--store`. A test that chooses its store (`--store`, `Home`) keeps its choice, and a
//! test about the embedded data directory itself says so with
//! [`about_the_embedded_store`] and stays embedded.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use writ::ledger::frame::{Frames, list_segments};
use writ::ledger::postgres::ScratchDatabase;
pub use writ::ledger::postgres::test_server_url;

thread_local! {
    /// Whether the running test is about the embedded data directory itself.
    static EMBEDDED_ONLY: Cell<bool> = const { Cell::new(false) };
}

/// The PostgreSQL database the kit gave each data directory in this pass.
static DATABASES: Mutex<BTreeMap<PathBuf, String>> = Mutex::new(BTreeMap::new());

/// Whether this is the pass on PostgreSQL (`WRIT_E2E_STORE=postgres`).
pub fn postgres_pass() -> bool {
    std::env::var("WRIT_E2E_STORE").is_ok_and(|store| store == "postgres")
}

/// Marks the calling test as one about the embedded data directory itself (its segment
/// files, the file writer's crash recovery, bytes altered on disk): it runs on the
/// embedded store in both passes, for the reason `why` gives the reader.
pub fn about_the_embedded_store(why: &str) {
    assert!(
        !why.is_empty(),
        "say why the test is about the embedded store"
    );
    EMBEDDED_ONLY.with(|only| only.set(true));
}

/// The store URL of `dir` in the PostgreSQL pass, made on first use when `make`; `None`
/// when embedded.
fn store_of(dir: &Path, make: bool) -> Option<String> {
    if !postgres_pass() || EMBEDDED_ONLY.with(Cell::get) {
        return None;
    }
    let mut databases = DATABASES.lock().unwrap_or_else(|err| panic!("{err}"));
    if let Some(url) = databases.get(dir) {
        return Some(url.clone());
    }
    if !make {
        return None;
    }
    static MADE: AtomicU64 = AtomicU64::new(0);
    let run = std::env::var("WRIT_E2E_RUN").unwrap_or_else(|_| "dev".into());
    let name = format!(
        "writ_e2e_{run}_{}_{}",
        std::process::id(),
        MADE.fetch_add(1, Ordering::SeqCst)
    );
    let server = test_server_url();
    writ::ledger::postgres::create_database(&server, &name)
        .unwrap_or_else(|err| panic!("the PostgreSQL pass needs {server}: {err}"));
    let url = writ::ledger::postgres::url_for_database(&server, &name);
    databases.insert(dir.to_path_buf(), url.clone());
    Some(url)
}

/// Marks the calling test as one that chooses the stores of its ledgers itself (an
/// embedded ledger to migrate, a database it alters): the kit leaves them as they are.
pub fn chooses_its_stores(why: &str) {
    about_the_embedded_store(why);
}

/// `args` for `writ` (run with `env`), pointed at the data directory's database in the
/// PostgreSQL pass.
fn on_the_pass_store(args: &[&str], env: &[(&str, &str)]) -> Vec<String> {
    let mut args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
    let chosen = args
        .iter()
        .any(|arg| arg == "--store" || arg.starts_with("--store="))
        || env.iter().any(|(name, _)| *name == "WRIT_STORE");
    if chosen {
        return args;
    }
    let flag_value = |flag: &str| {
        args.iter()
            .position(|arg| arg == flag)
            .and_then(|at| args.get(at + 1))
            .map(PathBuf::from)
    };
    match args.first().map(String::as_str) {
        Some("verify") => {
            // `verify DIR` becomes `verify --store URL` when DIR's records are in PostgreSQL.
            let positional = args.iter().skip(1).position(|arg| !arg.starts_with("--"));
            if let Some(at) = positional.map(|at| at + 1)
                && let Some(url) = store_of(Path::new(&args[at]), false)
            {
                args.splice(at..=at, ["--store".to_owned(), url]);
            }
        }
        Some(command @ ("serve" | "internal" | "replay" | "export" | "admin")) => {
            let make = matches!(command, "serve" | "internal");
            if let Some(url) = flag_value("--data-dir").and_then(|dir| store_of(&dir, make)) {
                args.extend(["--store".to_owned(), url]);
            }
        }
        _ => {}
    }
    args
}

/// What a finished `writ` run said.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// The `writ` executable built with these tests.
pub fn writ_command() -> Command {
    Command::new(env!("CARGO_BIN_EXE_writ"))
}

/// Runs `writ` with `args` to completion.
pub fn writ(args: &[&str]) -> Run {
    writ_with_env(args, &[])
}

/// Runs `writ` with `args` and extra environment variables to completion.
pub fn writ_with_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let output = writ_command()
        .env_remove("WRIT_ADMIN_TOKEN")
        .env_remove("WRIT_SIGNING_ALG")
        .envs(env.iter().copied())
        .args(on_the_pass_store(args, env))
        .output()
        .unwrap_or_else(|err| panic!("running writ: {err}"));
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs the load harness on `dir`: `operations` operations (after two setup records
/// on a new ledger).
pub fn append_load(dir: &Path, operations: u64) -> Run {
    let shown = dir.display().to_string();
    let count = operations.to_string();
    let args = [
        "internal",
        "append-load",
        "--data-dir",
        &shown,
        "--count",
        &count,
        "--concurrency",
        "4",
    ];
    writ(&args)
}

/// A ledger in `dir` holding `operations` operations after its two setup records.
pub fn make_ledger(dir: &Path, operations: u64) {
    let run = append_load(dir, operations);
    assert_eq!(run.code, Some(0), "append-load failed: {}", run.stderr);
}

/// Exports the ledger in `dir` to the file `out` with `writ export`.
pub fn export_to(dir: &Path, out: &Path) {
    let run = writ(&[
        "export",
        "--data-dir",
        &dir.display().to_string(),
        "-o",
        &out.display().to_string(),
    ]);
    assert_eq!(run.code, Some(0), "export failed: {}", run.stderr);
}

/// The only segment of a small ledger.
pub fn segment(dir: &Path) -> PathBuf {
    let segments = list_segments(&dir.join("ledger")).unwrap_or_default();
    assert_eq!(segments.len(), 1, "small test ledgers have one segment");
    segments[0].1.clone()
}

/// The byte range of every record's frame in a segment, in order (record i at index i-1).
pub fn frame_ranges(segment: &[u8]) -> Vec<Range<usize>> {
    Frames::new(segment)
        .map(|item| {
            item.map(|(_, range)| range)
                .unwrap_or_else(|_| panic!("test ledger is intact"))
        })
        .collect()
}

/// A copy of the directory tree `from` at `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|err| panic!("{err}"));
    for entry in std::fs::read_dir(from).unwrap_or_else(|err| panic!("{err}")) {
        let entry = entry.unwrap_or_else(|err| panic!("{err}"));
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap_or_else(|err| panic!("{err}"));
        }
    }
}

/// A fresh temporary directory.
pub fn temp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"))
}

/// Where a test server keeps its ledger: a data directory, and with PostgreSQL
/// (`--store`) a scratch database of its own, dropped with it.
pub struct Home {
    pub dir: tempfile::TempDir,
    pub database: Option<ScratchDatabase>,
}

impl Home {
    /// The embedded store: everything in the data directory.
    pub fn embedded() -> Home {
        Home {
            dir: temp(),
            database: None,
        }
    }

    /// Records in a fresh PostgreSQL database; keys and snapshots in the data directory.
    pub fn postgres() -> Home {
        Home {
            dir: temp(),
            database: Some(scratch_database()),
        }
    }

    /// `--store URL` (or `--store embedded`) for the commands that read the ledger.
    pub fn store_args(&self) -> Vec<String> {
        match &self.database {
            Some(db) => vec!["--store".into(), db.url.clone()],
            None => vec!["--store".into(), "embedded".into()],
        }
    }

    /// Exports the (stopped) server's ledger and counts its events of `kind`.
    pub fn events(&self, kind: &str) -> usize {
        let export = self.dir.path().join("export.jsonl");
        let (dir, out) = (
            self.dir.path().display().to_string(),
            export.display().to_string(),
        );
        let mut args = vec!["export", "--data-dir", &dir, "-o", &out];
        let store = self.store_args();
        args.extend(store.iter().map(String::as_str));
        let run = writ(&args);
        assert_eq!(run.code, Some(0), "export failed: {}", run.stderr);
        std::fs::read_to_string(&export)
            .unwrap_or_default()
            .matches(&format!("\"type\":\"{kind}\""))
            .count()
    }
}

/// A real `writ serve` process on an ephemeral port. Its log is kept, and read when it is
/// stopped, killed or dropped: a line saying a thread panicked or overflowed its stack
/// fails the test, whatever the test itself asserted.
pub struct Server {
    child: std::process::Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// What it printed on start, line by line.
    pub banner: Vec<String>,
    log: ServerLog,
}

/// Where a server's output goes: its standard error to a file (the test's, or one the
/// kit makes), its standard output after the banner to a thread that keeps it.
struct ServerLog {
    stderr: PathBuf,
    /// The file the kit made when the test gave none (removed with it).
    _made: Option<tempfile::NamedTempFile>,
    stdout: Option<std::thread::JoinHandle<Vec<String>>>,
    /// What was read so far, once the process ended.
    read: Option<String>,
}

/// What marks a crashed thread in a log: Rust's panic message and its stack-overflow
/// abort.
const CRASH_MARKS: [&str; 2] = ["panicked", "overflowed its stack"];

impl ServerLog {
    /// Everything the (ended) process wrote: standard output after the banner, then
    /// standard error.
    fn read(&mut self) -> &str {
        if self.read.is_none() {
            let stdout = self
                .stdout
                .take()
                .and_then(|thread| thread.join().ok())
                .unwrap_or_default();
            let stderr = std::fs::read(&self.stderr).unwrap_or_default();
            let mut all = stdout.join("\n");
            all.push('\n');
            all.push_str(&String::from_utf8_lossy(&stderr));
            self.read = Some(all);
        }
        self.read.as_deref().unwrap_or_default()
    }

    /// Fails the test when the ended process's output shows a crashed thread (only says
    /// so when the test is failing already: a second panic would abort the run).
    fn check(&mut self) {
        let crashed: Vec<String> = self
            .read()
            .lines()
            .filter(|line| CRASH_MARKS.iter().any(|mark| line.contains(mark)))
            .map(str::to_owned)
            .collect();
        if crashed.is_empty() {
            return;
        }
        let report = format!(
            "the writ server's log shows a crash ({}):\n{}",
            self.stderr.display(),
            crashed.join("\n")
        );
        if std::thread::panicking() {
            eprintln!("{report}");
        } else {
            panic!("{report}");
        }
    }
}

impl Server {
    /// Starts `writ serve` on `data_dir`, with extra arguments, and waits until it listens.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Server {
        Server::start_with(data_dir, extra, &[])
    }

    /// Starts `writ serve` on `home`'s store and data directory.
    pub fn start_in(home: &Home, extra: &[&str]) -> Server {
        let mut args = home.store_args();
        args.extend(extra.iter().map(|arg| (*arg).to_owned()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Server::start(home.dir.path(), &args)
    }

    /// `start` with extra environment variables.
    pub fn start_with(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        Server::start_logged(data_dir, extra, env, None)
    }

    /// `start_with`, the server's standard error (its log) written to `log` if given.
    pub fn start_logged(
        data_dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
        log: Option<&Path>,
    ) -> Server {
        use std::io::{BufRead as _, BufReader};
        let made = match log {
            Some(_) => None,
            None => Some(
                tempfile::Builder::new()
                    .prefix("writ-serve-")
                    .suffix(".log")
                    .tempfile()
                    .unwrap_or_else(|err| panic!("a log file for writ serve: {err}")),
            ),
        };
        let stderr_path = log
            .map(Path::to_path_buf)
            .or_else(|| made.as_ref().map(|file| file.path().to_path_buf()))
            .unwrap_or_default();
        let stderr = std::fs::File::create(&stderr_path)
            .map(std::process::Stdio::from)
            .unwrap_or_else(|err| panic!("{}: {err}", stderr_path.display()));
        let shown = data_dir.display().to_string();
        let mut args = vec!["serve", "--data-dir", &shown, "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let mut child = writ_command()
            .env_remove("WRIT_ADMIN_TOKEN")
            .env_remove("WRIT_SIGNING_ALG")
            .envs(env.iter().copied())
            .args(on_the_pass_store(&args, env))
            .stdout(std::process::Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|err| panic!("starting writ serve: {err}"));
        let stdout = child
            .stdout
            .take()
            .unwrap_or_else(|| panic!("piped stdout"));
        let mut banner = Vec::new();
        let mut base = None;
        let mut lines = BufReader::new(stdout).lines();
        // The banner ends with a blank line; its first line names the address.
        for line in lines.by_ref() {
            let line = line.unwrap_or_default();
            if line.is_empty() {
                break;
            }
            if let Some(address) = line.strip_prefix("writ listening on ") {
                base = Some(address.to_owned());
            }
            banner.push(line);
        }
        // The rest of standard output is kept too (and the pipe stays open: a server
        // printing into a closed pipe would fail).
        let rest = std::thread::spawn(move || lines.map_while(Result::ok).collect());
        let mut log = ServerLog {
            stderr: stderr_path,
            _made: made,
            stdout: Some(rest),
            read: None,
        };
        let Some(base) = base else {
            let _ = child.kill();
            let _ = child.wait();
            let printed = log.read().to_owned();
            panic!("writ serve did not start; it printed {banner:?}, then:\n{printed}");
        };
        Server {
            child,
            base,
            banner,
            log,
        }
    }

    /// The admin token the banner showed (first start only).
    pub fn admin_token(&self) -> String {
        let prefix = "  admin token (shown once, keep it): ";
        let line = self
            .banner
            .iter()
            .find_map(|line| line.strip_prefix(prefix));
        line.unwrap_or_else(|| panic!("no admin token in {:?}", self.banner))
            .to_owned()
    }

    /// The URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends SIGKILL (`kill -9`: no shutdown of any kind) and waits for the process to end.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.log.check();
    }

    /// Sends SIGTERM and waits for the process to exit; returns its exit code.
    pub fn stop(self) -> Option<i32> {
        self.stop_and_keep().0
    }

    /// `stop`, also returning everything the server wrote after its banner.
    pub fn stop_and_keep(mut self) -> (Option<i32>, String) {
        let pid = self.child.id().to_string();
        let signalled = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(signalled.is_ok_and(|s| s.success()), "kill -TERM {pid}");
        let code = self.child.wait().ok().and_then(|status| status.code());
        self.log.check();
        (code, self.log.read().to_owned())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A test that failed midway must not leave a server behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.log.check();
    }
}

/// A blocking HTTP client for the tests.
pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap_or_else(|err| panic!("{err}"))
}

/// An authenticated JSON call: `method` is GET, PUT or POST; the status and the JSON body
/// (null when there is none).
pub fn call(
    server: &Server,
    token: &str,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let client = http();
    let request = match method {
        "GET" => client.get(server.url(path)),
        "PUT" => client.put(server.url(path)),
        _ => client.post(server.url(path)),
    }
    .bearer_auth(token);
    let request = match body {
        Some(body) => request.json(&body),
        None => request,
    };
    let response = request.send().unwrap_or_else(|err| panic!("{err}"));
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(serde_json::Value::Null))
}

/// Registers an agent through the admin API; its client id and secret.
pub fn register_agent(server: &Server, admin: &str, agent: serde_json::Value) -> (String, String) {
    let (status, created) = call(server, admin, "POST", "/api/v1/agents", Some(agent));
    assert_eq!(status, 201, "registering an agent: {created}");
    let field = |value: &serde_json::Value| {
        value
            .as_str()
            .unwrap_or_else(|| panic!("{created}"))
            .to_owned()
    };
    (
        field(&created["agent"]["client_id"]),
        field(&created["client_secret"]),
    )
}

/// Runs `client` on `clients` threads at once and waits for all; a panic in one fails the
/// test.
pub fn concurrently(clients: usize, client: impl Fn() + Sync) {
    std::thread::scope(|scope| {
        for _ in 0..clients {
            scope.spawn(&client);
        }
    });
}

/// Exports the (stopped) ledger in `dir` and counts its events of `kind`.
pub fn events_in_ledger(dir: &Path, kind: &str) -> usize {
    let export = dir.join("export.jsonl");
    export_to(dir, &export);
    std::fs::read_to_string(&export)
        .unwrap_or_default()
        .matches(&format!("\"type\":\"{kind}\""))
        .count()
}

/// RFC 7662 introspection of `token` on `server`, as the client `client_id`.
pub fn introspect(
    server: &Server,
    client_id: &str,
    secret: &str,
    token: &str,
) -> serde_json::Value {
    http()
        .post(server.url("/oauth/introspect"))
        .basic_auth(client_id, Some(secret))
        .form(&[("token", token)])
        .send()
        .and_then(|r| r.json())
        .unwrap_or_else(|err| panic!("{err}"))
}

/// A fresh database on the test server; the test fails, saying how to start PostgreSQL,
/// if there is none.
pub fn scratch_database() -> ScratchDatabase {
    ScratchDatabase::for_test().unwrap_or_else(|why| panic!("{why}"))
}

/// The value of the hidden input `name` in one of writ's pages (its forms' tokens).
pub fn hidden_input(page: &str, name: &str) -> String {
    page.split(&format!("name=\"{name}\" value=\""))
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
        .to_owned()
}

/// A `client_credentials` token from `/oauth/token`, the client by HTTP Basic, with
/// `extra` form parameters; panics with the answer when there is none.
pub fn client_credentials_token(
    server: &Server,
    client_id: &str,
    secret: &str,
    extra: &[(&str, &str)],
) -> String {
    let mut form = vec![("grant_type", "client_credentials")];
    form.extend_from_slice(extra);
    let body: serde_json::Value = http()
        .post(server.url("/oauth/token"))
        .basic_auth(client_id, Some(secret))
        .form(&form)
        .send()
        .and_then(|r| r.json())
        .unwrap_or_else(|err| panic!("{err}"));
    body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned()
}
