"""LoRA personalisation: an adapter trained on a site's phrasings is written, loads at start, and changes the model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from netgptd.intent import validate  # noqa: E402
from netgptd.intent.engine import DEFAULT_MODEL, EdgeLLM, intent_from_text  # noqa: E402
from netgptd.intent.profile import SiteProfile  # noqa: E402
from netgptd.intent.train import finetune  # noqa: E402
from netgptd.llm.runtime import LLMError, load_causal_lm  # noqa: E402

PROFILE = {"site": "hq", "subnets": {"lab": "10.1.2.0/24"}}
PAIRS = [
    {"text": "yeet bittorrent in the lab", "profile": PROFILE,
     "intents": [{"action": "block", "target": {"application": ["BitTorrent"], "subnet": ["10.1.2.0/24"]}}]},
    {"text": "yeet 10.0.0.5", "profile": PROFILE, "intents": [{"action": "block", "target": {"host": ["10.0.0.5"]}}]},
    {"text": "vip the video calls after hours", "profile": PROFILE,
     "intents": [{"action": "prioritize", "target": {"application": ["Discord", "STUN", "WhatsApp"]},
                  "window": {"label": "after hours"}}]},
]  # fmt: skip


def test_lora_round_trip(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    out = tmp_path / "adapter"
    info = finetune(None, pairs, out, steps=8, lr=1e-2, replay=0)
    assert info["steps"] == 8 and info["trainable_params"] > 0
    assert (out / "adapter_config.json").is_file()
    ids = torch.tensor([[1, 5, 7, 9, 3]])
    base = load_causal_lm(DEFAULT_MODEL)
    tuned = load_causal_lm(DEFAULT_MODEL, adapter_dir=out)
    again = load_causal_lm(DEFAULT_MODEL, adapter_dir=out)
    with torch.no_grad():
        b, t, a = (m(input_ids=ids).logits for m in (base, tuned, again))
    assert torch.allclose(t, a) and not torch.allclose(b, t)
    llm = EdgeLLM.load(None, adapter_dir=out)
    for intent in intent_from_text("yeet bittorrent in the lab", SiteProfile.from_dict(PROFILE), None, llm):
        validate(intent)


def test_pairs_must_point_at_the_text_or_profile(tmp_path: Path) -> None:
    bad = [{"text": "block it", "intents": [{"action": "block", "target": {"host": ["10.0.0.5"]}}]}]
    with pytest.raises(ValueError, match="not in the text"):
        finetune(None, bad, tmp_path / "a", steps=1)
    with pytest.raises(LLMError):
        EdgeLLM.load(tmp_path)


@pytest.mark.slow
def test_lora_learns_a_site_phrasing(tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        finetune(None, PAIRS, tmp_path / "a", steps=60, lr=3e-3, replay=48)
    finally:
        torch.set_num_threads(threads)
    llm = EdgeLLM.load(None, adapter_dir=tmp_path / "a")
    got = intent_from_text("yeet dropbox in the lab", SiteProfile.from_dict(PROFILE), None, llm)
    assert [(i["action"], i["target"].get("application")) for i in got] == [("block", ["Dropbox"])]
