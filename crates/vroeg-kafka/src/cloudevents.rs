//! The CloudEvents Kafka protocol binding for the events Vroeg publishes.
//!
//! Alert outbox entries carry the alert JSON and `vroeg_alert_*` headers
//! (set by the engine). Here they become a structured-mode event (the whole
//! CloudEvent as the value) or a binary-mode event (`ce_*` headers, the alert
//! as the value). The id of the CloudEvent is the alert id, so a re-send is
//! recognisable.

use serde_json::{json, Value};

use crate::settings::ContentMode;

/// CloudEvents `type` of a case event of kind `kind` (`geopend`, ...).
pub fn alert_type(kind: &str) -> String {
    format!("nl.vroeg.zaak.{kind}.v1")
}

fn header<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
}

/// Encode an alert outbox entry as a CloudEvent: the Kafka headers and value.
pub fn encode_alert(
    mode: ContentMode,
    source: &str,
    headers: &[(String, Vec<u8>)],
    payload: &[u8],
) -> (Vec<(String, Vec<u8>)>, Vec<u8>) {
    let id = header(headers, "vroeg_alert_id").unwrap_or("");
    let kind = header(headers, "vroeg_alert_type").unwrap_or("bijgewerkt");
    let time = header(headers, "vroeg_alert_time").unwrap_or("");
    let subject = header(headers, "vroeg_case_id").unwrap_or("");
    match mode {
        ContentMode::Structured => {
            let data: Value = serde_json::from_slice(payload).unwrap_or(Value::Null);
            let event = json!({
                "specversion": "1.0", "id": id, "source": source, "type": alert_type(kind),
                "time": time, "subject": subject, "datacontenttype": "application/json", "data": data,
            });
            (
                vec![(
                    "content-type".into(),
                    b"application/cloudevents+json".to_vec(),
                )],
                serde_json::to_vec(&event).unwrap_or_default(),
            )
        }
        ContentMode::Binary => (
            vec![
                ("ce_specversion".into(), b"1.0".to_vec()),
                ("ce_id".into(), id.as_bytes().to_vec()),
                ("ce_source".into(), source.as_bytes().to_vec()),
                ("ce_type".into(), alert_type(kind).into_bytes()),
                ("ce_time".into(), time.as_bytes().to_vec()),
                ("ce_subject".into(), subject.as_bytes().to_vec()),
                ("content-type".into(), b"application/json".to_vec()),
            ],
            payload.to_vec(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers() -> Vec<(String, Vec<u8>)> {
        vec![
            ("vroeg_alert_id".into(), b"k-1-1".to_vec()),
            ("vroeg_alert_type".into(), b"geopend".to_vec()),
            (
                "vroeg_alert_time".into(),
                b"2026-01-01T00:00:00.000Z".to_vec(),
            ),
            ("vroeg_case_id".into(), b"k-1".to_vec()),
        ]
    }

    #[test]
    fn structured_wraps_the_alert() {
        let (h, v) = encode_alert(
            ContentMode::Structured,
            "urn:vroeg:test",
            &headers(),
            br#"{"id":"k-1-1"}"#,
        );
        let v: Value = serde_json::from_slice(&v).unwrap();
        assert_eq!(v["id"], "k-1-1");
        assert_eq!(v["type"], "nl.vroeg.zaak.geopend.v1");
        assert_eq!(v["data"]["id"], "k-1-1");
        assert_eq!(h[0].0, "content-type");
    }

    #[test]
    fn binary_puts_attributes_in_headers() {
        let (h, v) = encode_alert(ContentMode::Binary, "urn:vroeg:test", &headers(), b"{}");
        assert_eq!(v, b"{}");
        assert!(h.contains(&("ce_id".to_string(), b"k-1-1".to_vec())));
        assert!(h.contains(&("ce_type".to_string(), b"nl.vroeg.zaak.geopend.v1".to_vec())));
    }
}
