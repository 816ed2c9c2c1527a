//! `vroeg`: the command-line entry point.
//!
//! Parses arguments, sets up logging, and hands each subcommand to its
//! module. Domain logic lives in the crates; this binary only wires it to
//! files, the terminal and exit codes. It is the one place that uses
//! `anyhow`.

mod config;
mod export;
mod gen;
mod replay;
mod rules_cmd;
mod rules_diff;
mod run;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// sled and serde allocate many small objects; mimalloc handles that
/// pattern much faster than the system allocator (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: Mimalloc = Mimalloc;

/// mimalloc, asked the way the standard library asks the C allocator.
///
/// `mimalloc::MiMalloc` passes every request to `mi_malloc_aligned`. In
/// mimalloc v3 that call takes its fast path only while the page of the
/// size class has a free block; when it has none, a size that is not a
/// power of two (24, 40, 48 ... bytes) is over-allocated by `align - 1`
/// bytes into the next size class, through a slow path, for as long as the
/// heap grows. Every size class of mimalloc is a multiple of 8 bytes and a
/// page's first block is 16-byte aligned, so plain `mi_malloc` already
/// gives any alignment up to 8; only larger alignments need the aligned
/// calls. (Measured in BENCHMARKS.md, `rules diff`.)
struct Mimalloc;

/// The largest alignment every block of `mi_malloc` has.
const PLAIN_ALIGN: usize = 8;

// SAFETY: every block comes from mimalloc and goes back to `mi_free`;
// blocks of plain `mi_malloc`/`mi_zalloc`/`mi_realloc` are used only for
// alignments up to PLAIN_ALIGN, which all of them have (see above and the
// test `plain_blocks_have_the_alignment`).
unsafe impl std::alloc::GlobalAlloc for Mimalloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        use libmimalloc_sys as mi;
        if layout.align() <= PLAIN_ALIGN {
            unsafe { mi::mi_malloc(layout.size()) as *mut u8 }
        } else {
            unsafe { mi::mi_malloc_aligned(layout.size(), layout.align()) as *mut u8 }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        use libmimalloc_sys as mi;
        if layout.align() <= PLAIN_ALIGN {
            unsafe { mi::mi_zalloc(layout.size()) as *mut u8 }
        } else {
            unsafe { mi::mi_zalloc_aligned(layout.size(), layout.align()) as *mut u8 }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: std::alloc::Layout) {
        unsafe { libmimalloc_sys::mi_free(ptr as *mut std::ffi::c_void) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        use libmimalloc_sys as mi;
        let ptr = ptr as *mut std::ffi::c_void;
        if layout.align() <= PLAIN_ALIGN {
            unsafe { mi::mi_realloc(ptr, new_size) as *mut u8 }
        } else {
            unsafe { mi::mi_realloc_aligned(ptr, new_size, layout.align()) as *mut u8 }
        }
    }
}

/// mimalloc v3's `mi_option_purge_delay`: how long freed memory stays with
/// the process before it goes back to the OS, in ms (default 1000 in the
/// v3 sources; -1: never). A test checks the index against that default.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// For the commands that run a history through the engine and end
/// (`replay`, `demo`, `rules diff`): keep freed memory instead of handing it
/// back to the OS after a second. Their heap grows to millions of households
/// while each batch frees what it decoded; with the default, the kernel
/// zeroes the same pages again for every batch (a tenth of `rules diff`'s
/// time in a profile, see BENCHMARKS.md). The long-running service keeps
/// the default.
fn keep_freed_memory() {
    // SAFETY: mi_option_set only stores the value in mimalloc's option table.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}

#[derive(Parser)]
#[command(
    name = "vroeg",
    version,
    about = "Streaming early-warning engine for Dutch municipalities (vroegsignalering)"
)]
#[command(
    long_about = "Vroeg bundles payment-arrears and school-absence signals per household, \
evaluates the municipality's triage rules on them, and opens cases for the wijkteams.\n\n\
Start with `vroeg demo`: it generates a data set, replays it with the shipped rules and shows example cases."
)]
struct Cli {
    /// Log filter, e.g. `info` or `vroeg_engine=debug` (also VROEG_LOG).
    #[arg(long, global = true, env = "VROEG_LOG", default_value = "warn")]
    log: String,
    /// Log as JSON lines instead of text (also VROEG_LOG_JSON=1).
    #[arg(long, global = true, env = "VROEG_LOG_JSON", action = clap::ArgAction::SetTrue,
          value_parser = clap::builder::BoolishValueParser::new())]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check and test rule files.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Write deterministic synthetic signals as JSON lines.
    Gen(gen::GenArgs),
    /// Run the engine over a file of signals (no Kafka), with a sled store.
    Replay(replay::ReplayArgs),
    /// Generate a data set, replay it with the shipped rules, show example cases.
    Demo(replay::DemoArgs),
    /// Run the streaming service: Kafka in, Kafka out, with the HTTP API.
    Run(run::RunArgs),
    /// Serve the case API alone, from a read model that follows the case
    /// topic (`vroeg.zaken`). Run any number beside `vroeg run`; delete
    /// `api.read_model_dir` to rebuild one from the topic.
    Serve(run::ServeArgs),
    /// Publish a JSON-lines file of signals to a Kafka topic.
    Send(run::SendArgs),
    /// Check a configuration file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Create the Kafka topics a configuration names.
    #[command(subcommand)]
    Topics(TopicsCommand),
    /// Inspect a state directory (the service must not be running).
    #[command(subcommand)]
    State(StateCommand),
    /// Export the DDAS delivery (from a stopped state directory, or from a
    /// running service with --service) or the audit log.
    #[command(subcommand)]
    Export(ExportCommand),
    /// Print the Divosa monitor indicators for a period (table or JSON).
    Report(export::ReportArgs),
    /// Check a partner's file (or a topic) with the engine's own decoder
    /// before it is sent: every message it would dead-letter, with its line,
    /// error code, field and reason. Exits 1 on any problem.
    Validate(validate::ValidateArgs),
    /// Manage case API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
}

// Parsed once per run: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum ExportCommand {
    /// Write the DDAS vroegsignalering delivery (v0.9) for a period.
    Ddas(export::DdasArgs),
    /// Print the case API's audit log as JSON lines (who read which case, when).
    Audit(export::AuditArgs),
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Make a new random token; prints it once, and its config entry.
    New(export::TokenArgs),
}

#[derive(Subcommand)]
enum StateCommand {
    /// Count households, open cases, timers and outbox entries.
    Stats(run::StateArgs),
    /// Print every household (`{"household", "state"}`), then every case
    /// record (`{"case", "record"}`), as JSON lines in key order. The output
    /// holds personal data: treat it so.
    Dump(run::StateArgs),
    /// Run the retention purge once, now or as on a given day, on a stopped
    /// service's state (the running service purges on its own, every
    /// `retention.purge_interval_secs`). Prints what it deleted.
    Purge(run::PurgeArgs),
}

#[derive(Subcommand)]
enum TopicsCommand {
    /// Create every topic of the configuration that does not exist yet:
    /// partner and feedback topics, the household topic and its compacted
    /// changelog (`kafka.partitions` each), and the output topics.
    Create(run::TopicsArgs),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Report every problem in a configuration file (and its rule set).
    Check(run::ConfigCheckArgs),
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Report every problem in rule files, each with file:line:col.
    Check(RulesCheckArgs),
    /// Run rule test files (expected case events for given signals).
    Test(RulesTestArgs),
    /// Print the variable catalogue that `when` expressions can read.
    Variables,
    /// Write the JSON Schemas of rule files and rule test files (for
    /// editors: completion of keys, partners and variable names).
    Schema(RulesSchemaArgs),
    /// Replay the same signals under two rule sets and compare the cases:
    /// per month by category, priority, team and work queue; the
    /// households that gain, lose or change a case; the contact workload.
    Diff(Box<rules_diff::RulesDiffArgs>),
}

#[derive(Args)]
pub struct RulesSchemaArgs {
    /// The directory to write `rules.schema.json` and
    /// `rule-tests.schema.json` into.
    #[arg(long, default_value = "schemas")]
    out: PathBuf,
}

#[derive(Args)]
pub struct RulesCheckArgs {
    /// Rule files or directories (their *.yaml files).
    #[arg(default_value = "rules")]
    paths: Vec<PathBuf>,
    /// Check as if the school-absence purpose were enabled.
    #[arg(long)]
    school_purpose: bool,
}

#[derive(Args)]
pub struct RulesTestArgs {
    /// Test files or directories (their *.yaml files).
    #[arg(default_value = "rules/tests")]
    paths: Vec<PathBuf>,
    /// Also show, per rule, how often it fired in the tests and how often
    /// it decided a case's priority or category; and the rules that never
    /// did.
    #[arg(long)]
    coverage: bool,
    /// Also change each setting, priority, number and comparison of the
    /// rule files in turn, run the tests against each change, and list the
    /// changes no test noticed (exit 1 if any).
    #[arg(long)]
    mutate: bool,
}

fn init_logging(filter: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log, cli.log_json);
    let result = match cli.command {
        Command::Rules(RulesCommand::Check(args)) => rules_cmd::check(&args),
        Command::Rules(RulesCommand::Test(args)) => rules_cmd::test(&args),
        Command::Rules(RulesCommand::Variables) => rules_cmd::variables(),
        Command::Rules(RulesCommand::Schema(args)) => rules_cmd::schema(&args),
        Command::Rules(RulesCommand::Diff(args)) => {
            keep_freed_memory();
            rules_diff::run(&args)
        }
        Command::Gen(args) => gen::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Replay(args) => {
            keep_freed_memory();
            replay::run(&args)
        }
        Command::Demo(args) => {
            keep_freed_memory();
            replay::demo(&args)
        }
        Command::Run(args) => run::run(&args),
        Command::Serve(args) => run::serve(&args),
        Command::Send(args) => run::send(&args),
        Command::Config(ConfigCommand::Check(args)) => run::config_check(&args),
        Command::Topics(TopicsCommand::Create(args)) => run::topics_create(&args),
        Command::State(StateCommand::Stats(args)) => run::state_stats(&args),
        Command::State(StateCommand::Dump(args)) => run::state_dump(&args),
        Command::State(StateCommand::Purge(args)) => run::state_purge(&args),
        Command::Export(ExportCommand::Ddas(args)) => export::ddas(&args),
        Command::Export(ExportCommand::Audit(args)) => export::audit_export(&args),
        Command::Report(args) => export::report(&args),
        Command::Token(TokenCommand::New(args)) => export::token_new(&args),
        Command::Validate(args) => validate::run(&args),
    };
    match result {
        Ok(code) => code,
        // `vroeg state dump | head`: the reader had enough.
        Err(error) if closed_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Whether writing stopped because the reader of standard output went away.
fn closed_pipe(error: &anyhow::Error) -> bool {
    let broken = |kind: Option<std::io::ErrorKind>| kind == Some(std::io::ErrorKind::BrokenPipe);
    error.chain().any(|cause| {
        broken(
            cause
                .downcast_ref::<std::io::Error>()
                .map(std::io::Error::kind),
        ) || broken(
            cause
                .downcast_ref::<serde_json::Error>()
                .and_then(serde_json::Error::io_error_kind),
        )
    })
}

#[cfg(test)]
mod tests {
    use std::alloc::{GlobalAlloc, Layout};

    #[test]
    fn plain_blocks_have_the_alignment() {
        // Sizes across mimalloc's small and medium classes, the odd ones
        // (not powers of two) included, many blocks each so that fresh
        // pages are taken too; then grown by realloc.
        let allocator = super::Mimalloc;
        let mut blocks = Vec::new();
        for size in (1..=600).chain([1000, 4000, 5000, 20_000, 70_000]) {
            for align in [1, 2, 4, 8, 16, 32] {
                let layout = Layout::from_size_align(size, align).unwrap();
                for zeroed in [false, true] {
                    for _ in 0..8 {
                        // SAFETY: the layout has a non-zero size; the block
                        // is freed below with the same layout.
                        let p = unsafe {
                            if zeroed {
                                allocator.alloc_zeroed(layout)
                            } else {
                                allocator.alloc(layout)
                            }
                        };
                        assert!(!p.is_null());
                        assert_eq!(p as usize % align, 0, "size {size}, align {align}");
                        if zeroed {
                            // SAFETY: p holds `size` bytes.
                            let bytes = unsafe { std::slice::from_raw_parts(p, size) };
                            assert!(bytes.iter().all(|b| *b == 0), "size {size} not zeroed");
                        }
                        blocks.push((p, layout));
                    }
                }
            }
        }
        for (p, layout) in blocks {
            let new_size = layout.size() * 3 + 5;
            // SAFETY: p was allocated with `layout`; new_size is not zero.
            let q = unsafe { allocator.realloc(p, layout, new_size) };
            assert!(!q.is_null());
            assert_eq!(q as usize % layout.align(), 0);
            let grown = Layout::from_size_align(new_size, layout.align()).unwrap();
            // SAFETY: q was allocated with `grown`.
            unsafe { allocator.dealloc(q, grown) };
        }
    }

    #[test]
    fn the_purge_delay_option_is_the_one_whose_default_is_a_second() {
        // SAFETY: reading an option has no side effects.
        let value = unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        assert_eq!(
            value,
            1000,
            "mimalloc's option {} is not purge_delay",
            super::MI_OPTION_PURGE_DELAY
        );
    }
}
