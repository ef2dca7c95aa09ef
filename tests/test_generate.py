import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from molvae import candidates, chem, generate, latent, walks
from molvae.config import ScoreConfig
from molvae.errors import ConfigError, DataError, GenerationError, InvalidMoleculeError

ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"
PHENOL = "Oc1ccccc1"


def test_sample_columns_and_seeding(tiny):
    a = generate.sample(tiny, num_samples=40, batch_size=16, seed=1, workers=1)
    assert list(a.columns[:4]) == ["smiles", "selfies", "valid", "source"]
    assert len(a) == 40 and (a.source == "prior").all() and a.step.tolist() == list(range(40))
    assert a.valid.all()  # SELFIES: every decoded string is a molecule
    b = generate.sample(tiny, num_samples=40, batch_size=16, seed=1, workers=2)  # sampled in processes
    assert a.smiles.tolist() == b.smiles.tolist()
    c = generate.sample(tiny, num_samples=40, batch_size=16, seed=2, workers=1)
    assert a.smiles.tolist() != c.smiles.tolist()
    for s in a.smiles:
        assert chem.canonical_smiles(s) == s


def test_sample_unique_mode(tiny):
    df = generate.sample(tiny, num_samples=30, batch_size=20, seed=0, unique=True, workers=1)
    assert len(df) == 30 and df.smiles.is_unique and df.valid.all()
    # worker processes run batches ahead of the count; the result does not depend on it
    par = generate.sample(tiny, num_samples=30, batch_size=20, seed=0, unique=True, workers=2)
    assert par.smiles.tolist() == df.smiles.tolist()
    counts: list[int] = []  # a progress bar of n molecules ends at n, however many draws
    generate.sample(tiny, num_samples=7, seed=0, unique=True, workers=1, progress=counts.append)
    assert sum(counts) == 7 and all(c >= 0 for c in counts)


@pytest.mark.parametrize("kw, msg", [({"num_samples": 0}, "num_samples"),
                                     ({"num_samples": -5}, "num_samples"),
                                     ({"num_samples": 5, "temperature": 0}, "temperature"),
                                     ({"num_samples": 5, "temperature": -1}, "temperature"),
                                     ({"num_samples": 5, "max_length": 0}, "max_length"),
                                     ({"num_samples": 5, "temprature": 1}, "temprature: unknown key")])
def test_sample_rejects_bad_arguments(tiny, kw, msg):
    with pytest.raises(ConfigError, match=msg):
        generate.sample(tiny, **kw)


def test_interpolate_walks_between_the_molecules(tiny):
    df = walks.interpolate(tiny, [ASPIRIN, PHENOL, "CCO"], steps=5)
    assert len(df) == 10 and df.segment.tolist() == [0] * 5 + [1] * 5
    assert df.t.iloc[0] == 0 and df.t.iloc[4] == 1 and "sim_start" in df and "sim_end" in df
    assert len(walks.interpolate(tiny, [ASPIRIN, PHENOL], 4, method="slerp")) == 4
    with pytest.raises(GenerationError, match="at least two"):
        walks.interpolate(tiny, [ASPIRIN])
    with pytest.raises(GenerationError, match="unknown interpolation"):
        walks.interpolate(tiny, [ASPIRIN, PHENOL], method="cubic")
    with pytest.raises(InvalidMoleculeError, match="not a valid molecule"):
        walks.interpolate(tiny, [ASPIRIN, "C1CC("])


def test_slerp_keeps_the_ends():
    import torch

    a, b = torch.randn(8), torch.randn(8)
    path = latent.slerp(a, b, torch.linspace(0, 1, 5))
    assert torch.allclose(path[0], a, atol=1e-5) and torch.allclose(path[-1], b, atol=1e-5)


def test_neighbors(tiny):
    df = walks.neighbors(tiny, ASPIRIN, radii=[0.0, 0.5], per_radius=4, seed=0)
    assert len(df) == 8 and sorted(df.radius.unique()) == [0.0, 0.5]
    assert df.similarity.between(0, 1).all()
    r0 = df[df.radius == 0]
    assert r0.smiles.nunique() == 1  # radius 0 decodes mu itself
    for bad in ["", "C1CC(", "not a molecule"]:
        with pytest.raises(InvalidMoleculeError, match="not a valid molecule"):
            walks.neighbors(tiny, bad)
    with pytest.raises(InvalidMoleculeError, match="unknown|outside the vocabulary"):
        walks.neighbors(tiny, "CC[Si](C)(C)C")
    with pytest.raises(GenerationError, match="per radius"):
        walks.neighbors(tiny, ASPIRIN, per_radius=0)


PARACETAMOL = "CC(=O)Nc1ccc(O)cc1"
CAFFEINE = "Cn1c(=O)c2c(ncn2C)n(C)c1=O"


def test_walks_of_a_conditional_model_start_at_the_molecule_itself(shipped):
    """The shipped CVAE is given each molecule's own properties, as reconstruct gives them:
    from paracetamol's code alone it writes a bromophenol, and the path from aspirin ends
    elsewhere than at caffeine."""
    near = walks.neighbors(shipped, PARACETAMOL, radii=[0.0, 0.1], per_radius=20)
    assert (near.smiles == PARACETAMOL).all()
    alone = walks.neighbors(shipped, PARACETAMOL, radii=[0.0], per_radius=2, code_only=True)
    assert (alone.smiles != PARACETAMOL).all()
    path = walks.interpolate(shipped, [ASPIRIN, CAFFEINE], steps=5)
    assert path.smiles.iloc[-1] == CAFFEINE and path.sim_end.iloc[-1] == 1.0
    assert walks.interpolate(shipped, [ASPIRIN, CAFFEINE], 5, code_only=True).smiles.iloc[-1] != CAFFEINE


def test_one_smiles_string_is_one_molecule_not_its_characters(tiny):
    assert generate.reconstruct(tiny, ASPIRIN).input.tolist() == [ASPIRIN]
    assert latent.code_table(tiny, PHENOL).input.tolist() == [PHENOL]
    assert len(latent.codes(tiny, PHENOL)[0]) == 1
    with pytest.raises(GenerationError, match="not one string"):
        walks.interpolate(tiny, "CCO")
    with pytest.raises(GenerationError, match="one SMILES string"):
        walks.neighbors(tiny, [ASPIRIN])


def test_reconstruct_keeps_order_and_marks_bad_inputs(tiny):
    inputs = [ASPIRIN, "garbage", PHENOL, "CC[Si](C)(C)C", ""]
    df = generate.reconstruct(tiny, inputs)
    assert df.input.tolist() == inputs
    assert list(df.columns) == ["input", "reconstructed", "exact_match", "error"]
    assert df.error.iloc[0] == "" and "not a valid molecule" in df.error.iloc[1]
    assert "[Si]" in df.error.iloc[3] and df.reconstructed.iloc[1] == ""
    assert not df.exact_match.iloc[[1, 3, 4]].any()
    for _, r in df.iterrows():
        if r.exact_match:
            assert chem.canonical_smiles(r.input) == r.reconstructed


def test_encode_gives_latents_and_elbo(tiny):
    df = latent.code_table(tiny, [ASPIRIN, "garbage", PHENOL])
    z = tiny.model.latent_size
    assert df.filter(like="mu_").shape == (3, z) and df.filter(like="var_").shape == (3, z)
    assert np.isfinite(df.elbo.iloc[0]) and np.isnan(df.elbo.iloc[1])
    assert (df.filter(like="var_").iloc[0] > 0).all()
    assert df.ood_score.iloc[0] == -df.elbo.iloc[0]


def test_annotate_adds_properties_filters_and_flags(tiny, tiny_trained):
    train_mol = pd.read_csv("data/moses_train_100k.csv.gz", nrows=1)["SMILES"][0]
    df = pd.DataFrame({"smiles": [chem.canonical_smiles(train_mol), ASPIRIN, ASPIRIN, ""],
                       "valid": [True, True, True, False], "source": "test"})
    out = candidates.annotate(df, ScoreConfig(filters=[*chem.FILTERS, "windows", "novelty"]), tiny,
                            workers=1)
    for p in chem.PROPERTIES:
        assert p in out
    for f in chem.FILTERS:
        assert f"pass_{f}" in out
    assert out.unique.tolist() == [True, True, False, False]
    assert out.novel.tolist()[:2] == [False, True]  # the first molecule is in the training set
    assert out.score.between(0, 1).all() and out.score.iloc[3] == 0
    assert not out.pass_all.iloc[3] and not out.pass_all.iloc[0]  # not novel
    ranked = candidates.rank(out)
    assert len(ranked) == 2 and ranked.score.is_monotonic_decreasing


def test_posterior_prior_draws_each_training_code_once_per_pass(tiny):
    assert tiny.prior is not None  # training stores the codes
    m, d = 50, tiny.model.latent_size
    codes = torch.arange(m, dtype=torch.float32)[:, None].repeat(1, d)  # row i is all i
    exact = dataclasses.replace(tiny, prior={"mu": codes, "logvar": torch.full_like(codes, -40)})
    draw = latent.LatentPrior(exact, "posterior", torch.Generator().manual_seed(0))
    z = torch.cat([draw(m // 3), draw(m - m // 3)])  # one full pass, over two calls
    hit = z[:, 0].round().long()
    assert torch.allclose(z, codes[hit])  # z ~ N(mu, ~0) is the code itself
    assert sorted(hit.tolist()) == list(range(m))  # every code once, none twice
    assert hit.tolist() != list(range(m))  # in a shuffled order
    wide = dataclasses.replace(tiny, prior={"mu": codes, "logvar": torch.zeros_like(codes)})
    z = latent.LatentPrior(wide, "posterior", torch.Generator().manual_seed(0))(m)
    assert 0.8 < (z - z.mean(1, keepdim=True)).std().item() < 1.2  # unit posterior spread
    # width scales every spread: exactly, with the same random streams
    hit = latent.LatentPrior(exact, "posterior", torch.Generator().manual_seed(1))(m)[:, 0]
    picked = codes[hit.round().long()]
    one = latent.LatentPrior(wide, "posterior", torch.Generator().manual_seed(1))(m) - picked
    stored = dataclasses.replace(wide, prior={**wide.prior, "width": 0.5})
    half = latent.LatentPrior(stored, "posterior", torch.Generator().manual_seed(1))(m) - picked
    assert torch.allclose(half, 0.5 * one, atol=1e-4)  # the model's stored width is the default
    three = latent.LatentPrior(stored, "posterior", torch.Generator().manual_seed(1),
                                 width=3.0)(m) - picked
    assert torch.allclose(three, 3 * one, atol=1e-4)  # an explicit width wins
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(GenerationError, match="width must be > 0"):
            latent.LatentPrior(wide, "posterior", torch.Generator(), width=bad)
        with pytest.raises(GenerationError, match="width must be > 0"):
            latent.fit_prior(tiny, ["CCO"], n=1, width=bad)


def test_posterior_prior_sampling_is_seeded_and_differs_from_normal(tiny):
    kw = dict(batch_size=16, workers=1)
    post = generate.sample(tiny, num_samples=30, seed=1, prior="posterior", **kw).smiles.tolist()
    assert generate.sample(tiny, num_samples=30, seed=1, **kw).smiles.tolist() == post  # auto = posterior
    assert generate.sample(tiny, num_samples=30, seed=1, prior="posterior", **kw).smiles.tolist() == post
    assert generate.sample(tiny, num_samples=30, seed=1, prior="normal", **kw).smiles.tolist() != post
    # a width scales the stored codes' spreads: with z ~ N(0, I) it is refused, not ignored
    with pytest.raises(GenerationError, match="with prior normal .* would change nothing"):
        generate.sample(tiny, num_samples=3, prior="normal", prior_width=2.0, **kw)
    no_codes = dataclasses.replace(tiny, prior=None)  # "auto" without stored codes is "normal"
    with pytest.raises(GenerationError, match="would change nothing"):
        generate.sample(no_codes, num_samples=3, prior_width=2.0, **kw)
    assert len(generate.sample(no_codes, num_samples=3, **kw)) == 3


def test_fit_prior_encodes_a_seeded_subset_and_skips_bad_molecules(tiny, test_smiles):
    smiles = test_smiles[:60] + ["junk", "CC[Si](C)(C)C"]
    a = latent.fit_prior(tiny, smiles, n=40, seed=0)
    assert a["mu"].shape == a["logvar"].shape == (40, tiny.model.latent_size)
    assert a["mu"].dtype == torch.float16
    assert torch.equal(latent.fit_prior(tiny, smiles, n=40, seed=0)["mu"], a["mu"])
    assert len(latent.fit_prior(tiny, smiles, n=10_000)["mu"]) == 60  # all that encode
    with pytest.raises(GenerationError, match="none of the molecules"):
        latent.fit_prior(tiny, ["junk", "CC[Si](C)(C)C"])
    with pytest.raises(GenerationError, match=">= 1"):
        latent.fit_prior(tiny, smiles, n=0)


def test_prior_choice_errors(tiny):
    with pytest.raises(GenerationError, match="stores no posterior codes"):
        generate.sample(dataclasses.replace(tiny, prior=None), num_samples=5, prior="posterior")
    with pytest.raises(ConfigError, match="prior: Input should be 'auto', 'normal' or 'posterior'"):
        generate.sample(tiny, num_samples=5, prior="uniform")
    with pytest.raises(GenerationError, match="prior must be one of"):
        latent.resolve_prior(tiny, "uniform")
    assert latent.resolve_prior(dataclasses.replace(tiny, prior=None), "auto") == "normal"


def test_shards_with_their_own_seeds_share_no_code(tiny):
    m, d = 60, tiny.model.latent_size
    codes = torch.arange(m, dtype=torch.float32)[:, None].repeat(1, d)
    exact = dataclasses.replace(tiny, prior={"mu": codes, "logvar": torch.full_like(codes, -40)})
    hits = []
    for i in range(3):
        draw = latent.LatentPrior(exact, "posterior", torch.Generator().manual_seed(100 + i),
                                    part=(i, 3), code_seed=7)
        hits += draw(m // 3)[:, 0].round().long().tolist()
    assert sorted(hits) == list(range(m))


def test_ring_grammar_and_top_p_reach_the_decoder(tiny):
    assert tiny.ring_sizes and set(tiny.ring_sizes) <= set(range(3, 8)) and 6 in tiny.ring_sizes
    kw = {"num_samples": 300, "seed": 5, "workers": 1}
    plain = generate.sample(tiny, ring_grammar=False, **kw).smiles.tolist()
    ruled = generate.sample(tiny, ring_grammar=True, **kw).smiles.tolist()
    assert generate.sample(tiny, **kw).smiles.tolist() == ruled  # on when the model has sizes
    assert generate.sample(dataclasses.replace(tiny, ring_sizes=None), **kw).smiles.tolist() == plain
    assert ruled != plain and ruled == generate.sample(tiny, ring_grammar=True, **kw).smiles.tolist()
    mols = [chem.to_mol(s) for s in ruled if s]  # kept alive: RingInfo belongs to its Mol
    largest = [max((len(r) for r in m.GetRingInfo().AtomRings()), default=0) for m in mols]
    assert max(largest) <= max(tiny.ring_sizes)
    nucleus = generate.sample(tiny, top_p=0.5, ring_grammar=False, **kw).smiles.tolist()
    assert nucleus != plain
    assert nucleus == generate.sample(tiny, top_p=0.5, ring_grammar=False, **kw).smiles.tolist()
    with pytest.raises(ConfigError, match="top_p"):
        generate.sample(tiny, top_p=0, **kw)
    with pytest.raises(GenerationError, match="stores no training ring sizes"):
        generate.sample(dataclasses.replace(tiny, ring_sizes=None), ring_grammar=True, **kw)


def test_refinement_passes_encode_and_decode_each_sample_again(tiny, tmp_path):
    """A pass is the greedy reconstruction of each sampled molecule (kept as it was where
    the model cannot encode it); passes compose; worker processes change nothing; a model's
    stored choice is the default, and bad values are refused."""
    from molvae.checkpoint import export_model, load_model

    kw = {"num_samples": 150, "seed": 2, "batch_size": 64}
    raw = generate.sample(tiny, workers=1, **kw).smiles.tolist()
    once = generate.sample(tiny, workers=1, refine=1, **kw).smiles.tolist()
    rec = generate.reconstruct(tiny, raw).reconstructed.tolist()
    assert once == [r or s for s, r in zip(raw, rec, strict=True)] and once != raw
    twice = generate.sample(tiny, workers=2, refine=2, **kw).smiles.tolist()
    rec2 = generate.reconstruct(tiny, once).reconstructed.tolist()
    assert twice == [r or s for s, r in zip(once, rec2, strict=True)]
    assert generate.sample(tiny, workers=2, refine=1, **kw).smiles.tolist() == once
    stored = load_model(export_model(tiny.path, tmp_path / "refining.pt", sampling={"refine": 1}))
    assert stored.sampling["refine"] == 1
    assert generate.sample(stored, workers=1, **kw).smiles.tolist() == once
    assert generate.sample(stored, workers=1, refine=0, **kw).smiles.tolist() == raw
    for bad in (-1, 11):
        with pytest.raises(ConfigError, match="refine"):
            generate.sample(tiny, refine=bad, **kw)


@pytest.mark.slow
def test_sampling_workers_of_a_flow_give_the_shards_sampled_here(tiny_trained, monkeypatch,
                                                                 tmp_path):
    """A flow's shards sampled by worker interpreters (``flows.shards``) are the molecules
    of the same shards sampled here; a worker that fails (here: no model file) is one line
    naming the cause, not a hang or a worker's traceback."""
    from flows import shards
    from molvae.config import GenerateConfig

    monkeypatch.setattr(shards, "MIN_FOR_WORKERS", 0)  # workers even for a few molecules
    gen = GenerateConfig().model_dump()
    jobs = [(30, 1000 * i, gen, (i, 3)) for i in range(3)]
    path = str(tiny_trained[1].checkpoint)
    here = [shards.sample(path, *job) for job in jobs]
    there = shards.sample_all(path, jobs, 2)
    for a, b in zip(here, there, strict=True):
        pd.testing.assert_frame_equal(a, b)
    missing = tmp_path / "missing.pt"
    with pytest.raises(GenerationError, match="sampling worker failed: .*missing.pt"):
        shards.sample_all(str(missing), jobs, 2)


def test_a_temperature_or_a_nucleus_draws_tokens_from_a_greedy_model(tiny_trained, tmp_path):
    """A model that stores greedy decoding ignored --temperature and --top-p without a word:
    asking for either now draws tokens; an explicit greedy still wins."""
    from molvae.checkpoint import export_model, load_model

    tiny, _ = tiny_trained
    greedy = load_model(export_model(tiny.path, tmp_path / "greedy.pt", sampling={"greedy": True}))
    kw = dict(num_samples=40, seed=5, workers=1, refine=0)
    base = generate.sample(greedy, **kw).smiles.tolist()
    assert generate.sample(greedy, greedy=True, **kw).smiles.tolist() == base
    assert generate.sample(greedy, temperature=1.5, **kw).smiles.tolist() != base
    assert generate.sample(greedy, top_p=0.9, **kw).smiles.tolist() != base
    assert generate.sample(greedy, temperature=1.5, greedy=True, **kw).smiles.tolist() == base


def test_the_python_api_says_what_it_takes(tiny_trained):
    """Wrong types at the public functions are one MolvaeError each, not an AttributeError
    deep inside or a string read as its characters (session 24's probe)."""
    import molvae
    from molvae.errors import MetricsError

    tiny, result = tiny_trained
    with pytest.raises(GenerationError, match=r"takes a loaded model \(molvae.load_model"):
        molvae.sample(str(result.checkpoint), num_samples=5)
    with pytest.raises(ConfigError, match="not dict; give single settings as keywords"):
        molvae.sample(tiny, {"num_samples": 5})
    with pytest.raises(GenerationError, match="steps must be a whole number >= 2, got '3'"):
        molvae.interpolate(tiny, ["CCO", "CCN"], steps="3")
    assert len(molvae.neighbors(tiny, "CCO", radii=0.2, per_radius=2)) == 2  # one radius
    with pytest.raises(DataError, match="rank needs the columns annotate adds"):
        molvae.rank(pd.DataFrame())
    with pytest.raises(MetricsError, match="not one string"):
        molvae.evaluate("CCO", ["CCO", "CCN"])
    with pytest.raises(ConfigError, match="oracle_budget: Input should be greater than or equal to 1"):
        molvae.optimize(tiny, oracle_budget=-5)
    with pytest.raises(ConfigError, match="budget: unknown key"):
        molvae.optimize(tiny, budget=5)
    res = molvae.optimize(tiny, method="random", oracle_budget=12, annotate=False)
    assert res.oracle_calls == 12
