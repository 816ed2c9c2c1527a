//! Exports: the DDAS delivery for CBS, the Divosa monitor indicators, and
//! the API's audit log.
//!
//! The DDAS delivery and the indicators come from a stopped service's state
//! directory, or, with `--service`, from a running service (its admin
//! endpoints read the engine's state between two batches). Both refuse a
//! state that is empty or contradicts itself, and never write an empty
//! delivery (`vroeg-export`). The DDAS mapping is documented in
//! `docs/ddas.md`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use vroeg_core::time::{format_rfc3339, parse_rfc3339, Day, Millis};
use vroeg_export::{share, Contactpersoon, DdasRequest, Indicators, Period, Snapshot};

use crate::run::{open_state, StateArgs};

/// A `YYYY-MM-DD` command-line argument.
pub fn parse_day(s: &str) -> Result<Day, String> {
    Day::parse(s).ok_or_else(|| format!("{s:?} is not a date (YYYY-MM-DD)"))
}

#[derive(Args)]
pub struct PeriodArgs {
    #[command(flatten)]
    pub state: StateArgs,
    /// First day of the period (YYYY-MM-DD).
    #[arg(long, value_parser = parse_day)]
    pub from: Day,
    /// Last day of the period, inclusive (YYYY-MM-DD).
    #[arg(long, value_parser = parse_day)]
    pub to: Day,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// Where a running service is, for exports fetched from it.
#[derive(Args)]
pub struct RemoteArgs {
    /// Fetch from this running service (its API address, e.g.
    /// http://127.0.0.1:8080) instead of reading a stopped state directory.
    /// Needs an admin token.
    #[arg(long, value_name = "URL")]
    pub service: Option<String>,
    /// A file holding the admin token for --service (or VROEG_API_TOKEN).
    #[arg(long, value_name = "FILE", requires = "service")]
    pub token_file: Option<PathBuf>,
}

impl PeriodArgs {
    fn period(&self) -> anyhow::Result<Period> {
        Ok(Period::new(self.from, self.to)?)
    }
}

#[derive(Args)]
pub struct DdasArgs {
    #[command(flatten)]
    pub period: PeriodArgs,
    /// The municipality's CBS code, e.g. 0363.
    #[arg(long)]
    pub gemeentecode: String,
    /// The delivering organisation's name (default: "Gemeente <code>").
    #[arg(long)]
    pub organisatie: Option<String>,
    /// The delivering organisation's KvK number.
    #[arg(long)]
    pub kvk: Option<String>,
    /// A contact person: "name,email[,phone[,function]]" (repeatable).
    #[arg(long = "contactpersoon", value_parser = parse_contact)]
    pub contactpersonen: Vec<Contactpersoon>,
    /// Code of the data supplier (`codeGegevensleverancier`).
    #[arg(long, default_value = "VROEG")]
    pub leverancier: String,
    /// Delivery time (RFC 3339); default now. Fix it for reproducible files.
    #[arg(long)]
    pub now: Option<String>,
    /// Write here instead of standard output.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
}

fn parse_contact(s: &str) -> Result<Contactpersoon, String> {
    s.parse()
        .map_err(|e: vroeg_export::ExportError| e.to_string())
}

fn parse_now(now: Option<&str>) -> anyhow::Result<Millis> {
    match now {
        Some(t) => parse_rfc3339(t).with_context(|| format!("--now {t:?} is not RFC 3339")),
        None => Ok(vroeg_kafka::wall_now()),
    }
}

/// Read a stopped service's state for an export. A store that fails while
/// it is read (sled can panic on a torn copy) is reported, not a crash.
fn offline_snapshot(state: &StateArgs) -> anyhow::Result<Snapshot> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let store = open_state(state)?;
        Snapshot::read(&store).with_context(|| format!("refused: {}", state.state.display()))
    }));
    std::panic::set_hook(hook);
    read.unwrap_or_else(|_| {
        anyhow::bail!(
            "refused: the state in {} is damaged (the store failed while reading it); a copy of a running service's state directory can be torn: stop the service first, or fetch the export from the running service (--service)",
            state.state.display()
        )
    })
}

/// GET `path` with `query` from a running service, with the admin token;
/// the JSON answer, or the service's own error message.
fn fetch(
    remote: &RemoteArgs,
    path: &str,
    query: &[(&str, String)],
) -> anyhow::Result<serde_json::Value> {
    let service = remote
        .service
        .as_deref()
        .expect("only called with --service");
    let token = match &remote.token_file {
        Some(file) => std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the token file {}", file.display()))?,
        None => std::env::var("VROEG_API_TOKEN")
            .context("--service needs an admin token: --token-file FILE or VROEG_API_TOKEN")?,
    };
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .provider(ureq::tls::TlsProvider::NativeTls)
                .root_certs(ureq::tls::RootCerts::PlatformVerifier)
                .build(),
        )
        .build()
        .new_agent();
    let url = format!("{}{path}", service.trim_end_matches('/'));
    let mut request = agent
        .get(&url)
        .header("Authorization", &format!("Bearer {}", token.trim()));
    for (name, value) in query {
        request = request.query(*name, value);
    }
    let mut response = request
        .call()
        .with_context(|| format!("cannot reach the service at {service}"))?;
    let status = response.status();
    let body = response
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_string()
        .with_context(|| format!("cannot read the answer of {url}"))?;
    let value: serde_json::Value = serde_json::from_str(&body).with_context(|| {
        format!("{url} answered {status} with no JSON (is this a Vroeg service?)")
    })?;
    if !status.is_success() {
        let detail = value["detail"].as_str().unwrap_or("no detail");
        anyhow::bail!("the service refused ({status}): {detail}");
    }
    Ok(value)
}

/// Write `text` to `out` (through a temporary file, so a failure never
/// leaves half a file), or to standard output.
fn write_out(out: Option<&Path>, text: &str) -> anyhow::Result<()> {
    match out {
        Some(path) => {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, text)
                .and_then(|()| std::fs::rename(&tmp, path))
                .with_context(|| format!("cannot write {}", path.display()))
        }
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

pub fn ddas(args: &DdasArgs) -> anyhow::Result<ExitCode> {
    let request = DdasRequest {
        period: args.period.period()?,
        gemeentecode: args.gemeentecode.clone(),
        organisatie: args.organisatie.clone(),
        kvk: args.kvk.clone(),
        contactpersonen: args.contactpersonen.clone(),
        leverancier: args.leverancier.clone(),
    };
    request.validate()?;
    let now = parse_now(args.now.as_deref())?;
    let (document, signals, cases, school_only) = if args.period.remote.service.is_some() {
        let mut query = vec![
            ("van", args.period.from.to_string()),
            ("tot", args.period.to.to_string()),
            ("gemeentecode", request.gemeentecode.clone()),
            ("leverancier", request.leverancier.clone()),
            ("nu", format_rfc3339(now)),
        ];
        if let Some(o) = &request.organisatie {
            query.push(("organisatie", o.clone()));
        }
        if let Some(k) = &request.kvk {
            query.push(("kvk", k.clone()));
        }
        for c in &request.contactpersonen {
            query.push(("contactpersoon", c.to_string()));
        }
        let answer = fetch(&args.period.remote, "/admin/export/ddas", &query)?;
        let count = |name: &str| answer[name].as_u64().unwrap_or(0) as usize;
        (
            answer["levering"].clone(),
            count("vroegsignalen"),
            count("zaken"),
            count("zaken_zonder_ddas_signaal"),
        )
    } else {
        let snapshot = offline_snapshot(&args.period.state)?;
        let d = vroeg_export::ddas(&snapshot, &request, now)?;
        (d.document, d.signals, d.cases, d.cases_without_ddas_signal)
    };
    anyhow::ensure!(
        document.is_object() && (signals > 0 || cases > 0),
        "refused: the delivery is empty; an empty delivery is never written"
    );
    let text = serde_json::to_string_pretty(&document)? + "\n";
    write_out(args.out.as_deref(), &text)?;
    eprintln!(
        "ddas delivery {}..{}: {signals} signals, {cases} cases{}",
        args.period.from,
        args.period.to,
        if school_only > 0 {
            format!(" ({school_only} school-only cases left out: DDAS has no school signals)")
        } else {
            String::new()
        }
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub period: PeriodArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Evaluate open deadlines as of this time (RFC 3339); default now.
    #[arg(long)]
    pub now: Option<String>,
}

fn pct(share: Option<f64>) -> String {
    share.map_or("-".into(), |s| format!("{:.1}%", s * 100.0))
}

pub fn report(args: &ReportArgs) -> anyhow::Result<ExitCode> {
    let period = args.period.period()?;
    let now = parse_now(args.now.as_deref())?;
    let ind: Indicators = if args.period.remote.service.is_some() {
        let query = [
            ("van", args.period.from.to_string()),
            ("tot", args.period.to.to_string()),
            ("nu", format_rfc3339(now)),
        ];
        let answer = fetch(&args.period.remote, "/admin/export/rapport", &query)?;
        serde_json::from_value(answer)
            .context("the service's report is not in the expected form")?
    } else {
        let snapshot = offline_snapshot(&args.period.state)?;
        vroeg_export::indicators(&snapshot, period, now)
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&ind)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("vroegsignalering {} .. {}", ind.van, ind.tot_en_met);
    println!();
    println!("{:<48} {:>8}", "signalen", ind.signalen);
    for (bron, n) in &ind.signalen_per_bron {
        println!("  {:<46} {:>8}  {}", bron, n, pct(share(*n, ind.signalen)));
    }
    println!(
        "{:<48} {:>8}  {}",
        "signalen in een zaak",
        ind.signalen_in_zaak,
        pct(ind.aandeel_signalen_zaak)
    );
    println!();
    println!("{:<48} {:>8}", "zaken geopend", ind.zaken_geopend);
    for (cat, n) in &ind.zaken_per_categorie {
        println!(
            "  {:<46} {:>8}  {}",
            cat,
            n,
            pct(share(*n, ind.zaken_geopend))
        );
    }
    println!(
        "{:<48} {:>8}  {}",
        "bereik (inwoner bereikt)",
        ind.zaken_bereikt,
        pct(ind.bereik)
    );
    println!();
    println!("contactpogingen per soort");
    for (soort, n) in &ind.contactpogingen_per_soort {
        println!("  {:<46} {:>8}", soort, n);
    }
    println!();
    println!("resultaten (gesloten zaken)");
    for (r, n) in &ind.resultaten {
        println!("  {:<46} {:>8}", r, n);
    }
    println!();
    println!(
        "{:<48} {:>8}  {}",
        "contacttermijn gehaald",
        format!("{}/{}", ind.deadlines_gehaald, ind.deadlines_beoordeeld),
        pct(ind.aandeel_deadlines_gehaald)
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct TokenArgs {
    /// Who will hold the token (the audit log shows this name).
    #[arg(long)]
    pub name: String,
    /// The wijkteam whose cases the token may see (a team of the routing).
    #[arg(long, conflicts_with_all = ["admin", "read_only"], required_unless_present_any = ["admin", "read_only"])]
    pub team: Option<String>,
    /// An admin token: every case, the audit log, exports and reload.
    #[arg(long, conflicts_with = "read_only")]
    pub admin: bool,
    /// A read-only token: every case and the audit log, no changes (for
    /// auditors and API tests).
    #[arg(long)]
    pub read_only: bool,
    /// The last day the token works (YYYY-MM-DD, Dutch time).
    #[arg(long, value_parser = parse_day)]
    pub expires: Option<Day>,
}

/// Print a new token once, and the config entry that stores its hash.
pub fn token_new(args: &TokenArgs) -> anyhow::Result<ExitCode> {
    let (token, hash) = vroeg_api::auth::new_token().context("no random source")?;
    eprintln!(
        "token for {:?} (shown once; give it to its holder, do not store it):",
        args.name
    );
    println!("{token}");
    eprintln!("\nadd to the config:\n");
    eprintln!(
        "[[api.tokens]]\nname = {:?}\nsha256 = \"{hash}\"",
        args.name
    );
    match &args.team {
        Some(team) => eprintln!("team = {team:?}"),
        None if args.admin => eprintln!("admin = true"),
        None => eprintln!("read_only = true"),
    }
    if let Some(day) = args.expires {
        eprintln!("expires = \"{day}\"");
    }
    eprintln!("\nthen reload: SIGHUP, or POST /admin/reload");
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct AuditArgs {
    /// The read model directory (`api.read_model_dir`), where the case API
    /// keeps its audit log. The service must not be running.
    #[arg(long, default_value = "leesmodel")]
    pub read_model: std::path::PathBuf,
}

/// Print the audit log as JSON lines.
pub fn audit_export(args: &AuditArgs) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    anyhow::ensure!(
        args.read_model.join("conf").exists(),
        "{} is not a Vroeg read model directory (api.read_model_dir)",
        args.read_model.display()
    );
    let model = vroeg_readmodel::ReadModel::open(&args.read_model).with_context(|| {
        format!(
            "cannot open {} (is the service still running? then use GET /api/v1/audit)",
            args.read_model.display()
        )
    })?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for entry in model.audit_log() {
        serde_json::to_writer(&mut out, &entry?)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
