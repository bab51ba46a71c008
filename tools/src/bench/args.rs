//! The command line: flags, their limits and defaults, and the checks that make a set of
//! flags one coherent run. Nothing here opens a connection.

use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::error::BenchError;

/// Most connections one run may open (each is a socket and a task).
pub const CONNECTIONS_MAX: usize = 1024;
/// Most runtime threads.
pub const THREADS_MAX: usize = 64;
/// Longest measured duration of one scenario.
pub const DURATION_SECONDS_MAX: u64 = 3600;
/// Longest warm-up of one scenario.
pub const WARMUP_SECONDS_MAX: u64 = 600;
/// Longest wait for one answer (or one connection) that may be asked for.
pub const REQUEST_TIMEOUT_SECONDS_MAX: u64 = 300;
/// Most `--also-writ-url` nodes.
pub const ALSO_WRIT_URLS_MAX: usize = 16;
/// Most `--token-param` pairs.
pub const TOKEN_PARAMS_MAX: usize = 32;
/// The scope requested (and, for a registered writ agent, granted) when none is named.
pub const WRIT_SCOPE_DEFAULT: &str = "bench:run";

/// An HTTP load generator for OAuth authorization servers: writ, or any server with a
/// client_credentials token endpoint (and, optionally, RFC 7662 introspection).
///
/// Each of N keep-alive connections sends requests back to back (a closed loop), so the
/// latencies are those of N clients that wait for each answer; there is no correction for
/// coordinated omission. Per scenario it prints a line for people and a `RESULT` line for
/// scripts. Exit codes: 0 every request answered 2xx; 1 some did not (a non-2xx or no answer, quoted on stderr), unless
/// --allow-errors; 2 bad flags or the target could not be set up.
#[derive(Debug, Parser)]
#[command(name = "writ-bench", version)]
pub struct Args {
    /// A writ server's base URL (plain HTTP). Endpoints come from its RFC 8414 metadata;
    /// unless --client-id and --client-secret are given, a fresh agent is registered with
    /// the admin token and the scopes of --scope.
    #[arg(help_heading = "Target", long, value_name = "URL")]
    pub writ_url: Option<String>,

    /// Another writ node of the same ledger (repeatable, at most 16): the connections are
    /// spread over --writ-url and these in turn; the agent is registered on --writ-url.
    #[arg(
        help_heading = "Target",
        long = "also-writ-url",
        value_name = "URL",
        requires = "writ_url"
    )]
    pub also_writ_urls: Vec<String>,

    /// writ's admin token, to register the measuring agent.
    #[arg(
        help_heading = "Target",
        long,
        env = "WRIT_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,

    /// Token endpoint of another OAuth server (plain HTTP), instead of --writ-url.
    #[arg(
        help_heading = "Target",
        long,
        value_name = "URL",
        conflicts_with = "writ_url"
    )]
    pub token_url: Option<String>,

    /// RFC 7662 introspection endpoint of that server, for the `introspect` scenario.
    #[arg(
        help_heading = "Target",
        long,
        value_name = "URL",
        conflicts_with = "writ_url"
    )]
    pub introspection_url: Option<String>,

    /// Client id, sent with the secret by HTTP Basic (RFC 6749 §2.3.1).
    #[arg(help_heading = "Target", long)]
    pub client_id: Option<String>,

    /// Client secret.
    #[arg(
        help_heading = "Target",
        long,
        env = "WRIT_BENCH_CLIENT_SECRET",
        hide_env_values = true
    )]
    pub client_secret: Option<String>,

    /// Space-separated scopes to request (with --writ-url and no client, also the scopes
    /// the registered agent gets; default there `bench:run`).
    #[arg(help_heading = "Target", long)]
    pub scope: Option<String>,

    /// An extra token request parameter, `name=value`, repeatable (at most 32), e.g.
    /// `resource=urn:example:api`.
    #[arg(help_heading = "Target", long = "token-param", value_name = "NAME=VALUE", value_parser = parse_param)]
    pub token_params: Vec<(String, String)>,

    /// What to measure, repeatable or comma-separated: `issue` (client_credentials token
    /// requests), `exchange` (writ: RFC 8693 token exchange of a person's id for a token on
    /// their behalf, under a delegation set up for the run), `introspect` (RFC 7662
    /// introspection of one token), `operations` (writ's POST /api/v1/operations), or `all`
    /// (every scenario the target supports).
    #[arg(
        help_heading = "Load",
        long = "scenario",
        value_enum,
        value_delimiter = ',',
        default_value = "all"
    )]
    pub scenarios: Vec<ScenarioArg>,

    /// Keep-alive TCP connections, exactly; each sends its next request when the previous
    /// answer is read. At most 1024.
    #[arg(help_heading = "Load", long, default_value_t = 4)]
    pub connections: usize,

    /// How long each scenario is measured, e.g. `10s`, `500ms`, `2m`. At most 1 hour.
    #[arg(help_heading = "Load", long, value_parser = parse_duration, default_value = "10s")]
    pub duration: Duration,

    /// Load before each scenario's measurement whose results are discarded (failures are
    /// still reported), e.g. `2s`, `0s`. At most 10 minutes.
    #[arg(help_heading = "Load", long, value_parser = parse_duration, default_value = "2s")]
    pub warmup: Duration,

    /// Threads of the generator's runtime. One leaves the other cores to the server being
    /// measured when both share a machine. At most 64.
    #[arg(help_heading = "Load", long, default_value_t = 1)]
    pub threads: usize,

    /// Longest wait for one answer or one connection; past it the request counts as an
    /// error and its connection is replaced. At most 5 minutes.
    #[arg(help_heading = "Load", long, value_parser = parse_duration, default_value = "10s")]
    pub request_timeout: Duration,

    /// The MCP server id (registered in writ) the gateway scenario calls.
    #[arg(help_heading = "Target", long)]
    pub gateway_server: Option<String>,

    /// An MCP server's streamable HTTP URL (stateless, JSON answers), for mcp-direct.
    #[arg(help_heading = "Target", long)]
    pub mcp_url: Option<String>,

    /// Report success even when requests failed (exit 0 instead of 1).
    #[arg(help_heading = "Output", long)]
    pub allow_errors: bool,

    /// Print one JSON object per scenario on stdout (the people's line goes to stderr).
    #[arg(help_heading = "Output", long)]
    pub json: bool,
}

/// A scenario as the command line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScenarioArg {
    /// Token issuance.
    Issue,
    /// writ's on-behalf-of token exchange.
    Exchange,
    /// Token introspection.
    Introspect,
    /// writ's operation recording.
    Operations,
    /// A tool call through writ's MCP gateway (`--gateway-server`).
    Gateway,
    /// The same tool call sent to the MCP server directly (`--mcp-url`), to compare.
    McpDirect,
    /// Every scenario the target supports.
    All,
}

/// One measured workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// `POST <token endpoint>` with `grant_type=client_credentials`.
    Issue,
    /// `POST <token endpoint>` with RFC 8693 token exchange: a person's id as the subject,
    /// the measuring agent acting for them under their delegation.
    Exchange,
    /// `POST <introspection endpoint>` with one token.
    Introspect,
    /// `POST /api/v1/operations` with a token as bearer.
    Operations,
    /// `POST /api/v1/proxy/{server}/tools` calling the MCP tool `echo`, a token as bearer.
    Gateway,
    /// A JSON-RPC `tools/call` of `echo` sent straight to the MCP server (stateless).
    McpDirect,
}

impl Scenario {
    /// The name on the command line and in the `RESULT` line.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Issue => "issue",
            Scenario::Exchange => "exchange",
            Scenario::Introspect => "introspect",
            Scenario::Operations => "operations",
            Scenario::Gateway => "gateway",
            Scenario::McpDirect => "mcp-direct",
        }
    }
}

/// Where the load goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetArg {
    /// A writ server, discovered from its metadata.
    Writ {
        /// Base URL.
        url: String,
        /// Registers an agent with this, unless `client` is given.
        admin_token: Option<String>,
        /// An existing agent's id and secret.
        client: Option<(String, String)>,
    },
    /// Any OAuth server, by explicit endpoints.
    Other {
        /// Token endpoint.
        token_url: String,
        /// Introspection endpoint, if the run introspects.
        introspection_url: Option<String>,
        /// Client id and secret.
        client: (String, String),
    },
}

/// A checked run: what to measure, where, and how hard.
#[derive(Debug, Clone)]
pub struct Run {
    /// Where.
    pub target: TargetArg,
    /// The scenarios, in order, each once.
    pub scenarios: Vec<Scenario>,
    /// Connections per scenario.
    pub connections: usize,
    /// Measured time per scenario.
    pub duration: Duration,
    /// Discarded time before each measurement.
    pub warmup: Duration,
    /// Runtime threads.
    pub threads: usize,
    /// Longest wait for one answer or connection.
    pub request_timeout: Duration,
    /// Scopes to request.
    pub scope: Option<String>,
    /// Extra token request parameters.
    pub token_params: Vec<(String, String)>,
    /// Exit 0 even when requests failed.
    pub allow_errors: bool,
    /// Other nodes' base URLs, beside the target's (writ only).
    pub also_writ_urls: Vec<String>,
    /// JSON on stdout.
    pub json: bool,
    /// The MCP server id the gateway scenario calls through writ.
    pub gateway_server: Option<String>,
    /// The MCP server's URL, for the mcp-direct scenario.
    pub mcp_url: Option<String>,
}

fn usage(message: impl Into<String>) -> BenchError {
    BenchError::Usage(message.into())
}

fn bounded(name: &str, value: usize, max: usize) -> Result<usize, BenchError> {
    if value == 0 || value > max {
        return Err(usage(format!(
            "--{name} must be from 1 to {max}, not {value}"
        )));
    }
    Ok(value)
}

fn at_most(name: &str, value: Duration, seconds_max: u64) -> Result<Duration, BenchError> {
    if value > Duration::from_secs(seconds_max) {
        return Err(usage(format!(
            "--{name} must be at most {seconds_max} s, not {value:?}"
        )));
    }
    Ok(value)
}

impl Args {
    /// The run these flags ask for, or what is wrong with them.
    pub fn check(self) -> Result<Run, BenchError> {
        let target = self.target()?;
        let scenarios = self.scenarios(&target)?;
        if self.duration.is_zero() {
            return Err(usage("--duration must be more than zero"));
        }
        if self.request_timeout.is_zero() {
            return Err(usage("--request-timeout must be more than zero"));
        }
        if self.token_params.len() > TOKEN_PARAMS_MAX {
            return Err(usage(format!(
                "at most {TOKEN_PARAMS_MAX} --token-param, not {}",
                self.token_params.len()
            )));
        }
        let scope = match (&target, self.scope) {
            (TargetArg::Writ { client: None, .. }, None) => Some(WRIT_SCOPE_DEFAULT.to_owned()),
            (_, scope) => scope,
        };
        Ok(Run {
            scenarios,
            connections: bounded("connections", self.connections, CONNECTIONS_MAX)?,
            duration: at_most("duration", self.duration, DURATION_SECONDS_MAX)?,
            warmup: at_most("warmup", self.warmup, WARMUP_SECONDS_MAX)?,
            threads: bounded("threads", self.threads, THREADS_MAX)?,
            request_timeout: at_most(
                "request-timeout",
                self.request_timeout,
                REQUEST_TIMEOUT_SECONDS_MAX,
            )?,
            scope,
            token_params: self.token_params,
            allow_errors: self.allow_errors,
            also_writ_urls: {
                if self.also_writ_urls.len() > ALSO_WRIT_URLS_MAX {
                    return Err(usage(format!(
                        "--also-writ-url is given {} times; at most {ALSO_WRIT_URLS_MAX}",
                        self.also_writ_urls.len()
                    )));
                }
                self.also_writ_urls.clone()
            },
            json: self.json,
            gateway_server: self.gateway_server.clone(),
            mcp_url: self.mcp_url.clone(),
            target,
        })
    }

    fn client(&self) -> Result<Option<(String, String)>, BenchError> {
        match (&self.client_id, &self.client_secret) {
            (Some(id), Some(secret)) => Ok(Some((id.clone(), secret.clone()))),
            (None, None) => Ok(None),
            (Some(_), None) => Err(usage("--client-id needs --client-secret")),
            (None, Some(_)) => Err(usage("--client-secret needs --client-id")),
        }
    }

    fn target(&self) -> Result<TargetArg, BenchError> {
        let client = self.client()?;
        match (&self.writ_url, &self.token_url) {
            (Some(url), _) => {
                if client.is_none() && self.admin_token.is_none() {
                    return Err(usage(
                        "--writ-url needs --admin-token (or WRIT_ADMIN_TOKEN) to register an agent, or an existing agent's --client-id and --client-secret",
                    ));
                }
                Ok(TargetArg::Writ {
                    url: url.clone(),
                    admin_token: self.admin_token.clone(),
                    client,
                })
            }
            (None, Some(token_url)) => Ok(TargetArg::Other {
                token_url: token_url.clone(),
                introspection_url: self.introspection_url.clone(),
                client: client
                    .ok_or_else(|| usage("--token-url needs --client-id and --client-secret"))?,
            }),
            (None, None) => Err(usage(
                "name a target: --writ-url URL (writ), or --token-url URL with --client-id and --client-secret (another server)",
            )),
        }
    }

    fn scenarios(&self, target: &TargetArg) -> Result<Vec<Scenario>, BenchError> {
        let (writ, introspects) = match target {
            TargetArg::Writ { .. } => (true, true),
            TargetArg::Other {
                introspection_url, ..
            } => (false, introspection_url.is_some()),
        };
        let mut chosen = Vec::new();
        for arg in &self.scenarios {
            let wanted: &[Scenario] = match arg {
                ScenarioArg::Issue => &[Scenario::Issue],
                ScenarioArg::Exchange if !writ => {
                    return Err(usage(
                        "the exchange scenario uses writ's delegations: it needs --writ-url",
                    ));
                }
                ScenarioArg::Exchange => &[Scenario::Exchange],
                ScenarioArg::Introspect if !introspects => {
                    return Err(usage("the introspect scenario needs --introspection-url"));
                }
                ScenarioArg::Introspect => &[Scenario::Introspect],
                ScenarioArg::Operations if !writ => {
                    return Err(usage(
                        "the operations scenario is writ's own endpoint: it needs --writ-url",
                    ));
                }
                ScenarioArg::Operations => &[Scenario::Operations],
                ScenarioArg::Gateway if !writ || self.gateway_server.is_none() => {
                    return Err(usage(
                        "the gateway scenario needs --writ-url and --gateway-server",
                    ));
                }
                ScenarioArg::Gateway => &[Scenario::Gateway],
                ScenarioArg::McpDirect if self.mcp_url.is_none() => {
                    return Err(usage("the mcp-direct scenario needs --mcp-url"));
                }
                ScenarioArg::McpDirect => &[Scenario::McpDirect],
                ScenarioArg::All => match (introspects, writ) {
                    (_, true) => &[
                        Scenario::Issue,
                        Scenario::Exchange,
                        Scenario::Introspect,
                        Scenario::Operations,
                    ],
                    (true, false) => &[Scenario::Issue, Scenario::Introspect],
                    (false, false) => &[Scenario::Issue],
                },
            };
            for scenario in wanted {
                if !chosen.contains(scenario) {
                    chosen.push(*scenario);
                }
            }
        }
        Ok(chosen)
    }
}

/// `10s`, `500ms`, `2m`, `1h`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as 10s, 500ms or 2m"))?;
    let seconds_per_unit = match unit {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "`{other}` is not a unit of time; use ms, s, m or h"
            ));
        }
    };
    Duration::try_from_secs_f64(value * seconds_per_unit)
        .map_err(|_| format!("`{text}` is not a duration such as 10s, 500ms or 2m"))
}

/// `name=value` (the value may itself hold `=`).
pub fn parse_param(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("`{text}` is not name=value")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Run, String> {
        let args = Args::try_parse_from(std::iter::once("writ-bench").chain(args.iter().copied()))
            .map_err(|err| err.to_string())?;
        args.check().map_err(|err| err.to_string())
    }

    #[test]
    fn durations_read_with_their_units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn token_params_keep_equals_signs_in_values() {
        assert_eq!(
            parse_param("resource=urn:a=b"),
            Ok(("resource".into(), "urn:a=b".into()))
        );
        assert!(parse_param("=x").is_err());
        assert!(parse_param("novalue").is_err());
    }

    #[test]
    fn writ_runs_every_scenario_with_the_defaults() {
        let run = run(&["--writ-url", "http://127.0.0.1:8080", "--admin-token", "t"]).unwrap();
        assert_eq!(
            run.scenarios,
            [
                Scenario::Issue,
                Scenario::Exchange,
                Scenario::Introspect,
                Scenario::Operations
            ]
        );
        assert_eq!(
            (run.connections, run.threads, run.duration, run.warmup),
            (4, 1, Duration::from_secs(10), Duration::from_secs(2))
        );
        assert_eq!(run.scope.as_deref(), Some(WRIT_SCOPE_DEFAULT));
    }

    #[test]
    fn another_server_runs_what_it_supports_and_refuses_operations() {
        let base = [
            "--token-url",
            "http://127.0.0.1:3000/token",
            "--client-id",
            "c",
            "--client-secret",
            "s",
        ];
        assert_eq!(run(&base).unwrap().scenarios, [Scenario::Issue]);
        let mut with_introspection = base.to_vec();
        with_introspection.extend(["--introspection-url", "http://127.0.0.1:3000/i"]);
        assert_eq!(
            run(&with_introspection).unwrap().scenarios,
            [Scenario::Issue, Scenario::Introspect]
        );
        let mut operations = base.to_vec();
        operations.extend(["--scenario", "operations"]);
        assert!(run(&operations).unwrap_err().contains("needs --writ-url"));
        let mut exchange = base.to_vec();
        exchange.extend(["--scenario", "exchange"]);
        assert!(run(&exchange).unwrap_err().contains("needs --writ-url"));
        let mut introspect = base.to_vec();
        introspect.extend(["--scenario", "introspect"]);
        assert!(
            run(&introspect)
                .unwrap_err()
                .contains("needs --introspection-url")
        );
    }

    #[test]
    fn scenarios_repeat_or_list_and_run_once_each_in_order() {
        let run = run(&[
            "--writ-url",
            "http://h",
            "--admin-token",
            "t",
            "--scenario",
            "operations,issue",
            "--scenario",
            "issue",
        ])
        .unwrap();
        assert_eq!(run.scenarios, [Scenario::Operations, Scenario::Issue]);
    }

    #[test]
    fn limits_and_missing_credentials_are_refused_with_the_reason() {
        let writ = ["--writ-url", "http://h", "--admin-token", "t"];
        let with = |extra: &[&str]| {
            let mut args = writ.to_vec();
            args.extend(extra);
            run(&args)
        };
        assert!(
            with(&["--connections", "0"])
                .unwrap_err()
                .contains("from 1 to 1024")
        );
        assert!(with(&["--connections", "1025"]).is_err());
        assert!(with(&["--connections", "1024"]).is_ok());
        assert!(with(&["--threads", "65"]).is_err());
        assert!(with(&["--duration", "0s"]).is_err());
        assert!(
            with(&["--duration", "3601s"])
                .unwrap_err()
                .contains("at most 3600 s")
        );
        assert!(with(&["--warmup", "0s"]).is_ok());
        if std::env::var_os("WRIT_ADMIN_TOKEN").is_none() {
            assert!(
                run(&["--writ-url", "http://h"])
                    .unwrap_err()
                    .contains("--admin-token")
            );
        }
        assert!(run(&[]).unwrap_err().contains("name a target"));
        assert!(
            run(&["--token-url", "http://h/t", "--client-id", "c"])
                .unwrap_err()
                .contains("needs --client-secret")
        );
        assert!(
            run(&["--writ-url", "http://h", "--token-url", "http://h/t"])
                .unwrap_err()
                .contains("cannot be used with")
        );
    }
}
