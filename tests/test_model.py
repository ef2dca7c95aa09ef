import math

import torch
from torch.nn.utils.rnn import pack_padded_sequence

from molvae.config import ModelConfig, TrainConfig
from molvae.model import (
    Encoder,
    beta_at,
    build_model,
    kl_divergence,
    kl_term,
    reconstruction_loss,
    token_accuracy,
)
from molvae.train import _noise
from molvae.vocab import BOS_ID, EOS_ID, PAD_ID

V = 12
CFG = ModelConfig(embedding_size=8, encoder_hidden_size=16, latent_size=6,
                  decoder_hidden_size=24, property_names=["qed", "sa"])


def _batch():
    torch.manual_seed(0)
    lengths = torch.tensor([7, 5, 3])
    tokens = torch.full((3, 7), PAD_ID)
    for i, n in enumerate(lengths):
        tokens[i, 0] = BOS_ID
        tokens[i, 1 : n - 1] = torch.randint(3, V, (int(n) - 2,))
        tokens[i, n - 1] = EOS_ID
    return tokens, lengths


def test_shapes_at_each_stage():
    model = build_model(CFG, V)
    tokens, lengths = _batch()
    h = model.encoder(tokens, lengths)
    assert h.shape == (3, 32)
    mu, logvar = model.encode(tokens, lengths)
    assert mu.shape == logvar.shape == (3, 6)
    out = model(tokens, lengths)
    assert out["logits"].shape == (3, 6, V)
    assert out["properties"].shape == (3, 2)
    assert reconstruction_loss(out["logits"], tokens).shape == (3,)
    ids = model.decoder.generate(mu, max_length=9)
    assert ids.shape == (3, 9) and (ids != BOS_ID).all()


def test_encoder_equals_a_packed_bidirectional_gru():
    """The pad-free encoder computes exactly what pack_padded_sequence + bi-GRU computes."""
    torch.manual_seed(1)
    enc = Encoder(V, 8, 16, num_layers=2)
    ref = torch.nn.GRU(8, 16, num_layers=2, batch_first=True, bidirectional=True)
    with torch.no_grad():
        for layer in range(2):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(ref, f"{name}_l{layer}").copy_(getattr(enc.forward_layers[layer], f"{name}_l0"))
                getattr(ref, f"{name}_l{layer}_reverse").copy_(
                    getattr(enc.backward_layers[layer], f"{name}_l0"))
    tokens, lengths = _batch()
    _, h = ref(pack_padded_sequence(enc.embedding(tokens), lengths, batch_first=True,
                                    enforce_sorted=False))
    expected = torch.cat([h[-2], h[-1]], dim=-1)
    assert torch.allclose(enc(tokens, lengths), expected, atol=1e-5)


def test_generation_steps_equal_teacher_forcing_through_torch_gru():
    """The hand-written decoding step (token gate table + z gates) computes what nn.GRU
    computes: greedy ids fed back with teacher forcing reproduce the same argmaxes."""
    for layers in (1, 2):
        torch.manual_seed(layers)
        model = build_model(CFG.model_copy(update={"decoder_num_layers": layers}), V).eval()
        z = torch.randn(16, CFG.latent_size) * 3
        ids = model.decoder.generate(z, max_length=12, temperature=0.0)
        lengths = (ids != PAD_ID).sum(1)
        tokens = torch.cat([torch.full((16, 1), BOS_ID), ids], dim=1)
        with torch.no_grad():
            logits = model.decoder(z, tokens)  # (16, 12, V), nn.GRU over the whole sequence
        logits[..., PAD_ID] = logits[..., BOS_ID] = -math.inf
        logits[:, 0, EOS_ID] = -math.inf
        for i, n in enumerate(lengths.tolist()):
            assert logits[i, :n].argmax(-1).tolist() == ids[i, :n].tolist()


def test_kl_is_non_negative_and_zero_at_the_prior():
    mu, logvar = torch.randn(50, 6) * 3, torch.randn(50, 6) * 2
    assert (kl_divergence(mu, logvar) >= 0).all()
    assert kl_divergence(torch.zeros(2, 6), torch.zeros(2, 6)).abs().max() < 1e-7
    kl = kl_divergence(torch.zeros(4, 6), torch.zeros(4, 6))
    assert float(kl_term(kl, free_bits=0.5)) == 3.0  # 6 dims x 0.5 nats


def test_beta_schedules():
    assert beta_at(0, "linear", 0, 1, 100) == 0 and beta_at(50, "linear", 0, 1, 100) == 0.5
    assert beta_at(500, "linear", 0, 1, 100) == 1
    assert beta_at(50, "sigmoid", 0, 1, 100) == 0.5
    assert beta_at(150, "cyclical", 0, 1, 100) == 1 and beta_at(210, "cyclical", 0, 1, 100) == 0.1
    assert beta_at(3, "constant", 0, 0.2, 100) == 0.2


def test_overfit_a_tiny_batch():
    """A VAE that can learn at all reconstructs 8 molecules perfectly after a few steps."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(embedding_size=16, encoder_hidden_size=32, latent_size=8,
                                    decoder_hidden_size=64), V)
    tokens = torch.full((8, 10), PAD_ID)
    lengths = torch.randint(4, 11, (8,))
    for i, n in enumerate(lengths):
        tokens[i, 0], tokens[i, n - 1] = BOS_ID, EOS_ID
        tokens[i, 1 : n - 1] = torch.randint(3, V, (int(n) - 2,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        out = model(tokens, lengths)
        loss = reconstruction_loss(out["logits"], tokens).mean() + 1e-3 * kl_divergence(
            out["mu"], out["logvar"]).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    out = model(tokens, lengths)
    assert float(token_accuracy(out["logits"], tokens)) == 1.0
    mu, _ = model.encode(tokens, lengths)
    ids = model.decoder.generate(mu, max_length=12, temperature=0.0)
    for row, t, n in zip(ids, tokens, lengths, strict=True):
        assert row[: n - 1].tolist() == t[1:n].tolist()
    assert math.isfinite(float(loss.detach()))


def test_latent_noise_scales_the_training_draw_only():
    """``noise`` multiplies the posterior's spread of the z the decoder is trained on; 0 is
    the mean itself, and evaluation always decodes the mean."""
    model = build_model(CFG, V)
    tokens, lengths = _batch()
    mu, logvar = model.encode(tokens, lengths)
    torch.manual_seed(1)
    draws = torch.stack([model.reparameterize(mu, logvar, 3.0) for _ in range(4000)])
    spread = (draws - mu).std(0) / torch.exp(0.5 * logvar)
    assert torch.allclose(spread, torch.full_like(spread, 3.0), rtol=0.08)
    model.train()
    assert torch.equal(model(tokens, lengths, noise=0.0)["z"], mu.detach())
    a, b = model(tokens, lengths, noise=2.0)["z"], model(tokens, lengths, noise=2.0)["z"]
    assert not torch.equal(a, b)
    model.eval()
    assert torch.equal(model(tokens, lengths, noise=2.0)["z"], mu.detach())


def test_latent_noise_share_widens_that_share_of_each_batch():
    """``train.latent_noise_share`` widens the draw of that share of the molecules, per row;
    the rest keep q(z|x)'s own draw, and a share of 1 is the single scale."""
    torch.manual_seed(0)
    scale = _noise(TrainConfig(latent_noise=1.5, latent_noise_share=0.25), 4000, torch.device("cpu"))
    assert scale.shape == (4000, 1)
    assert set(scale.unique().tolist()) == {1.0, 1.5}
    assert abs(float((scale == 1.5).float().mean()) - 0.25) < 0.03
    assert _noise(TrainConfig(latent_noise=1.5), 8, torch.device("cpu")) == 1.5
    model = build_model(CFG, V)
    tokens, lengths = _batch()
    mu, logvar = model.encode(tokens, lengths)
    rows = torch.tensor([[0.0]] * (len(mu) - 1) + [[1.0]])
    z = model.reparameterize(mu, logvar, rows)
    assert torch.equal(z[:-1], mu[:-1]) and not torch.equal(z[-1], mu[-1])
