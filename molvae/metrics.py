"""Distribution metrics for generated molecules (MOSES definitions, Polykovskiy et al. 2020).

validity, uniqueness@k, novelty, internal diversity (IntDiv1/2), FCD, SNN, fragment and
scaffold similarity, Wasserstein distances of property distributions, filter pass rate.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from . import chem
from .chem.bits import torch_matmul
from .config import DATA_DIR
from .errors import MetricsError
from .files import atomic_path
from .parallel import map_chunks

logger = logging.getLogger(__name__)

PLOT_PROPERTIES = ("mw", "logp", "qed", "sa")


def validity(smiles: Sequence[str | None]) -> float:
    """Fraction of entries that are molecules."""
    if not smiles:
        return 0.0
    return sum(chem.to_mol(s) is not None for s in smiles) / len(smiles)


def uniqueness(canonical: Sequence[str], k: int | None = None) -> float:
    """Fraction of distinct molecules among the first ``k`` valid ones (all if None, or if
    fewer than k, as MOSES computes it); NaN without a valid molecule."""
    valid = [s for s in canonical if s]
    if k is not None:
        if len(valid) < k:
            logger.debug("uniqueness@%d of all %d valid molecules", k, len(valid))
        valid = valid[:k]
    return len(set(valid)) / len(valid) if valid else math.nan


def novelty(canonical: Sequence[str], is_novel: Callable[[list[str]], np.ndarray]) -> float:
    """Fraction of distinct valid molecules that are not in the training set (NaN: none)."""
    uniq = sorted({s for s in canonical if s})
    return float(np.mean(is_novel(uniq))) if uniq else math.nan


FP_BITS = 1024  # IntDiv and SNN: Morgan radius 2, 1,024 bits (MOSES)


def _fp_matrix(smiles: Sequence[str], n_bits: int = FP_BITS) -> np.ndarray:
    return chem.fingerprints(smiles, radius=2, n_bits=n_bits).astype(np.float32)


def _tanimoto_blocks(a: np.ndarray, b: np.ndarray, block: int = 2048):
    """Yield (row slice, Tanimoto block as a float32 torch tensor) for fingerprint
    matrices a (N, F), b (M, F). The shared bits by ``chem.BitCounts``; torch runs the
    element-wise work on all cores (numpy's is single-threaded)."""
    import torch

    shared = chem.BitCounts.of(b)
    na, nb = torch.from_numpy(a.sum(1)), torch.from_numpy(b.sum(1))
    for i in range(0, len(a), block):
        inter = torch.from_numpy(shared(a[i : i + block], matmul=torch_matmul))  # exact
        union = (na[i : i + block, None] + nb[None, :] - inter).clamp_(min=1.0)  # 0: both empty
        yield slice(i, i + len(inter)), inter.div_(union)


def internal_diversities(canonical: Sequence[str]) -> tuple[float, float]:
    """(IntDiv1, IntDiv2) in one pass over the pairs: IntDiv_p = 1 - (mean over all pairs
    of T^p)^(1/p) (MOSES; pairs include self)."""
    valid = [s for s in canonical if s]
    return _intdiv(_fp_matrix(valid)) if len(valid) >= 2 else (0.0, 0.0)


def _intdiv(fp: np.ndarray, block: int = 2048) -> tuple[float, float]:
    """(IntDiv1, IntDiv2) of a fingerprint matrix, summing T and T^2 over the upper
    triangle of blocks (the matrix is symmetric: half the work)."""
    import torch

    def both_orders(t: torch.Tensor, k: int) -> float:
        """Sum over ordered pairs: columns < k are the diagonal block (both orders of its
        pairs are in it already); every later column stands for its mirror pair too. Rows
        summed in float32 (at most N terms each), the row sums in float64."""
        return (float(t[:, :k].sum(1).sum(dtype=torch.float64))
                + 2 * float(t[:, k:].sum(1).sum(dtype=torch.float64)))

    shared = chem.BitCounts.of(fp)
    counts = torch.from_numpy(fp.sum(1))
    s1 = s2 = 0.0
    for i in range(0, len(fp), block):
        a = fp[i : i + block]
        # this block against itself and every later row; torch's product: flows fork
        # worker processes from other threads meanwhile (see chem.BitCounts)
        inter = torch.from_numpy(shared(a, start=i, matmul=torch_matmul))
        t = inter.div_((counts[i : i + block, None] + counts[None, i:] - inter).clamp_(min=1.0))
        s1 += both_orders(t, len(a))
        s2 += both_orders(t.square_(), len(a))
    n2 = len(fp) ** 2
    return float(1 - s1 / n2), float(1 - (s2 / n2) ** 0.5)


def internal_diversity(canonical: Sequence[str], p: int = 1) -> float:
    """IntDiv_p for p = 1 or 2 (see ``internal_diversities``)."""
    if p not in (1, 2):
        raise MetricsError("internal diversity is computed for p = 1 or 2")
    return internal_diversities(canonical)[p - 1]


def snn(canonical: Sequence[str], reference: Sequence[str]) -> float:
    """Mean over generated molecules of the highest Tanimoto similarity to the reference."""
    gen = [s for s in canonical if s]
    if not gen or not reference:
        return 0.0
    return _snn(_fp_matrix(gen), _fp_matrix(reference))


def _snn(fg: np.ndarray, fr: np.ndarray) -> float:
    best = np.zeros(len(fg), dtype=np.float32)
    for sl, t in _tanimoto_blocks(fg, fr):
        best[sl] = t.amax(1).numpy()
    return float(best.mean())


def _cosine(a: Counter, b: Counter) -> float:
    keys = set(a) | set(b)
    va = np.array([a.get(k, 0) for k in keys], dtype=float)
    vb = np.array([b.get(k, 0) for k in keys], dtype=float)
    denom = np.linalg.norm(va) * np.linalg.norm(vb)
    return float(va @ vb / denom) if denom else 0.0


def wasserstein(a: Sequence[float], b: Sequence[float]) -> float:
    from scipy.stats import wasserstein_distance

    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    return float(wasserstein_distance(a, b)) if len(a) and len(b) else float("nan")


def fcd(canonical: Sequence[str], reference: Sequence[str], device: str = "cpu",
        cache_dir: str | Path | None = None,
        progress: Callable[[int], None] | None = None) -> float:
    """Fréchet ChemNet Distance (Preuer et al. 2018) with the ``fcd`` package; both sets
    canonicalized first. Reference statistics are cached in ``cache_dir`` when given.
    ``progress(k)`` after each k generated molecules through ChemNet."""
    ref = [c for c in (chem.canonical_smiles(s) for s in reference) if c]
    return _fcd([s for s in canonical if s], ref, device, cache_dir, progress)


def _fcd(gen: list[str], ref: list[str], device: str, cache_dir: str | Path | None,
         progress: Callable[[int], None] | None) -> float:
    """``fcd`` of valid canonical SMILES on both sides."""
    import fcd as fcd_lib

    if min(len(set(gen)), len(set(ref))) < 2:  # a covariance needs two (sqrtm hangs on one)
        raise MetricsError(f"FCD needs at least 2 distinct valid molecules on each side, got "
                           f"{len(set(gen))} generated and {len(set(ref))} reference")
    model = fcd_lib.load_ref_model()
    mu_g, sig_g = _chemnet_stats(fcd_lib, model, gen, device, progress=progress)

    def stats() -> dict[str, np.ndarray]:
        mu, sigma = _chemnet_stats(fcd_lib, model, ref, device)
        return {"mu": mu, "sigma": sigma}

    r = _stored_arrays(f"fcd_ref_{_content_key(ref)}.npz", cache_dir, stats)
    return float(fcd_lib.calculate_frechet_distance(mu_g, sig_g, r["mu"], r["sigma"]))


def _reference_fingerprints(ref: list[str], cache_dir: str | Path | None) -> np.ndarray:
    """``_fp_matrix`` of valid canonical reference SMILES (SNN's other side), stored like
    the FCD statistics: fingerprinting the shipped 10k test sample costs ~2 s a run."""
    name = f"snn_ref_{_content_key(ref)}.npz"
    packed = _stored_arrays(name, cache_dir, lambda: {"bits": np.packbits(
        chem.fingerprints(ref, radius=2, n_bits=FP_BITS), axis=1)})["bits"]
    return np.unpackbits(packed, axis=1, count=FP_BITS).astype(np.float32)


def _stored_arrays(name: str, cache_dir: str | Path | None,
                   compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The arrays of the .npz file ``name``: shipped in data/ (the shipped test sample's),
    else cached in ``cache_dir``, else computed (and cached there when given)."""
    cache = Path(cache_dir) / name if cache_dir else None
    for path in (DATA_DIR / name, cache):
        if path is not None and path.is_file():
            with np.load(path) as z:
                return {k: z[k] for k in z.files}
    arrays = compute()
    if cache is not None:
        with atomic_path(cache) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
    return arrays


def _content_key(smiles: Sequence[str]) -> str:
    """Names a set's cached and shipped files (FCD statistics, reference rows)."""
    import hashlib

    return hashlib.sha256("\n".join(smiles).encode()).hexdigest()[:16]


def _chemnet_stats(fcd_lib, model, smiles: Sequence[str], device: str, chunk: int = 1000,
                   progress: Callable[[int], None] | None = None):
    """ChemNet activations' mean and covariance, in chunks (bounded memory). fcd pads every
    SMILES to 350 characters, its default and the length the published scores use (the
    final LSTM state depends on the padding), so ChemNet costs the same per molecule
    whatever its length: ~3.5 ms on one core here (batches of 64: ~7% faster than 256,
    the same activations)."""
    acts = []
    for i in range(0, len(smiles), chunk):
        part = list(smiles[i : i + chunk])
        acts.append(fcd_lib.get_predictions(model, part, batch_size=64, n_jobs=0,
                                            device=device))
        if progress:
            progress(len(part))
    act = np.concatenate(acts)
    return act.mean(0), np.cov(act.T)


def _eval_one(smiles: str | None, with_fragments: bool, with_filter: bool = True) -> dict:
    row: dict = {"smiles": "", "valid": False}
    mol = chem.to_mol(smiles)
    if mol is None:
        return row
    from rdkit import Chem

    row.update(smiles=Chem.MolToSmiles(mol), valid=True, heavy_atoms=mol.GetNumHeavyAtoms())
    if with_filter:
        row["pass_moses"] = chem.passes_moses(mol)
    row.update(chem.properties(mol, PLOT_PROPERTIES))
    if with_fragments:
        from rdkit.Chem import BRICS

        row["fragments"] = sorted(BRICS.BRICSDecompose(mol))
        row["scaffold"] = chem.scaffold(mol)
    return row


def _eval_chunk(chunk: list[str | None], with_fragments: bool, with_filter: bool) -> list[dict]:
    return [_eval_one(s, with_fragments, with_filter) for s in chunk]


def eval_rows(smiles: Sequence[str | None], with_fragments: bool = True,
              workers: int | None = None, chunk_size: int = 200,
              with_filter: bool = True, progress: Callable[[int], None] | None = None
              ) -> list[dict]:
    """Per-molecule facts the metrics need (canonical SMILES, properties, MOSES filter,
    BRICS fragments, scaffold), computed over all cores; ``progress(k)`` after each k."""
    return map_chunks(_eval_chunk, list(smiles), with_fragments, with_filter,
                      chunk_size=chunk_size, workers=workers, progress=progress)


def reference_rows(reference: Sequence[str], cache_dir: str | Path | None = None,
                   workers: int | None = None, with_fragments: bool = True) -> list[dict]:
    """eval_rows of a reference set (no filter needed), cached as JSON by content hash.
    Rows of the shipped data ship in ``data/`` under the same content-hash name, gzipped
    (the MOSES test sample's with fragments; the training sample's first 2,000, which the
    pipeline plots against, without), so a fresh clone does not recompute them."""
    import gzip
    import json

    key = _content_key(reference)
    for suffix in ("_frag",) if with_fragments else ("_frag", ""):
        shipped = DATA_DIR / f"ref_rows_{key}{suffix}.json.gz"
        if shipped.is_file():
            return json.loads(gzip.decompress(shipped.read_bytes()))
    name = f"ref_rows_{key}{'_frag' if with_fragments else ''}.json"
    cache = Path(cache_dir) / name if cache_dir else None
    if cache is not None and cache.is_file():
        return json.loads(cache.read_text())
    rows = eval_rows(reference, with_fragments, workers, with_filter=False)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.name + ".tmp")
        tmp.write_text(json.dumps(rows))
        tmp.replace(cache)
    return rows


def evaluate(
    generated: Sequence[str | None],
    reference: Sequence[str],
    is_novel: Callable[[list[str]], np.ndarray] | None = None,
    *,
    with_fcd: bool = True,
    with_fragments: bool = True,
    workers: int | None = None,
    cache_dir: str | Path | None = None,
    generated_rows: list[dict] | None = None,
    progress: Callable[[str, int], Callable[[int], None]] | None = None,
) -> tuple[dict[str, float], list[dict], list[dict]]:
    """All metrics of ``generated`` against ``reference``; returns (metrics, generated
    rows, reference rows) so callers can plot without recomputing. ``generated_rows``
    (e.g. from ``chem.score_smiles``) skips rescoring when fragments are not needed.
    ``progress(stage, total)`` returns a callback taking counts, for each long stage
    ("score" the molecules, "FCD" through ChemNet)."""
    if isinstance(generated, str) or isinstance(reference, str):
        raise MetricsError("evaluate takes lists of SMILES, not one string (a string is read "
                           "as its characters)")
    if not generated:
        raise MetricsError("no generated molecules to evaluate")
    if not reference:
        raise MetricsError("the reference set is empty")
    gen_rows = generated_rows or eval_rows(generated, with_fragments, workers,
                                           progress=progress and progress("score", len(generated)))
    ref_rows = reference_rows(list(reference), cache_dir, workers, with_fragments)
    canonical = [r["smiles"] for r in gen_rows]
    ref_valid = [r for r in ref_rows if r["valid"]]
    if not ref_valid:
        raise MetricsError("the reference set has no valid molecule")
    ref_canon = [r["smiles"] for r in ref_valid]
    valid_rows = [r for r in gen_rows if r["valid"]]
    n, nan = len(gen_rows), math.nan  # nan: a metric that needs valid molecules, without them
    if not valid_rows:
        logger.warning("none of the %d generated molecules is valid: only validity is defined", n)
    fp_gen = _fp_matrix([r["smiles"] for r in valid_rows])  # once, for IntDiv and SNN
    out: dict[str, float] = {
        "n": float(n),
        "validity": len(valid_rows) / n,
        "uniqueness@1k": uniqueness(canonical, 1000),
        "uniqueness@10k": uniqueness(canonical, 10000),
        "filters": float(np.mean([r["pass_moses"] for r in valid_rows])) if valid_rows else nan,
        **dict(zip(("intdiv1", "intdiv2"),
                   _intdiv(fp_gen) if len(fp_gen) >= 2 else (nan, nan), strict=True)),
        "snn": _snn(fp_gen, _reference_fingerprints(ref_canon, cache_dir))
        if len(fp_gen) else nan,
        "heavy_atoms_ge10": float(np.mean([r["heavy_atoms"] >= 10 for r in valid_rows]))
        if valid_rows else nan,
    }
    out.update(_distances(valid_rows, ref_valid, with_fragments))
    if is_novel is not None:
        out["novelty"] = novelty(canonical, is_novel)
    distinct = len({r["smiles"] for r in valid_rows})
    if with_fcd and distinct < 2:  # one molecule, or copies of it: no covariance
        logger.warning("FCD needs at least 2 distinct valid molecules (%d here): reported as "
                       "NaN", distinct)
        out["fcd"] = float("nan")
    elif with_fcd:
        tick = progress and progress("FCD", len(valid_rows))
        out["fcd"] = _fcd([s for s in canonical if s], ref_canon, "cpu", cache_dir, tick)
    return out, gen_rows, ref_rows


def _distances(rows: list[dict], ref_rows: list[dict], with_fragments: bool) -> dict[str, float]:
    """Fragment and scaffold cosine similarity (MOSES Frag, Scaf) and the Wasserstein
    distance of each plotted property, between valid rows and valid reference rows."""
    out = {f"w_{p}": wasserstein([r[p] for r in rows], [r[p] for r in ref_rows])
           for p in PLOT_PROPERTIES}
    if with_fragments and not rows:
        out["frag"] = out["scaf"] = math.nan
    elif with_fragments:
        out["frag"] = _cosine(Counter(f for r in rows for f in r["fragments"]),
                              Counter(f for r in ref_rows for f in r["fragments"]))
        out["scaf"] = _cosine(Counter(r["scaffold"] for r in rows),
                              Counter(r["scaffold"] for r in ref_rows))
    return out


def plot_distributions(gen_rows: list[dict], ref_rows: list[dict], path: str | Path,
                       properties: Sequence[str] = PLOT_PROPERTIES,
                       labels: tuple[str, str] = ("generated", "reference")) -> Path:
    """One PNG with a histogram per property, generated vs reference."""
    from matplotlib.figure import Figure  # no pyplot: the caller's backend stays as it is

    fig = Figure(figsize=(4 * len(properties), 3.2))
    axes = fig.subplots(1, len(properties))
    for ax, p in zip(np.atleast_1d(axes), properties, strict=True):
        a = np.array([r[p] for r in gen_rows if r.get("valid")], dtype=float)
        b = np.array([r[p] for r in ref_rows if r.get("valid")], dtype=float)
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
        both = np.concatenate([a, b]) if len(a) + len(b) else np.array([0.0, 1.0])
        bins = np.linspace(np.percentile(both, 0.5), np.percentile(both, 99.5), 40)
        for x, label, alpha, color in ((b, labels[1], 0.5, "tab:gray"),
                                       (a, labels[0], 0.6, "tab:blue")):
            if ((x >= bins[0]) & (x <= bins[-1])).any():  # a density of nothing divides by 0
                ax.hist(x, bins=bins, density=True, alpha=alpha, label=f"{label} (n={len(x):,})",
                        color=color)
        ax.set_title(p)
        ax.set_xlabel(chem.PROPERTY_LABELS.get(p, p))
        ax.set_ylabel("density (area = 1)")
    np.atleast_1d(axes)[0].legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return Path(path)
