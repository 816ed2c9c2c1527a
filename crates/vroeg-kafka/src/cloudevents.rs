//! The CloudEvents Kafka protocol binding for the events Vroeg publishes.
//!
//! A case event from the outbox becomes a structured-mode event (the whole
//! CloudEvent as the value) or a binary-mode event (`ce_*` headers, the
//! alert as the value). The id of the CloudEvent is the alert id, so a
//! re-send is recognisable.

use serde_json::json;
use vroeg_core::Alert;

use crate::settings::ContentMode;

/// CloudEvents `type` of a case event of kind `kind` (`geopend`, ...).
pub fn alert_type(kind: &str) -> String {
    format!("nl.vroeg.zaak.{kind}.v1")
}

/// Encode a case event as a CloudEvent: the Kafka headers and value. The
/// id of the CloudEvent is the alert id, its subject the case id.
pub fn encode_alert(
    mode: ContentMode,
    source: &str,
    alert: &Alert,
) -> (Vec<(String, Vec<u8>)>, Vec<u8>) {
    let kind = alert.kind.as_str();
    match mode {
        ContentMode::Structured => {
            let event = json!({
                "specversion": "1.0", "id": alert.id, "source": source, "type": alert_type(kind),
                "time": alert.tijd, "subject": alert.zaak_id, "datacontenttype": "application/json",
                "data": alert,
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
                ("ce_id".into(), alert.id.as_bytes().to_vec()),
                ("ce_source".into(), source.as_bytes().to_vec()),
                ("ce_type".into(), alert_type(kind).into_bytes()),
                ("ce_time".into(), alert.tijd.as_bytes().to_vec()),
                ("ce_subject".into(), alert.zaak_id.as_bytes().to_vec()),
                ("content-type".into(), b"application/json".to_vec()),
            ],
            serde_json::to_vec(alert).unwrap_or_default(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn alert() -> Alert {
        serde_json::from_value(json!({
            "id": "k-1-1", "zaak_id": "k-1", "huishouden": "k", "episode": 1, "volgnummer": 1,
            "type": "geopend", "tijd": "2026-01-01T00:00:00.000Z", "categorie": "enkelvoudig",
            "categorieen": ["enkelvoudig"], "prioriteit": 3, "regels": [], "variabelen": {},
            "werkbak": "regulier", "wijkteam": "centrum", "regelset": "v", "signalen": []
        }))
        .unwrap()
    }

    #[test]
    fn structured_wraps_the_alert() {
        let (h, v) = encode_alert(ContentMode::Structured, "urn:vroeg:test", &alert());
        let v: Value = serde_json::from_slice(&v).unwrap();
        assert_eq!(v["id"], "k-1-1");
        assert_eq!(v["type"], "nl.vroeg.zaak.geopend.v1");
        assert_eq!(v["subject"], "k-1");
        assert_eq!(v["time"], "2026-01-01T00:00:00.000Z");
        assert_eq!(v["data"]["id"], "k-1-1");
        assert_eq!(h[0].0, "content-type");
    }

    #[test]
    fn binary_puts_attributes_in_headers() {
        let (h, v) = encode_alert(ContentMode::Binary, "urn:vroeg:test", &alert());
        let data: Value = serde_json::from_slice(&v).unwrap();
        assert_eq!(data["zaak_id"], "k-1");
        assert!(h.contains(&("ce_id".to_string(), b"k-1-1".to_vec())));
        assert!(h.contains(&("ce_type".to_string(), b"nl.vroeg.zaak.geopend.v1".to_vec())));
        assert!(h.contains(&("ce_subject".to_string(), b"k-1".to_vec())));
    }
}
