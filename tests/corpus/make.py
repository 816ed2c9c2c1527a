#!/usr/bin/env python3
"""Regenerate the malformed-signal corpus in this directory.

Each case is one message (exact bytes) in `NN-name.bin` and a line
`NN-name.bin<TAB>error_code` in `expected.tsv`. The integration tests feed
every message to the engine and, against the real broker, to `vroeg run`,
and check that each one lands on the dead-letter output with its code.

Usage: python3 tests/corpus/make.py   (rewrites the .bin files and expected.tsv)
"""
import copy
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))

ARREARS = {
    "specversion": "1.0",
    "id": "corpus-1",
    "source": "urn:vroeg:partner:zorg-0",
    "type": "nl.vroeg.signaal.betalingsachterstand.v1",
    "time": "2026-01-01T13:54:48.943Z",
    "datacontenttype": "application/json",
    "data": {
        "signaalpartner": "Zorg",
        "referentie": "ZORG-001",
        "status": "open",
        "bedrag_cent": 80501,
        "ontstaansdatum": "2025-10-27",
        "signaaldatum": "2026-01-01",
        "crisissignaal": False,
        "eindelevering": False,
        "client": {
            "voorletters": "A.B.",
            "voorvoegsel": "de",
            "achternaam": "Boer",
            "geboortedatum": "1977-08-15",
            "straatnaam": "Dorpsstraat",
            "postcode": "1000 XX",
            "huisnummer": 332,
            "huisnummertoevoeging": None,
            "plaatsnaam": "Utrecht",
            "bsn": "111222333",
        },
    },
}

ABSENCE = {
    "specversion": "1.0",
    "id": "corpus-2",
    "source": "urn:vroeg:school:duo-verzuimregister",
    "type": "nl.vroeg.signaal.verzuim.v1",
    "time": "2026-01-01T10:00:00.000Z",
    "datacontenttype": "application/json",
    "data": {
        "verzuimsoort": "ongeoorloofd",
        "uren_4_weken": 38,
        "school": "17AB",
        "leerling": {
            "geboortedatum": "2011-11-26",
            "straatnaam": "Kerkstraat",
            "postcode": "1004 RM",
            "huisnummer": 109,
            "plaatsnaam": "Utrecht",
        },
    },
}


def with_change(base, path, value, delete=False):
    """A copy of `base` with the dotted `path` set to `value` (or removed)."""
    doc = copy.deepcopy(base)
    node = doc
    keys = path.split(".")
    for k in keys[:-1]:
        node = node[k]
    if delete:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return json.dumps(doc).encode()


def a(path, value=None, delete=False):
    return with_change(ARREARS, path, value, delete)


def s(path, value=None, delete=False):
    return with_change(ABSENCE, path, value, delete)


valid = json.dumps(ARREARS).encode()
CASES = [
    # Not JSON, or not an object.
    ("empty", b"", "invalid_json"),
    ("not-json", b"{not json", "invalid_json"),
    ("truncated", valid[: len(valid) // 2], "invalid_json"),
    ("trailing-garbage", valid + b" x", "invalid_json"),
    ("invalid-utf8-in-string", valid.replace(b'"Boer"', b'"Bo\xc3\x28r"'), "invalid_utf8"),
    ("latin1-byte", valid.replace(b'"Boer"', b'"Bo\xe9r"'), "invalid_utf8"),
    ("utf16", json.dumps(ARREARS).encode("utf-16"), "invalid_utf8"),
    ("array", b"[1, 2, 3]", "not_an_object"),
    ("string", b'"signaal"', "not_an_object"),
    ("null", b"null", "not_an_object"),
    ("number", b"42", "not_an_object"),
    ("deeply-nested", b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}", "too_large"),
    ("nested-within-limit", b'{"a":' + b"[" * 5_000 + b"]" * 5_000 + b"}", "invalid_json"),
    ("one-megabyte", a("data.referentie", "x" * (1 << 20)), "too_large"),
    # The CloudEvents envelope.
    ("no-id", a("id", delete=True), "missing_field"),
    ("id-number", a("id", 17), "wrong_type"),
    ("id-empty", a("id", ""), "invalid_value"),
    ("no-source", a("source", delete=True), "missing_field"),
    ("no-specversion", a("specversion", delete=True), "missing_field"),
    ("specversion-0.3", a("specversion", "0.3"), "unsupported_specversion"),
    ("no-type", a("type", delete=True), "missing_field"),
    ("unknown-type", a("type", "nl.vroeg.signaal.onbekend.v1"), "unknown_type"),
    ("type-number", a("type", 3), "wrong_type"),
    ("content-type-xml", a("datacontenttype", "application/xml"), "unsupported_content_type"),
    ("time-not-rfc3339", a("time", "1 januari 2026"), "invalid_date"),
    ("time-future", a("time", "2099-01-01T00:00:00Z"), "future_date"),
    ("no-data", a("data", delete=True), "missing_field"),
    ("data-array", a("data", [1]), "wrong_type"),
    ("data-string", a("data", "{}"), "wrong_type"),
    # Payment arrears data.
    ("no-partner", a("data.signaalpartner", delete=True), "missing_field"),
    ("unknown-partner", a("data.signaalpartner", "Gas"), "unknown_partner"),
    ("no-amount", a("data.bedrag_cent", delete=True), "missing_field"),
    ("amount-string", a("data.bedrag_cent", "80501"), "wrong_type"),
    ("amount-float", a("data.bedrag_cent", 805.01), "wrong_type"),
    ("amount-negative", a("data.bedrag_cent", -500), "negative_amount"),
    ("amount-absurd", a("data.bedrag_cent", 10**13), "implausible_amount"),
    ("ontstaansdatum-30-feb", a("data.ontstaansdatum", "2025-02-30"), "invalid_date"),
    ("signaaldatum-words", a("data.signaaldatum", "gisteren"), "invalid_date"),
    ("signaaldatum-future", a("data.signaaldatum", "2099-06-01"), "future_date"),
    ("status-unknown", a("data.status", "half"), "invalid_value"),
    ("crisis-string", a("data.crisissignaal", "ja"), "wrong_type"),
    ("data-extra-field", a("data.notitie", "belde zelf"), "unknown_field"),
    ("no-referentie", a("data.referentie", delete=True), "missing_field"),
    # The client.
    ("no-client", a("data.client", delete=True), "missing_field"),
    ("postcode-letters-first", a("data.client.postcode", "AB 1234"), "invalid_postcode"),
    ("postcode-leading-zero", a("data.client.postcode", "0123 AB"), "invalid_postcode"),
    ("postcode-too-short", a("data.client.postcode", "123"), "invalid_postcode"),
    ("no-postcode", a("data.client.postcode", delete=True), "missing_field"),
    ("house-number-bool", a("data.client.huisnummer", True), "wrong_type"),
    ("house-number-words", a("data.client.huisnummer", "twaalf"), "invalid_value"),
    ("house-number-zero", a("data.client.huisnummer", 0), "invalid_value"),
    ("bsn-elfproef", a("data.client.bsn", "123456780"), "invalid_bsn"),
    ("bsn-eight-digits", a("data.client.bsn", "12345678"), "invalid_bsn"),
    ("bsn-letters", a("data.client.bsn", "12345678X"), "invalid_bsn"),
    ("birth-date-invalid", a("data.client.geboortedatum", "1977-13-01"), "invalid_date"),
    ("no-surname", a("data.client.achternaam", delete=True), "missing_field"),
    ("client-extra-field", a("data.client.iban", "NL00BANK0123456789"), "unknown_field"),
    # School absence data.
    ("absence-unknown-kind", s("data.verzuimsoort", "spijbelen"), "invalid_value"),
    ("absence-hours-negative", s("data.uren_4_weken", -3), "invalid_value"),
    ("absence-no-pupil", s("data.leerling", delete=True), "missing_field"),
    ("absence-postcode", s("data.leerling.postcode", "99999"), "invalid_postcode"),
]


def main():
    for name in os.listdir(HERE):
        if name.endswith(".bin"):
            os.remove(os.path.join(HERE, name))
    lines = []
    for i, (name, payload, code) in enumerate(CASES, 1):
        file = f"{i:02d}-{name}.bin"
        with open(os.path.join(HERE, file), "wb") as f:
            f.write(payload)
        lines.append(f"{file}\t{code}\n")
    with open(os.path.join(HERE, "expected.tsv"), "w") as f:
        f.write("# file<TAB>expected error code; regenerate with make.py\n")
        f.writelines(lines)
    print(f"{len(CASES)} cases")


if __name__ == "__main__":
    main()
