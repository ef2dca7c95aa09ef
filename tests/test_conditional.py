"""The conditional model (CVAE): conditions in, requests checked, codes picked, outputs shaped."""

import re

import numpy as np
import pandas as pd
import pytest
import torch

from molvae.conditions import ConditionSpace, hits, parse_targets, summary
from molvae.errors import GenerationError

CONDITIONS = ["logp", "qed"]


def test_step_zero_of_a_conditional_fine_tune_is_the_unconditional_model(tiny):
    from molvae.config import ModelConfig
    from molvae.model import build_model, load_widened

    cfg = ModelConfig.model_validate({**tiny.model_config.model_dump(), "conditions": CONDITIONS})
    wide = build_model(cfg, len(tiny.vocab)).eval()
    load_widened(wide, tiny.model.state_dict())
    tokens = torch.randint(3, len(tiny.vocab), (4, 12))
    lengths = torch.tensor([12, 10, 7, 12])
    condition = torch.randn(4, 2 * len(CONDITIONS))
    with torch.no_grad():
        mu0, lv0 = tiny.model.encode(tokens, lengths)
        mu1, lv1 = wide.encode(tokens, lengths, condition)
        torch.testing.assert_close(mu0, mu1)
        torch.testing.assert_close(lv0, lv1)
        torch.testing.assert_close(tiny.model.decoder(mu0, tokens),
                                   wide.decoder(mu0, tokens, condition))
    bad = {k: v for k, v in tiny.model.state_dict().items()}
    bad["decoder.out.weight"] = bad["decoder.out.weight"][:5]
    with pytest.raises(ValueError, match="decoder.out.weight"):
        load_widened(wide, bad)


def test_the_checkpoint_stores_conditions_and_the_codes_values(cvae, tmp_path):
    from molvae.checkpoint import export_model, load_model, read_checkpoint

    space = cvae.conditions
    assert space.names == tuple(CONDITIONS) and space.size == 4
    assert all(lo < m < hi for lo, m, hi in zip(space.low, space.mean, space.high, strict=True))
    props = cvae.prior["properties"]
    assert props.shape == (len(cvae.prior["mu"]), 2)
    assert 0 < float(props[:, 1].min()) and float(props[:, 1].max()) <= 1  # QED values
    small = export_model(cvae.path, tmp_path / "small.pt", half=True, codes_8bit=True,
                         max_codes=100)
    again = load_model(small)
    assert again.conditions == space and again.prior["properties"].shape == (100, 2)
    state = read_checkpoint(small)
    state["conditions"]["names"] = ["logp"]
    torch.save(state, tmp_path / "broken.pt")
    with pytest.raises(ValueError, match="incompatible checkpoint"):
        load_model(tmp_path / "broken.pt")


def test_requests_are_parsed_and_checked_with_one_clear_error(cvae):
    assert parse_targets(["logp=2.5", "TPSA = 40:90"]) == {"logp": 2.5, "tpsa": (40.0, 90.0)}
    assert parse_targets("logp=-1:0.5 qed=0.8") == {"logp": (-1.0, 0.5), "qed": 0.8}
    for bad, match in [("logp", "NAME=VALUE"), ("logp=abc", "not a number"),
                       ("logp=1:x", "not a number"), ("=3", "NAME=VALUE")]:
        with pytest.raises(GenerationError, match=match):
            parse_targets([bad])
    with pytest.raises(GenerationError, match="given twice"):
        parse_targets(["logp=1", "logp=2"])
    space = cvae.conditions
    assert space.check({"logp": 2.0, "qed": (0.6, 0.8)}) == {"logp": (2.0, 2.0), "qed": (0.6, 0.8)}
    # a range reaching past the covered one is cut to it; one wholly outside is refused
    assert space.check({"logp": (2.0, 50.0)}) == {"logp": (2.0, space.high[0])}
    # names in any case, as --condition reads them; the same property twice is refused
    assert space.check({"LogP": 2.0}) == {"logp": (2.0, 2.0)}
    measured = ConditionSpace.fit(["pIC50"], {"pIC50": np.array([5.0, 6.0, 7.5])})
    assert measured.check(parse_targets(["pIC50=6"])) == {"pIC50": (6.0, 6.0)}  # read as pic50
    with pytest.raises(GenerationError, match="logp given twice"):
        space.check({"logp": 1.0, "LOGP": 2.0})
    # the covered range a refusal names is itself accepted (its bounds rounded inwards)
    with pytest.raises(GenerationError, match="outside") as refused:
        space.check({"logp": 40})
    low, high = map(float, re.search(r"\((\S+) to (\S+), its", str(refused.value)).groups())
    assert space.check({"logp": low}) and space.check({"logp": high})
    assert low - space.low[0] < 1e-2 and space.high[0] - high < 1e-2
    for bad, match in [({"mw": 300}, "unknown condition 'mw'.*logp, qed"),
                       ({"logp": 40}, "outside what the training data covers"),
                       ({"logp": (3, 1)}, "low <= high"),
                       ({"logp": float("nan")}, "finite"),
                       ({"qed": (1.5, 1.7)}, "outside")]:
        with pytest.raises(GenerationError, match=match):
            space.check(bad)


def test_condition_dropout_flags_what_is_given():
    space = ConditionSpace.fit(["a", "b"], {"a": np.array([0.0, 2.0, 4.0]),
                                            "b": np.array([1.0, 1.0, 3.0])})
    values = {"a": np.array([4.0, np.nan, 0.0, 2.0]), "b": np.array([1.0, 3.0, np.nan, 1.0])}
    idx = np.arange(4)
    gen = torch.Generator().manual_seed(0)
    full = space.training_vector(values, idx, 0.0, 0.0, gen)
    assert full[:, 1].tolist() == [1, 0, 1, 1] and full[:, 3].tolist() == [1, 1, 0, 1]
    assert full[0, 0] == pytest.approx((4 - 2) / np.std([0, 2, 4]))
    assert full[1, 0] == 0 and full[2, 2] == 0  # a missing value is neither given nor leaked
    assert not space.training_vector(values, idx, 1.0, 0.0, gen).any()
    many = space.training_vector({"a": np.ones(4000), "b": np.ones(4000)}, np.arange(4000),
                                 0.2, 0.3, gen)
    given = many[:, 1::2]
    assert 0.15 < float((given.sum(1) == 0).float().mean()) < 0.30  # 0.2 + 0.8 * 0.09
    assert 0.50 < float(given.mean()) < 0.62  # 0.8 * 0.7


def test_codes_are_weighted_towards_the_request():
    from molvae.latent import code_weights

    space = ConditionSpace.fit(["logp"], {"logp": np.linspace(0, 4, 101)})
    props = torch.tensor([[0.0], [2.0], [2.5], [3.0], [4.0]])
    w = code_weights(space, props, {"logp": (2.0, 2.5)})
    assert w[1] == w[2] == 1.0 and w[3] < 0.2 and w[0] < 1e-6 and w[4] < 1e-6


def test_conditional_sampling_records_what_was_asked_and_steers_the_codes(cvae):
    from molvae.generate import sample

    lo, hi = 2.0, 3.0
    df = sample(cvae, num_samples=300, seed=1, condition={"logp": (lo, hi), "qed": 0.8})
    assert (df.source == "conditional").all() and len(df) == 300
    assert df.target_logp.between(lo, hi).all() and (df.target_qed == 0.8).all()
    again = sample(cvae, num_samples=300, seed=1, condition={"logp": (lo, hi), "qed": 0.8})
    pd.testing.assert_frame_equal(df, again)
    # the codes drawn are those of training molecules near the request
    from molvae.latent import LatentPrior

    prior = LatentPrior(cvae, "posterior", torch.Generator().manual_seed(0),
                        targets={"logp": (lo, hi)})
    prior(400)
    picked = cvae.prior["properties"][prior.last, 0].numpy()
    everyone = cvae.prior["properties"][:, 0].numpy()
    assert np.mean((picked > lo - 0.3) & (picked < hi + 0.3)) > 0.95
    assert np.mean((everyone > lo - 0.3) & (everyone < hi + 0.3)) < 0.8
    plain = sample(cvae, num_samples=50, seed=1)
    assert "target_logp" not in plain and (plain.source == "prior").all()
    assert plain.equals(sample(cvae, num_samples=50, seed=1, condition=None))  # None: no request


def test_a_request_keeps_the_nearest_of_its_draws(cvae):
    """generate.condition_draws = k: of each k molecules decoded in a row (those the model
    alone writes for k x n), the one nearest the request by its RDKit properties among the
    new hits (within tolerance; not a training molecule, not kept before), else the hits,
    else the new ones, else all."""
    from molvae.chem import score_smiles
    from molvae.conditions import distance
    from molvae.generate import sample, settings, uses_draws

    ask = {"logp": 2.5, "qed": (0.4, 0.9)}
    alone = sample(cvae, num_samples=90, seed=2, condition=ask, condition_draws=1, workers=1)
    counts: list[int] = []
    best = sample(cvae, num_samples=30, seed=2, condition=ask, condition_draws=3, workers=1,
                  progress=counts.append)
    rows = score_smiles(alone.smiles.tolist(), filters=(), property_names=list(ask), workers=1)
    values = {k: np.array([r.get(k, np.nan) for r in rows]) for k in ask}
    ranges = cvae.conditions.check(ask)
    d, hit = distance(ranges, values, cvae.conditions), hits(ranges, values)
    novel = cvae.is_novel(alone.smiles.tolist())
    kept: set[str] = set()
    pick = []
    for g in range(30):
        pick.append(min(range(3 * g, 3 * g + 3), key=lambda i: (
            not hit[i], not novel[i] or alone.smiles[i] in kept, d[i])))
        kept.add(alone.smiles[pick[-1]])
    assert best.smiles.tolist() == alone.smiles.iloc[pick].tolist() and sum(counts) == 30
    assert best.target_logp.tolist() == alone.target_logp.iloc[pick].tolist()
    assert 0 < hit.mean() < hit[pick].mean() and best.valid.all()
    # runs of two (logP asked 2.5, a hit within 0.5): the nearest hit; a new hit before one
    # kept already and before a training molecule; else the nearest; an invalid one last
    from molvae.chem import canonical_smiles
    from molvae.generate import _closest

    known = canonical_smiles("Cc1cc(Cc2cnc(N)nc2N)c2cccnc2c1N(C)C")  # logP 2.15, trained on
    assert not cvae.is_novel([known])[0]
    runs = [("CCCCCC", "CNC(=O)Oc1ccccc1C(=O)Nc1ccccc1"),  # logP 2.59 / 2.66
            ("CCCCCC", "CC(C)CCCC"),  # hexane kept already / 2.83
            (known, "CCCCCCC"),  # 2.15 known / 2.98
            ("CCCCCCCCCCCCCCCC", "c1ccccc1O"),  # 6.49 / 1.39: no hit
            ("", "CCO")]
    pairs = [("", canonical_smiles(smi) if smi else "") for run in runs for smi in run]
    assert _closest(cvae, pairs, {"logp": (2.5, 2.5)}, 2, 1).tolist() == [0, 3, 5, 7, 9]
    # the default: 4 for RDKit properties; a data column cannot be computed for a molecule
    assert uses_draws(settings(), {"logp": (2.0, 3.0)}) == 4
    assert uses_draws(settings(), {"pic50": (6.0, 6.0)}) == 1 == uses_draws(settings(), {})
    with pytest.raises(GenerationError, match="pic50 is a data column"):
        uses_draws(settings(condition_draws=2), {"logp": (2.0, 3.0), "pic50": (6.0, 6.0)})


def test_a_request_is_refined_only_when_asked_and_with_its_condition(cvae, tmp_path):
    """The model's stored refinement applies to unconditional samples; a request samples
    unrefined unless generate.refine says otherwise, and then the encoder and decoder of
    each pass are told the request."""
    from molvae.checkpoint import export_model, load_model
    from molvae.generate import refine, sample, settings

    stored = load_model(export_model(cvae.path, tmp_path / "refining.pt", sampling={"refine": 2}))
    kw = {"num_samples": 120, "seed": 4, "workers": 1, "condition_draws": 1}  # the model alone
    assert sample(stored, **kw).smiles.tolist() == sample(cvae, refine=2, **kw).smiles.tolist()
    ask = {"logp": (1.0, 2.0)}
    raw = sample(stored, condition=ask, **kw)
    assert raw.smiles.tolist() == sample(cvae, condition=ask, **kw).smiles.tolist()
    once = sample(stored, condition=ask, refine=1, **kw)
    cond = cvae.conditions.vector({"logp": raw.target_logp.to_numpy()}, len(raw))
    cfg = settings(num_samples=120)
    want = refine(cvae, list(zip(raw.selfies, raw.smiles, strict=True)), cfg, 1, 0, cond)
    assert once.smiles.tolist() == [smi for _, smi in want]
    # the request reaches the encoder of a pass: it moves the codes
    from molvae.latent import device_of, encode_batches
    from molvae.vocab import tokenize_smiles

    batch = tokenize_smiles(cvae.vocab, ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1"])
    told = encode_batches(cvae.model, batch.tokens, batch.lengths, 3, device_of(cvae), cond[:3])
    plain = encode_batches(cvae.model, batch.tokens, batch.lengths, 3, device_of(cvae))
    assert not torch.allclose(told[0], plain[0])


def test_a_models_stored_request_sampler_applies_to_requests_only(cvae, tiny_trained, tmp_path,
                                                                  capsys):
    """``molvae export --condition-width W --condition-guidance G``: requests sample with W
    and G unless the config sets them; unconditional sampling does not change."""
    from molvae.checkpoint import export_model, load_model
    from molvae.cli import main
    from molvae.generate import sample

    dest = tmp_path / "asking.pt"
    assert main(["export", str(cvae.path), str(dest), "--condition-width", "0.5",
                 "--condition-guidance", "3"]) == 0
    stored = load_model(dest)
    assert stored.sampling == {"condition_width": 0.5, "condition_guidance": 3.0}
    kw = {"num_samples": 60, "seed": 2, "workers": 1}
    ask = {"logp": (1.0, 2.0)}
    got = sample(stored, condition=ask, **kw).smiles.tolist()
    assert got == sample(cvae, condition=ask, prior_width=0.5, condition_guidance=3,
                         **kw).smiles.tolist()
    assert got != sample(cvae, condition=ask, **kw).smiles.tolist()
    assert sample(stored, condition=ask, prior_width=1.0, condition_guidance=1,
                  **kw).smiles.tolist() == sample(cvae, condition=ask, prior_width=1.0,
                                                  **kw).smiles.tolist()
    assert sample(stored, **kw).smiles.tolist() == sample(cvae, **kw).smiles.tolist()
    from molvae.cli.generate import sampler_text
    from molvae.generate import settings

    assert sampler_text(stored, settings(condition=ask)).endswith(
        "guidance 3, the nearest of 4 decoded molecules by RDKit properties")
    assert "stored codes at width 0.5," in sampler_text(stored, settings(condition=ask))
    assert "0.5" not in sampler_text(stored, settings()) and "guidance" not in sampler_text(
        stored, settings())
    for bad in ({"condition_width": 0}, {"condition_guidance": 25}, {"refine": 11}, {"beam": 2}):
        with pytest.raises(ValueError, match="bad sampling defaults"):
            export_model(cvae.path, tmp_path / "bad.pt", sampling=bad)
    assert not (tmp_path / "bad.pt").exists()
    for flag in (["--condition-width", "0"], ["--condition-guidance", "21"]):
        assert main(["export", str(cvae.path), str(tmp_path / "bad.pt"), *flag]) == 1
    capsys.readouterr()
    unconditional = str(tiny_trained[1].checkpoint)
    assert main(["export", unconditional, str(tmp_path / "u.pt"), "--condition-steer", "0"]) == 1
    assert "is not conditional: condition_steer:" in capsys.readouterr().err  # the option given
    assert main(["export", unconditional, str(tmp_path / "u.pt"), "--condition-guidance", "2"]) == 1
    assert "is not conditional" in capsys.readouterr().err and not (tmp_path / "u.pt").exists()
    from molvae.errors import CheckpointError

    with pytest.raises(CheckpointError, match="is not conditional"):  # the Python API too
        export_model(unconditional, tmp_path / "u.pt", sampling={"condition_width": 1.0})


def test_conditional_requests_fail_in_one_line(cvae, tiny):
    from molvae.generate import sample

    with pytest.raises(GenerationError, match="not a conditional model"):
        sample(tiny, num_samples=5, condition={"logp": 2.0})
    with pytest.raises(GenerationError, match="unknown condition 'tpsa'"):
        sample(cvae, num_samples=5, condition={"tpsa": 60})
    with pytest.raises(GenerationError, match="outside"):
        sample(cvae, num_samples=5, condition={"logp": -30})
    with pytest.raises(GenerationError, match="carry no property values"):
        sample(_without_code_values(cvae), num_samples=5, condition={"logp": 2.0})
    out = sample(_without_code_values(cvae), num_samples=20, condition={"logp": (1.0, 2.0)},
                 condition_codes=False)
    assert out.target_logp.between(1.0, 2.0).all() and out.target_logp.nunique() > 1


def _without_code_values(loaded):
    import dataclasses

    return dataclasses.replace(loaded, prior={k: v for k, v in loaded.prior.items()
                                              if k != "properties"})


def test_hits_count_molecules_within_tolerance_of_every_request():
    got = hits({"logp": (2.0, 2.0), "qed": (0.7, 0.9)},
               {"logp": np.array([2.4, 2.6, 2.0, np.nan]), "qed": np.array([0.8, 0.8, 0.6, 0.8])})
    assert got.tolist() == [True, False, False, False]
    with pytest.raises(GenerationError):
        hits({}, {})


def test_sample_with_a_condition_from_the_command_line(cvae, tmp_path, monkeypatch, capsys):
    from molvae.cli import main

    monkeypatch.setenv("MOLVAE_NO_PROGRESS", "1")
    out = tmp_path / "c.csv"
    rc = main(["sample", "-n", "40", "--model", str(cvae.path), "--condition", "logp=1.5:3",
               "--condition", "qed=0.8", "--guidance", "2", "-o", str(out)])  # flags add up
    text, err = capsys.readouterr()
    assert rc == 0 and "logp asked 1.5:3: achieved mean" in text and "MAE" in text
    assert "qed asked 0.8" in text and "range cut" not in err
    rc = main(["sample", "-n", "5", "--model", str(cvae.path), "--condition", "logp=1.5:99",
               "-o", str(tmp_path / "cut.csv")])
    assert rc == 0 and "note: logp range cut to 1.5:" in capsys.readouterr().err  # said, not silent
    assert "novel hits (not training molecules)" in text
    assert "sampler: stored codes at width " in err and err.count("guidance 2") == 1, err
    df = pd.read_csv(out)
    assert len(df) == 40 and df.target_logp.between(1.5, 3).all() and "logp" in df
    for args, msg in [(["--condition", "tpsa=60"], "unknown condition 'tpsa'"),
                      (["--condition", "logp=99"], "outside what the training data covers"),
                      (["--set", "generate.condition={logp = [3, 1]}"], "low <= high"),
                      (["--condition", "logp=nan"], "generate.condition: logp: want a finite "
                       "number or a [low, high] pair of them, got nan"),
                      (["--set", "generate.condition={logp = [1, 2, 3]}"], "got [1, 2, 3]")]:
        rc = main(["sample", "-n", "5", "--model", str(cvae.path), "-o", str(out), *args])
        err = capsys.readouterr().err
        assert rc == 1 and msg in err and "Traceback" not in err, err
    # a request from the config takes --draws and --guidance as --condition does
    rc = main(["sample", "-n", "5", "--model", str(cvae.path), "-o", str(out), "--set",
               "generate.condition={LogP = 2}", "--draws", "2", "--guidance", "1.5"])
    text, err = capsys.readouterr()
    assert rc == 0 and "logp asked 2:" in text and "the nearest of 2 decoded" in err, err
    rc = main(["sample", "-n", "5", "--model", str(cvae.path), "-o", str(out), "--draws", "2"])
    assert rc == 1 and "--draws goes with --condition" in capsys.readouterr().err


def test_prior_codes_of_a_conditional_model_carry_their_values(cvae, test_smiles, tmp_path):
    from molvae import chem
    from molvae.checkpoint import load_model, store_prior
    from molvae.latent import fit_prior

    prior = fit_prior(cvae, test_smiles[:300], n=200, seed=0)
    assert prior["properties"].shape == (200, 2)
    path = store_prior(cvae.path, prior, tmp_path / "p.pt")
    again = load_model(path)
    assert again.prior["properties"].shape == (200, 2)
    # the values are those of the molecules whose codes they are: the first code's logP
    # matches one of the molecules' logP
    logps = {round(r["logp"], 3) for r in chem.score_smiles(test_smiles[:300], filters=(),
                                                           property_names=["logp"])}
    assert round(float(again.prior["properties"][0, 0]), 3) in logps


def test_a_fine_tune_on_part_of_the_data_shares_the_base_models_hashes(tiny_trained, cvae,
                                                                       tmp_path, capsys):
    from molvae.checkpoint import load_model, read_checkpoint, save_checkpoint
    from molvae.cli import main
    from molvae.errors import CheckpointError

    models = tmp_path / "models"
    assert main(["export", str(tiny_trained[1].checkpoint), str(models / "base.pt"),
                 "--hashes-apart"]) == 0
    assert main(["export", str(cvae.path), str(models / "cvae.pt"), "--half",
                 "--hashes-of", str(models / "base.pt")]) == 0
    assert "and 0 more of this model's own" in capsys.readouterr().out
    assert len(list(models.glob("train_hashes_*.npy"))) == 1
    assert (load_model(models / "cvae.pt").train_hashes == cvae.train_hashes).all()
    # a model trained on molecules the base never saw keeps just those inline
    from molvae.checkpoint import share_hashes

    state = read_checkpoint(cvae.path)
    state["train_hashes"] = torch.cat([state["train_hashes"], torch.tensor([12345])]).sort().values
    save_checkpoint(models / "other.pt", state)
    assert share_hashes(models / "other.pt", models / "base.pt")["extra"] == 1
    kept = torch.load(models / "other.pt", weights_only=True)["train_hashes"]
    assert kept.tolist() == [12345]
    assert (load_model(models / "other.pt").train_hashes
            == np.union1d(cvae.train_hashes, [12345])).all()
    copy = tmp_path / "copy.pt"  # copied without the shared file: novelty unknown, not
    copy.write_bytes((models / "other.pt").read_bytes())  # judged by the inline part alone
    assert load_model(copy).train_hashes is None
    del state["train_hashes"]
    save_checkpoint(models / "none.pt", state)
    with pytest.raises(CheckpointError, match="no training-set hashes"):
        share_hashes(models / "none.pt", models / "base.pt")
    assert main(["export", str(cvae.path), str(models / "x.pt"), "--hashes-apart",
                 "--hashes-of", str(models / "base.pt")]) == 1
    capsys.readouterr()
    # refused before anything is written: not beside the hashes file, a missing one, itself
    for dest, of, msg in [(tmp_path / "elsewhere.pt", models / "base.pt", "write the export beside it"),
                          (models / "y.pt", models / "missing.pt", "no such file"),
                          (models / "cvae.pt", None, "would replace its own source")]:
        src = models / "cvae.pt" if of is None else cvae.path
        assert main(["export", str(src), str(dest), *(["--hashes-of", str(of)] if of else [])]) == 1
        assert msg in capsys.readouterr().err and (dest == src or not dest.exists())


def test_guidance_pushes_each_token_away_from_the_unconditional_choice(cvae):
    """Classifier-free guidance: the first token is the argmax of
    log p_u + s (log p_c - log p_u), computed here by hand from two plain decoder calls."""
    dec = cvae.model.decoder
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(64, cvae.model.latent_size, generator=gen)
    cond = cvae.conditions.vector({"logp": np.linspace(-1, 4, 64)}, 64)
    with torch.no_grad():
        first = torch.full((64, 1), 1)  # <bos>
        def first_logp(c):
            return torch.log_softmax(dec(z, torch.cat([first, first], 1), c)[:, 0], -1)
        lp_c, lp_u = first_logp(cond), first_logp(None)
        picks = {}
        for s in (1.0, 8.0):
            want = lp_u + s * (lp_c - lp_u)
            want[:, :3] = -float("inf")  # <pad>, <bos>, <eos> are never first
            got = dec.generate(z, max_length=1, temperature=0.0, condition=cond, guidance=s)
            assert torch.equal(got[:, 0], want.argmax(-1))
            picks[s] = got[:, 0]
        assert not torch.equal(picks[1.0], picks[8.0])  # guidance changed some choices
        plain = dec.generate(z, max_length=20, temperature=0.0, condition=cond)
        assert torch.equal(plain, dec.generate(z, max_length=20, temperature=0.0, condition=cond,
                                               guidance=1.0))
        long = dec.generate(z, max_length=30, temperature=0.0, condition=cond, guidance=4.0)
        assert long.shape == (64, 30)


def test_a_conditional_model_reconstructs_from_the_code_and_the_molecules_own_properties(
        cvae, shipped, test_smiles, tmp_path, capsys):
    """A CVAE reconstructs x from its code and c(x): reconstruct gives the encoder and the
    decoder each molecule's own logP and QED (nothing given for one RDKit cannot read);
    ``code_only`` decodes as an unconditional model would. The shipped model reconstructs
    more molecules exactly so."""
    from molvae import chem
    from molvae.cli import main
    from molvae.generate import decode_latent, reconstruct
    from molvae.latent import device_of, encode_batches, own_condition
    from molvae.vocab import tokenize_smiles

    smiles = [*test_smiles[:40], "C1CC("]
    batch = tokenize_smiles(cvae.vocab, smiles, strict=False)
    own = own_condition(cvae, batch.canonical)
    rows = chem.score_smiles(test_smiles[:40], filters=(), property_names=CONDITIONS)
    want = cvae.conditions.vector({k: np.array([r[k] for r in rows] + [0.0]) for k in CONDITIONS},
                                  len(smiles))
    want[-1] = 0.0  # the unreadable molecule: no value given, flags 0
    torch.testing.assert_close(own, want)

    def decoded(cond):
        mu, _ = encode_batches(cvae.model, batch.tokens, batch.lengths, 64, device_of(cvae), cond)
        return [smi if ok else "" for (_, smi), ok in
                zip(decode_latent(cvae, mu, condition=cond), batch.ok, strict=True)]

    told, alone = reconstruct(cvae, smiles), reconstruct(cvae, smiles, code_only=True)
    assert told.reconstructed.tolist() == decoded(own) and told.attrs["own_condition"]
    assert alone.reconstructed.tolist() == decoded(None) and not alone.attrs["own_condition"]
    assert told.error.iloc[-1] and not told.exact_match.iloc[-1]
    some = test_smiles[:300]
    assert (reconstruct(shipped, some).exact_match.sum()
            > reconstruct(shipped, some, code_only=True).exact_match.sum())

    pd.DataFrame({"SMILES": smiles}).to_csv(tmp_path / "in.csv", index=False)
    for flag, says in [([], "given their own properties"), (["--code-only"], "from the codes alone")]:
        rc = main(["reconstruct", str(tmp_path / "in.csv"), "--model", str(cvae.path),
                   "-o", str(tmp_path / "r.csv"), *flag])
        assert rc == 0 and f"exact reconstruction {says}" in capsys.readouterr().out


def test_a_model_conditioned_on_a_data_column_reconstructs_from_the_code_alone(cvae):
    """Bare molecules carry no measured activity: such a model gets no own condition, and
    reconstruct says it decoded from the codes alone."""
    import dataclasses

    from molvae.generate import reconstruct
    from molvae.latent import own_condition

    space = ConditionSpace.fit(["logp", "pic50"], {"logp": np.array([1.0, 2.0, 3.0]),
                                                  "pic50": np.array([5.0, 6.0, 7.5])})
    measured = dataclasses.replace(cvae, conditions=space)
    smiles = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1"]
    assert own_condition(measured, smiles) is None
    df = reconstruct(measured, smiles)
    assert not df.attrs["own_condition"]
    assert df.reconstructed.tolist() == reconstruct(cvae, smiles, code_only=True).reconstructed.tolist()


def test_a_request_few_training_molecules_meet_is_noted(cvae, run_main, tmp_path):
    """Each value covered alone, the pair met by none of the stored training molecules:
    `molvae sample` says so before sampling (it ran to 0% hits without a hint)."""
    from molvae.checkpoint import load_model
    from molvae.conditions import request_support, support_note
    from molvae.generate import request

    loaded = load_model(cvae.path)
    props, names = loaded.prior["properties"].float().numpy(), loaded.conditions.names
    logp, qed = props[:, names.index("logp")], props[:, names.index("qed")]
    met, total = request_support(loaded, request(loaded, {"logp": 2.0, "qed": 0.8}))
    assert total == len(props)
    assert met == int(((abs(logp - 2.0) <= 0.5) & (abs(qed - 0.8) <= 0.05)).sum())
    assert support_note(loaded, request(loaded, {"logp": float(np.median(logp))})) is None
    pairs = [(round(float(a), 2), round(float(b), 3))
             for a in np.percentile(logp, [2, 10, 50, 90, 98])
             for b in np.percentile(qed, [2, 10, 50, 90, 98])]
    rare = [p for p in pairs
            if request_support(loaded, request(loaded, {"logp": p[0], "qed": p[1]}))[0] == 0]
    assert rare, "every pair is met by some training molecule"
    a, b = rare[0]
    rc, _, err = run_main("sample", "-n", 5, "--model", cvae.path, "--condition", f"logp={a}",
                          "--condition", f"qed={b}", "-o", tmp_path / "s.csv")
    assert rc == 0 and f"note: logp={a:g} qed={b:g}: none of the model's {total:,} stored " in err
    rc, _, err = run_main("sample", "-n", 5, "--model", cvae.path, "--condition", "logp=2",
                          "-o", tmp_path / "t.csv")
    assert rc == 0 and "stored training molecules meet" not in err


def test_the_summary_tells_a_range_from_its_tolerance():
    """A chemist reads "100% within tolerance" of logP 2:3 as "all in 2-3": the line gives
    the share inside the range beside the share within it ± the tolerance."""
    df = pd.DataFrame({"valid": [True, True, True, True, False],
                       "logp": [1.7, 2.5, 3.3, 2.9, np.nan],
                       "target_logp": [2.0, 2.5, 3.0, 2.9, np.nan],
                       "mw": [330.0, 345.0, 400.0, 341.0, np.nan],
                       "target_mw": [340.0] * 5})
    text = summary(df, {"logp": (2.0, 3.0), "mw": (340.0, 340.0)})
    assert "logp asked 2:3: achieved mean 2.6, MAE 0.15" in text
    assert "in 2:3 50.0%, within 2:3 ± 0.5 100.0%" in text
    assert "mw asked 340: " in text and "within 340 ± 20 75.0%" in text
    assert "), in 340" not in text  # a single value has no range to be in
    assert "every condition within its tolerance (±): 75.0% of valid molecules" in text
