"""Validation of a model on an encoded dataset: loss terms, token accuracy, KL, active
units, exact greedy reconstruction (what ``train.fit`` records after each epoch)."""

from __future__ import annotations

import numpy as np
import torch

from .conditions import ConditionSpace
from .data import EncodedDataset, collate, sequential_batches
from .model import SelfiesVAE, kl_divergence, reconstruction_loss, token_accuracy
from .vocab import selfies_to_smiles


@torch.no_grad()
def evaluate_dataset(model: SelfiesVAE, ds: EncodedDataset, batch_size: int,
                     device: torch.device, recon_size: int = 0, *,
                     property_stats: dict | None = None,
                     conditions: ConditionSpace | None = None) -> dict[str, float]:
    """Validation metrics: loss terms, token accuracy, KL per molecule, active units
    (Burda et al. 2016: Cov_x E[z_u] > 0.01) and exact greedy reconstruction of mu. A
    conditional model is validated with every condition given."""
    model.eval()
    totals = {"recon": 0.0, "kl": 0.0, "acc": 0.0, "prop_mse": 0.0}
    mus = []
    n = 0
    for idx in sequential_batches(len(ds), batch_size):
        tokens, lengths = (torch.from_numpy(a).to(device) for a in collate(ds, idx))
        cond = _full_condition(conditions, ds, idx, device)
        mu, logvar = model.encode(tokens, lengths, cond)
        logits = model.decoder(mu, tokens, cond)
        b = len(idx)
        totals["recon"] += float(reconstruction_loss(logits, tokens).sum())
        totals["kl"] += float(kl_divergence(mu, logvar).sum())
        totals["acc"] += float(token_accuracy(logits, tokens)) * b
        if model.property_head is not None and property_stats:
            y = property_targets(ds, idx, property_stats).to(device)
            totals["prop_mse"] += float(((model.property_head(mu) - y) ** 2).mean(1).sum())
        mus.append(mu.cpu())
        n += b
    mu_all = torch.cat(mus)
    active = int((mu_all.var(dim=0) > 0.01).sum()) if len(mu_all) > 1 else 0
    out = {
        "val_recon": totals["recon"] / n,
        "val_kl": totals["kl"] / n,
        "val_token_acc": totals["acc"] / n,
        "active_units": float(active),
    }
    if model.property_head is not None and property_stats:
        out["val_prop_mse"] = totals["prop_mse"] / n
    if recon_size > 0:
        sub = ds.subset(np.arange(min(recon_size, len(ds))))
        out["val_exact_recon"] = exact_reconstruction(model, sub, batch_size, device, conditions)
    return out


@torch.no_grad()
def exact_reconstruction(model: SelfiesVAE, ds: EncodedDataset, batch_size: int,
                         device: torch.device, conditions: ConditionSpace | None = None) -> float:
    """Fraction of molecules whose greedy decode of mu gives the same canonical SMILES (a
    conditional model's encoder and decoder given each molecule's own condition values)."""
    from . import chem  # here, not at import: training from a token file needs no RDKit

    model.eval()
    vocab = ds.vocab
    hits = 0
    max_len = int(ds.tokens.shape[1]) + 10
    for idx in sequential_batches(len(ds), batch_size):
        tokens, lengths = (torch.from_numpy(a).to(device) for a in collate(ds, idx))
        cond = _full_condition(conditions, ds, idx, device)
        mu, _ = model.encode(tokens, lengths, cond)
        ids = model.decoder.generate(mu, max_length=max_len, temperature=0.0,
                                     banned_first=vocab.structural_ids(),
                                     condition=cond).cpu().numpy()
        for row, i in zip(ids, idx, strict=True):
            smi = chem.canonical_smiles(selfies_to_smiles(vocab.to_selfies(row)))
            hits += int(smi == ds.smiles[i])
    return hits / max(len(ds), 1)


def _full_condition(conditions: ConditionSpace | None, ds: EncodedDataset, idx: np.ndarray,
                    device: torch.device) -> torch.Tensor | None:
    if conditions is None:
        return None
    # every known value given; no dropout, so no random draw
    return conditions.known_vector({k: ds.properties[k][idx] for k in conditions.names},
                                   len(idx)).to(device)


def property_targets(ds: EncodedDataset, idx: np.ndarray, stats: dict) -> torch.Tensor:
    cols = [(np.nan_to_num(ds.properties[k][idx], nan=m) - m) / s for k, (m, s) in stats.items()]
    return torch.from_numpy(np.stack(cols, axis=1).astype(np.float32))
