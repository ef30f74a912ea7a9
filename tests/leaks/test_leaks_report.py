"""Report formats: SARIF validated against the OASIS 2.1.0 schema, JSON, text, fingerprints."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest

from gpuaot.leaks import format_text, scan_paths
from gpuaot.leaks.report import fingerprint, format_json, format_sarif

SCHEMA = Path(__file__).parent / "data" / "sarif-schema-2.1.0.json"


@pytest.fixture(scope="module")
def validator():
    schema = json.loads(SCHEMA.read_text())
    assert schema["id"].endswith("/sarif-schema-2.1.0.json")
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema, format_checker=jsonschema.FormatChecker())


@pytest.fixture
def mixed(corpus, tmp_path):
    bad = tmp_path / "truncated.so"
    bad.write_bytes(corpus["libkernel_host.so"].read_bytes()[:300])
    paths = [
        corpus["kernel_host.o"],
        corpus["libkernel_host.so"],
        bad,
        corpus["leaky-0.1-cp311-cp311-linux_x86_64.whl"],
        corpus["libclean.so"],
    ]
    return scan_paths([str(p) for p in paths], undefined=True)


def test_sarif_validates_against_the_official_schema(validator, mixed):
    doc = json.loads(format_sarif(mixed))
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
    assert errors == [], [e.message for e in errors[:5]]
    run = doc["runs"][0]
    assert len(run["results"]) == len(mixed.findings)
    assert run["invocations"][0]["executionSuccessful"] is False  # one input was unreadable
    assert run["invocations"][0]["toolExecutionNotifications"][0]["level"] == "error"
    # jsonschema checks "uri-reference" only with optional packages; check RFC 3986's alphabet.
    uri_chars = re.compile(r"^[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+$")
    uris = [
        loc["physicalLocation"]["artifactLocation"]["uri"]
        for res in run["results"]
        for loc in res["locations"] + res.get("relatedLocations", [])
    ]
    assert uris and all(uri_chars.match(u) for u in uris), uris
    rule_ids = [r["id"] for r in run["tool"]["driver"]["rules"]]
    for res in run["results"]:
        assert rule_ids[res["ruleIndex"]] == res["ruleId"]
        assert res["locations"][0]["physicalLocation"]["region"]["startLine"] >= 1


def test_sarif_of_a_clean_run_validates(validator, corpus):
    doc = json.loads(format_sarif(scan_paths([str(corpus["libclean.so"])])))
    assert list(validator.iter_errors(doc)) == []
    assert doc["runs"][0]["results"] == []


def test_sarif_rejects_what_the_schema_rejects(validator, mixed):
    """The validator is not vacuous: a broken log fails it."""
    doc = json.loads(format_sarif(mixed))
    doc["runs"][0]["results"][0]["level"] = "catastrophic"
    assert list(validator.iter_errors(doc))


def test_partial_fingerprints_are_stable_and_distinct(mixed, corpus):
    doc = json.loads(format_sarif(mixed))
    prints = [r["partialFingerprints"]["gpuaotLeak/v1"] for r in doc["runs"][0]["results"]]
    assert len(set(prints)) == len(prints)
    again = scan_paths([str(corpus["kernel_host.o"])])
    assert fingerprint(again.findings[0]) == fingerprint(
        next(f for f in mixed.findings if f.file == str(corpus["kernel_host.o"]))
    )


def test_sarif_related_locations_from_dwarf(corpus):
    doc = json.loads(format_sarif(scan_paths([str(corpus["kernel_host.o"])])))
    res = doc["runs"][0]["results"][0]
    related = res["relatedLocations"][0]["physicalLocation"]
    assert related["artifactLocation"]["uri"] == "kernel_host.c"
    assert related["region"]["startLine"] > 1


def test_json_lists_errors_with_offsets(mixed):
    doc = json.loads(format_json(mixed))
    assert doc["version"] == 1
    (err,) = doc["errors"]
    assert err["file"].endswith("truncated.so") and err["offset"] is not None
    assert doc["summary"]["exit_code"] == 3
    member = [f for f in doc["findings"] if f["member"] == "pkg/_kernels.so"]
    assert member and all(f["path"].endswith(".whl") for f in member)


def test_format_text_api(mixed):
    text = format_text(mixed)
    assert "truncated.so" in text and "error:" in text
    assert text.splitlines()[-1].endswith("1 input could not be read.")
