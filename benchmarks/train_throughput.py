"""Training throughput (molecules/s) at the default config and at the MOSES VAE size,
beside the MOSES reference implementation (molsets 0.3.1) in the same process.

    python benchmarks/train_throughput.py [--batches 12] [--threads 2]

Prints the machine's fp32 matmul rate, each model's median rate over timed batches, its
estimated FLOP rate and utilization against the matmul rate, and a JSON line. The MOSES
model code is read out of the molsets wheel (downloaded without dependencies) and run
as-is on its own character SMILES; `moses` is never imported.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import types
import zipfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import matmul_gflops, median  # noqa: E402

from molvae.config import SHIPPED_TRAIN, DataConfig, ModelConfig  # noqa: E402
from molvae.data import bucketed_batches, collate, prepare  # noqa: E402
from molvae.model import build_model, kl_divergence, reconstruction_loss  # noqa: E402


def gru_flops(inp: int, hidden: int) -> int:
    """Multiply-adds x2 of one GRU step (3 gates, input and hidden projections)."""
    return 2 * 3 * hidden * (inp + hidden)


def ours_flops_per_token(cfg: ModelConfig, vocab: int) -> float:
    enc = 0
    inp = cfg.embedding_size
    for _ in range(cfg.encoder_num_layers):
        enc += 2 * gru_flops(inp, cfg.encoder_hidden_size)
        inp = 2 * cfg.encoder_hidden_size
    dec = 0
    inp = cfg.embedding_size + cfg.latent_size
    for _ in range(cfg.decoder_num_layers):
        dec += gru_flops(inp, cfg.decoder_hidden_size)
        inp = cfg.decoder_hidden_size
    dec += 2 * cfg.decoder_hidden_size * vocab
    return 3.0 * (enc + dec)  # forward + backward ~ 3x forward


def time_ours(cfg: ModelConfig, ds, batches: int, batch_size: int) -> tuple[float, float]:
    torch.manual_seed(0)
    model = build_model(cfg, len(ds.vocab))
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    order = bucketed_batches(ds.lengths, batch_size, np.random.default_rng(0))
    rates, tokens = [], []
    for i, idx in enumerate(order[: batches + 3]):
        t0 = time.perf_counter()
        tok, ln = (torch.from_numpy(a) for a in collate(ds, idx))
        out = model(tok, ln)
        loss = reconstruction_loss(out["logits"], tok).mean() + 0.05 * kl_divergence(
            out["mu"], out["logvar"]).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        if i >= 3:  # warm-up batches excluded
            rates.append(len(idx) / (time.perf_counter() - t0))
            tokens.append(float(ln.float().mean()))
    return median(rates), float(np.mean(tokens))


def moses_module(tmp: str) -> types.ModuleType:
    subprocess.run([sys.executable, "-m", "pip", "download", "molsets==0.3.1", "--no-deps", "-q",
                    "--disable-pip-version-check", "-d", tmp], check=True)
    wheel = next(Path(tmp).glob("molsets-*.whl"))
    src = zipfile.ZipFile(wheel).read("moses/vae/model.py").decode()
    mod = types.ModuleType("moses_vae_model")
    exec(compile(src, "moses/vae/model.py", "exec"), mod.__dict__)
    return mod


class CharVocab:
    """The parts of MOSES's CharVocab that its VAE uses (one-hot embeddings, as MOSES does)."""

    def __init__(self, smiles: list[str]):
        chars = sorted({c for s in smiles for c in s})
        self.itos = [*chars, "<bos>", "<eos>", "<pad>", "<unk>"]
        self.stoi = {c: i for i, c in enumerate(self.itos)}
        self.bos, self.eos, self.pad, self.unk = (self.stoi[t] for t in
                                                  ("<bos>", "<eos>", "<pad>", "<unk>"))
        self.vectors = torch.eye(len(self.itos))

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, s: str) -> torch.Tensor:
        return torch.tensor([self.bos, *(self.stoi[c] for c in s), self.eos], dtype=torch.long)


def time_moses(smiles: list[str], batches: int, batch_size: int) -> tuple[float, float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        mod = moses_module(tmp)
    vocab = CharVocab(smiles)
    config = types.SimpleNamespace(  # molsets 0.3.1 moses/vae/config.py defaults
        q_cell="gru", q_bidir=False, q_d_h=256, q_n_layers=1, q_dropout=0.5, d_cell="gru",
        d_n_layers=3, d_dropout=0, d_z=128, d_d_h=512, freeze_embeddings=False)
    torch.manual_seed(0)
    model = mod.VAE(vocab, config)
    opt = torch.optim.Adam(model.parameters(), lr=3e-4)
    rng = np.random.default_rng(0)
    rates, lengths = [], []
    for i in range(batches + 3):
        idx = rng.choice(len(smiles), batch_size, replace=False)
        t0 = time.perf_counter()
        # MOSES's collate: encode, sort by length (descending) for pack_sequence.
        x = sorted((vocab.encode(smiles[j]) for j in idx), key=len, reverse=True)
        kl, recon = model(x)
        loss = 0.05 * kl + recon
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 50)
        opt.step()
        if i >= 3:
            rates.append(batch_size / (time.perf_counter() - t0))
            lengths.append(float(np.mean([len(t) for t in x])))
    params = sum(p.numel() for p in model.parameters())
    return median(rates), float(np.mean(lengths)), params


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-moses", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ds = prepare(DataConfig(path=SHIPPED_TRAIN, limit=30_000))
    gflops = matmul_gflops()
    out = {"threads": args.threads, "matmul_gflops": round(gflops, 1)}
    configs = {
        "default": ModelConfig(),
        "moses_size": ModelConfig(encoder_hidden_size=256, decoder_hidden_size=512,
                                  decoder_num_layers=3, latent_size=128),
    }
    for name, cfg in configs.items():
        rate, tok = time_ours(cfg, ds, args.batches, args.batch_size)
        flop_rate = rate * tok * ours_flops_per_token(cfg, len(ds.vocab)) / 1e9
        out[name] = {"molecules_per_s": round(rate, 1), "mean_tokens": round(tok, 1),
                     "gflops": round(flop_rate, 1),
                     "utilization_vs_matmul": round(flop_rate / gflops, 3)}
        print(f"molvae {name:10s}: {rate:7.1f} mol/s  ({tok:.1f} tokens/mol, "
              f"~{flop_rate:.1f} GFLOP/s = {flop_rate / gflops:.1%} of matmul {gflops:.0f})")
    if not args.skip_moses:
        rate, length, params = time_moses(ds.smiles, args.batches, args.batch_size)
        out["moses_reference"] = {"molecules_per_s": round(rate, 1),
                                  "mean_chars": round(length, 1), "parameters": params}
        out["moses_size_speedup"] = round(out["moses_size"]["molecules_per_s"] / rate, 2)
        print(f"MOSES reference    : {rate:7.1f} mol/s  ({length:.1f} chars/mol); "
              f"molvae at MOSES size is {out['moses_size_speedup']:.2f}x")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
