//! `writ-bench`: an HTTP load generator for writ and for other OAuth authorization
//! servers, so both can be measured the same way on the same machine.
//!
//! It talks to the server over HTTP only, as any client would, and depends on no writ
//! crate. This file is wiring: flags (`args.rs`), setting up the target (`target.rs`), the
//! closed loop on each connection (`load.rs` over `conn.rs`), and the figures
//! (`report.rs`). Exit codes: 0 every request succeeded; 1 some failed (unless
//! `--allow-errors`); 2 bad flags or a target that could not be set up.

mod args;
mod conn;
mod error;
mod load;
mod report;
mod target;

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser as _;

use crate::args::{Args, Run, Scenario};
use crate::error::BenchError;
use crate::load::{Plan, Work};
use crate::report::{Summary, Tally};
use crate::target::Target;

fn main() -> ExitCode {
    match Args::parse().check().and_then(bench) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("writ-bench: {err}");
            ExitCode::from(2)
        }
    }
}

fn bench(run: Run) -> Result<ExitCode, BenchError> {
    let runtime = if run.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(run.threads)
            .enable_all()
            .build()
    }
    .map_err(|err| BenchError::setup("starting the runtime", err))?;
    let summaries = runtime.block_on(measure_all(&run))?;
    if summaries.iter().any(Summary::failed) && !run.allow_errors {
        eprintln!("writ-bench: some requests failed (see above); --allow-errors exits 0 anyway");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

async fn measure_all(run: &Run) -> Result<Vec<Summary>, BenchError> {
    let target = Arc::new(Target::prepare(run).await?);
    eprintln!("writ-bench: {}", target.description);
    // The target on every node: connection i goes to node i mod the number of nodes.
    let mut nodes = vec![Arc::clone(&target)];
    for url in &run.also_writ_urls {
        let node = target.on_node(url).await?;
        eprintln!("writ-bench: also node {url}");
        nodes.push(Arc::new(node));
    }
    let mut summaries = Vec::new();
    for scenario in &run.scenarios {
        let summary = measure(run, &nodes, *scenario).await?;
        print(run, &summary);
        summaries.push(summary);
    }
    Ok(summaries)
}

/// One scenario: a token first if it needs one, then the connections' loops, merged.
async fn measure(
    run: &Run,
    nodes: &[Arc<Target>],
    scenario: Scenario,
) -> Result<Summary, BenchError> {
    let target = &nodes[0];
    let first_token = match scenario {
        Scenario::Issue | Scenario::Exchange | Scenario::McpDirect => None,
        Scenario::Introspect | Scenario::Operations | Scenario::Gateway => {
            Some(target.first_token(run.request_timeout).await?)
        }
    };
    let plan = Plan::starting_now(run.warmup, run.duration, run.request_timeout);
    let works: Vec<Arc<Work>> = nodes
        .iter()
        .map(|node| {
            Arc::new(Work {
                scenario,
                target: Arc::clone(node),
                first_token: first_token.clone(),
                plan,
            })
        })
        .collect();
    let tasks: Vec<_> = (0..run.connections)
        .map(|n| tokio::spawn(load::connection(Arc::clone(&works[n % works.len()]))))
        .collect();
    let failed = |why: String| BenchError::setup(format!("measuring {}", scenario.name()), why);
    let mut total = Tally::new().map_err(failed)?;
    for task in tasks {
        let tally = task
            .await
            .map_err(|err| failed(format!("a connection's task ended: {err}")))?
            .map_err(failed)?;
        total.merge(tally).map_err(failed)?;
    }
    Ok(Summary::new(
        scenario,
        run.connections,
        plan.measure_from,
        run.duration,
        total,
    ))
}

fn print(run: &Run, summary: &Summary) {
    if run.json {
        eprintln!("{}", summary.human_line());
        println!("{}", summary.json());
    } else {
        println!("{}", summary.human_line());
        println!("{}", summary.result_line());
    }
    for sample in summary.samples() {
        eprintln!("  {}: {sample}", summary.scenario.name());
    }
}
