"""The constrained decoder: only valid prefixes, whatever the model (random untrained GPT-2s, many seeds)."""

from __future__ import annotations

import random

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from netgptd.intent.compose import realize  # noqa: E402
from netgptd.intent.decoder import constrained_decode  # noqa: E402
from netgptd.intent.lang import (N_IP, N_NET, N_PER, Context, Grammar, Vocab, parse_output,  # noqa: E402
                                 special_tokens)  # fmt: skip
from netgptd.intent.profile import SiteProfile  # noqa: E402
from netgptd.intent.schema import validate  # noqa: E402


def tiny_model(vocab: Vocab, seed: int, n_positions: int = 256):
    torch.manual_seed(seed)
    config = transformers.GPT2Config(vocab_size=len(vocab), n_positions=n_positions, n_embd=16, n_layer=1, n_head=2)
    return transformers.GPT2LMHeadModel(config).eval()


def context(n_ip: int, n_net: int, n_per: int) -> tuple[Context, SiteProfile]:
    periods = {f"p{i}": {"start": "08:00", "end": "09:00"} for i in range(n_per)}
    profile = SiteProfile(site="hq", periods=periods)
    ctx = Context([f"10.0.0.{i + 1}" for i in range(n_ip)], [(f"10.{i}.0.0/16", None) for i in range(n_net)],
                  list(periods))  # fmt: skip
    return ctx, profile


def test_grammar_allows_only_what_the_input_holds() -> None:
    vocab = Vocab()
    g = Grammar(vocab, n_ip=2, n_net=0, n_per=1)
    st = g.step(g.start(), vocab.id("act:block"))
    allowed = {vocab.tokens[i] for i in g.allowed(st)}
    assert "<ip0>" in allowed and "<ip1>" in allowed and "<ip2>" not in allowed and "<net0>" not in allowed
    assert "<eos>" not in allowed  # an intent needs a target
    st = g.step(st, vocab.id("app:TLS"))
    allowed = {vocab.tokens[i] for i in g.allowed(st)}
    assert "app:DNS" not in allowed and "app:WhatsApp" in allowed  # canonical order, no repeats
    assert "<per0>" in allowed and "<per1>" not in allowed and "<eos>" in allowed
    with pytest.raises(ValueError):
        g.step(st, vocab.id("<net0>"))
    assert not g.accepts([vocab.id("act:block"), vocab.id("<eos>")])
    assert g.accepts([vocab.id("<eos>")])


@pytest.mark.parametrize("seed", range(40))
def test_random_models_only_produce_valid_output(seed: int) -> None:
    rng = random.Random(seed)
    vocab = Vocab(["block", "the", "lab"])
    model = tiny_model(vocab, seed)
    n_ip, n_net, n_per = rng.randint(0, N_IP), rng.randint(0, N_NET), rng.randint(0, N_PER)
    grammar = Grammar(vocab, n_ip, n_net, n_per, window=rng.random() < 0.7)
    prompt = [rng.randrange(len(vocab)) for _ in range(rng.randint(1, 40))]
    temperature = rng.choice([0.0, 1.0, 3.0])
    out = constrained_decode(model, prompt, grammar, temperature=temperature, seed=seed)
    # every prefix was allowed at its step, and the whole is accepted
    st = grammar.start()
    for tok in out.ids:
        assert tok in grammar.allowed(st)
        st = grammar.step(st, tok)
    assert grammar.accepts(out.ids)
    names = [vocab.tokens[i] for i in out.ids]
    assert all(int(t[3:-1]) < n_ip for t in names if t.startswith("<ip"))
    assert all(int(t[4:-1]) < n_net for t in names if t.startswith("<net"))
    ctx, profile = context(n_ip, n_net, n_per)
    confs = out.intent_confidences(vocab.id(";"), vocab.id("<eos>"))
    raws = parse_output(vocab, out.ids)
    assert len(confs) == len(raws) <= grammar.max_intents
    for raw, conf in zip(raws, confs):
        validate(realize(raw, ctx, profile, "operator", conf))


def test_decoder_closes_output_when_positions_run_out() -> None:
    vocab = Vocab()
    model = tiny_model(vocab, 0, n_positions=12)
    grammar = Grammar(vocab, 8, 8, 0)
    out = constrained_decode(model, list(range(6, 16)), grammar, temperature=5.0, seed=1)
    assert grammar.accepts(out.ids)


def test_vocabulary_layout_is_stable() -> None:
    tokens = special_tokens()
    assert tokens.index("grp:conferencing") < tokens.index("app:BitTorrent") < tokens.index("<ip0>") < tokens.index("<net0>")
    v = Vocab(["zzz"])
    assert v.word_id("zzz") == v.id("zzz")
    assert v.tokens[v.word_id("ignore")].startswith("<unk") and v.word_id("act:block") != v.id("act:block")
