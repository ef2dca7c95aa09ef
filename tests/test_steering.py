"""Steering (molvae.steering, molvae.steering_fit, `molvae steer`): a request's tokens chosen
among the decoder's likeliest by what the steering head predicts of the finished molecule."""

from __future__ import annotations

import math

import pytest
import torch

V, H = 12, 16  # a vocabulary and a decoder hidden size for the head alone


def _head(favoured: int, value: float):
    """A real steering head set through its last layer: for every next token it predicts the
    property at -3 (standardized), sharply, except for ``favoured``: ``value``."""
    from molvae.model import SteeringHead

    head = SteeringHead(V, H, 1, size=8)
    bias = torch.zeros(V, 1, 2)
    bias[:, 0, 0], bias[favoured, 0, 0], bias[..., 1] = -3.0, value, math.log(0.01)
    with torch.no_grad():
        head.net[-1].weight.zero_()
        head.net[-1].bias.copy_(bias.flatten())
    return head.eval()


def _adjust(head, strength: float = 10.0, alive=(0, 1)):
    from molvae.steering import Steering

    state = Steering(head, [(0, 0.5, 1.5)], strength).start(2)
    logits = torch.arange(V, dtype=torch.float32).flip(0).repeat(len(alive), 1)  # token 0 likeliest
    alive = torch.tensor(alive)
    return state.adjust(alive, torch.zeros(len(alive), dtype=torch.long), torch.zeros(len(alive), H),
                        logits), state


def test_steering_chooses_among_the_decoders_likeliest_tokens_only():
    from molvae.steering import TOP_K

    out, state = _adjust(_head(favoured=3, value=1.0))
    assert out.argmax(-1).tolist() == [3, 3]  # 4th likeliest, the one token predicted in aim
    assert torch.isinf(out[:, TOP_K:]).all() and torch.isfinite(out[:, :TOP_K]).all()
    # the head reads on from where each molecule was, rows leaving as they finish
    before = state.state.clone()
    out = state.adjust(torch.tensor([1]), torch.tensor([2]), torch.zeros(1, H), torch.zeros(1, V))
    assert out.shape == (1, V) and torch.equal(state.state[:, 0], before[:, 0])
    assert not torch.equal(state.state[:, 1], before[:, 1])
    out, _ = _adjust(_head(favoured=TOP_K + 2, value=1.0))  # not among the likeliest
    assert out.argmax(-1).tolist() == [0, 0]  # then the decoder's own choice
    out, _ = _adjust(_head(favoured=3, value=1.0), strength=0.0)
    assert out.argmax(-1).tolist() == [0, 0]


def test_request_draws_to_fit_on(cvae):
    from molvae.steering_fit import collect
    from molvae.vocab import BOS_ID, EOS_ID

    draws = collect(cvae, 1000, seed=0, workers=1)  # one job: 32 requests x 32 codes
    assert draws["names"] == ["logp", "qed"] and len(draws["z"]) > 1024 * 0.9
    assert len(draws["z"]) == len(draws["condition"]) == len(draws["tokens"]) == len(draws["values"])
    assert (draws["tokens"][:, 0] == BOS_ID).all() and (draws["tokens"] == EOS_ID).sum(1).eq(1).all()
    assert torch.isfinite(draws["values"]).all()
    assert (draws["condition"][:, 1::2] > 0).any(0).all()  # each property asked of some draws


def test_a_steered_model_steers_requests_only(steered, cvae):
    from molvae import generate

    assert steered.model_config.steering == ["logp", "qed"] and steered.sampling["condition_steer"] == 7.0
    report = steered.info["steering"]
    assert set(report["end_mae"]) == {"logp", "qed"} and report["held_out"] > 0
    ask = {"num_samples": 64, "seed": 1, "condition": {"logp": 1.0}, "condition_draws": 1}
    on = generate.sample(steered, **ask)
    off = generate.sample(steered, **ask, condition_steer=0)
    assert list(off.smiles) == list(generate.sample(cvae, **ask).smiles)  # off: the model's own
    assert list(on.smiles) != list(off.smiles)
    # prior samples are the model's own: the head steers requests only
    assert list(generate.sample(steered, num_samples=32, seed=2).smiles) == \
        list(generate.sample(cvae, num_samples=32, seed=2).smiles)
    with pytest.raises(Exception, match="has no steering head"):
        generate.sample(cvae, **ask, condition_steer=3)
    from molvae.config import ConfigError

    for bad in (True, "5", -1, 101, float("nan")):  # a strength is a number 0-100, no bool or text
        with pytest.raises(ConfigError, match="condition_steer"):
            generate.sample(steered, **ask, condition_steer=bad)


def test_a_model_that_cannot_be_steered_says_why(tiny, cvae, run_main, tmp_path):
    from molvae.errors import GenerationError
    from molvae.steering_fit import steerable

    with pytest.raises(GenerationError, match="not a conditional model"):
        steerable(tiny)
    rc, _, err = run_main("steer", "--model", tiny.path, "-o", tmp_path / "s.pt")
    assert rc == 1 and "not a conditional model" in err and not (tmp_path / "s.pt").exists()
    rc, _, err = run_main("export", cvae.path, tmp_path / "e.pt", "--condition-steer", 5)
    assert rc == 1 and "has no steering head" in err
    rc, _, err = run_main("export", tiny.path, tmp_path / "e.pt", "--condition-steer", 5)
    assert rc == 1 and "is not conditional: condition_steer" in err  # not "fit a head"
    from molvae.config import SHIPPED_MODEL

    before = SHIPPED_MODEL.stat().st_mtime_ns
    for args in (["steer", "--model", cvae.path, "-o", SHIPPED_MODEL, "-n", 1000],  # -o naming it
                 ["prior", tmp_path / "x.csv", "--model", cvae.path, "-o", SHIPPED_MODEL]):
        rc, _, err = run_main(*args)
        assert rc == 1 and "is a shipped model, not changed in place" in err, err
    assert SHIPPED_MODEL.stat().st_mtime_ns == before
    rc, _, err = run_main("sample", "--model", cvae.path, "-n", 5, "--condition", "logp=1", "--steer", 3)
    assert rc == 1 and "has no steering head" in err
    # a strength set for requests changes nothing without one, as guidance does
    rc, _, err = run_main("sample", "--model", cvae.path, "-n", 5, "--set", "generate.condition_steer=3",
                          "-o", tmp_path / "s.csv")
    assert rc == 0 and "steered" not in err


def test_the_sampler_line_says_steered_only_where_the_head_steers(steered):
    import dataclasses

    from molvae.cli.generate import sampler_text
    from molvae.generate import settings

    assert "steered at strength 7" in sampler_text(steered, settings(condition={"qed": 0.8}))
    assert "steered" not in sampler_text(steered, settings(condition={"qed": 0.8}, condition_steer=0))
    logp_only = dataclasses.replace(  # a head predicting logP alone: a QED request is not steered
        steered, model_config=steered.model_config.model_copy(update={"steering": ["logp"]}))
    assert "steered" not in sampler_text(logp_only, settings(condition={"qed": 0.8}))
    assert "steered at strength 7" in sampler_text(logp_only, settings(condition={"logp": 1}))


def test_a_steering_head_is_never_trained(tmp_path):
    from molvae.config import DataConfig, ModelConfig, TrainConfig
    from molvae.errors import TrainingError
    from molvae.train import train_model
    from tests.conftest import SHIPPED_TRAIN

    with pytest.raises(TrainingError, match="fitted after training"):
        train_model(DataConfig(path=SHIPPED_TRAIN, limit=300, cache_dir=tmp_path / "cache"),
                    ModelConfig(conditions=["logp"], steering=["logp"]),
                    TrainConfig(epochs=1, out_dir=tmp_path / "run", threads=1))


def test_a_fine_tune_from_a_steered_model_leaves_the_head_out(steered, tmp_path):
    """The head read the decoder it was fitted on; a fine-tune (train.init_from) changes that
    decoder, so the fine-tuned model has no head (and a config that leaves [model] at its
    defaults is no conflict)."""
    from molvae.checkpoint import load_model
    from molvae.config import DataConfig, ModelConfig, TrainConfig
    from molvae.train import train_model
    from tests.conftest import SHIPPED_TRAIN

    result = train_model(DataConfig(path=SHIPPED_TRAIN, limit=300, cache_dir=tmp_path / "cache"),
                         ModelConfig(), TrainConfig(epochs=1, batch_size=128, out_dir=tmp_path / "run",
                                                    recon_eval_size=10, threads=1, prior_codes=100,
                                                    init_from=steered.path))
    tuned = load_model(result.checkpoint)
    assert tuned.model.steering is None and tuned.model_config.steering == []
    assert tuned.model_config.conditions == steered.model_config.conditions
    assert not torch.equal(tuned.model.decoder.out.weight, steered.model.decoder.out.weight)


def test_the_shipped_model_steers_a_request_closer(shipped):
    """The shipped conditional model carries a steering head and uses it by default; at the
    edge of the training data its own answers (one draw each) land much closer with it
    (benchmarks/conditional.py: MAE logP at logP 0 ~0.70 -> ~0.35 over 1,000 molecules)."""
    import numpy as np

    from molvae import chem, generate

    assert shipped.model_config.steering and shipped.sampling["condition_steer"] > 0
    ask = {"num_samples": 200, "seed": 0, "condition": {"logp": 0.0}, "condition_draws": 1}

    def mae(df) -> float:
        rows = chem.score_smiles(df.smiles[df.valid].tolist(), filters=(), property_names=["logp"],
                                 workers=1)
        return float(np.mean([abs(r["logp"]) for r in rows]))

    on, off = mae(generate.sample(shipped, **ask)), mae(generate.sample(shipped, **ask, condition_steer=0))
    assert on < off - 0.15, (on, off)
