//! The wijkteam inbox: server-rendered pages in Dutch on which
//! coordinators work their cases, under `/inbox`.
//!
//! - `GET /inbox/aanmelden`, `POST /inbox/aanmelden`: sign in with a team
//!   token; `POST /inbox/afmelden`: sign out ([`session`]).
//! - `GET /inbox`: the team's work queues with their counts, and the list
//!   of cases: sorted, filtered and paged.
//! - `GET /inbox/zaken/{id}`: one case: its explanation in plain Dutch
//!   ([`tekst`]), signals, contact attempts, timeline, notes and
//!   assignment, and the forms to work it.
//! - `POST /inbox/zaken/{id}/{contactpoging|resultaat|notitie|toewijzing|correctie}`:
//!   the forms. They are checked exactly as the API checks the same
//!   feedback, published to the feedback topic the same way, and shown as
//!   pending until the read model has the engine's verdict.
//! - `GET /inbox/zoeken`: search by postcode and house number, or surname.
//! - `GET /inbox/monitor` and `/inbox/monitor.csv`: the Divosa indicators
//!   per month ([`monitor`]), for the admin and read-only roles.
//!
//! Everything works without JavaScript: plain forms, POST-redirect-GET,
//! and every asset served by this binary. Every page view and action is
//! audited with the API's action names; another team's case is a 404,
//! exactly like a case that does not exist.

pub mod monitor;
pub mod session;
pub mod tekst;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use askama::Template;
use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use serde_json::{json, Map, Value};
use vroeg_core::archive::{CaseRecord, CaseStatus, FeedbackStatus, SignalDetail};
use vroeg_core::case::CloseReason;
use vroeg_core::feedback::{Contactsoort, Dagdeel, Eindresultaat};
use vroeg_core::time::{Day, Millis};
use vroeg_readmodel::view::Row;
use vroeg_readmodel::{Order, Query as ListQuery, Scope};

use crate::auth::{Caller, Role};
use crate::cases::{
    address_search, audit, blocking, name_search, prepare_feedback, publish, read_error,
    visible_case, ApiError, CaseApi,
};
use session::{same_secret, Credential, Pending, Session, Sessions, COOKIE};
use tekst::{datum, euro, moment, Uitleg};

/// The inbox's settings, and the texts it shows.
#[derive(Clone, Debug)]
pub struct Settings {
    /// A session that saw no request for this long is signed out.
    pub idle_ms: Millis,
    /// Mark the session cookie `Secure`: when the pages are served over
    /// TLS, by this process or by a proxy in front of it.
    pub secure_cookie: bool,
    /// The teams' names by id (from the routing file).
    pub teams: BTreeMap<String, String>,
    /// The rule set's descriptions by rule id, for the explanations.
    pub rules: HashMap<String, String>,
    /// The categories the rules can give a case, for the list's filter.
    pub categories: Vec<String>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            idle_ms: DEFAULT_IDLE_MINUTES * 60_000,
            secure_cookie: false,
            teams: BTreeMap::new(),
            rules: HashMap::new(),
            categories: Vec::new(),
        }
    }
}

/// How long a session may be idle by default.
pub const DEFAULT_IDLE_MINUTES: i64 = 30;

/// The stylesheet, served by the binary (no CDN, no build step).
const CSS: &str = include_str!("../../assets/inbox.css");

#[derive(Clone)]
struct Inbox {
    api: CaseApi,
    sessions: Arc<Sessions>,
}

/// The inbox's routes, on the API's state.
pub(crate) fn routes(api: CaseApi) -> Router {
    let inbox = Inbox {
        api,
        sessions: Arc::new(Sessions::default()),
    };
    Router::new()
        .route("/", get(|| async { Redirect::to("/inbox") }))
        .route("/inbox", get(queue_page))
        .route("/inbox/aanmelden", get(sign_in_page).post(sign_in))
        .route("/inbox/afmelden", post(sign_out))
        .route("/inbox/zaken/{id}", get(case_page))
        .route("/inbox/zaken/{id}/{actie}", post(case_form))
        .route("/inbox/zoeken", get(search_page))
        .route("/inbox/monitor", get(monitor_page))
        .route("/inbox/monitor.csv", get(monitor_csv))
        .route(
            "/inbox/static/inbox.css",
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "text/css; charset=utf-8"),
                        (header::CACHE_CONTROL, "public, max-age=3600"),
                    ],
                    CSS,
                )
            }),
        )
        .with_state(inbox)
}

// ---------------------------------------------------------------------
// Answers
// ---------------------------------------------------------------------

/// A page, with the headers every page carries: no caching (the pages
/// show personal data), no framing, no scripts or styles from elsewhere.
fn html(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(body) => html(status, body),
        Err(error) => {
            tracing::error!(%error, "failed to render an inbox page");
            (StatusCode::INTERNAL_SERVER_ERROR, "interne fout").into_response()
        }
    }
}

/// What the layout shows of who is signed in.
#[derive(Clone, Debug, Default)]
struct Chrome {
    /// The team's name, or the role's.
    wie: String,
    csrf: String,
    monitor: bool,
    signed_in: bool,
    flash: Option<String>,
    /// After how many idle minutes a session ends.
    idle_minuten: i64,
}

impl Chrome {
    fn of(api: &CaseApi, s: &Session) -> Chrome {
        Chrome {
            wie: who(api, &s.caller),
            csrf: s.csrf.clone(),
            monitor: matches!(s.caller.role, Role::Admin | Role::ReadOnly),
            signed_in: true,
            flash: s.flash.clone(),
            idle_minuten: api.inbox.idle_ms / 60_000,
        }
    }
}

fn team_name(api: &CaseApi, team: &str) -> String {
    api.inbox
        .teams
        .get(team)
        .cloned()
        .unwrap_or_else(|| team.to_owned())
}

fn who(api: &CaseApi, caller: &Caller) -> String {
    match &caller.role {
        Role::Team(t) => team_name(api, t),
        Role::Admin => "Beheer (alle wijkteams)".into(),
        Role::ReadOnly => "Alleen lezen (alle wijkteams)".into(),
    }
}

#[derive(Template)]
#[template(path = "fout.html")]
struct ErrorPage {
    chrome: Chrome,
    titel: String,
    uitleg: String,
}

fn error_page(chrome: Chrome, status: StatusCode, titel: &str, uitleg: &str) -> Response {
    render(
        status,
        &ErrorPage {
            chrome,
            titel: titel.into(),
            uitleg: uitleg.into(),
        },
    )
}

/// An API error as a page.
fn api_error_page(chrome: Chrome, error: &ApiError) -> Response {
    match error {
        ApiError::NotFound => error_page(
            chrome,
            StatusCode::NOT_FOUND,
            "Zaak niet gevonden",
            "Deze zaak bestaat niet, of hoort niet bij uw wijkteam.",
        ),
        ApiError::Forbidden => error_page(
            chrome,
            StatusCode::FORBIDDEN,
            "Niet toegestaan",
            "Met uw rol kunt u dit niet doen.",
        ),
        ApiError::Unavailable(_) => error_page(
            chrome,
            StatusCode::SERVICE_UNAVAILABLE,
            "Tijdelijk niet beschikbaar",
            "Het verzoek kon nu niet worden verwerkt. Probeer het over een minuut opnieuw.",
        ),
        _ => error_page(
            chrome,
            StatusCode::INTERNAL_SERVER_ERROR,
            "Er ging iets mis",
            "Het verzoek kon niet worden verwerkt. Meld dit bij de functioneel beheerder; de fout staat in het logboek van de dienst.",
        ),
    }
}

// ---------------------------------------------------------------------
// Sessions
// ---------------------------------------------------------------------

fn to_sign_in() -> Response {
    Redirect::to("/inbox/aanmelden").into_response()
}

/// The signed-in session, or the redirect to the sign-in page (a whole
/// answer as the error, as axum handlers return it).
#[allow(clippy::result_large_err)]
fn signed_in(inbox: &Inbox, jar: &CookieJar) -> Result<(String, Session), Response> {
    let id = jar
        .get(COOKIE)
        .map(|c| c.value().to_owned())
        .ok_or_else(to_sign_in)?;
    let api = &inbox.api;
    let session = inbox
        .sessions
        .get(&id, &api.tokens.get(), (api.clock)(), api.inbox.idle_ms)
        .ok_or_else(to_sign_in)?;
    Ok((id, session))
}

/// The session of a page view: signed in, with its one-time message
/// taken for the page being shown (the store forgets it).
#[allow(clippy::result_large_err)]
fn page_session(inbox: &Inbox, jar: &CookieJar) -> Result<(String, Session), Response> {
    let (id, session) = signed_in(inbox, jar)?;
    if session.flash.is_some() {
        inbox.sessions.update(&id, |s| s.flash = None);
    }
    Ok((id, session))
}

fn session_cookie(api: &CaseApi, value: String) -> Cookie<'static> {
    Cookie::build((COOKIE, value))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(api.inbox.secure_cookie)
        .build()
}

/// The sign-in form's own token: a cookie and a hidden field that must
/// match (double submit), so no other site can sign a browser in.
const SIGN_IN_COOKIE: &str = "vroeg_aanmelden";

#[derive(Template)]
#[template(path = "aanmelden.html")]
struct SignInPage {
    chrome: Chrome,
    fout: Option<String>,
}

async fn sign_in_page(State(inbox): State<Inbox>, jar: CookieJar) -> Response {
    if signed_in(&inbox, &jar).is_ok() {
        return Redirect::to("/inbox").into_response();
    }
    sign_in_form(&inbox.api, jar, StatusCode::OK, None)
}

fn sign_in_form(
    api: &CaseApi,
    jar: CookieJar,
    status: StatusCode,
    fout: Option<String>,
) -> Response {
    let Some(token) = session::random_token() else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "geen willekeurige bytes").into_response();
    };
    let cookie = Cookie::build((SIGN_IN_COOKIE, token.clone()))
        .path("/inbox/aanmelden")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(api.inbox.secure_cookie)
        .build();
    let page = render(
        status,
        &SignInPage {
            chrome: Chrome {
                csrf: token,
                idle_minuten: api.inbox.idle_ms / 60_000,
                ..Chrome::default()
            },
            fout,
        },
    );
    (jar.add(cookie), page).into_response()
}

async fn sign_in(
    State(inbox): State<Inbox>,
    jar: CookieJar,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let api = &inbox.api;
    let expected = jar.get(SIGN_IN_COOKIE).map(|c| c.value().to_owned());
    let csrf_ok = matches!((&expected, form.get("csrf")), (Some(e), Some(f)) if same_secret(e, f));
    if !csrf_ok {
        return sign_in_form(
            api,
            jar,
            StatusCode::FORBIDDEN,
            Some("Het formulier was verlopen. Vul uw token opnieuw in.".into()),
        );
    }
    let token = form.get("token").map(|t| t.trim()).unwrap_or("");
    let now = (api.clock)();
    let hash = crate::auth::hash_token(token);
    let credential = Credential::Token(hash);
    let Some(caller) = (!token.is_empty())
        .then(|| credential.caller(&api.tokens.get(), now))
        .flatten()
    else {
        tracing::info!("inbox sign-in refused: unknown or expired token");
        return sign_in_form(
            api,
            jar,
            StatusCode::UNAUTHORIZED,
            Some("Dit token is onbekend of verlopen. Vraag de functioneel beheerder om een geldig token.".into()),
        );
    };
    let Some(id) = inbox.sessions.create(caller.clone(), credential, now) else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "geen willekeurige bytes").into_response();
    };
    let audited = {
        let api = api.clone();
        blocking(move || audit(&api, &caller, "aanmelden", None, 200)).await
    };
    if let Err(e) = audited {
        inbox.sessions.remove(&id);
        return api_error_page(Chrome::default(), &e);
    }
    let jar = jar
        .remove(Cookie::build(SIGN_IN_COOKIE).path("/inbox/aanmelden"))
        .add(session_cookie(api, id));
    (jar, Redirect::to("/inbox")).into_response()
}

async fn sign_out(
    State(inbox): State<Inbox>,
    jar: CookieJar,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let Ok((id, session)) = signed_in(&inbox, &jar) else {
        return to_sign_in();
    };
    if !form
        .get("csrf")
        .is_some_and(|f| same_secret(f, &session.csrf))
    {
        return expired_form(&inbox, &session);
    }
    inbox.sessions.remove(&id);
    let api = inbox.api.clone();
    let caller = session.caller.clone();
    let _ = blocking(move || audit(&api, &caller, "afmelden", None, 200)).await;
    let jar = jar.remove(Cookie::build(COOKIE).path("/"));
    (jar, Redirect::to("/inbox/aanmelden")).into_response()
}

fn expired_form(inbox: &Inbox, session: &Session) -> Response {
    error_page(
        Chrome::of(&inbox.api, session),
        StatusCode::FORBIDDEN,
        "Formulier verlopen",
        "Dit formulier hoort niet bij uw huidige sessie. Ga terug, laad de pagina opnieuw en probeer het nog eens.",
    )
}

/// Audit a page view with the status it is answered with; a failed audit
/// is a refused page.
async fn audited(
    api: &CaseApi,
    caller: &Caller,
    actie: &'static str,
    zaak: Option<String>,
    status: StatusCode,
) -> Result<(), ApiError> {
    let (api, caller) = (api.clone(), caller.clone());
    blocking(move || audit(&api, &caller, actie, zaak.as_deref(), status.as_u16())).await
}

// ---------------------------------------------------------------------
// Work queues
// ---------------------------------------------------------------------

/// One work queue with its counts.
struct QueueLine {
    werkbak: String,
    open: u64,
    te_laat: u64,
    crisis: u64,
    link: String,
    gekozen: bool,
}

/// One case in a list.
struct CaseLine {
    id: String,
    naam: String,
    adres: String,
    partners: String,
    bedrag: String,
    prioriteit: u8,
    categorie: String,
    werkbak: String,
    wijkteam: String,
    uiterlijk: String,
    te_laat: bool,
    crisis: bool,
    status: &'static str,
    medewerker: String,
}

impl CaseLine {
    fn of(api: &CaseApi, r: &CaseRecord, now: Millis) -> CaseLine {
        let row = Row::of(r, now);
        CaseLine {
            id: row.id,
            naam: row.naam.unwrap_or_else(|| "(onbekend)".into()),
            adres: row.adres.unwrap_or_default(),
            partners: row.partners.join(", "),
            bedrag: euro((row.bedrag_euro * 100.0).round() as u64),
            prioriteit: row.prioriteit,
            categorie: row.categorie,
            werkbak: row.werkbak,
            wijkteam: team_name(api, &row.wijkteam),
            uiterlijk: Day::parse(&row.contact_uiterlijk).map_or(row.contact_uiterlijk, datum),
            te_laat: row.te_laat,
            crisis: row.crisis,
            status: match r.status {
                CaseStatus::Open => "open",
                CaseStatus::Gesloten => "gesloten",
            },
            medewerker: row.medewerker.unwrap_or_default(),
        }
    }
}

/// A choice in a `<select>`.
struct Choice {
    value: String,
    label: String,
    selected: bool,
}

fn choices(options: &[(&str, &str)], current: &str) -> Vec<Choice> {
    options
        .iter()
        .map(|(value, label)| Choice {
            value: (*value).into(),
            label: (*label).into(),
            selected: *value == current,
        })
        .collect()
}

#[derive(Template)]
#[template(path = "werkbak.html")]
struct QueuePage {
    chrome: Chrome,
    werkbakken: Vec<QueueLine>,
    totaal: (u64, u64, u64),
    zaken: Vec<CaseLine>,
    status: Vec<Choice>,
    sorteer: Vec<Choice>,
    aantal: Vec<Choice>,
    werkbak: String,
    te_laat: bool,
    categorieen: Vec<Choice>,
    wijkteams: Vec<Choice>,
    toon_team: bool,
    volgende: Option<String>,
    eerste: Option<String>,
    fouten: Vec<String>,
    achterstand: i64,
}

const PAGE_SIZES: &[(&str, &str)] = &[("25", "25"), ("50", "50"), ("100", "100")];
const ORDERS: &[(&str, &str)] = &[
    ("prioriteit", "Urgentie (hoogste prioriteit eerst)"),
    ("deadline", "Contact uiterlijk (vroegste eerst)"),
    ("-deadline", "Contact uiterlijk (laatste eerst)"),
    ("-geopend", "Nieuwste zaken eerst"),
    ("geopend", "Oudste zaken eerst"),
];
const STATUSES: &[(&str, &str)] = &[("open", "Open"), ("gesloten", "Gesloten"), ("alle", "Alle")];

/// The query string of a list, for links.
fn list_link(params: &[(&str, &str)]) -> String {
    let query: Vec<String> = params
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect();
    if query.is_empty() {
        "/inbox".into()
    } else {
        format!("/inbox?{}", query.join("&"))
    }
}

fn urlencode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

async fn queue_page(
    State(inbox): State<Inbox>,
    jar: CookieJar,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (_, session) = match page_session(&inbox, &jar) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let api = inbox.api.clone();
    let chrome = Chrome::of(&api, &session);
    let caller = session.caller.clone();
    let built = {
        let (api, caller) = (api.clone(), caller.clone());
        blocking(move || Ok(queue(&api, &caller, chrome, &query))).await
    };
    let (page, status) = match built {
        Ok(Ok(page)) => {
            let status = if page.fouten.is_empty() {
                StatusCode::OK
            } else {
                StatusCode::BAD_REQUEST
            };
            (page, status)
        }
        Ok(Err(e)) | Err(e) => {
            let _ = audited(
                &api,
                &caller,
                "zaken_lijst",
                None,
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            )
            .await;
            return api_error_page(Chrome::of(&api, &session), &e);
        }
    };
    if let Err(e) = audited(&api, &caller, "zaken_lijst", None, status).await {
        return api_error_page(page.chrome, &e);
    }
    render(status, &page)
}

fn queue(
    api: &CaseApi,
    caller: &Caller,
    chrome: Chrome,
    query: &HashMap<String, String>,
) -> Result<QueuePage, ApiError> {
    let now = (api.clock)();
    let mut fouten = Vec::new();
    let get = |k: &str| query.get(k).map(String::as_str).unwrap_or("");
    let status_text = match get("status") {
        "" => "open",
        s => s,
    };
    let status = match status_text {
        "open" => Some(CaseStatus::Open),
        "gesloten" => Some(CaseStatus::Gesloten),
        "alle" => None,
        _ => {
            fouten.push("Kies bij Status: open, gesloten of alle.".into());
            Some(CaseStatus::Open)
        }
    };
    let order_text = match get("sorteer") {
        "" => "prioriteit",
        s => s,
    };
    let (order, descending) = match order_text.strip_prefix('-') {
        Some(name) => (Order::parse(name), true),
        None => (Order::parse(order_text), false),
    };
    let order = order.unwrap_or_else(|| {
        fouten.push("Kies een geldige sortering.".into());
        Order::Prioriteit
    });
    let size_text = match get("aantal") {
        "" => "50",
        s => s,
    };
    let limit = match size_text.parse::<usize>() {
        Ok(n) if (1..=crate::cases::MAX_PAGE).contains(&n) => n,
        _ => {
            fouten.push(format!(
                "Kies bij Aantal per pagina een getal van 1 tot en met {}.",
                crate::cases::MAX_PAGE
            ));
            50
        }
    };
    let after = match get("na") {
        "" => None,
        c => match hex::decode(c) {
            Ok(c) => Some(c),
            Err(_) => {
                fouten.push("De paginalink is ongeldig; u ziet de eerste pagina.".into());
                None
            }
        },
    };
    let te_laat = get("te_laat") == "ja";
    let werkbak = get("werkbak").to_owned();
    let categorie = get("categorie").to_owned();
    let asked_team = get("wijkteam").to_owned();
    let scope = match &caller.role {
        Role::Team(t) => Scope::Team(t.clone()),
        _ if asked_team.is_empty() => Scope::All,
        _ => Scope::Team(asked_team.clone()),
    };
    let counts = api.cases.counts(&scope, now).map_err(read_error)?;
    let mut totaal = (0, 0, 0);
    let werkbakken = counts
        .into_iter()
        .map(|(w, c)| {
            totaal.0 += c.open;
            totaal.1 += c.te_laat;
            totaal.2 += c.crisis;
            QueueLine {
                link: list_link(&[("werkbak", &w), ("wijkteam", &asked_team)]),
                gekozen: w == werkbak,
                werkbak: w,
                open: c.open,
                te_laat: c.te_laat,
                crisis: c.crisis,
            }
        })
        .collect();
    let page = api
        .cases
        .list(&ListQuery {
            scope,
            status,
            order,
            descending,
            werkbak: (!werkbak.is_empty()).then(|| werkbak.clone()),
            categorie: (!categorie.is_empty()).then(|| categorie.clone()),
            postcode: None,
            overdue: te_laat.then_some(true),
            after,
            limit,
            now,
        })
        .map_err(read_error)?;
    let zaken = page
        .records
        .iter()
        .map(|r| CaseLine::of(api, r, now))
        .collect();
    let base = [
        ("werkbak", werkbak.as_str()),
        ("status", status_text),
        ("sorteer", order_text),
        ("aantal", size_text),
        ("te_laat", if te_laat { "ja" } else { "" }),
        ("wijkteam", asked_team.as_str()),
        ("categorie", categorie.as_str()),
    ];
    let volgende = page.next.map(|n| {
        let n = hex::encode(n);
        let mut params = base.to_vec();
        params.push(("na", &n));
        list_link(&params)
    });
    let eerste = (!get("na").is_empty()).then(|| list_link(&base));
    let mut categories = vec![("", "Alle categorieën")];
    categories.extend(
        api.inbox
            .categories
            .iter()
            .map(|c| (c.as_str(), c.as_str())),
    );
    let mut teams = vec![("", "Alle wijkteams")];
    teams.extend(
        api.inbox
            .teams
            .iter()
            .map(|(id, name)| (id.as_str(), name.as_str())),
    );
    Ok(QueuePage {
        chrome,
        werkbakken,
        totaal,
        zaken,
        status: choices(STATUSES, status_text),
        sorteer: choices(ORDERS, order_text),
        aantal: choices(PAGE_SIZES, size_text),
        werkbak,
        te_laat,
        categorieen: choices(&categories, &categorie),
        wijkteams: choices(&teams, &asked_team),
        toon_team: !matches!(caller.role, Role::Team(_)),
        volgende,
        eerste,
        fouten,
        achterstand: api.progress.lag().unwrap_or(0),
    })
}

// ---------------------------------------------------------------------
// The case page and its forms
// ---------------------------------------------------------------------

/// The forms of a case page.
const FORMS: &[&str] = &[
    "contactpoging",
    "resultaat",
    "notitie",
    "toewijzing",
    "correctie",
];

struct SignalLine {
    bron: String,
    soort: String,
    bedrag: String,
    sinds: String,
    signaaldatum: String,
    bijzonder: String,
}

struct AttemptLine {
    datum: String,
    soort: String,
    bereikt: &'static str,
    dagdeel: String,
}

struct Event {
    tijd: String,
    wat: String,
}

struct NoteLine {
    tijd: String,
    auteur: String,
    tekst: String,
}

struct PendingLine {
    soort: String,
}

struct Refusal {
    tijd: String,
    soort: String,
    reden: String,
}

#[derive(Template)]
#[template(path = "zaak.html")]
struct CasePage {
    chrome: Chrome,
    zaak: CaseLine,
    geopend: String,
    gesloten: Option<String>,
    resultaat: Option<String>,
    uitleg: Uitleg,
    signalen: Vec<SignalLine>,
    pogingen: Vec<AttemptLine>,
    tijdlijn: Vec<Event>,
    notities: Vec<NoteLine>,
    correcties: Vec<Event>,
    pending: Vec<PendingLine>,
    geweigerd: Vec<Refusal>,
    /// Which forms the case takes now, for this caller.
    formulieren: Vec<&'static str>,
    alleen_lezen: bool,
    /// Field errors, by `form.field`.
    fouten: HashMap<String, String>,
    /// A form's error that belongs to no one field.
    algemeen: HashMap<String, String>,
    /// What was typed, by `form.field`, to show it again after an error.
    waarden: HashMap<String, String>,
    contactsoorten: Vec<String>,
    dagdelen: Vec<String>,
    resultaten: Vec<String>,
    vandaag: String,
}

impl CasePage {
    fn fout(&self, key: &str) -> Option<&String> {
        self.fouten.get(key)
    }

    fn algemene_fout(&self, form: &str) -> Option<&String> {
        self.algemeen.get(form)
    }

    fn waarde(&self, key: &str) -> &str {
        self.waarden.get(key).map_or("", String::as_str)
    }

    fn heeft(&self, form: &str) -> bool {
        self.formulieren.contains(&form)
    }
}

fn feedback_word(kind: &str) -> String {
    match kind {
        "contactpoging" => "Contactpoging",
        "resultaat" => "Resultaat",
        "notitie" => "Notitie",
        "toewijzing" => "Toewijzing",
        "correctie" => "Correctie van het resultaat",
        other => other,
    }
    .to_owned()
}

fn event_word(e: &vroeg_core::archive::TimelineEntry) -> String {
    let base = match e.gebeurtenis.as_str() {
        "geopend" => "Zaak geopend",
        "bijgewerkt" => "Zaak bijgewerkt door een nieuw signaal",
        "escalatie" => "Geëscaleerd: geen contactpoging op tijd",
        "gesloten" => "Zaak gesloten",
        "contactpoging" => "Contactpoging vastgelegd",
        "heropend" => "Heropend na een correctie",
        "notitie" => "Notitie toegevoegd",
        "toegewezen" => "Toegewezen aan",
        "toewijzing_ingetrokken" => "Toewijzing opgeheven",
        other => other,
    };
    let mut text = base.to_owned();
    if let Some(p) = e.prioriteit {
        text.push_str(&format!(" (prioriteit {p})"));
    }
    if let Some(d) = &e.detail {
        if e.gebeurtenis == "toegewezen" {
            text.push_str(&format!(" {d}"));
        } else {
            text.push_str(&format!(": {d}"));
        }
    }
    text
}

fn close_word(reden: Option<CloseReason>) -> &'static str {
    match reden {
        Some(CloseReason::Resultaat) => "resultaat vastgelegd",
        Some(CloseReason::Betaald) => "betaald",
        Some(CloseReason::Betalingsregeling) => "betalingsregeling",
        Some(CloseReason::Verlopen) => "verlopen",
        Some(CloseReason::Ingetrokken) => "ingetrokken",
        _ => "gesloten",
    }
}

/// Which forms a case takes: a note always; an open case an attempt, an
/// outcome and an assignment; a case closed with an outcome a correction.
fn forms_for(record: &CaseRecord, caller: &Caller) -> Vec<&'static str> {
    if !caller.role.writes() {
        return Vec::new();
    }
    FORMS
        .iter()
        .copied()
        .filter(|f| match (*f, record.status) {
            ("notitie", _) => true,
            ("correctie", CaseStatus::Gesloten) => record.reden == Some(CloseReason::Resultaat),
            ("correctie", _) | (_, CaseStatus::Gesloten) => false,
            _ => true,
        })
        .collect()
}

fn case_view(
    api: &CaseApi,
    chrome: Chrome,
    caller: &Caller,
    record: &CaseRecord,
    pending: &[Pending],
) -> CasePage {
    let now = (api.clock)();
    let signalen = record
        .signalen
        .iter()
        .map(|s| match &s.detail {
            SignalDetail::Betalingsachterstand {
                partner,
                status,
                bedrag_cent,
                ontstaansdatum,
                signaaldatum,
                crisis,
                eindelevering,
                ..
            } => {
                let mut bijzonder = Vec::new();
                if *crisis {
                    bijzonder.push("crisis");
                }
                if *eindelevering {
                    bijzonder.push("einde levering");
                }
                SignalLine {
                    bron: partner.as_str().to_owned(),
                    soort: format!("betalingsachterstand ({})", status.as_str()),
                    bedrag: euro(*bedrag_cent),
                    sinds: datum(*ontstaansdatum),
                    signaaldatum: datum(*signaaldatum),
                    bijzonder: bijzonder.join(", "),
                }
            }
            SignalDetail::Schoolverzuim {
                verzuimsoort,
                uren_4_weken,
            } => SignalLine {
                bron: "School".into(),
                soort: format!("schoolverzuim ({})", verzuimsoort.as_str()),
                bedrag: String::new(),
                sinds: String::new(),
                signaaldatum: datum(Day::local_of(s.tijd)),
                bijzonder: format!("{uren_4_weken} uur in 4 weken"),
            },
        })
        .collect();
    let known: Vec<&str> = record
        .terugkoppeling
        .iter()
        .map(|t| t.id.as_str())
        .collect();
    CasePage {
        chrome,
        zaak: CaseLine::of(api, record, now),
        geopend: moment(record.geopend),
        gesloten: record
            .gesloten
            .map(|g| format!("{} ({})", moment(g), close_word(record.reden))),
        resultaat: record.resultaat.map(|r| r.as_str().to_owned()),
        uitleg: tekst::uitleg(record, &api.inbox.rules),
        signalen,
        pogingen: record
            .contactpogingen
            .iter()
            .map(|a| AttemptLine {
                datum: datum(a.datum),
                soort: a.soort.as_str().to_owned(),
                bereikt: if a.bereikt { "ja" } else { "nee" },
                dagdeel: a.dagdeel.map(|d| d.as_str().to_owned()).unwrap_or_default(),
            })
            .collect(),
        tijdlijn: record
            .tijdlijn
            .iter()
            .map(|e| Event {
                tijd: moment(e.tijd),
                wat: event_word(e),
            })
            .collect(),
        notities: record
            .notities
            .iter()
            .map(|n| NoteLine {
                tijd: moment(n.tijd),
                auteur: n.auteur.clone(),
                tekst: n.tekst.clone(),
            })
            .collect(),
        correcties: record
            .correcties
            .iter()
            .map(|c| Event {
                tijd: moment(c.tijd),
                wat: format!(
                    "{} (ingetrokken resultaat: {})",
                    c.reden,
                    c.vorig_resultaat.map_or("geen", |r| r.as_str())
                ),
            })
            .collect(),
        pending: pending
            .iter()
            .filter(|p| p.zaak_id == record.id && !known.contains(&p.feedback_id.as_str()))
            .map(|p| PendingLine {
                soort: feedback_word(p.soort),
            })
            .collect(),
        geweigerd: record
            .terugkoppeling
            .iter()
            .filter(|t| t.status == FeedbackStatus::Geweigerd)
            .map(|t| Refusal {
                tijd: moment(t.tijd),
                soort: feedback_word(&t.soort),
                reden: t
                    .detail
                    .clone()
                    .or_else(|| t.code.clone())
                    .unwrap_or_default(),
            })
            .collect(),
        formulieren: forms_for(record, caller),
        alleen_lezen: !caller.role.writes(),
        fouten: HashMap::new(),
        algemeen: HashMap::new(),
        waarden: HashMap::new(),
        contactsoorten: Contactsoort::ALL
            .iter()
            .map(|c| c.as_str().to_owned())
            .collect(),
        dagdelen: Dagdeel::ALL.iter().map(|d| d.as_str().to_owned()).collect(),
        resultaten: Eindresultaat::ALL
            .iter()
            .map(|r| r.as_str().to_owned())
            .collect(),
        vandaag: Day::local_of(now).to_string(),
    }
}

async fn case_page(
    State(inbox): State<Inbox>,
    jar: CookieJar,
    Path(zaak): Path<String>,
) -> Response {
    let (id, session) = match page_session(&inbox, &jar) {
        Ok(s) => s,
        Err(r) => return r,
    };
    show_case(&inbox, &id, &session, zaak, None).await
}

/// What a refused form brings back to the case page.
struct FormError {
    form: &'static str,
    field: Option<String>,
    message: String,
    values: HashMap<String, String>,
}

async fn show_case(
    inbox: &Inbox,
    session_id: &str,
    session: &Session,
    zaak: String,
    error: Option<FormError>,
) -> Response {
    let api = inbox.api.clone();
    let caller = session.caller.clone();
    let read = {
        let (api, caller, zaak) = (api.clone(), caller.clone(), zaak.clone());
        blocking(move || visible_case(&api, &caller, &zaak)).await
    };
    let status = match (&read, &error) {
        (Err(e), _) => {
            StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        }
        (Ok(_), Some(_)) => StatusCode::UNPROCESSABLE_ENTITY,
        (Ok(_), None) => StatusCode::OK,
    };
    let actie = if error.is_some() {
        None
    } else {
        Some("zaak_lezen")
    };
    if let Some(actie) = actie {
        if let Err(e) = audited(&api, &caller, actie, Some(zaak.clone()), status).await {
            return api_error_page(Chrome::of(&api, session), &e);
        }
    }
    let record = match read {
        Ok(r) => r,
        Err(e) => return api_error_page(Chrome::of(&api, session), &e),
    };
    // Feedback the read model has decided on is no longer pending.
    let decided: Vec<String> = record.terugkoppeling.iter().map(|t| t.id.clone()).collect();
    inbox.sessions.update(session_id, |s| {
        s.pending
            .retain(|p| p.zaak_id != record.id || !decided.contains(&p.feedback_id))
    });
    let mut page = case_view(
        &api,
        Chrome::of(&api, session),
        &caller,
        &record,
        &session.pending,
    );
    if let Some(e) = error {
        for (k, v) in e.values {
            page.waarden.insert(format!("{}.{k}", e.form), v);
        }
        match e.field {
            Some(field) => {
                page.fouten.insert(format!("{}.{field}", e.form), e.message);
            }
            None => {
                page.algemeen.insert(e.form.to_owned(), e.message);
            }
        }
    }
    render(status, &page)
}

/// A Dutch message for a refused field of a form.
fn field_message(form: &str, field: &str, detail: &str) -> String {
    match (form, field) {
        (_, "contactsoort") => "Kies hoe u contact zocht.".into(),
        (_, "bereikt") => "Geef aan of u de inwoner heeft bereikt.".into(),
        (_, "datum") => "Vul een geldige datum in: niet vóór de dag waarop de zaak is geopend, en niet na morgen.".into(),
        (_, "dagdeel") => "Kies een dagdeel, of laat het leeg.".into(),
        ("resultaat", "resultaat") if detail.contains("bereikt") => {
            "Dit resultaat zegt dat de inwoner is bereikt. Leg eerst een contactpoging vast waarin de inwoner is bereikt.".into()
        }
        (_, "resultaat") => "Kies een resultaat uit de lijst.".into(),
        (_, "tekst") => "Schrijf een notitie van 1 tot 2000 tekens.".into(),
        (_, "medewerker") => "Vul de naam van een collega in (hoogstens 100 tekens), of laat het leeg om de toewijzing op te heffen.".into(),
        (_, "reden") => "Schrijf waarom het resultaat niet klopte (1 tot 500 tekens).".into(),
        _ => format!("Deze invoer is niet geldig ({detail})."),
    }
}

/// The form's fields as the API's JSON body.
fn form_body(form: &str, fields: &HashMap<String, String>) -> Result<Value, (String, String)> {
    let text = |k: &str| {
        fields
            .get(k)
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    let mut body = Map::new();
    match form {
        "contactpoging" => {
            body.insert("contactsoort".into(), json!(text("contactsoort")));
            let bereikt = match text("bereikt").as_str() {
                "ja" => true,
                "nee" => false,
                _ => return Err(("bereikt".into(), String::new())),
            };
            body.insert("bereikt".into(), json!(bereikt));
            body.insert("datum".into(), json!(text("datum")));
            if !text("dagdeel").is_empty() {
                body.insert("dagdeel".into(), json!(text("dagdeel")));
            }
        }
        "resultaat" => {
            body.insert("resultaat".into(), json!(text("resultaat")));
            body.insert("datum".into(), json!(text("datum")));
        }
        "notitie" => {
            body.insert("tekst".into(), json!(text("tekst")));
        }
        "toewijzing" => {
            let name = text("medewerker");
            body.insert(
                "medewerker".into(),
                if name.is_empty() {
                    Value::Null
                } else {
                    json!(name)
                },
            );
        }
        "correctie" => {
            body.insert("reden".into(), json!(text("reden")));
        }
        _ => {}
    }
    Ok(Value::Object(body))
}

fn sent_message(form: &str) -> String {
    match form {
        "contactpoging" => "De contactpoging is verstuurd.",
        "resultaat" => "Het resultaat is verstuurd; de zaak wordt gesloten.",
        "notitie" => "De notitie is verstuurd.",
        "toewijzing" => "De toewijzing is verstuurd.",
        "correctie" => "De correctie is verstuurd; de zaak wordt heropend.",
        _ => "Verstuurd.",
    }
    .to_owned()
}

async fn case_form(
    State(inbox): State<Inbox>,
    jar: CookieJar,
    Path((zaak, actie)): Path<(String, String)>,
    Form(fields): Form<HashMap<String, String>>,
) -> Response {
    let (id, session) = match signed_in(&inbox, &jar) {
        Ok(s) => s,
        Err(r) => return r,
    };
    if !fields
        .get("csrf")
        .is_some_and(|f| same_secret(f, &session.csrf))
    {
        return expired_form(&inbox, &session);
    }
    let Some(form) = FORMS.iter().copied().find(|f| *f == actie) else {
        return error_page(
            Chrome::of(&inbox.api, &session),
            StatusCode::NOT_FOUND,
            "Pagina niet gevonden",
            "Dit formulier bestaat niet.",
        );
    };
    let api = inbox.api.clone();
    let caller = session.caller.clone();
    let mut values = fields.clone();
    values.remove("csrf");
    let refuse = |field: Option<String>, message: String| FormError {
        form,
        field,
        message,
        values: values.clone(),
    };
    let body = match form_body(form, &fields) {
        Ok(body) => body,
        Err((field, detail)) => {
            let message = field_message(form, &field, &detail);
            let _ = audited(
                &api,
                &caller,
                form,
                Some(zaak.clone()),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
            return show_case(
                &inbox,
                &id,
                &session,
                zaak,
                Some(refuse(Some(field), message)),
            )
            .await;
        }
    };
    let prepared = {
        let (api, caller, zaak) = (api.clone(), caller.clone(), zaak.clone());
        blocking(move || {
            let payload = serde_json::to_vec(&body).map_err(|_| ApiError::Internal)?;
            let result = prepare_feedback(&api, &caller, &zaak, &payload, form);
            if let Err(e) = &result {
                audit(&api, &caller, form, Some(&zaak), e.status())?;
            }
            result
        })
        .await
    };
    let (feedback_id, payload) = match prepared {
        Ok(p) => p,
        Err(ApiError::Unprocessable { field, detail }) => {
            let message = match &field {
                Some(f) => field_message(form, f, &detail),
                None => format!("Dit formulier is niet geldig ({detail})."),
            };
            return show_case(&inbox, &id, &session, zaak, Some(refuse(field, message))).await;
        }
        Err(ApiError::Conflict(_)) => {
            let message = "Dit kan niet meer: de zaak is intussen veranderd. De pagina toont haar zoals zij nu is.".to_owned();
            return show_case(&inbox, &id, &session, zaak, Some(refuse(None, message))).await;
        }
        Err(e) => return api_error_page(Chrome::of(&api, &session), &e),
    };
    if let Err(e) = publish(&api, &caller, &zaak, form, payload).await {
        return match e {
            ApiError::Unavailable(_) => {
                let message =
                    "Versturen lukte nu niet. Er is niets vastgelegd; probeer het opnieuw."
                        .to_owned();
                show_case(&inbox, &id, &session, zaak, Some(refuse(None, message))).await
            }
            e => api_error_page(Chrome::of(&api, &session), &e),
        };
    }
    inbox.sessions.update(&id, |s| {
        s.pending.push(Pending {
            zaak_id: zaak.clone(),
            feedback_id,
            soort: form,
        });
        s.flash = Some(sent_message(form));
    });
    Redirect::to(&format!("/inbox/zaken/{}", urlencode(&zaak))).into_response()
}

// ---------------------------------------------------------------------
// Search
// ---------------------------------------------------------------------

#[derive(Template)]
#[template(path = "zoeken.html")]
struct SearchPage {
    chrome: Chrome,
    postcode: String,
    huisnummer: String,
    achternaam: String,
    gezocht: bool,
    zaken: Vec<CaseLine>,
    fouten: HashMap<String, String>,
}

impl SearchPage {
    fn fout(&self, key: &str) -> Option<&String> {
        self.fouten.get(key)
    }
}

async fn search_page(
    State(inbox): State<Inbox>,
    jar: CookieJar,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (_, session) = match page_session(&inbox, &jar) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let api = inbox.api.clone();
    let caller = session.caller.clone();
    let get = |k: &str| {
        query
            .get(k)
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    let mut page = SearchPage {
        chrome: Chrome::of(&api, &session),
        postcode: get("postcode"),
        huisnummer: get("huisnummer"),
        achternaam: get("achternaam"),
        gezocht: false,
        zaken: Vec::new(),
        fouten: HashMap::new(),
    };
    // Which search: by address when a postcode or number is given, by name
    // when a surname is; the terms are never audited.
    let (actie, search, params): (&'static str, crate::cases::Search, HashMap<String, String>) =
        if !page.postcode.is_empty() || !page.huisnummer.is_empty() {
            (
                "zoeken_adres",
                address_search,
                HashMap::from([
                    ("postcode".to_owned(), page.postcode.clone()),
                    ("huisnummer".to_owned(), page.huisnummer.clone()),
                ]),
            )
        } else if !page.achternaam.is_empty() {
            (
                "zoeken_naam",
                name_search,
                HashMap::from([("achternaam".to_owned(), page.achternaam.clone())]),
            )
        } else {
            return render(StatusCode::OK, &page);
        };
    let found = {
        let api = api.clone();
        blocking(move || search(&api, &params)).await
    };
    let status = match &found {
        Ok(_) => StatusCode::OK,
        Err(ApiError::BadRequest(_) | ApiError::Unprocessable { .. }) => StatusCode::BAD_REQUEST,
        Err(e) => StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
    };
    if let Err(e) = audited(&api, &caller, actie, None, status).await {
        return api_error_page(page.chrome, &e);
    }
    match found {
        Ok(records) => {
            let now = (api.clock)();
            page.gezocht = true;
            page.zaken = records
                .iter()
                .filter(|r| caller.role.sees(&r.wijkteam))
                .map(|r| CaseLine::of(&api, r, now))
                .collect();
        }
        Err(ApiError::BadRequest(detail)) => {
            let field = if detail.starts_with("huisnummer") {
                "huisnummer"
            } else {
                "postcode"
            };
            page.fouten.insert(
                field.into(),
                "Vul zowel de postcode als het huisnummer in.".into(),
            );
        }
        Err(ApiError::Unprocessable { field, .. }) => {
            let (field, message) = match field.as_deref() {
                Some("huisnummer") => (
                    "huisnummer",
                    "Vul een huisnummer in zonder toevoeging, bijvoorbeeld 12.",
                ),
                Some("achternaam") => (
                    "achternaam",
                    "Vul de achternaam in, of de eerste letters ervan (minstens 2).",
                ),
                _ => (
                    "postcode",
                    "Vul een geldige postcode in, bijvoorbeeld 1234 AB.",
                ),
            };
            page.fouten.insert(field.into(), message.into());
        }
        Err(e) => return api_error_page(page.chrome, &e),
    }
    render(status, &page)
}

// ---------------------------------------------------------------------
// Monitor
// ---------------------------------------------------------------------

struct ChartView {
    id: &'static str,
    titel: String,
    svg: String,
    kolommen: Vec<String>,
    rijen: Vec<(String, Vec<String>)>,
    eerste_kolom: &'static str,
}

#[derive(Template)]
#[template(path = "monitor.html")]
struct MonitorPage {
    chrome: Chrome,
    van: String,
    tot: String,
    grafieken: Vec<ChartView>,
    csv: String,
    fout: Option<String>,
}

/// The months asked for (`van`, `tot` as `YYYY-MM`), default the twelve
/// months through the current one.
fn monitor_months(
    query: &HashMap<String, String>,
    now: Millis,
) -> Result<(String, String, Vec<monitor::Month>), String> {
    let today = Day::local_of(now);
    let this_month = monitor::months(today, today)
        .pop()
        .map(|m| m.key)
        .unwrap_or_default();
    let default_from = monitor::months(today.minus_months(11), today.minus_months(11))
        .pop()
        .map(|m| m.key)
        .unwrap_or_default();
    let van = query
        .get("van")
        .cloned()
        .filter(|v| !v.is_empty())
        .unwrap_or(default_from);
    let tot = query
        .get("tot")
        .cloned()
        .filter(|v| !v.is_empty())
        .unwrap_or(this_month);
    let (Some(from), Some(to)) = (monitor::parse_month(&van), monitor::parse_month(&tot)) else {
        return Err("Kies de maanden als jaar en maand, bijvoorbeeld 2026-01.".into());
    };
    if from > to {
        return Err("De eerste maand ligt na de laatste.".into());
    }
    let months = monitor::months(from, to);
    if months.len() > 36 {
        return Err("Kies hoogstens 36 maanden.".into());
    }
    Ok((van, tot, months))
}

/// The figures of the monitor: per month, and per team now.
type Figures = (
    Vec<monitor::Month>,
    Vec<vroeg_export::Indicators>,
    BTreeMap<String, (u64, u64)>,
);

fn figures(api: &CaseApi, months: Vec<monitor::Month>) -> Result<Figures, ApiError> {
    let Some(exports) = &api.exports else {
        return Err(ApiError::Unavailable("no engine state".into()));
    };
    let now = (api.clock)();
    let snapshot = exports.snapshot().map_err(|e| {
        tracing::error!(error = %e, "the monitor cannot read the engine state");
        ApiError::Unavailable("no state".into())
    })?;
    let indicators = months
        .iter()
        .map(|m| vroeg_export::indicators(&snapshot, m.period, now))
        .collect();
    let teams = api.cases.open_counts_by_team(now).map_err(read_error)?;
    Ok((months, indicators, teams))
}

/// The monitor's figures, computed off the runtime and audited as `actie`
/// with the status they are answered with; a failed audit is an error
/// like any other.
async fn audited_figures(
    api: &CaseApi,
    caller: &Caller,
    actie: &'static str,
    months: Vec<monitor::Month>,
) -> Result<Figures, ApiError> {
    let computed = {
        let api = api.clone();
        blocking(move || figures(&api, months)).await
    };
    let status = computed.as_ref().map_or_else(
        |e| StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        |_| StatusCode::OK,
    );
    audited(api, caller, actie, None, status).await?;
    computed
}

/// The session of someone who may see the monitor, or the answer.
async fn monitor_session(
    inbox: &Inbox,
    jar: &CookieJar,
    actie: &'static str,
) -> Result<Session, Response> {
    let (_, session) = page_session(inbox, jar)?;
    if matches!(session.caller.role, Role::Team(_)) {
        let _ = audited(
            &inbox.api,
            &session.caller,
            actie,
            None,
            StatusCode::FORBIDDEN,
        )
        .await;
        return Err(error_page(
            Chrome::of(&inbox.api, &session),
            StatusCode::FORBIDDEN,
            "Niet toegestaan",
            "De monitor is er voor teamleiders en beleidsmedewerkers: meld u aan met een beheer- of alleen-lezentoken.",
        ));
    }
    Ok(session)
}

async fn monitor_page(
    State(inbox): State<Inbox>,
    jar: CookieJar,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let session = match monitor_session(&inbox, &jar, "monitor").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let api = inbox.api.clone();
    let chrome = Chrome::of(&api, &session);
    let (van, tot, months) = match monitor_months(&query, (api.clock)()) {
        Ok(m) => m,
        Err(fout) => {
            let _ = audited(
                &api,
                &session.caller,
                "monitor",
                None,
                StatusCode::BAD_REQUEST,
            )
            .await;
            let page = MonitorPage {
                chrome,
                van: query.get("van").cloned().unwrap_or_default(),
                tot: query.get("tot").cloned().unwrap_or_default(),
                grafieken: Vec::new(),
                csv: String::new(),
                fout: Some(fout),
            };
            return render(StatusCode::BAD_REQUEST, &page);
        }
    };
    let computed = audited_figures(&api, &session.caller, "monitor", months).await;
    let (months, indicators, teams) = match computed {
        Ok(f) => f,
        Err(ApiError::Unavailable(_)) => {
            return error_page(
                chrome,
                StatusCode::SERVICE_UNAVAILABLE,
                "Monitor niet beschikbaar",
                "Deze dienst draait de verwerking niet zelf en heeft de cijfers niet. Open de monitor op de dienst die `vroeg run` draait.",
            )
        }
        Err(e) => return api_error_page(chrome, &e),
    };
    let charts = monitor::charts(&months, &indicators, &teams, |t| team_name(&api, t));
    let grafieken = charts
        .into_iter()
        .map(|c| ChartView {
            id: c.id,
            svg: c.svg(),
            kolommen: c.series.iter().map(|(n, _)| n.clone()).collect(),
            rijen: c.rows(),
            eerste_kolom: if c.id == "te-laat" {
                "Wijkteam"
            } else {
                "Maand"
            },
            titel: c.titel,
        })
        .collect();
    let csv = format!(
        "/inbox/monitor.csv?van={}&tot={}",
        urlencode(&van),
        urlencode(&tot)
    );
    render(
        StatusCode::OK,
        &MonitorPage {
            chrome,
            van,
            tot,
            grafieken,
            csv,
            fout: None,
        },
    )
}

async fn monitor_csv(
    State(inbox): State<Inbox>,
    jar: CookieJar,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let session = match monitor_session(&inbox, &jar, "monitor_csv").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let api = inbox.api.clone();
    let chrome = Chrome::of(&api, &session);
    let months = match monitor_months(&query, (api.clock)()) {
        Ok((_, _, m)) => m,
        Err(fout) => {
            let _ = audited(
                &api,
                &session.caller,
                "monitor_csv",
                None,
                StatusCode::BAD_REQUEST,
            )
            .await;
            return error_page(chrome, StatusCode::BAD_REQUEST, "Ongeldige periode", &fout);
        }
    };
    let computed = audited_figures(&api, &session.caller, "monitor_csv", months).await;
    match computed {
        Ok((months, indicators, teams)) => {
            let name = format!(
                "attachment; filename=\"vroeg-monitor-{}-{}.csv\"",
                months.first().map_or("", |m| m.key.as_str()),
                months.last().map_or("", |m| m.key.as_str())
            );
            let mut r = (
                [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
                monitor::csv(&months, &indicators, &teams),
            )
                .into_response();
            if let Ok(v) = HeaderValue::from_str(&name) {
                r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
            }
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(e) => api_error_page(chrome, &e),
    }
}

#[cfg(test)]
mod tests;
