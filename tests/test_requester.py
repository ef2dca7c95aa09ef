"""The requester's weights (model.request_flag): request pairs and training on them."""

import numpy as np
import pytest
import torch
from conftest import SHIPPED_TRAIN, TINY_MODEL

from molvae import chem, generate
from molvae.checkpoint import load_model
from molvae.config import DataConfig, ModelConfig, TrainConfig
from molvae.distill import load_pairs, make_request_pairs, random_request, save_pairs
from molvae.errors import DataError, TrainingError
from molvae.model import build_model, load_widened
from molvae.train import train_model
from molvae.vocab import selfies_to_smiles

COND = 2 * 2  # the cvae fixture's condition input: logP and QED, a value and a flag each


@pytest.fixture(scope="module")
def request_pairs(cvae):
    return make_request_pairs(cvae, 96, seed=3, workers=1)


def _requested(pairs, space):
    """Per row, {property: requested value} of the properties its condition input gives."""
    return [{n: row[2 * j] * space.std[j] + space.mean[j] for j, n in enumerate(space.names)
             if row[2 * j + 1] == 1} for row in pairs.condition]


def _misses(smiles, asked, space) -> np.ndarray:
    """Per molecule, its standardized distance to what its row asked for (inf: invalid)."""
    rows = chem.score_smiles(smiles, filters=(), property_names=list(space.names), workers=1)
    return np.array([sum(abs(r[n] - v) / space.std[space.names.index(n)] for n, v in a.items())
                     if s else np.inf for s, r, a in zip(smiles, rows, asked, strict=True)])


def test_request_pairs_keep_the_nearest_of_several_molecules_per_draw(cvae, request_pairs,
                                                                     tmp_path):
    pairs = request_pairs
    assert 0 < len(pairs) <= 96 and pairs.condition.shape == (len(pairs), COND)
    assert pairs.condition.dtype == np.float32 and pairs.z.shape[1] == TINY_MODEL["latent_size"]
    for row, n, smi in zip(pairs.tokens, pairs.lengths, pairs.smiles, strict=True):
        written = selfies_to_smiles(cvae.vocab.to_selfies(row[1:n]))
        assert chem.canonical_smiles(written) == smi
    # each row asks for one to both properties, and its kept molecule sits nearer to what it
    # asked for than the greedy molecule of the same draw, on average
    asked = _requested(pairs, cvae.conditions)
    assert all(1 <= len(a) <= 2 for a in asked)
    greedy = [smi for _, smi in generate.decode_ids(cvae.vocab, generate._decode_batch(
        cvae, torch.from_numpy(pairs.z), 0, generate.settings(), greedy=True,
        condition=torch.from_numpy(pairs.condition), sampling=True))]
    kept, first = (_misses(list(s), asked, cvae.conditions) for s in (pairs.smiles, greedy))
    assert np.isfinite(kept).all()
    assert kept.mean() < 0.8 * first[np.isfinite(first)].mean()
    # the same pairs from two worker processes; the file keeps the condition inputs
    again = make_request_pairs(cvae, 96, seed=3, workers=2)
    assert np.array_equal(again.z, pairs.z) and (again.smiles == pairs.smiles).all()
    path = save_pairs(pairs, cvae.vocab, tmp_path / "r.npz")
    back = load_pairs(path, cvae.vocab, TINY_MODEL["latent_size"], condition_size=COND)
    assert np.array_equal(back.condition, pairs.condition)
    with pytest.raises(DataError, match="request pairs; this model is not conditional"):
        load_pairs(path, cvae.vocab, TINY_MODEL["latent_size"])
    with pytest.raises(DataError, match=r"condition inputs of shape \(\d+, 4\); the model's are \(N, 14\)"):
        load_pairs(path, cvae.vocab, TINY_MODEL["latent_size"], condition_size=14)


def test_random_requests_stay_inside_what_the_model_covers(cvae):
    space, props = cvae.conditions, cvae.prior["properties"].numpy()
    rng = np.random.default_rng(0)
    sizes = []
    for _ in range(200):
        req = random_request(rng, space, props)
        checked = space.check(req)  # a request the model accepts
        sizes.append(len(req))
        for name, (lo, hi) in checked.items():
            j = space.names.index(name)
            assert space.low[j] <= lo <= hi <= space.high[j]
    assert set(sizes) == {1, 2}  # two properties: at most both
    assert 0.4 < np.mean(np.array(sizes) == 1) < 0.8


def test_bad_request_pairs_are_one_line(cvae, tiny, run_main, tmp_path):
    with pytest.raises(DataError, match="not a conditional model"):
        make_request_pairs(tiny, 10)
    with pytest.raises(DataError, match="draws must be at least 2, got 1"):
        make_request_pairs(cvae, 10, draws=1)
    for args, said in [(["--refine", 2], "request pairs are not refined"),
                       (["--draws", 1], "--draws must be at least 2"),
                       (["--temperature", 0], "--temperature in (0, 5]")]:
        rc, _, err = run_main("data", "pairs", "--requests", "-n", 5, "-o", tmp_path / "p.npz",
                              "--model", cvae.path, *args)
        assert rc == 1 and said in err, err
    rc, _, err = run_main("data", "pairs", "-n", 5, "-o", tmp_path / "p.npz", "--draws", 3)
    assert rc == 1 and "add --requests" in err
    assert not (tmp_path / "p.npz").exists()


def test_step_zero_of_a_request_flag_fine_tune_is_the_model_it_starts_from(cvae):
    """The requester's changes start at zero: requests write what the model wrote; changed,
    they write requests only (prior draws and codes keep their weights)."""
    cfg = ModelConfig.model_validate({**cvae.model_config.model_dump(), "request_flag": True})
    wide = build_model(cfg, len(cvae.vocab)).eval()
    load_widened(wide, cvae.model.state_dict())
    z, c = torch.randn(4, TINY_MODEL["latent_size"]), torch.zeros(4, COND)
    c[:, 0], c[:, 2] = 0.5, 1.0
    tokens = torch.randint(3, len(cvae.vocab), (4, 12))
    with torch.no_grad():
        for cond in (None, c):
            torch.testing.assert_close(cvae.model.decoder(z, tokens, cond, sampling=True),
                                       wide.decoder(z, tokens, cond, sampling=True))
        for p in wide.decoder.requester.parameters():
            p.normal_(0, 0.1)
        assert not torch.allclose(cvae.model.decoder(z, tokens, c, sampling=True),
                                  wide.decoder(z, tokens, c, sampling=True))
        for cond, sampling in [(None, True), (c, False), (None, False)]:
            torch.testing.assert_close(cvae.model.decoder(z, tokens, cond, sampling=sampling),
                                       wide.decoder(z, tokens, cond, sampling=sampling))


def test_training_on_request_pairs_teaches_the_requester_alone(cvae, request_pairs, run_main,
                                                              tmp_path):
    path = save_pairs(request_pairs, cvae.vocab, tmp_path / "r.npz")
    data = DataConfig(path=SHIPPED_TRAIN, limit=600, cache_dir=tmp_path / "c")
    common = dict(epochs=2, batch_size=64, lr=1e-2, recon_eval_size=0, prior_codes=0,
                  threads=1, init_from=cvae.path, distill=path, sampler_only=True)
    with pytest.raises(TrainingError, match=r"request pairs trains the requester's weights: "
                       r"the model needs them \(model.request_flag = true\)"):
        train_model(data, ModelConfig(sample_flag=True), TrainConfig(**common, out_dir=tmp_path / "x"))
    run = train_model(data, ModelConfig(request_flag=True), TrainConfig(**common, out_dir=tmp_path / "a"))
    taught = load_model(run.checkpoint)
    assert taught.model_config.request_flag and taught.model.decoder.requester is not None
    theirs = cvae.model.state_dict()
    for name, w in taught.model.state_dict().items():
        assert ".requester." in name or torch.equal(w, theirs[name]), name
    z, tokens, cond = request_pairs.batch(np.arange(len(request_pairs)), torch.device("cpu"))

    def loss(model) -> float:
        from molvae.model import reconstruction_loss
        with torch.no_grad():
            return float(reconstruction_loss(model.decoder(z, tokens, cond, sampling=True),
                                             tokens).mean())

    assert loss(taught.model) < 0.8 * loss(cvae.model)
    # requests write with its weights; prior samples and reconstructions as the model did
    # (the same draws: z ~ N(0, I), as its training stored no codes)
    asked = {"logp": 2.0}
    new, old = (list(generate.sample(m, num_samples=40, seed=1, workers=1, condition_draws=1,
                                     condition=asked, prior="normal").smiles)
                for m in (taught, cvae))
    assert new != old
    assert (list(generate.sample(taught, num_samples=40, seed=1, workers=1, prior="normal").smiles)
            == list(generate.sample(cvae, num_samples=40, seed=1, workers=1, prior="normal").smiles))
    some = [s for s in old if s][:10]
    assert (generate.reconstruct(taught, some).reconstructed.tolist()
            == generate.reconstruct(cvae, some).reconstructed.tolist())
    rc, _, err = run_main("sample", "-n", 10, "--condition", "logp=2", "--model", run.checkpoint,
                          "-o", tmp_path / "s.csv")
    assert rc == 0 and "the decoder's requester weights" in err, err
