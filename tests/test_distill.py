"""Refinement distilled into the decoder: the pairs file and training on it (train.distill)."""

import dataclasses
import logging

import numpy as np
import pytest
import torch
from conftest import SHIPPED_TRAIN, TINY_MODEL

from molvae import generate
from molvae.checkpoint import export_model, load_model
from molvae.config import DataConfig, ModelConfig, TrainConfig
from molvae.data import file_digest
from molvae.distill import distill_loss, load_pairs, make_pairs, save_pairs
from molvae.errors import CheckpointError, DataError, GenerationError, TrainingError
from molvae.train import train_model
from molvae.vocab import Vocab, selfies_to_smiles


@pytest.fixture(scope="module")
def refining(tiny_trained, tmp_path_factory):
    """The tiny model storing greedy decoding and 2 refinement passes (the shipped: 10)."""
    path = tmp_path_factory.mktemp("refining") / "r.pt"
    return load_model(export_model(tiny_trained[1].checkpoint, path,
                                   sampling={"greedy": True, "refine": 2}))


def test_pairs_hold_what_refinement_makes_of_each_draw(refining, tmp_path):
    pairs = make_pairs(refining, 40, seed=3, workers=1)
    assert pairs.z.dtype == np.float32 and pairs.z.shape[1] == TINY_MODEL["latent_size"]
    assert 0 < len(pairs) <= 40 and len(pairs.tokens) == len(pairs.lengths) == len(pairs)
    # each row's tokens write its molecule, and that molecule is what refinement makes of
    # the greedy decoding of its draw
    cfg = generate.settings()
    z = torch.from_numpy(pairs.z)
    raw = generate.decode_ids(refining.vocab, generate._decode_batch(refining, z, 0, cfg))
    refined = generate.refine(refining, raw, cfg, 2)
    for row, n, smi, (_, want) in zip(pairs.tokens, pairs.lengths, pairs.smiles, refined,
                                      strict=True):
        written = selfies_to_smiles(refining.vocab.to_selfies(row[1:n]))
        assert generate.chem.canonical_smiles(written) == smi == want
    # two worker processes draw the same pairs
    again = make_pairs(refining, 40, seed=3, workers=2)
    assert np.array_equal(again.z, pairs.z) and (again.smiles == pairs.smiles).all()
    back = load_pairs(save_pairs(pairs, refining.vocab, tmp_path / "p.npz"), refining.vocab,
                      TINY_MODEL["latent_size"])
    assert np.array_equal(back.tokens, pairs.tokens) and np.array_equal(back.z, pairs.z)


def test_bad_pairs_are_one_line(refining, tiny_trained, tmp_path):
    with pytest.raises(DataError, match="refinement passes to distill.*--refine N"):
        make_pairs(tiny_trained[0], 10)  # a model that does not refine
    assert len(make_pairs(tiny_trained[0], 10, cfg=generate.settings(refine=1), workers=1))
    with pytest.raises(DataError, match="unconditional prior"):
        make_pairs(refining, 10, cfg=generate.settings(condition={"logp": 2}))
    path = save_pairs(make_pairs(refining, 20, workers=1), refining.vocab, tmp_path / "p.npz")
    with pytest.raises(DataError, match="no such pairs file"):
        load_pairs(tmp_path / "none.npz", refining.vocab, TINY_MODEL["latent_size"])
    with pytest.raises(DataError, match="vocabulary differs"):
        load_pairs(path, Vocab(["<pad>", "<bos>", "<eos>", "[C]"]), TINY_MODEL["latent_size"])
    with pytest.raises(DataError, match=r"codes of shape \(\d+, 8\), the model's are \(N, 5\)"):
        load_pairs(path, refining.vocab, 5)
    with pytest.raises(DataError, match="a folder, not a pairs file"):
        load_pairs(tmp_path, refining.vocab, TINY_MODEL["latent_size"])
    (tmp_path / "junk.npz").write_text("not numpy")
    with pytest.raises(DataError, match="not a pairs file"):
        load_pairs(tmp_path / "junk.npz", refining.vocab, TINY_MODEL["latent_size"])


def test_training_on_pairs_teaches_the_decoder_to_write_them(refining, tiny_trained, tmp_path,
                                                            run_main, caplog):
    """Fine-tuned with train.distill, the decoder writes the pairs' molecules from their draws
    far more readily than the same fine-tune without (its loss on them falls)."""
    rc, out, err = run_main("data", "pairs", "-n", 300, "-o", tmp_path / "p.npz",
                            "--model", refining.path)
    assert rc == 0 and "pairs of 300 draws" in out, err
    pairs = load_pairs(tmp_path / "p.npz", refining.vocab, TINY_MODEL["latent_size"])
    data = DataConfig(path=SHIPPED_TRAIN, limit=600, cache_dir=tmp_path / "c")
    common = dict(epochs=2, batch_size=64, lr=3e-3, recon_eval_size=0, prior_codes=0,
                  threads=1, freeze_encoder=True, init_from=tiny_trained[1].checkpoint)

    def loss_on_pairs(checkpoint) -> float:
        model = load_model(checkpoint).model
        with torch.no_grad():
            return float(distill_loss(model, pairs, len(pairs), (0, 0), torch.device("cpu"), False))

    with pytest.raises(DataError, match="no such pairs file"):  # before the data is prepared
        train_model(data, ModelConfig(**TINY_MODEL), TrainConfig(
            **common, out_dir=tmp_path / "x", distill=tmp_path / "none.npz"))
    assert not (tmp_path / "c").exists()
    plain = train_model(data, ModelConfig(**TINY_MODEL), TrainConfig(**common, out_dir=tmp_path / "a"))
    with caplog.at_level(logging.WARNING, logger="molvae.distill"):
        taught = train_model(data, ModelConfig(**TINY_MODEL), TrainConfig(
            **common, out_dir=tmp_path / "b", distill=tmp_path / "p.npz"))
    # drawn by the refining export, not by the weights this training starts from: said
    assert "drawn by another model than" in caplog.text
    assert str(pairs.source) == file_digest(refining.path)
    assert loss_on_pairs(taught.checkpoint) < 0.7 * loss_on_pairs(plain.checkpoint)
    # the pairs' last rows held out: their loss is a validation figure of each epoch
    assert all(h["val_distill"] > 0 for h in taught.history)
    # the sampler's own weights alone (model.sample_flag, train.sampler_only)
    with pytest.raises(TrainingError, match=r"needs them \(model.sample_flag = true\)"):
        train_model(data, ModelConfig(**TINY_MODEL), TrainConfig(
            **common, out_dir=tmp_path / "n", distill=tmp_path / "p.npz", sampler_only=True))
    own = train_model(data, ModelConfig(**TINY_MODEL, sample_flag=True), TrainConfig(
        **{**common, "lr": 1e-2}, out_dir=tmp_path / "s", distill=tmp_path / "p.npz",
        sampler_only=True))
    assert loss_on_pairs(own.checkpoint) < 0.8 * loss_on_pairs(plain.checkpoint)
    _samples_with_its_own_weights_and_reconstructs_with_the_models(
        load_model(own.checkpoint), tiny_trained[0], pairs)
    # its own prior width, stored by export: for unrefined draws only
    fast = load_model(export_model(own.checkpoint, tmp_path / "fast.pt",
                                   sampling={"refine": 2, "sampler_width": 1.3}))
    assert generate.uses_width(fast, generate.settings(refine=0)) == 1.3
    assert generate.uses_width(fast, generate.settings()) is None  # refined: the codes' own
    with pytest.raises(GenerationError, match="would change nothing"):  # it stores no codes
        generate.uses_width(fast, generate.settings(refine=0, prior_width=1.1))
    coded = dataclasses.replace(fast, prior=tiny_trained[0].prior)
    assert generate.uses_width(coded, generate.settings(refine=0, prior_width=1.1)) == 1.1
    with pytest.raises(CheckpointError, match="no sampler weights"):
        export_model(plain.checkpoint, tmp_path / "x.pt", sampling={"sampler_width": 1.3})
    rc, _, err = run_main("sample", "-n", 20, "--model", own.checkpoint, "-o",
                          tmp_path / "s.csv")
    assert rc == 0 and "the decoder's sampler weights (refinement distilled)" in err, err
    rc, _, err = run_main("data", "pairs", "-n", 0, "-o", tmp_path / "q.npz")
    assert rc == 1 and "-n must be at least 1" in err
    rc, _, err = run_main("data", "pairs", "-n", 5, "-o", tmp_path / "q.csv")
    assert rc == 1 and "must end in .npz" in err


def test_step_zero_of_a_sample_flag_fine_tune_is_the_model_it_starts_from(tiny):
    """With model.sample_flag the decoder has its own weights for prior samples, its weights
    plus changes that start at zero: either way it writes what the model it starts from
    does; changed, the sampler's path is the plain decoder with the changed weights."""
    import copy

    from molvae.model import build_model, load_widened

    wide = build_model(ModelConfig(**TINY_MODEL, sample_flag=True), len(tiny.vocab)).eval()
    load_widened(wide, tiny.model.state_dict())
    tokens = torch.randint(3, len(tiny.vocab), (4, 12))
    z = torch.randn(4, TINY_MODEL["latent_size"])
    with torch.no_grad():
        for sampling in (False, True):
            torch.testing.assert_close(tiny.model.decoder(z, tokens),
                                       wide.decoder(z, tokens, sampling=sampling))
        for p in wide.decoder.sampler.parameters():
            p.normal_(0, 0.1)
        merged = copy.deepcopy(tiny.model.decoder)  # the same decoder, its weights changed
        for name, w in wide.decoder.weights(True).items():
            merged.get_parameter(name).copy_(w)
        torch.testing.assert_close(merged(z, tokens), wide.decoder(z, tokens, sampling=True))
        torch.testing.assert_close(tiny.model.decoder(z, tokens), wide.decoder(z, tokens))
        ids = wide.decoder.generate(z, 30, temperature=0.0, sampling=True)
        assert torch.equal(ids, merged.generate(z, 30, temperature=0.0))


def _samples_with_its_own_weights_and_reconstructs_with_the_models(loaded, start, pairs) -> None:
    """Trained alone on pairs, a sampler's own weights write prior samples (what the pairs
    taught); every other weight is the model's it started from, so it encodes and
    reconstructs exactly as that model does."""
    assert loaded.model_config.sample_flag and loaded.model.decoder.sampler is not None
    theirs = start.model.state_dict()
    for name, w in loaded.model.state_dict().items():
        assert ".sampler." in name or torch.equal(w, theirs[name]), name
    on, off = (_pairs_loss(loaded.model, pairs, sampling) for sampling in (True, False))
    assert on < 0.9 * off, (on, off)
    # the same model with the sampler's changes at zero samples other molecules
    unchanged = load_model(loaded.path)
    with torch.no_grad():
        for p in (*unchanged.model.decoder.sampler.a.values(),
                  *unchanged.model.decoder.sampler.bias.values()):
            p.zero_()
    mols = list(generate.sample(loaded, num_samples=60, workers=1, seed=2).smiles)
    assert mols != list(generate.sample(unchanged, num_samples=60, workers=1, seed=2).smiles)
    # refinement is what its weights distill: a refined sample decodes with the model's own
    refined = [list(generate.sample(m, num_samples=30, workers=1, seed=2, refine=1).smiles)
               for m in (loaded, unchanged)]
    assert refined[0] == refined[1]
    some = [s for s in mols if s][:20]
    assert (generate.reconstruct(loaded, some).reconstructed.tolist()
            == generate.reconstruct(start, some).reconstructed.tolist())
    assert (generate.decode_latent(loaded, torch.from_numpy(pairs.z[:20]))
            == generate.decode_latent(start, torch.from_numpy(pairs.z[:20])))


@torch.no_grad()
def _pairs_loss(model, pairs, sampling: bool) -> float:
    from molvae.model import reconstruction_loss

    z, tokens = pairs.batch(np.arange(len(pairs)), torch.device("cpu"))
    return float(reconstruction_loss(model.decoder(z, tokens, None, sampling), tokens).mean())
