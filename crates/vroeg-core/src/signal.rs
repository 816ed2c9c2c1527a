//! The signal contract: CloudEvents 1.0 in JSON, and its decoder.
//!
//! [`decode_structured`] turns the bytes of a structured-mode CloudEvent into
//! a typed [`Signal`], or returns a [`DecodeError`] that names the field and
//! the problem. [`decode_binary`] does the same for the binary content mode,
//! where the attributes arrive as `ce_*` headers and the body is the data.
//!
//! The decoder must never panic, whatever bytes it is given, and must not
//! read a clock: "too far in the future" is judged against the `now` in
//! [`DecodeContext`]. It does not log; callers decide what to log, and they
//! must not log the personal data a signal carries.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::json::{Json, JsonMap};
use crate::name::Name;

use crate::time::{parse_rfc3339, Day, Millis, DAY_MS};

/// CloudEvents `type` of a payment-arrears signal.
pub const TYPE_ARREARS: &str = "nl.vroeg.signaal.betalingsachterstand.v1";
/// CloudEvents `type` of a school-absence signal.
pub const TYPE_ABSENCE: &str = "nl.vroeg.signaal.verzuim.v1";

/// Largest accepted signal, in bytes. A real signal is under 2 KiB.
pub const DEFAULT_MAX_BYTES: usize = 64 * 1024;
/// Largest accepted amount: ten million euro, in cents.
pub const MAX_AMOUNT_CENT: u64 = 1_000_000_000;

/// A valid, decoded signal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    /// The partner organisation, a URN (CloudEvents `source`).
    pub source: Name,
    /// Unique per source (CloudEvents `id`). A [`Name`]: the state, the
    /// case and every case event refer to the signal with it.
    pub id: Name,
    /// CloudEvents `time`: when the partner produced the signal.
    pub time: Millis,
    pub body: SignalBody,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SignalBody {
    Arrears(Arrears),
    Absence(Absence),
}

impl Signal {
    /// The address this signal is about, used to find the household.
    pub fn address(&self) -> &Address {
        match &self.body {
            SignalBody::Arrears(a) => &a.client.address,
            SignalBody::Absence(a) => &a.leerling.address,
        }
    }

    /// The CloudEvents `type` this signal was decoded from.
    pub fn event_type(&self) -> &'static str {
        match self.body {
            SignalBody::Arrears(_) => TYPE_ARREARS,
            SignalBody::Absence(_) => TYPE_ABSENCE,
        }
    }
}

/// Payment arrears reported by a fixed-costs partner.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Arrears {
    pub partner: PartnerType,
    /// Contract or customer number at the partner.
    pub referentie: String,
    pub status: ArrearsStatus,
    pub bedrag_cent: u64,
    pub ontstaansdatum: Day,
    pub signaaldatum: Day,
    pub crisissignaal: bool,
    pub eindelevering: bool,
    pub client: Person,
}

/// A school-absence report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Absence {
    pub verzuimsoort: Verzuimsoort,
    pub uren_4_weken: u32,
    /// BRIN code of the school.
    pub school: String,
    pub leerling: Pupil,
}

/// The person a payment signal is about. Personal data: never log it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Person {
    pub voorletters: String,
    pub voorvoegsel: Option<String>,
    pub achternaam: String,
    pub geboortedatum: Day,
    pub address: Address,
    pub bsn: Option<String>,
    pub telefoon: Option<String>,
    pub email: Option<String>,
}

/// The pupil an absence report is about. Personal data: never log it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pupil {
    pub geboortedatum: Day,
    pub address: Address,
}

/// A Dutch address, normalised: postcode upper-case without spaces, the
/// house-number suffix upper-case without separators.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub straatnaam: String,
    pub postcode: String,
    pub huisnummer: u32,
    pub huisnummertoevoeging: Option<String>,
    pub plaatsnaam: String,
}

string_enum! {
    /// The DDAS partner types (`EnumSignaalpartner`).
    PartnerType {
        Energie => "Energie",
        Huur => "Huur",
        Hypotheek => "Hypotheek",
        CakZorgverzekeringen => "CAK Zorgverzekeringen",
        Zorg => "Zorg",
        Water => "Water",
        Duo => "DUO",
        Belastingdienst => "Belastingdienst",
        CakEigenBijdrage => "CAK Eigen bijdrage",
        Overige => "Overige",
        DienstToeslagen => "Dienst Toeslagen",
    }
}

impl PartnerType {
    /// The prefix of this partner's rule variables, e.g. `cak_zorgverzekeringen`.
    pub fn var_prefix(self) -> &'static str {
        match self {
            PartnerType::Energie => "energie",
            PartnerType::Huur => "huur",
            PartnerType::Hypotheek => "hypotheek",
            PartnerType::CakZorgverzekeringen => "cak_zorgverzekeringen",
            PartnerType::Zorg => "zorg",
            PartnerType::Water => "water",
            PartnerType::Duo => "duo",
            PartnerType::Belastingdienst => "belastingdienst",
            PartnerType::CakEigenBijdrage => "cak_eigen_bijdrage",
            PartnerType::Overige => "overige",
            PartnerType::DienstToeslagen => "dienst_toeslagen",
        }
    }

    pub fn index(self) -> usize {
        PartnerType::ALL
            .iter()
            .position(|p| *p == self)
            .unwrap_or(0)
    }
}

string_enum! {
    /// The status a partner reports for an arrears signal.
    ArrearsStatus {
        Open => "open",
        Betalingsregeling => "betalingsregeling",
        Betaald => "betaald",
        Ingetrokken => "ingetrokken",
    }
}

string_enum! {
    /// The kind of school absence.
    Verzuimsoort {
        Ongeoorloofd => "ongeoorloofd",
        Langdurig => "langdurig",
        Luxe => "luxe",
    }
}

string_enum! {
    /// Why a message was rejected. The wire name is the dead-letter error code.
    ErrorCode {
        TooLarge => "too_large",
        InvalidUtf8 => "invalid_utf8",
        InvalidJson => "invalid_json",
        NotAnObject => "not_an_object",
        MissingField => "missing_field",
        WrongType => "wrong_type",
        UnknownField => "unknown_field",
        InvalidValue => "invalid_value",
        UnsupportedSpecversion => "unsupported_specversion",
        UnsupportedContentType => "unsupported_content_type",
        UnknownType => "unknown_type",
        UnknownPartner => "unknown_partner",
        InvalidPostcode => "invalid_postcode",
        NegativeAmount => "negative_amount",
        ImplausibleAmount => "implausible_amount",
        InvalidDate => "invalid_date",
        FutureDate => "future_date",
        InvalidBsn => "invalid_bsn",
        UnknownCase => "unknown_case",
        BeforeCase => "before_case",
        ContactRequired => "contact_required",
        NotCorrectable => "not_correctable",
    }
}

/// Why a message is not a valid signal: which field, and what is wrong.
///
/// The detail never repeats the personal data it found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{code}{}: {detail}", field.as_ref().map(|f| format!(" at `{f}`")).unwrap_or_default())]
pub struct DecodeError {
    pub code: ErrorCode,
    /// Dotted path of the offending field, e.g. `data.client.postcode`.
    pub field: Option<String>,
    pub detail: String,
}

impl DecodeError {
    pub(crate) fn new(
        code: ErrorCode,
        field: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        DecodeError {
            code,
            field: Some(field.into()),
            detail: detail.into(),
        }
    }

    pub(crate) fn whole(code: ErrorCode, detail: impl Into<String>) -> Self {
        DecodeError {
            code,
            field: None,
            detail: detail.into(),
        }
    }
}

/// What the decoder needs to know about the world. Passed in, never read
/// from a clock.
#[derive(Clone, Copy, Debug)]
pub struct DecodeContext {
    /// The current time; signals dated after `now + max_future` are rejected.
    pub now: Millis,
    /// Allowed clock skew into the future.
    pub max_future: Millis,
    /// Largest accepted message in bytes.
    pub max_bytes: usize,
}

impl DecodeContext {
    pub fn at(now: Millis) -> Self {
        DecodeContext {
            now,
            max_future: DAY_MS,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

const KNOWN_ATTRIBUTES: &[&str] = &[
    "specversion",
    "id",
    "source",
    "type",
    "time",
    "datacontenttype",
    "dataschema",
    "subject",
    "data",
];

/// Decode a structured-mode CloudEvent (the whole event is the JSON body).
pub fn decode_structured(bytes: &[u8], ctx: &DecodeContext) -> Result<Signal, DecodeError> {
    let value = parse_json(bytes, ctx)?;
    let Json::Object(map) = value else {
        return Err(DecodeError::whole(
            ErrorCode::NotAnObject,
            "a CloudEvent must be a JSON object",
        ));
    };
    if map.contains_key("data_base64") {
        return Err(DecodeError::new(
            ErrorCode::UnsupportedContentType,
            "data_base64",
            "binary data is not accepted; send `data` as a JSON object",
        ));
    }
    if let Some(key) =
        map.first_key(|key| !KNOWN_ATTRIBUTES.contains(&key) && !is_extension_name(key))
    {
        return Err(DecodeError::new(
            ErrorCode::UnknownField,
            key,
            "not a CloudEvents attribute, and not a valid extension name (lower-case letters and digits, at most 20)",
        ));
    }
    let attrs = Attributes {
        specversion: get_attr(&map, "specversion")?,
        id: get_attr(&map, "id")?,
        source: get_attr(&map, "source")?,
        event_type: get_attr(&map, "type")?,
        time: get_attr(&map, "time")?,
        datacontenttype: opt_attr(&map, "datacontenttype")?,
    };
    let data = map.get("data").ok_or_else(|| {
        DecodeError::new(
            ErrorCode::MissingField,
            "data",
            "required attribute is missing",
        )
    })?;
    decode_event(attrs, data, ctx)
}

/// The structured-mode CloudEvent of a signal: the inverse of
/// [`decode_structured`] (which gives back an equal [`Signal`]). The rule
/// test runner writes its made-up signals with it, so that `vroeg replay`
/// can read them.
pub fn encode_structured(signal: &Signal) -> Value {
    fn address(a: &Address, into: &mut Map<String, Value>) {
        into.insert("straatnaam".into(), a.straatnaam.clone().into());
        into.insert("postcode".into(), a.postcode.clone().into());
        into.insert("huisnummer".into(), a.huisnummer.into());
        if let Some(t) = &a.huisnummertoevoeging {
            into.insert("huisnummertoevoeging".into(), t.clone().into());
        }
        into.insert("plaatsnaam".into(), a.plaatsnaam.clone().into());
    }
    let data = match &signal.body {
        SignalBody::Arrears(a) => {
            let p = &a.client;
            let mut client = Map::new();
            client.insert("voorletters".into(), p.voorletters.clone().into());
            if let Some(v) = &p.voorvoegsel {
                client.insert("voorvoegsel".into(), v.clone().into());
            }
            client.insert("achternaam".into(), p.achternaam.clone().into());
            client.insert("geboortedatum".into(), p.geboortedatum.to_string().into());
            address(&p.address, &mut client);
            for (name, value) in [
                ("bsn", &p.bsn),
                ("telefoon", &p.telefoon),
                ("email", &p.email),
            ] {
                if let Some(v) = value {
                    client.insert(name.into(), v.clone().into());
                }
            }
            serde_json::json!({
                "signaalpartner": a.partner.as_str(),
                "referentie": a.referentie,
                "status": a.status.as_str(),
                "bedrag_cent": a.bedrag_cent,
                "ontstaansdatum": a.ontstaansdatum.to_string(),
                "signaaldatum": a.signaaldatum.to_string(),
                "crisissignaal": a.crisissignaal,
                "eindelevering": a.eindelevering,
                "client": client,
            })
        }
        SignalBody::Absence(a) => {
            let mut leerling = Map::new();
            leerling.insert(
                "geboortedatum".into(),
                a.leerling.geboortedatum.to_string().into(),
            );
            address(&a.leerling.address, &mut leerling);
            serde_json::json!({
                "verzuimsoort": a.verzuimsoort.as_str(),
                "uren_4_weken": a.uren_4_weken,
                "school": a.school,
                "leerling": leerling,
            })
        }
    };
    serde_json::json!({
        "specversion": "1.0",
        "id": signal.id,
        "source": signal.source,
        "type": signal.event_type(),
        "time": crate::time::format_rfc3339(signal.time),
        "datacontenttype": "application/json",
        "data": data,
    })
}

/// Decode a binary-mode CloudEvent: attributes from `ce_*` headers (and
/// `content-type`), the body is the JSON data.
pub fn decode_binary(
    headers: &[(&str, &[u8])],
    body: &[u8],
    ctx: &DecodeContext,
) -> Result<Signal, DecodeError> {
    let data = parse_json(body, ctx)?;
    let header = |name: &str| -> Result<Option<&str>, DecodeError> {
        match headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)) {
            None => Ok(None),
            Some((_, v)) => std::str::from_utf8(v).map(Some).map_err(|_| {
                DecodeError::new(ErrorCode::InvalidUtf8, name, "header value is not UTF-8")
            }),
        }
    };
    let required = |name: &str| -> Result<&str, DecodeError> {
        header(name)?.ok_or_else(|| {
            DecodeError::new(ErrorCode::MissingField, name, "required header is missing")
        })
    };
    let attrs = Attributes {
        specversion: required("ce_specversion")?,
        id: required("ce_id")?,
        source: required("ce_source")?,
        event_type: required("ce_type")?,
        time: required("ce_time")?,
        datacontenttype: header("content-type")?,
    };
    decode_event(attrs, &data, ctx)
}

/// The partner type a message claims, as a bounded metrics label: the
/// `signaalpartner` of an arrears signal in its variable-name form (for
/// example `zorg`, `huur`), `school` for an absence signal, and `onbekend`
/// where the message does not say or cannot be read. For a rejected
/// message, so that a municipality can tell a partner how many of its
/// messages failed. Never returns anything from the message but a known
/// name.
pub fn partner_label(headers: &[(&str, &[u8])], body: &[u8], max_bytes: usize) -> &'static str {
    const UNKNOWN: &str = "onbekend";
    if body.len() > max_bytes {
        return UNKNOWN;
    }
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return UNKNOWN;
    };
    let binary_type = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("ce_type"))
        .map(|(_, v)| *v);
    let (event_type, data) = match binary_type {
        Some(t) => (std::str::from_utf8(t).ok(), Some(&value)),
        None => (value.get("type").and_then(Value::as_str), value.get("data")),
    };
    if event_type == Some(TYPE_ABSENCE) {
        return "school";
    }
    data.and_then(|d| d.get("signaalpartner"))
        .and_then(Value::as_str)
        .and_then(PartnerType::parse)
        .map_or(UNKNOWN, PartnerType::var_prefix)
}

/// Check the size, then parse UTF-8 JSON. serde_json limits nesting to
/// 128 levels, so deep nesting is an error, not a stack overflow.
pub(crate) fn parse_json<'a>(
    bytes: &'a [u8],
    ctx: &DecodeContext,
) -> Result<Json<'a>, DecodeError> {
    if bytes.len() > ctx.max_bytes {
        return Err(DecodeError::whole(
            ErrorCode::TooLarge,
            format!(
                "message is {} bytes, the limit is {}",
                bytes.len(),
                ctx.max_bytes
            ),
        ));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        DecodeError::whole(
            ErrorCode::InvalidUtf8,
            format!("invalid UTF-8 at byte {}", e.valid_up_to()),
        )
    })?;
    // serde_json's message names line and column, never the content.
    serde_json::from_str(text)
        .map_err(|e| DecodeError::whole(ErrorCode::InvalidJson, format!("not valid JSON: {e}")))
}

fn is_extension_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 20
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

struct Attributes<'a> {
    specversion: &'a str,
    id: &'a str,
    source: &'a str,
    event_type: &'a str,
    time: &'a str,
    datacontenttype: Option<&'a str>,
}

fn get_attr<'a>(map: &'a JsonMap<'a>, name: &str) -> Result<&'a str, DecodeError> {
    opt_attr(map, name)?.ok_or_else(|| {
        DecodeError::new(
            ErrorCode::MissingField,
            name,
            "required attribute is missing",
        )
    })
}

fn opt_attr<'a>(map: &'a JsonMap<'a>, name: &str) -> Result<Option<&'a str>, DecodeError> {
    match map.get(name) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) => Ok(Some(s.as_ref())),
        Some(other) => Err(DecodeError::new(
            ErrorCode::WrongType,
            name,
            format!("expected a string, found {}", type_name(other)),
        )),
    }
}

fn decode_event(
    attrs: Attributes<'_>,
    data: &Json<'_>,
    ctx: &DecodeContext,
) -> Result<Signal, DecodeError> {
    if attrs.specversion != "1.0" {
        return Err(DecodeError::new(
            ErrorCode::UnsupportedSpecversion,
            "specversion",
            format!("expected \"1.0\", found {:?}", truncate(attrs.specversion)),
        ));
    }
    if attrs.id.is_empty() || attrs.id.len() > 256 {
        return Err(DecodeError::new(
            ErrorCode::InvalidValue,
            "id",
            "must be 1 to 256 characters",
        ));
    }
    if !attrs.source.starts_with("urn:") || attrs.source.len() < 5 || attrs.source.len() > 256 {
        return Err(DecodeError::new(
            ErrorCode::InvalidValue,
            "source",
            "must be a URN naming the partner organisation, e.g. urn:vroeg:partner:woonstad",
        ));
    }
    if let Some(ct) = attrs.datacontenttype {
        let media = ct.split(';').next().unwrap_or("").trim();
        if !media.eq_ignore_ascii_case("application/json") {
            return Err(DecodeError::new(
                ErrorCode::UnsupportedContentType,
                "datacontenttype",
                format!("expected application/json, found {:?}", truncate(ct)),
            ));
        }
    }
    let time = parse_rfc3339(attrs.time).ok_or_else(|| {
        DecodeError::new(
            ErrorCode::InvalidDate,
            "time",
            "expected an RFC 3339 timestamp",
        )
    })?;
    if time > ctx.now.saturating_add(ctx.max_future) {
        return Err(DecodeError::new(
            ErrorCode::FutureDate,
            "time",
            "lies in the future",
        ));
    }
    let Json::Object(data) = data else {
        return Err(DecodeError::new(
            ErrorCode::WrongType,
            "data",
            format!("expected an object, found {}", type_name(data)),
        ));
    };
    let obj = Obj {
        map: data,
        path: "data",
    };
    let body = match attrs.event_type {
        TYPE_ARREARS => SignalBody::Arrears(decode_arrears(&obj, time)?),
        TYPE_ABSENCE => SignalBody::Absence(decode_absence(&obj, time)?),
        other => {
            return Err(DecodeError::new(
                ErrorCode::UnknownType,
                "type",
                format!(
                    "unknown signal type {:?}; expected {TYPE_ARREARS} or {TYPE_ABSENCE}",
                    truncate(other)
                ),
            ))
        }
    };
    Ok(Signal {
        source: Name::from(attrs.source),
        id: Name::from(attrs.id),
        time,
        body,
    })
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

fn type_name(v: &Json<'_>) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// A JSON object being decoded, with its path for error messages.
pub(crate) struct Obj<'a> {
    pub(crate) map: &'a JsonMap<'a>,
    pub(crate) path: &'static str,
}

impl<'a> Obj<'a> {
    pub(crate) fn field(&self, name: &str) -> String {
        format!("{}.{}", self.path, name)
    }

    pub(crate) fn deny_unknown(&self, known: &[&str]) -> Result<(), DecodeError> {
        match self.map.first_key(|key| !known.contains(&key)) {
            Some(key) => Err(DecodeError::new(
                ErrorCode::UnknownField,
                self.field(&truncate(key)),
                "unknown field",
            )),
            None => Ok(()),
        }
    }

    pub(crate) fn get(&self, name: &str) -> Result<&'a Json<'a>, DecodeError> {
        match self.map.get(name) {
            None | Some(Json::Null) => Err(DecodeError::new(
                ErrorCode::MissingField,
                self.field(name),
                "required field is missing",
            )),
            Some(v) => Ok(v),
        }
    }

    pub(crate) fn wrong_type(&self, name: &str, expected: &str, found: &Json<'_>) -> DecodeError {
        DecodeError::new(
            ErrorCode::WrongType,
            self.field(name),
            format!("expected {expected}, found {}", type_name(found)),
        )
    }

    pub(crate) fn string(&self, name: &str) -> Result<&'a str, DecodeError> {
        match self.get(name)? {
            Json::String(s) if s.trim().is_empty() => Err(DecodeError::new(
                ErrorCode::InvalidValue,
                self.field(name),
                "must not be empty",
            )),
            Json::String(s) if s.len() > 200 => Err(DecodeError::new(
                ErrorCode::InvalidValue,
                self.field(name),
                "longer than 200 bytes",
            )),
            Json::String(s) => Ok(s.as_ref()),
            other => Err(self.wrong_type(name, "a string", other)),
        }
    }

    pub(crate) fn opt_string(&self, name: &str) -> Result<Option<&'a str>, DecodeError> {
        match self.map.get(name) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::String(s)) if s.trim().is_empty() => Ok(None),
            Some(_) => self.string(name).map(Some),
        }
    }

    pub(crate) fn boolean(&self, name: &str) -> Result<bool, DecodeError> {
        match self.get(name)? {
            Json::Bool(b) => Ok(*b),
            other => Err(self.wrong_type(name, "a boolean", other)),
        }
    }

    pub(crate) fn opt_boolean(&self, name: &str) -> Result<bool, DecodeError> {
        match self.map.get(name) {
            None | Some(Json::Null) => Ok(false),
            Some(_) => self.boolean(name),
        }
    }

    pub(crate) fn integer(&self, name: &str) -> Result<i64, DecodeError> {
        match self.get(name)? {
            Json::Number(n) => match n.as_i64() {
                Some(i) => Ok(i),
                None if n.as_u64().is_some() => Err(DecodeError::new(
                    ErrorCode::ImplausibleAmount,
                    self.field(name),
                    "number is out of range",
                )),
                None => Err(DecodeError::new(
                    ErrorCode::WrongType,
                    self.field(name),
                    "expected a whole number, found a fraction",
                )),
            },
            other => Err(self.wrong_type(name, "a whole number", other)),
        }
    }

    pub(crate) fn date(&self, name: &str) -> Result<Day, DecodeError> {
        match self.get(name)? {
            Json::String(s) => {
                let day = Day::parse(s).ok_or_else(|| {
                    DecodeError::new(
                        ErrorCode::InvalidDate,
                        self.field(name),
                        "expected a date as YYYY-MM-DD",
                    )
                })?;
                if day < Day::parse("1900-01-01").unwrap_or(Day(-25567)) {
                    return Err(DecodeError::new(
                        ErrorCode::InvalidDate,
                        self.field(name),
                        "before 1900",
                    ));
                }
                Ok(day)
            }
            other => Err(self.wrong_type(name, "a date string (YYYY-MM-DD)", other)),
        }
    }

    /// A nested object; `path` is its full dotted path, for error messages.
    pub(crate) fn object(&self, name: &str, path: &'static str) -> Result<Obj<'a>, DecodeError> {
        match self.get(name)? {
            Json::Object(map) => Ok(Obj { map, path }),
            other => Err(self.wrong_type(name, "an object", other)),
        }
    }
}

fn not_after(
    obj: &Obj<'_>,
    name: &str,
    day: Day,
    limit: Day,
    what: &str,
) -> Result<(), DecodeError> {
    if day > limit {
        return Err(DecodeError::new(
            ErrorCode::FutureDate,
            obj.field(name),
            format!("lies after {what}"),
        ));
    }
    Ok(())
}

fn decode_arrears(data: &Obj<'_>, time: Millis) -> Result<Arrears, DecodeError> {
    data.deny_unknown(&[
        "signaalpartner",
        "referentie",
        "status",
        "bedrag_cent",
        "ontstaansdatum",
        "signaaldatum",
        "crisissignaal",
        "eindelevering",
        "client",
    ])?;
    let partner_name = data.string("signaalpartner")?;
    let partner = PartnerType::parse(partner_name).ok_or_else(|| {
        DecodeError::new(
            ErrorCode::UnknownPartner,
            data.field("signaalpartner"),
            format!(
                "unknown partner type {:?}; expected one of: {}",
                truncate(partner_name),
                PartnerType::ALL
                    .iter()
                    .map(|p| p.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })?;
    let referentie = data.string("referentie")?.to_owned();
    let status_name = data.string("status")?;
    let status = ArrearsStatus::parse(status_name).ok_or_else(|| {
        DecodeError::new(
            ErrorCode::InvalidValue,
            data.field("status"),
            "expected one of: open, betalingsregeling, betaald, ingetrokken",
        )
    })?;
    let bedrag = data.integer("bedrag_cent")?;
    if bedrag < 0 {
        return Err(DecodeError::new(
            ErrorCode::NegativeAmount,
            data.field("bedrag_cent"),
            "must not be negative",
        ));
    }
    let bedrag_cent = bedrag as u64;
    if bedrag_cent > MAX_AMOUNT_CENT {
        return Err(DecodeError::new(
            ErrorCode::ImplausibleAmount,
            data.field("bedrag_cent"),
            format!("more than {} cent", MAX_AMOUNT_CENT),
        ));
    }
    let event_day = Day::of_millis(time);
    let ontstaansdatum = data.date("ontstaansdatum")?;
    let signaaldatum = data.date("signaaldatum")?;
    not_after(
        data,
        "signaaldatum",
        signaaldatum,
        event_day.plus_days(1),
        "the event time",
    )?;
    not_after(
        data,
        "ontstaansdatum",
        ontstaansdatum,
        signaaldatum,
        "signaaldatum",
    )?;
    let crisissignaal = data.boolean("crisissignaal")?;
    let eindelevering = data.opt_boolean("eindelevering")?;
    if eindelevering && partner != PartnerType::Energie {
        return Err(DecodeError::new(
            ErrorCode::InvalidValue,
            data.field("eindelevering"),
            "end-of-supply applies to signalpartner Energie only",
        ));
    }
    let client = data.object("client", "data.client")?;
    client.deny_unknown(&[
        "voorletters",
        "voorvoegsel",
        "achternaam",
        "geboortedatum",
        "straatnaam",
        "postcode",
        "huisnummer",
        "huisnummertoevoeging",
        "plaatsnaam",
        "bsn",
        "telefoon",
        "email",
    ])?;
    let geboortedatum = client.date("geboortedatum")?;
    not_after(
        &client,
        "geboortedatum",
        geboortedatum,
        signaaldatum,
        "signaaldatum",
    )?;
    let person = Person {
        voorletters: client.string("voorletters")?.to_owned(),
        voorvoegsel: client.opt_string("voorvoegsel")?.map(str::to_owned),
        achternaam: client.string("achternaam")?.to_owned(),
        geboortedatum,
        address: decode_address(&client)?,
        bsn: match client.opt_string("bsn")? {
            None => None,
            Some(bsn) => Some(validate_bsn(bsn).map_err(|detail| {
                DecodeError::new(ErrorCode::InvalidBsn, client.field("bsn"), detail)
            })?),
        },
        telefoon: client.opt_string("telefoon")?.map(str::to_owned),
        email: client.opt_string("email")?.map(str::to_owned),
    };
    Ok(Arrears {
        partner,
        referentie,
        status,
        bedrag_cent,
        ontstaansdatum,
        signaaldatum,
        crisissignaal,
        eindelevering,
        client: person,
    })
}

fn decode_absence(data: &Obj<'_>, time: Millis) -> Result<Absence, DecodeError> {
    data.deny_unknown(&["verzuimsoort", "uren_4_weken", "school", "leerling"])?;
    let soort = data.string("verzuimsoort")?;
    let verzuimsoort = Verzuimsoort::parse(soort).ok_or_else(|| {
        DecodeError::new(
            ErrorCode::InvalidValue,
            data.field("verzuimsoort"),
            "expected one of: ongeoorloofd, langdurig, luxe",
        )
    })?;
    let uren = data.integer("uren_4_weken")?;
    if !(0..=200).contains(&uren) {
        return Err(DecodeError::new(
            ErrorCode::InvalidValue,
            data.field("uren_4_weken"),
            "must be between 0 and 200 hours",
        ));
    }
    let school = data.string("school")?;
    if !is_brin(school) {
        return Err(DecodeError::new(
            ErrorCode::InvalidValue,
            data.field("school"),
            "expected a BRIN code: two digits, two letters, optionally two digits (e.g. 12AB or 12AB01)",
        ));
    }
    let leerling = data.object("leerling", "data.leerling")?;
    leerling.deny_unknown(&[
        "geboortedatum",
        "straatnaam",
        "postcode",
        "huisnummer",
        "huisnummertoevoeging",
        "plaatsnaam",
    ])?;
    let geboortedatum = leerling.date("geboortedatum")?;
    not_after(
        &leerling,
        "geboortedatum",
        geboortedatum,
        Day::of_millis(time),
        "the event time",
    )?;
    Ok(Absence {
        verzuimsoort,
        uren_4_weken: uren as u32,
        school: school.to_ascii_uppercase(),
        leerling: Pupil {
            geboortedatum,
            address: decode_address(&leerling)?,
        },
    })
}

fn is_brin(s: &str) -> bool {
    let b = s.as_bytes();
    (b.len() == 4 || b.len() == 6)
        && b[0].is_ascii_digit()
        && b[1].is_ascii_digit()
        && b[2].is_ascii_alphabetic()
        && b[3].is_ascii_alphabetic()
        && b[4..].iter().all(u8::is_ascii_digit)
}

fn decode_address(obj: &Obj<'_>) -> Result<Address, DecodeError> {
    let postcode = normalise_postcode(obj.string("postcode")?).ok_or_else(|| {
        DecodeError::new(
            ErrorCode::InvalidPostcode,
            obj.field("postcode"),
            "expected a Dutch postcode: four digits (not starting with 0) and two letters",
        )
    })?;
    let (huisnummer, embedded_suffix) = match obj.get("huisnummer")? {
        Json::Number(n) => match n.as_u64() {
            Some(n) if (1..=99_999).contains(&n) => (n as u32, None),
            _ => {
                return Err(DecodeError::new(
                    ErrorCode::InvalidValue,
                    obj.field("huisnummer"),
                    "must be a whole number from 1 to 99999",
                ))
            }
        },
        Json::String(s) => split_house_number(s).ok_or_else(|| {
            DecodeError::new(
                ErrorCode::InvalidValue,
                obj.field("huisnummer"),
                "expected a house number such as 12, optionally with a suffix such as 12-A",
            )
        })?,
        other => return Err(obj.wrong_type("huisnummer", "a whole number", other)),
    };
    let suffix = match obj.opt_string("huisnummertoevoeging")? {
        Some(s) => normalise_suffix(s),
        None => embedded_suffix,
    };
    Ok(Address {
        straatnaam: obj.string("straatnaam")?.to_owned(),
        postcode,
        huisnummer,
        huisnummertoevoeging: suffix,
        plaatsnaam: obj.string("plaatsnaam")?.to_owned(),
    })
}

/// Normalise a Dutch postcode: `1234 ab` becomes `1234AB`. Returns `None`
/// for anything that is not a valid postcode.
pub fn normalise_postcode(raw: &str) -> Option<String> {
    let compact: String = raw
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase();
    let b = compact.as_bytes();
    if b.len() != 6 || !(b'1'..=b'9').contains(&b[0]) || !b[1..4].iter().all(u8::is_ascii_digit) {
        return None;
    }
    if !b[4..].iter().all(u8::is_ascii_uppercase) {
        return None;
    }
    // PostNL never issues the letter combinations SA, SD and SS.
    if matches!(&compact[4..], "SA" | "SD" | "SS") {
        return None;
    }
    Some(compact)
}

/// Normalise a house-number suffix: `-a`, ` A` and `a` all become `A`.
pub fn normalise_suffix(raw: &str) -> Option<String> {
    let s: String = raw
        .chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_uppercase)
        .collect();
    (!s.is_empty()).then_some(s)
}

/// Split `12-A` or `12 a` into the number and the normalised suffix.
fn split_house_number(raw: &str) -> Option<(u32, Option<String>)> {
    let raw = raw.trim();
    let digits = raw.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > 5 {
        return None;
    }
    let number: u32 = raw[..digits].parse().ok()?;
    if number == 0 {
        return None;
    }
    Some((number, normalise_suffix(&raw[digits..])))
}

/// Check a BSN with the elfproef. Returns the nine digits, or what is wrong
/// (never echoing the number itself).
pub fn validate_bsn(raw: &str) -> Result<String, String> {
    let digits: String = raw
        .chars()
        .filter(|c| !matches!(c, ' ' | '.' | '-'))
        .collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) || !(8..=9).contains(&digits.len()) {
        return Err("a BSN has 9 digits".into());
    }
    let digits = format!("{digits:0>9}");
    let sum: i64 = digits
        .bytes()
        .enumerate()
        .map(|(i, b)| {
            let d = (b - b'0') as i64;
            if i == 8 {
                -d
            } else {
                d * (9 - i as i64)
            }
        })
        .sum();
    if sum == 0 || sum % 11 != 0 {
        return Err("fails the elfproef (eleven test)".into());
    }
    Ok(digits)
}

#[cfg(test)]
mod tests;
