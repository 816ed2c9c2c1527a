//! `vroeg gen`: deterministic, realistic synthetic signals as JSON lines.
//!
//! The mix follows the national figures (Divosa monitor): about 45% Zorg,
//! 25% Energie, 19% Huur, the rest Water and others; about 11% of signalled
//! households with several partners in a month; about 40% with an earlier
//! signal in the six months before; amounts mostly €250–1,000 with a long
//! tail; status updates for part of them; school absence for a few percent
//! of households; and a few percent of invalid messages of several kinds.
//! The same arguments always give the same bytes.

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use vroeg_core::signal::{PartnerType, TYPE_ABSENCE, TYPE_ARREARS};
use vroeg_core::time::{format_rfc3339, Day};

#[derive(Args, Clone)]
pub struct GenArgs {
    /// Number of households in the synthetic municipality.
    #[arg(long, default_value_t = 10_000)]
    pub households: u32,
    /// Number of months to generate.
    #[arg(long, default_value_t = 6)]
    pub months: u32,
    /// Random seed; the same seed gives the same output.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// First day of the first month.
    #[arg(long, default_value = "2026-01-01")]
    pub start: String,
    /// Last day a message may be dated (YYYY-MM-DD). Messages that would
    /// fall after it are left out; without it, messages after this moment
    /// are, so that sending the file gives no `future_date` dead letters.
    #[arg(long)]
    pub now: Option<String>,
    /// Share of signalled households per month (0-1).
    #[arg(long, default_value_t = 0.05)]
    pub rate: f64,
    /// Share of invalid messages (0-1).
    #[arg(long, default_value_t = 0.02)]
    pub invalid: f64,
    /// Output file (default: standard output).
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Also write wijkteam feedback to this file: contact attempts for
    /// about 95% of the cases the signals open, and outcomes for part of
    /// them, as a wijkteam would record them. To learn which cases open,
    /// the signals are first replayed with `--rules` and the household
    /// secret, so use the same secret where the feedback is applied
    /// (`replay --feedback`, or `send` to the feedback topic).
    #[arg(long)]
    pub feedback: Option<PathBuf>,
    /// Rule files or directories, for `--feedback`.
    #[arg(long, default_value = "rules")]
    pub rules: Vec<PathBuf>,
    /// Secret of the household pseudonym, for `--feedback` (case ids
    /// contain the household key).
    #[arg(long, env = "VROEG_HOUSEHOLD_SECRET", hide_env_values = true)]
    pub household_secret: Option<String>,
}

const SURNAMES: &[(&str, Option<&str>)] = &[
    ("Jansen", None),
    ("Vries", Some("de")),
    ("Bakker", None),
    ("Visser", None),
    ("Smit", None),
    ("Meijer", None),
    ("Berg", Some("van den")),
    ("Mulder", None),
    ("Dijk", Some("van")),
    ("Bos", None),
    ("Yilmaz", None),
    ("El Amrani", None),
    ("Boer", Some("de")),
    ("Vermeulen", None),
    ("Leeuwen", Some("van")),
];
const STREETS: &[&str] = &[
    "Dorpsstraat",
    "Kerkstraat",
    "Schoolstraat",
    "Molenweg",
    "Stationsplein",
    "Julianalaan",
    "Beukenlaan",
    "Havenkade",
];
const TOWNS: &[&str] = &[
    "Utrecht",
    "Zwolle",
    "Tilburg",
    "Almere",
    "Leeuwarden",
    "Dordrecht",
];

struct Household {
    postcode: String,
    huisnummer: u32,
    toevoeging: Option<&'static str>,
    straat: &'static str,
    plaats: &'static str,
    surname: (&'static str, Option<&'static str>),
    birth: Day,
    /// Whether this household has a school-age child.
    child: Option<Day>,
    /// Last month with a signal, for persistence.
    last_month: Option<u32>,
}

fn pick_partner(rng: &mut ChaCha8Rng) -> PartnerType {
    let x: f64 = rng.random();
    match x {
        x if x < 0.45 => PartnerType::Zorg,
        x if x < 0.70 => PartnerType::Energie,
        x if x < 0.89 => PartnerType::Huur,
        x if x < 0.95 => PartnerType::Water,
        x if x < 0.97 => PartnerType::CakZorgverzekeringen,
        x if x < 0.99 => PartnerType::Hypotheek,
        _ => PartnerType::Overige,
    }
}

fn source_of(partner: PartnerType, hh: u32) -> String {
    // A few organisations per partner type, fixed per household.
    let org = hh % 3;
    format!(
        "urn:vroeg:partner:{}-{org}",
        partner.var_prefix().replace('_', "-")
    )
}

fn amount_cent(rng: &mut ChaCha8Rng) -> u64 {
    let x: f64 = rng.random();
    let euro = if x < 0.75 {
        rng.random_range(250.0..1000.0)
    } else if x < 0.90 {
        rng.random_range(40.0..250.0)
    } else {
        // Long tail: 1,000 to ~20,000.
        1000.0 * (1.0 + rng.random::<f64>() * 3.0_f64).powf(2.2)
    };
    (euro * 100.0).round() as u64
}

fn bsn(rng: &mut ChaCha8Rng) -> String {
    loop {
        let d: Vec<i64> = (0..8).map(|_| rng.random_range(0..10)).collect();
        let s: i64 = d.iter().enumerate().map(|(i, v)| v * (9 - i as i64)).sum();
        let last = s % 11;
        if last < 10 && !(d[0] == 0 && s == 0) {
            return d.iter().map(|v| v.to_string()).collect::<String>() + &last.to_string();
        }
    }
}

pub struct Generator {
    rng: ChaCha8Rng,
    households: Vec<Household>,
    counter: u64,
}

/// One generated message: its event time and the JSON line.
pub struct Line {
    pub time: i64,
    pub text: String,
}

impl Generator {
    pub fn new(n: u32, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let households = (0..n)
            .map(|i| {
                // Spread over every 4-digit area (1000-9999) whatever the
                // number of households, so that a routing file that splits
                // the areas gives every team its share; neighbours share an
                // area, and the letters keep up to 400 per area apart.
                let pc = 1000 + (u64::from(i) * 9000 / u64::from(n.max(1))) as u32;
                let letters = [b'A' + (i % 20) as u8, b'A' + ((i / 20) % 20) as u8 + 2];
                let postcode = format!("{pc}{}", String::from_utf8_lossy(&letters));
                let toevoeging = match rng.random_range(0..10) {
                    0 => Some("A"),
                    1 => Some("bis"),
                    _ => None,
                };
                let birth = Day::parse("1945-01-01")
                    .unwrap_or(Day(0))
                    .plus_days(rng.random_range(0..(60 * 365)));
                let child = (rng.random::<f64>() < 0.25).then(|| {
                    Day::parse("2009-01-01")
                        .unwrap_or(Day(0))
                        .plus_days(rng.random_range(0..(12 * 365)))
                });
                Household {
                    postcode,
                    huisnummer: 1 + (i % 400) / 2 + rng.random_range(0..2) * 200,
                    toevoeging,
                    straat: STREETS[rng.random_range(0..STREETS.len())],
                    plaats: TOWNS[(i as usize / 5000) % TOWNS.len()],
                    surname: SURNAMES[rng.random_range(0..SURNAMES.len())],
                    birth,
                    child,
                    last_month: None,
                }
            })
            .collect();
        Generator {
            rng,
            households,
            counter: 0,
        }
    }

    fn next_id(&mut self) -> String {
        self.counter += 1;
        format!("sig-{:08}", self.counter)
    }

    /// The house number as a partner might spell it: partners disagree on
    /// how to write the suffix.
    fn address(&mut self, hh: usize) -> Value {
        let h = &self.households[hh];
        let style = self.rng.random_range(0..4);
        let (nr, toev): (Value, Value) = match (h.toevoeging, style) {
            (None, _) => (json!(h.huisnummer), Value::Null),
            (Some(t), 0) => (json!(h.huisnummer), json!(format!("-{t}"))),
            (Some(t), 1) => (
                json!(format!("{} {}", h.huisnummer, t.to_lowercase())),
                Value::Null,
            ),
            (Some(t), _) => (json!(h.huisnummer), json!(t)),
        };
        let pc = if style == 3 {
            format!("{} {}", &h.postcode[..4], &h.postcode[4..])
        } else {
            h.postcode.clone()
        };
        json!({ "straatnaam": h.straat, "postcode": pc, "huisnummer": nr,
                "huisnummertoevoeging": toev, "plaatsnaam": h.plaats })
    }

    #[allow(clippy::too_many_arguments)]
    fn arrears(
        &mut self,
        hh: usize,
        partner: PartnerType,
        referentie: &str,
        status: &str,
        bedrag: u64,
        ontstaan: Day,
        signaal: Day,
        crisis: bool,
        eindelevering: bool,
    ) -> Line {
        let time = signaal.start_millis()
            + self.rng.random_range(7..18) * 3_600_000
            + self.rng.random_range(0..3_600_000);
        let id = self.next_id();
        let address = self.address(hh);
        let with_bsn = self.rng.random::<f64>() < 0.3;
        let bsn = with_bsn.then(|| bsn(&mut self.rng));
        let h = &self.households[hh];
        let mut client = json!({
            "voorletters": "A.B.", "voorvoegsel": h.surname.1, "achternaam": h.surname.0,
            "geboortedatum": h.birth.to_string(),
        });
        for (k, v) in address.as_object().into_iter().flatten() {
            client[k] = v.clone();
        }
        if let Some(b) = bsn {
            client["bsn"] = json!(b);
        }
        if hh % 2 == 0 {
            client["telefoon"] = json!(format!("06{:08}", hh));
        }
        let event = json!({
            "specversion": "1.0", "id": id, "source": source_of(partner, hh as u32), "type": TYPE_ARREARS,
            "time": format_rfc3339(time), "datacontenttype": "application/json",
            "data": {
                "signaalpartner": partner.as_str(), "referentie": referentie, "status": status,
                "bedrag_cent": bedrag, "ontstaansdatum": ontstaan.to_string(), "signaaldatum": signaal.to_string(),
                "crisissignaal": crisis, "eindelevering": eindelevering, "client": client
            }
        });
        Line {
            time,
            text: event.to_string(),
        }
    }

    fn absence(&mut self, hh: usize, day: Day) -> Option<Line> {
        let child = self.households[hh].child?;
        let time = day.start_millis() + 10 * 3_600_000;
        let id = self.next_id();
        let mut leerling = self.address(hh);
        leerling["geboortedatum"] = json!(child.to_string());
        let soort = if self.rng.random::<f64>() < 0.8 {
            "ongeoorloofd"
        } else {
            "langdurig"
        };
        let event = json!({
            "specversion": "1.0", "id": id, "source": "urn:vroeg:school:duo-verzuimregister", "type": TYPE_ABSENCE,
            "time": format_rfc3339(time), "datacontenttype": "application/json",
            "data": { "verzuimsoort": soort, "uren_4_weken": self.rng.random_range(16..40),
                      "school": format!("{:02}AB", hh % 100), "leerling": leerling }
        });
        Some(Line {
            time,
            text: event.to_string(),
        })
    }

    /// Turn a valid line into an invalid one of a chosen kind.
    fn corrupt(&mut self, line: Line) -> Line {
        let mut v: Value = serde_json::from_str(&line.text).unwrap_or(Value::Null);
        let kind = self.rng.random_range(0..9);
        let text = match kind {
            0 => line.text[..line.text.len() / 2].to_owned(),
            1 => {
                v["data"]["client"]["postcode"] = json!("0000 XX");
                v.to_string()
            }
            2 => {
                v["data"]["bedrag_cent"] = json!(-12_500);
                v.to_string()
            }
            3 => {
                // A Dutch date (dd-mm-jjjj) where ISO 8601 is required.
                let day = v["data"]["signaaldatum"].as_str().unwrap_or("2026-01-31");
                let dutch: Vec<&str> = day.rsplit('-').collect();
                v["data"]["signaaldatum"] = json!(dutch.join("-"));
                v.to_string()
            }
            4 => {
                v["type"] = json!("nl.vroeg.signaal.onbekend.v1");
                v.to_string()
            }
            5 => {
                v["data"]["client"]["bsn"] = json!("123456789");
                v.to_string()
            }
            6 => {
                if let Some(d) = v["data"].as_object_mut() {
                    d.remove("referentie");
                }
                v.to_string()
            }
            7 => {
                v["data"]["bedrag_cent"] = json!("vijfhonderd");
                v.to_string()
            }
            _ => {
                if let Some(o) = v.as_object_mut() {
                    o.remove("id");
                }
                v.to_string()
            }
        };
        Line {
            time: line.time,
            text,
        }
    }

    /// Generate `months` months from `start`, sorted by event time.
    pub fn generate(&mut self, start: Day, months: u32, rate: f64, invalid: f64) -> Vec<Line> {
        let mut lines = Vec::new();
        let n = self.households.len();
        for month in 0..months {
            let first = start.plus_months(month);
            let days = (first.plus_months(1).0 - first.0).max(1);
            for hh in 0..n {
                let recent = self.households[hh]
                    .last_month
                    .is_some_and(|m| month - m <= 6);
                // Persistence: households in arrears tend to stay so.
                let p = if recent { rate * 6.0 } else { rate * 0.7 };
                if self.rng.random::<f64>() >= p.min(0.9) {
                    if self.households[hh].child.is_some() && self.rng.random::<f64>() < rate * 0.3
                    {
                        let day = first.plus_days(self.rng.random_range(0..days));
                        if let Some(l) = self.absence(hh, day) {
                            lines.push(l);
                        }
                    }
                    continue;
                }
                self.households[hh].last_month = Some(month);
                let partners = match self.rng.random::<f64>() {
                    x if x < 0.89 => 1,
                    x if x < 0.98 => 2,
                    _ => 3,
                };
                let mut used = Vec::new();
                for _ in 0..partners {
                    let mut partner = pick_partner(&mut self.rng);
                    while used.contains(&partner) {
                        partner = pick_partner(&mut self.rng);
                    }
                    used.push(partner);
                    let signaal = first.plus_days(self.rng.random_range(0..days));
                    let ontstaan = signaal.plus_days(-self.rng.random_range(30..100));
                    let bedrag = amount_cent(&mut self.rng);
                    let crisis = partner == PartnerType::Huur && self.rng.random::<f64>() < 0.08;
                    let eind = partner == PartnerType::Energie && self.rng.random::<f64>() < 0.08;
                    let referentie = format!("{}-{:06}", partner.var_prefix().to_uppercase(), hh);
                    let mut line = self.arrears(
                        hh,
                        partner,
                        &referentie,
                        "open",
                        bedrag,
                        ontstaan,
                        signaal,
                        crisis,
                        eind,
                    );
                    if self.rng.random::<f64>() < invalid {
                        line = self.corrupt(line);
                    }
                    lines.push(line);
                    // A status update for part of them, 10-40 days later.
                    if self.rng.random::<f64>() < 0.3 {
                        let later = signaal.plus_days(self.rng.random_range(10..40));
                        let status = if self.rng.random::<f64>() < 0.6 {
                            "betaald"
                        } else {
                            "betalingsregeling"
                        };
                        lines.push(self.arrears(
                            hh,
                            partner,
                            &referentie,
                            status,
                            bedrag,
                            ontstaan,
                            later,
                            false,
                            false,
                        ));
                    }
                }
                if self.households[hh].child.is_some() && self.rng.random::<f64>() < 0.2 {
                    let day = first.plus_days(self.rng.random_range(0..days));
                    if let Some(l) = self.absence(hh, day) {
                        lines.push(l);
                    }
                }
            }
        }
        // Status updates can fall after the last month; keep them, in order.
        lines.sort_by_key(|l| l.time);
        lines
    }
}

/// The lines `vroeg gen` writes: none dated after `--now`, or after this
/// moment when it is not given.
pub fn generate(args: &GenArgs) -> anyhow::Result<Vec<Line>> {
    let end = match &args.now {
        Some(now) => Day::parse(now)
            .with_context(|| format!("--now {now:?} is not a date (YYYY-MM-DD)"))?
            .plus_days(1)
            .start_millis(),
        None => vroeg_kafka::wall_now() + 1,
    };
    let mut lines = generate_all(args)?;
    lines.retain(|l| l.time < end);
    Ok(lines)
}

/// Every line of the period and the status updates after it, whatever
/// today is (the demo, which replays on the event clock).
pub fn generate_all(args: &GenArgs) -> anyhow::Result<Vec<Line>> {
    let start = Day::parse(&args.start)
        .with_context(|| format!("--start {:?} is not a date (YYYY-MM-DD)", args.start))?;
    anyhow::ensure!(args.households > 0, "--households must be at least 1");
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.rate),
        "--rate must be between 0 and 1"
    );
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.invalid),
        "--invalid must be between 0 and 1"
    );
    let mut g = Generator::new(args.households, args.seed);
    Ok(g.generate(start, args.months, args.rate, args.invalid))
}

pub fn write(lines: &[Line], out: &mut dyn Write) -> std::io::Result<()> {
    let mut w = BufWriter::with_capacity(1 << 20, out);
    for l in lines {
        w.write_all(l.text.as_bytes())?;
        w.write_all(b"\n")?;
    }
    w.flush()
}

pub fn run(args: &GenArgs) -> anyhow::Result<()> {
    let lines = generate(args)?;
    match &args.out {
        Some(path) => {
            let mut f = std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            write(&lines, &mut f)?;
            eprintln!("wrote {} signals to {}", lines.len(), path.display());
        }
        None => write(&lines, &mut std::io::stdout().lock())?,
    }
    if let Some(path) = &args.feedback {
        let mut feedback = feedback_for(&lines, &args.rules, &args.household_secret, args.seed)?;
        // The same bound as the signals: nothing dated after `--now`.
        let end = cutoff(args)?;
        feedback.retain(|l| l.time < end);
        let mut f = std::fs::File::create(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        write(&feedback, &mut f)?;
        eprintln!(
            "wrote {} feedback messages (contact attempts and outcomes) to {}",
            feedback.len(),
            path.display()
        );
    }
    Ok(())
}

/// The end of what `gen` may date: the day after `--now`, or this moment.
fn cutoff(args: &GenArgs) -> anyhow::Result<i64> {
    Ok(match &args.now {
        Some(now) => Day::parse(now)
            .with_context(|| format!("--now {now:?} is not a date (YYYY-MM-DD)"))?
            .plus_days(1)
            .start_millis(),
        None => vroeg_kafka::wall_now() + 1,
    })
}

// When a feedback message dated `day` takes effect, for ordering it among
// the signals (`replay --feedback` does the same).
use vroeg_core::feedback::effective_time as feedback_time;

/// What one case did in a replay without feedback.
struct SeenCase {
    household: String,
    opened: i64,
    closed: Option<i64>,
    crisis: bool,
}

/// Wijkteam feedback for the cases `lines` open: replay them once with
/// `rules` to learn which cases open and when, then record what a wijkteam
/// would: a first contact attempt within the deadline for about 95% of the
/// cases (crisis within two days), a second attempt for part of those not
/// reached, and an outcome for part of them. An outcome closes its case,
/// so one is only given where the household sends no signal after it:
/// otherwise the outcome would change which cases the later signals open,
/// and the feedback would no longer fit them. Contact attempts change no
/// case's course but its escalation. Sorted by the time they take effect.
pub fn feedback_for(
    lines: &[Line],
    rules: &[PathBuf],
    secret: &Option<String>,
    seed: u64,
) -> anyhow::Result<Vec<Line>> {
    use vroeg_core::signal::{decode_structured, DecodeContext};
    let secret_bytes = crate::replay::secret(secret);
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let signals = dir.path().join("signalen.jsonl");
    write(lines, &mut std::fs::File::create(&signals)?)?;
    let last = lines.last().map_or(0, |l| l.time);
    let replay_args = crate::replay::ReplayArgs {
        rules: rules.to_vec(),
        signals: signals.clone(),
        out: None,
        rejects: None,
        state: None,
        batch_size: 5000,
        no_fsync: true,
        school_purpose: false,
        routing: None,
        no_escalation: true,
        household_secret: Some(String::from_utf8_lossy(&secret_bytes).into_owned()),
        now: Some(format_rfc3339(last + 86_400_000)),
        summary_json: None,
        until: None,
        quiet: true,
        feedback: None,
    };
    let outcome = crate::replay::replay(&replay_args, false)
        .context("replaying the signals to learn which cases open")?;
    let mut cases: std::collections::BTreeMap<String, SeenCase> = Default::default();
    let alerts = std::io::BufReader::new(std::fs::File::open(&outcome.alerts_file)?);
    for line in std::io::BufRead::lines(alerts) {
        let v: Value = serde_json::from_str(&line?)?;
        let (Some(id), Some(tijd)) = (v["zaak_id"].as_str(), v["tijd"].as_str()) else {
            continue;
        };
        let time = vroeg_core::time::parse_rfc3339(tijd)
            .with_context(|| format!("alert time {tijd:?} is not RFC 3339"))?;
        match v["type"].as_str() {
            Some("geopend") => {
                cases.insert(
                    id.to_owned(),
                    SeenCase {
                        household: v["huishouden"].as_str().unwrap_or_default().to_owned(),
                        opened: time,
                        closed: None,
                        crisis: v["categorie"] == "crisis",
                    },
                );
            }
            Some("gesloten") => {
                if let Some(c) = cases.get_mut(id) {
                    c.closed = Some(time);
                }
            }
            _ => {}
        }
    }
    // The last signal of each household, by its key.
    let keyer = vroeg_core::HouseholdKeyer::new(&secret_bytes);
    let mut last_signal: std::collections::HashMap<String, i64> = Default::default();
    for l in lines {
        let ctx = DecodeContext::at(l.time + 86_400_000);
        if let Ok(signal) = decode_structured(l.text.as_bytes(), &ctx) {
            let key = keyer.key(signal.address()).to_string();
            let e = last_signal.entry(key).or_insert(l.time);
            *e = (*e).max(l.time);
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7769_6a6b);
    let mut out = Vec::new();
    let mut n = 0u64;
    let mut next_id = || {
        n += 1;
        format!("wt-{n:08}")
    };
    let open_at = |c: &SeenCase, t: i64| t > c.opened && c.closed.is_none_or(|closed| t < closed);
    for (id, case) in &cases {
        if rng.random::<f64>() >= 0.95 {
            continue;
        }
        let opened = Day::of_millis(case.opened);
        let first_day = if case.crisis {
            opened.plus_days(rng.random_range(1..=2))
        } else {
            opened.plus_days(rng.random_range(1..=9))
        };
        let mut attempts = vec![(first_day, rng.random::<f64>() < 0.6)];
        if !attempts[0].1 && rng.random::<f64>() < 0.6 {
            attempts.push((
                first_day.plus_days(rng.random_range(2..=7)),
                rng.random::<f64>() < 0.5,
            ));
        }
        let mut last_day = first_day;
        let mut reached = false;
        for (day, bereikt) in &attempts {
            if !open_at(case, feedback_time(*day)) {
                break;
            }
            let soort = match rng.random_range(0..20) {
                0..=8 => "Telefoon",
                9..=12 => "Brief",
                13..=15 => "Huisbezoek",
                16..=17 => "Mail",
                _ => "SMS/Whatsapp",
            };
            let dagdeel = ["Ochtend", "Middag", "Avond"][rng.random_range(0..3)];
            out.push(Line {
                time: feedback_time(*day),
                text: json!({"id": next_id(), "zaak_id": id, "type": "contactpoging",
                    "contactsoort": soort, "bereikt": bereikt, "datum": day.to_string(),
                    "dagdeel": dagdeel})
                .to_string(),
            });
            last_day = *day;
            reached |= bereikt;
        }
        let day = last_day.plus_days(rng.random_range(3..=20));
        let quiet_after = last_signal
            .get(&case.household)
            .is_none_or(|t| *t < feedback_time(day));
        if !quiet_after || !open_at(case, feedback_time(day)) || rng.random::<f64>() >= 0.7 {
            continue;
        }
        let resultaat = if reached {
            match rng.random_range(0..20) {
                0..=6 => "(Budget)advies en/of quick fix",
                7..=12 => "Vervolghulp en/of verwijzing financieel",
                13..=15 => "Inwoner hoeft geen hulp vanuit vroegsignalering",
                16..=17 => "Inwoner heeft zelf al betaald/betalingsregeling getroffen",
                _ => "Inwoner al bekend bij schuldhulpverlening",
            }
        } else {
            "Definitief geen contact kunnen krijgen"
        };
        out.push(Line {
            time: feedback_time(day),
            text: json!({"id": next_id(), "zaak_id": id, "type": "resultaat",
                "resultaat": resultaat, "datum": day.to_string()})
            .to_string(),
        });
    }
    out.sort_by_key(|l| l.time);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use vroeg_core::signal::{decode_structured, DecodeContext, ErrorCode};

    fn args(households: u32, start: Day, now: Option<Day>) -> GenArgs {
        GenArgs {
            households,
            months: 4,
            seed: 7,
            start: start.to_string(),
            now: now.map(|d| d.to_string()),
            rate: 0.08,
            invalid: 0.02,
            out: None,
            feedback: None,
            rules: vec![],
            household_secret: None,
        }
    }

    /// The README's recipe: four months from 130 days ago, whose status
    /// updates would run up to a month past today.
    #[test]
    fn no_message_is_dated_after_now_so_none_is_refused_as_future() {
        let now = Day::parse("2026-11-26").unwrap();
        let a = args(2_000, now.plus_days(-130), Some(now));
        let end = now.plus_days(1).start_millis();
        let all = generate_all(&a).unwrap();
        let after = all.iter().filter(|l| l.time >= end).count();
        assert!(after > 0, "the period itself runs past now");
        let lines = generate(&a).unwrap();
        assert_eq!(lines.len(), all.len() - after);
        let ctx = DecodeContext::at(now.start_millis());
        let mut refused = BTreeMap::new();
        for l in &lines {
            if let Err(e) = decode_structured(l.text.as_bytes(), &ctx) {
                *refused.entry(format!("{:?}", e.code)).or_insert(0) += 1;
                assert_ne!(e.code, ErrorCode::FutureDate, "{}", l.text);
            }
        }
        // The deliberately invalid share is still there, of several kinds.
        assert!(refused.len() >= 4, "{refused:?}");
    }

    #[test]
    fn households_spread_over_every_postcode_area() {
        let g = Generator::new(5_000, 1);
        let areas: Vec<u32> = g
            .households
            .iter()
            .map(|h| h.postcode[..4].parse().unwrap())
            .collect();
        assert_eq!(areas.iter().min(), Some(&1000));
        assert_eq!(areas.iter().max(), Some(&9998));
        // Every hundred of areas gets about 5000 / 90 households: a routing
        // file that gives a team "1100-1199" gives it cases.
        for hundred in 10..100 {
            let n = areas.iter().filter(|a| **a / 100 == hundred).count();
            assert!((50..=60).contains(&n), "{hundred}xx: {n}");
        }
        let g = Generator::new(100_000, 1);
        let mut addresses: Vec<_> = g
            .households
            .iter()
            .map(|h| (&h.postcode, h.huisnummer, h.toevoeging))
            .collect();
        addresses.sort();
        addresses.dedup();
        assert_eq!(addresses.len(), 100_000, "every household its own address");
    }
}
