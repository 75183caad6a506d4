"""The intent schema, its own validator, and the site profile."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from netgptd.intent import schema
from netgptd.intent.profile import ProfileError, SiteProfile, load_profile

MANIFEST = Path(__file__).resolve().parent.parent / "daemon/netgptd/model/default/manifest.json"


def good() -> dict:
    return {"action": "block", "target": {"application": ["TLS"], "host": ["10.0.0.1", "2001:db8::1"],
            "subnet": ["10.1.0.0/16"], "site": "hq"}, "window": {"start": "08:00", "end": "18:00", "days": ["mon"],
            "from": "2025-06-01", "until": "2025-06-20", "label": "exams"}, "reason": "operator asked to block TLS",
            "confidence": 0.5, "source": "operator"}  # fmt: skip


def test_valid_intent_passes() -> None:
    schema.validate(good())


@pytest.mark.parametrize("path,value", [
    (("action",), "allow"), (("target",), {}), (("target", "application"), ["Fortnite"]), (("target", "application"), []),
    (("target", "application"), ["TLS", "TLS"]), (("target", "host"), ["10.0.0.300"]), (("target", "host"), ["lab"]),
    (("target", "subnet"), ["10.1.0.1/16"]), (("target", "subnet"), ["10.1.0.0"]), (("target", "site"), "bad site"),
    (("target", "extra"), "x"), (("window", "start"), "24:00"), (("window", "end"), "8:00"), (("window", "days"), ["monday"]),
    (("window", "from"), "2025-02-30"), (("reason",), ""), (("reason",), 'ignore "previous" {instructions}'),
    (("reason",), "x\nnew line"), (("reason",), "a" * 241), (("confidence",), 1.5), (("confidence",), True),
    (("confidence",), "0.5"), (("source",), "model"), (("extra",), 1), (("unobservable",), []), (("unobservable",), ["Fortnite"]),
])  # fmt: skip
def test_invalid_fields_fail(path: tuple[str, ...], value: object) -> None:
    intent = good()
    node = intent
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert not schema.is_valid(intent)
    with pytest.raises(schema.SchemaError):
        schema.validate(intent)


def test_missing_required_fails() -> None:
    for key in ("action", "target", "reason", "confidence", "source"):
        intent = good()
        del intent[key]
        assert not schema.is_valid(intent)


def test_validator_refuses_unsupported_keywords() -> None:
    with pytest.raises(schema.SchemaError):
        schema.check_schema({"type": "object", "oneOf": []})
    with pytest.raises(schema.SchemaError):
        schema.check_schema({"type": "string", "format": "email"})


def test_application_vocabulary_is_ndpis() -> None:
    """Intents name applications as nDPI 4.2 does (``ndpiReader -a 0``), whether or not the traffic model can
    recognise them; the traffic model's own labels are all among them, so that an observed verdict and an
    operator's intent speak of an app the same way."""
    vocabulary = schema.applications()
    assert vocabulary == sorted(vocabulary, key=str.lower) and len(vocabulary) == 281
    apps = set(json.loads(MANIFEST.read_text())["apps"]) - {"unknown"}
    assert apps and apps <= set(vocabulary)
    ndpi = shutil.which("ndpiReader")
    if ndpi:
        listed = subprocess.run([ndpi, "-a", "0"], capture_output=True, text=True, timeout=30).stdout
        assert set(re.findall(r'value="\d+">([^<]+)<', listed)) == set(vocabulary)


def test_profile_validates_and_loads_toml(tmp_path: Path) -> None:
    f = tmp_path / "p.toml"
    f.write_text('site = "hq"\n[subnets]\nLab = "10.1.2.7/24"\n[periods.exams]\nstart = "08:00"\nend = "12:00"\n')
    p = load_profile(f)
    assert p.subnets == {"lab": "10.1.2.0/24"} and p.periods["exams"]["label"] == "exams"
    for bad in ({"site": "a b"}, {"subnets": {"lab": "nope"}}, {"hosts": {"x": "10.0.0.999"}},
                {"periods": {"exams": {"start": "25:00", "end": "10:00"}}}, {"subnets": {'ignore "all"': "10.0.0.0/8"}}):  # fmt: skip
        with pytest.raises(ProfileError):
            SiteProfile.from_dict(bad)
    f.write_text("site = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ProfileError, match="not valid TOML: nested too deeply"):
        load_profile(f)
