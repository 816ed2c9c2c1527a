use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::time::parse_rfc3339;

fn now() -> Millis {
    parse_rfc3339("2026-06-01T12:00:00Z").unwrap()
}

fn valid() -> Value {
    json!({
        "specversion": "1.0",
        "id": "sig-1",
        "source": "urn:vroeg:partner:zilveren-kruis",
        "type": TYPE_ARREARS,
        "time": "2026-05-20T09:00:00Z",
        "datacontenttype": "application/json",
        "data": {
            "signaalpartner": "Zorg",
            "referentie": "POL-123",
            "status": "open",
            "bedrag_cent": 45000,
            "ontstaansdatum": "2026-03-01",
            "signaaldatum": "2026-05-20",
            "crisissignaal": false,
            "eindelevering": false,
            "client": {
                "voorletters": "J.",
                "voorvoegsel": "de",
                "achternaam": "Vries",
                "geboortedatum": "1980-04-02",
                "straatnaam": "Dorpsstraat",
                "postcode": "1234 ab",
                "huisnummer": 12,
                "huisnummertoevoeging": "-a",
                "plaatsnaam": "Utrecht",
                "bsn": "111222333"
            }
        }
    })
}

fn decode(v: &Value) -> Result<Signal, DecodeError> {
    decode_structured(v.to_string().as_bytes(), &DecodeContext::at(now()))
}

fn expect(v: Value, code: ErrorCode, field: Option<&str>) {
    let err = decode(&v).expect_err("must be rejected");
    assert_eq!(err.code, code, "{err}");
    assert_eq!(err.field.as_deref(), field, "{err}");
}

#[test]
fn decodes_a_valid_signal_and_normalises_the_address() {
    let s = decode(&valid()).unwrap();
    assert_eq!(s.id, "sig-1");
    let SignalBody::Arrears(a) = &s.body else {
        panic!("arrears expected")
    };
    assert_eq!(a.partner, PartnerType::Zorg);
    assert_eq!(a.bedrag_cent, 45000);
    assert_eq!(a.client.address.postcode, "1234AB");
    assert_eq!(a.client.address.huisnummertoevoeging.as_deref(), Some("A"));
    assert_eq!(a.client.bsn.as_deref(), Some("111222333"));
}

#[test]
fn house_number_with_embedded_suffix() {
    let mut v = valid();
    v["data"]["client"]["huisnummer"] = json!("12 a");
    v["data"]["client"]
        .as_object_mut()
        .unwrap()
        .remove("huisnummertoevoeging");
    let s = decode(&v).unwrap();
    assert_eq!(s.address().huisnummer, 12);
    assert_eq!(s.address().huisnummertoevoeging.as_deref(), Some("A"));
}

#[test]
fn every_problem_is_named() {
    let mut v = valid();
    v["data"].as_object_mut().unwrap().remove("referentie");
    expect(v, ErrorCode::MissingField, Some("data.referentie"));

    let mut v = valid();
    v["data"]["bedrag_cent"] = json!("450");
    expect(v, ErrorCode::WrongType, Some("data.bedrag_cent"));

    let mut v = valid();
    v["data"]["bedrag_cent"] = json!(-1);
    expect(v, ErrorCode::NegativeAmount, Some("data.bedrag_cent"));

    let mut v = valid();
    v["data"]["bedrag_cent"] = json!(12.5);
    expect(v, ErrorCode::WrongType, Some("data.bedrag_cent"));

    let mut v = valid();
    v["data"]["bedrag_cent"] = json!(99_000_000_000_i64);
    expect(v, ErrorCode::ImplausibleAmount, Some("data.bedrag_cent"));

    let mut v = valid();
    v["data"]["client"]["postcode"] = json!("0123AB");
    expect(v, ErrorCode::InvalidPostcode, Some("data.client.postcode"));

    let mut v = valid();
    v["data"]["client"]["postcode"] = json!("1234SS");
    expect(v, ErrorCode::InvalidPostcode, Some("data.client.postcode"));

    let mut v = valid();
    v["data"]["signaaldatum"] = json!("2099-01-01");
    expect(v, ErrorCode::FutureDate, Some("data.signaaldatum"));

    let mut v = valid();
    v["time"] = json!("2099-01-01T00:00:00Z");
    expect(v, ErrorCode::FutureDate, Some("time"));

    let mut v = valid();
    v["type"] = json!("nl.vroeg.signaal.onbekend.v1");
    expect(v, ErrorCode::UnknownType, Some("type"));

    let mut v = valid();
    v["data"]["signaalpartner"] = json!("Telecom");
    expect(v, ErrorCode::UnknownPartner, Some("data.signaalpartner"));

    let mut v = valid();
    v["data"]["client"]["bsn"] = json!("123456789");
    expect(v, ErrorCode::InvalidBsn, Some("data.client.bsn"));

    let mut v = valid();
    v.as_object_mut().unwrap().remove("id");
    expect(v, ErrorCode::MissingField, Some("id"));

    let mut v = valid();
    v["data"]["extra"] = json!(1);
    expect(v, ErrorCode::UnknownField, Some("data.extra"));

    let mut v = valid();
    v["Extra_Attr"] = json!(1);
    expect(v, ErrorCode::UnknownField, Some("Extra_Attr"));

    let mut v = valid();
    v["specversion"] = json!("0.3");
    expect(v, ErrorCode::UnsupportedSpecversion, Some("specversion"));

    let mut v = valid();
    v["data"]["ontstaansdatum"] = json!("2026-13-01");
    expect(v, ErrorCode::InvalidDate, Some("data.ontstaansdatum"));

    let mut v = valid();
    v["data"]["status"] = json!("onbekend");
    expect(v, ErrorCode::InvalidValue, Some("data.status"));

    let mut v = valid();
    v["data"]["eindelevering"] = json!(true);
    expect(v, ErrorCode::InvalidValue, Some("data.eindelevering"));
}

#[test]
fn a_cloudevents_extension_attribute_is_accepted() {
    let mut v = valid();
    v["traceparent"] = json!("00-abc");
    assert!(decode(&v).is_ok());
}

#[test]
fn whole_message_errors() {
    let ctx = DecodeContext::at(now());
    assert_eq!(
        decode_structured(b"{\"a\":", &ctx).unwrap_err().code,
        ErrorCode::InvalidJson
    );
    assert_eq!(
        decode_structured(&[0xff, 0xfe], &ctx).unwrap_err().code,
        ErrorCode::InvalidUtf8
    );
    assert_eq!(
        decode_structured(b"[1,2]", &ctx).unwrap_err().code,
        ErrorCode::NotAnObject
    );
    let big = vec![b' '; DEFAULT_MAX_BYTES + 1];
    assert_eq!(
        decode_structured(&big, &ctx).unwrap_err().code,
        ErrorCode::TooLarge
    );
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert_eq!(
        decode_structured(deep.as_bytes(), &ctx).unwrap_err().code,
        ErrorCode::InvalidJson
    );
}

#[test]
fn binary_mode_reads_attributes_from_headers() {
    let v = valid();
    let data = v["data"].to_string();
    let headers: Vec<(&str, &[u8])> = vec![
        ("ce_specversion", b"1.0"),
        ("ce_id", b"sig-1"),
        ("ce_source", b"urn:vroeg:partner:zilveren-kruis"),
        ("ce_type", TYPE_ARREARS.as_bytes()),
        ("ce_time", b"2026-05-20T09:00:00Z"),
        ("content-type", b"application/json"),
    ];
    let s = decode_binary(&headers, data.as_bytes(), &DecodeContext::at(now())).unwrap();
    assert_eq!(s, decode(&v).unwrap());
    let err = decode_binary(&headers[1..], data.as_bytes(), &DecodeContext::at(now())).unwrap_err();
    assert_eq!(
        (err.code, err.field.as_deref()),
        (ErrorCode::MissingField, Some("ce_specversion"))
    );
}

#[test]
fn absence_signal() {
    let v = json!({
        "specversion": "1.0", "id": "v-1", "source": "urn:vroeg:school:12AB",
        "type": TYPE_ABSENCE, "time": "2026-05-20T09:00:00Z",
        "data": {
            "verzuimsoort": "ongeoorloofd", "uren_4_weken": 18, "school": "12ab",
            "leerling": { "geboortedatum": "2012-01-01", "straatnaam": "Dorpsstraat",
                "postcode": "1234AB", "huisnummer": 12, "huisnummertoevoeging": "A", "plaatsnaam": "Utrecht" }
        }
    });
    let s = decode(&v).unwrap();
    let SignalBody::Absence(a) = &s.body else {
        panic!("absence expected")
    };
    assert_eq!(a.school, "12AB");
    assert_eq!(a.uren_4_weken, 18);
}

#[test]
fn elfproef() {
    assert!(validate_bsn("111222333").is_ok());
    assert!(validate_bsn("123456782").is_ok());
    assert!(validate_bsn("123456789").is_err());
    assert!(validate_bsn("000000000").is_err());
    assert!(validate_bsn("12345678x").is_err());
    // The error never repeats the number.
    assert!(!validate_bsn("123456789").unwrap_err().contains("123456789"));
}

#[test]
fn errors_do_not_echo_personal_data() {
    let mut v = valid();
    v["data"]["client"]["postcode"] = json!("9999 XYZ-secret");
    let err = decode(&v).unwrap_err();
    assert!(!err.to_string().contains("secret"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let ctx = DecodeContext::at(now());
        let _ = decode_structured(&bytes, &ctx);
        let _ = decode_binary(&[("ce_id", &bytes)], &bytes, &ctx);
    }

    #[test]
    fn truncated_valid_signals_never_panic(cut in 0usize..2000) {
        let text = valid().to_string();
        let cut = cut.min(text.len());
        let _ = decode_structured(&text.as_bytes()[..cut], &DecodeContext::at(now()));
    }

    #[test]
    fn mutated_valid_signals_never_panic(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)
    ) {
        let mut bytes = valid().to_string().into_bytes();
        for (pos, b) in edits {
            let i = pos % bytes.len();
            bytes[i] = b;
        }
        let _ = decode_structured(&bytes, &DecodeContext::at(now()));
    }

    #[test]
    fn field_values_replaced_by_anything_never_panic(
        path in proptest::sample::select(vec![
            "id", "source", "type", "time", "data", "data.signaalpartner", "data.bedrag_cent",
            "data.status", "data.signaaldatum", "data.ontstaansdatum", "data.client",
            "data.client.postcode", "data.client.huisnummer", "data.client.bsn",
            "data.client.geboortedatum", "data.crisissignaal",
        ]),
        replacement in prop_oneof![
            Just(json!(null)), Just(json!(true)), any::<i64>().prop_map(|i| json!(i)),
            any::<f64>().prop_map(|f| json!(f)), ".{0,40}".prop_map(|s| json!(s)),
            Just(json!([])), Just(json!({})),
        ]
    ) {
        let mut v = valid();
        let mut target = &mut v;
        let parts: Vec<&str> = path.split('.').collect();
        for p in &parts[..parts.len() - 1] {
            target = &mut target[*p];
        }
        target[parts[parts.len() - 1]] = replacement;
        let _ = decode(&v);
    }
}

#[test]
fn an_encoded_signal_decodes_to_itself() {
    let arrears = decode(&valid()).unwrap();
    let mut absence = json!({
        "specversion": "1.0", "id": "v-1", "source": "urn:vroeg:school:duo", "type": TYPE_ABSENCE,
        "time": "2026-05-20T10:00:00Z",
        "data": { "verzuimsoort": "langdurig", "uren_4_weken": 22, "school": "12ab",
                  "leerling": { "geboortedatum": "2012-01-01", "straatnaam": "Laan", "postcode": "1234AB",
                                "huisnummer": "7 b", "plaatsnaam": "Utrecht" } }
    });
    let absence = decode(&absence.take()).unwrap();
    for signal in [arrears, absence] {
        let again = decode(&encode_structured(&signal)).unwrap();
        assert_eq!(again, signal);
    }
}
