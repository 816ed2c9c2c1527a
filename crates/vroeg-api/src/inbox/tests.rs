//! The inbox through the service's router: sign-in, the session cookie,
//! form tokens, pages, forms, access and audit, on the API's fixture (a
//! temporary read model: an open case of noord, one of zuid, and a closed
//! one of noord).

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use tower::ServiceExt;

use crate::api_tests::{fixture, Fixture, ADMIN, NOORD, NOORD_CASE, ZUID_CASE};

/// A browser: keeps its cookies.
struct Browser {
    f: Fixture,
    cookies: Vec<(String, String)>,
}

struct Answer {
    status: StatusCode,
    location: Option<String>,
    set_cookies: Vec<String>,
    body: String,
}

impl Browser {
    fn new() -> Browser {
        Browser {
            f: fixture(),
            cookies: Vec::new(),
        }
    }

    async fn send(&mut self, method: &str, path: &str, form: Option<&[(&str, &str)]>) -> Answer {
        let mut req = Request::builder().method(method).uri(path);
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            req = req.header(header::COOKIE, jar.join("; "));
        }
        let body = match form {
            Some(fields) => {
                req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                let encoded: Vec<String> = fields
                    .iter()
                    .map(|(k, v)| format!("{k}={}", super::urlencode(v)))
                    .collect();
                Body::from(encoded.join("&"))
            }
            None => Body::empty(),
        };
        let resp = self
            .f
            .router
            .clone()
            .oneshot(req.body(body).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let location = resp
            .headers()
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap().to_owned());
        let set_cookies: Vec<String> = resp
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        for c in &set_cookies {
            let pair = c.split(';').next().unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            self.cookies.retain(|(name, _)| name != k);
            if !v.is_empty() && !c.contains("Max-Age=0") {
                self.cookies.push((k.to_owned(), v.to_owned()));
            }
        }
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 22)
            .await
            .unwrap();
        Answer {
            status,
            location,
            set_cookies,
            body: String::from_utf8(bytes.to_vec()).unwrap(),
        }
    }

    async fn get(&mut self, path: &str) -> Answer {
        self.send("GET", path, None).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Answer {
        self.send("POST", path, Some(form)).await
    }

    /// Sign in with a token: 303 to the inbox.
    async fn sign_in(&mut self, token: &str) -> Answer {
        let page = self.get("/inbox/aanmelden").await;
        let csrf = hidden_csrf(&page.body);
        self.post("/inbox/aanmelden", &[("csrf", &csrf), ("token", token)])
            .await
    }

    fn audit(&self) -> Vec<(String, String, u16)> {
        self.f
            .store
            .audit_log()
            .map(|e| {
                let e = e.unwrap();
                (e.wie, e.actie, e.status)
            })
            .collect()
    }
}

fn hidden_csrf(body: &str) -> String {
    let at = body.find("name=\"csrf\" value=\"").expect("a form token") + 19;
    body[at..at + 64].to_owned()
}

#[tokio::test]
async fn sign_in_sets_a_strict_http_only_session_and_pages_need_it() {
    let mut b = Browser::new();
    let r = b.get("/inbox").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location.as_deref(), Some("/inbox/aanmelden"));

    let page = b.get("/inbox/aanmelden").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("<html lang=\"nl\">"));
    assert!(page.body.contains("<label for=\"token\">"));
    // Without the sign-in form's own cookie, the form is refused.
    let csrf = hidden_csrf(&page.body);
    b.cookies.clear();
    let r = b
        .post("/inbox/aanmelden", &[("csrf", &csrf), ("token", NOORD)])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // A wrong token: 401 and the page says so, in Dutch.
    let r = b.sign_in("niet-bestaand").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("onbekend of verlopen"), "{}", r.body);

    let r = b.sign_in(NOORD).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location.as_deref(), Some("/inbox"));
    let session = r
        .set_cookies
        .iter()
        .find(|c| c.starts_with("vroeg_sessie="))
        .expect("a session cookie");
    for part in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(session.contains(part), "{session}");
    }
    assert!(
        !session.contains("Secure"),
        "not over plain HTTP: {session}"
    );

    let list = b.get("/inbox").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.body.contains(&format!("/inbox/zaken/{NOORD_CASE}")));
    assert!(
        !list.body.contains(ZUID_CASE),
        "another team's case is listed"
    );
    assert!(list.body.contains("id=\"totaal-open\">1<"), "{}", list.body);

    // Another team's case is not found, exactly like a case that is not.
    let theirs = b.get(&format!("/inbox/zaken/{ZUID_CASE}")).await;
    let none = b.get("/inbox/zaken/bestaat-niet-1").await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);
    assert_eq!(none.status, StatusCode::NOT_FOUND);
    assert_eq!(theirs.body, none.body);

    // Signing out needs the form token; then the pages redirect again.
    let csrf = hidden_csrf(&list.body);
    let r = b
        .post("/inbox/afmelden", &[("csrf", "0".repeat(64).as_str())])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = b.post("/inbox/afmelden", &[("csrf", &csrf)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(b.get("/inbox").await.status, StatusCode::SEE_OTHER);

    let audit = b.audit();
    let actions: Vec<(&str, u16)> = audit.iter().map(|(_, a, s)| (a.as_str(), *s)).collect();
    assert_eq!(
        actions,
        [
            ("aanmelden", 200),
            ("zaken_lijst", 200),
            ("zaak_lezen", 404),
            ("zaak_lezen", 404),
            ("afmelden", 200)
        ]
    );
    assert!(audit.iter().all(|(wie, _, _)| wie == "coordinator-noord"));
}

#[tokio::test]
async fn forms_need_the_session_token_show_errors_by_their_field_and_publish_feedback() {
    let mut b = Browser::new();
    b.sign_in(NOORD).await;
    let page = b.get(&format!("/inbox/zaken/{NOORD_CASE}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("id=\"form-contactpoging\""));
    let csrf = hidden_csrf(&page.body);
    let path = format!("/inbox/zaken/{NOORD_CASE}/contactpoging");

    // Without the form token: refused, nothing published.
    let r = b
        .post(
            &path,
            &[
                ("contactsoort", "Telefoon"),
                ("bereikt", "ja"),
                ("datum", "2026-03-10"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(b.f.sent.0.lock().unwrap().is_empty());

    // A date in the future: the error stands at the date field.
    let r = b
        .post(
            &path,
            &[
                ("csrf", &csrf),
                ("contactsoort", "Telefoon"),
                ("bereikt", "ja"),
                ("datum", "2027-01-01"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("id=\"cp-datum-fout\""), "{}", r.body);
    assert!(
        r.body.contains("value=\"2027-01-01\""),
        "the typed value is kept"
    );
    // No choice whether the resident was reached: at that field.
    let r = b
        .post(
            &path,
            &[
                ("csrf", &csrf),
                ("contactsoort", "Telefoon"),
                ("datum", "2026-03-10"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("id=\"cp-bereikt-fout\""), "{}", r.body);
    assert!(b.f.sent.0.lock().unwrap().is_empty());

    // A good one is published, and pending until the read model has it.
    let r = b
        .post(
            &path,
            &[
                ("csrf", &csrf),
                ("contactsoort", "Telefoon"),
                ("bereikt", "ja"),
                ("datum", "2026-03-10"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let sent = b.f.sent.0.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    let message: serde_json::Value = serde_json::from_slice(&sent[0].1).unwrap();
    assert_eq!(message["type"], "contactpoging");
    assert_eq!(message["zaak_id"], NOORD_CASE);
    assert_eq!(message["bereikt"], true);
    let page = b.get(&format!("/inbox/zaken/{NOORD_CASE}")).await;
    assert!(page.body.contains("In behandeling:"), "{}", page.body);
    assert!(page.body.contains("De contactpoging is verstuurd."));
    assert!(page.body.contains("http-equiv=\"refresh\""));

    // A note and an unassignment go the same way.
    for (form, fields) in [
        ("notitie", vec![("tekst", "Gebeld, terugbellen dinsdag")]),
        ("toewijzing", vec![("medewerker", "")]),
    ] {
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend(fields);
        let r = b
            .post(&format!("/inbox/zaken/{NOORD_CASE}/{form}"), &all)
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{form}: {}", r.body);
    }
    let sent = b.f.sent.0.lock().unwrap().clone();
    let last: serde_json::Value = serde_json::from_slice(&sent[2].1).unwrap();
    assert_eq!(last["type"], "toewijzing");
    assert!(last["medewerker"].is_null());
    // A correction of an open case is not offered, and refused if sent.
    let r = b
        .post(
            &format!("/inbox/zaken/{NOORD_CASE}/correctie"),
            &[("csrf", &csrf), ("reden", "x")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(b.f.sent.0.lock().unwrap().len(), 3);
    // Every action was audited with the API's names.
    let audited: Vec<(String, u16)> = b
        .audit()
        .into_iter()
        .filter(|(_, a, _)| !matches!(a.as_str(), "aanmelden" | "zaak_lezen"))
        .map(|(_, a, s)| (a, s))
        .collect();
    let expected: Vec<(String, u16)> = [
        ("contactpoging", 422),
        ("contactpoging", 422),
        ("contactpoging", 202),
        ("notitie", 202),
        ("toewijzing", 202),
        ("correctie", 409),
    ]
    .iter()
    .map(|(a, s)| ((*a).to_owned(), *s))
    .collect();
    assert_eq!(audited, expected);
}

#[tokio::test]
async fn the_monitor_is_for_the_admin_and_its_csv_holds_the_report_figures() {
    let mut b = Browser::new();
    b.sign_in(NOORD).await;
    assert_eq!(b.get("/inbox/monitor").await.status, StatusCode::FORBIDDEN);

    let mut b = Browser::new();
    b.sign_in(ADMIN).await;
    let page = b.get("/inbox/monitor?van=2026-01&tot=2026-03").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("<svg class=\"grafiek\""));
    assert!(page.body.contains("Signalen per bron"));
    let csv = b.get("/inbox/monitor.csv?van=2026-01&tot=2026-03").await;
    assert_eq!(csv.status, StatusCode::OK);
    // The fixture's engine state: one case opened and closed in February,
    // with a rent signal dated in February.
    for line in [
        "2026-02;signalen_per_bron;Huur;1",
        "2026-02;zaken_geopend;;1",
        "2026-01;signalen;;0",
    ] {
        assert!(
            csv.body.lines().any(|l| l == line),
            "{line} in\n{}",
            csv.body
        );
    }
    let bad = b.get("/inbox/monitor?van=2026-05&tot=2026-01").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("De eerste maand ligt na de laatste."));
}

#[tokio::test]
async fn search_finds_only_the_teams_cases_and_explains_wrong_input() {
    let mut b = Browser::new();
    b.sign_in(NOORD).await;
    let r = b.get("/inbox/zoeken?postcode=12&huisnummer=1").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("id=\"postcode-fout\""), "{}", r.body);
    let r = b.get("/inbox/zoeken?achternaam=a").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("id=\"achternaam-fout\""));
    let r = b.get("/inbox/zoeken?achternaam=jansen").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("Gevonden: 0"), "{}", r.body);
    let css = b.get("/inbox/static/inbox.css").await;
    assert_eq!(css.status, StatusCode::OK);
}
