"""Scorers: functions from a batch of molecules to floats (NaN where a molecule cannot be
scored), built from ``config.ScorerConfig``: RDKit properties, fingerprint similarity to a
target, GuacaMol's isomer score, SMARTS presence, a user's Python callable, a chemprop v2
model, and ``mpo`` combinations of them through desirability terms. The task scorers follow
GuacaMol (Brown et al., J. Chem. Inf. Model. 2019, 59, 1096) as used by the PMO benchmark
(Gao et al., NeurIPS 2022); the built-in tasks are in ``tasks.toml``.

A scorer is called as ``scorer(smiles, mols)`` with the parsed molecules beside the SMILES
(``None`` where a SMILES does not parse) and returns a float array.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
import math
import re
import sys
import tomllib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
from rdkit import Chem, DataStructs, rdBase

from .. import chem
from ..config import DesirabilityTerm, ScorerConfig, validate
from ..errors import OptimizationError

logger = logging.getLogger(__name__)

TASKS_FILE = Path(__file__).with_name("tasks.toml")
Scorer = Callable[[Sequence[str], Sequence[Chem.Mol | None]], np.ndarray]


# --------------------------------------------------------------------------- fingerprints


@functools.cache
def _generator(kind: str):
    from rdkit.Chem import rdFingerprintGenerator as G

    if kind in ("ecfp4", "ecfp6", "fcfp4", "fcfp6"):
        inv = G.GetMorganFeatureAtomInvGen() if kind.startswith("f") else None
        return G.GetMorganGenerator(radius=int(kind[-1]) // 2, atomInvariantsGenerator=inv)
    return G.GetAtomPairGenerator(maxDistance=10)  # "ap"


def fingerprint(mol: Chem.Mol, kind: str):
    """GuacaMol's fingerprints: ECFP/FCFP as unhashed Morgan counts (radius 2 or 3, feature
    invariants for FCFP), AP atom-pair counts (max distance 10), PHCO the Gobbi 2D
    pharmacophore; ``morgan2048`` the 2048-bit Morgan radius 2 bit vector used elsewhere."""
    if kind == "phco":
        from rdkit.Chem.Pharm2D import Generate, Gobbi_Pharm2D

        return Generate.Gen2DFingerprint(mol, Gobbi_Pharm2D.factory)
    if kind == "morgan2048":
        return chem.fingerprint(mol)  # the bit vector the rest of molvae compares
    return _generator(kind).GetSparseCountFingerprint(mol)


def _target_mol(smiles: str, what: str) -> Chem.Mol:
    mol = chem.to_mol(smiles)
    if mol is None:
        raise OptimizationError(f"{what}: target {smiles!r} is not a valid molecule")
    return mol


def _per_molecule(fn: Callable[[Chem.Mol], float]) -> Scorer:
    def score(smiles, mols):
        return np.array([fn(m) if m is not None else math.nan for m in mols], dtype=float)
    return score


def similarity_scorer(target: str, kind: str = "ecfp4") -> Scorer:
    ref = fingerprint(_target_mol(target, "similarity"), kind)
    return _per_molecule(lambda m: DataStructs.TanimotoSimilarity(ref, fingerprint(m, kind)))


# --------------------------------------------------------------------------- isomers


def parse_formula(formula: str) -> list[tuple[str, int]]:
    """``"C7H8N2O2"`` -> [("C", 7), ("H", 8), ("N", 2), ("O", 2)]."""
    parts = re.findall(r"([A-Z][a-z]?)(\d*)", formula)
    if not parts or "".join(e + n for e, n in parts) != formula:
        raise OptimizationError(f"isomer: {formula!r} is not a molecular formula like C7H8N2O2")
    table = Chem.GetPeriodicTable()
    for element, _ in parts:
        try:
            with rdBase.BlockLogs():  # RDKit's own lines before our one
                table.GetAtomicNumber(element)
        except RuntimeError:
            raise OptimizationError(f"isomer: unknown element {element!r} in {formula!r}") from None
    return [(e, int(n) if n else 1) for e, n in parts]


def isomer_scorer(formula: str) -> Scorer:
    """GuacaMol's IsomerScoringFunction: the geometric mean of a Gaussian (sigma 1) on each
    element's count and a Gaussian (sigma 2) on the total atom count, hydrogens included."""
    counts = parse_formula(formula)
    if len({e for e, _ in counts}) != len(counts):
        raise OptimizationError(f"isomer: {formula!r} names an element twice")
    total = sum(n for _, n in counts)

    def one(mol: Chem.Mol) -> float:
        have = element_counts(mol)
        scores = [chem.desirability(have[e], "gaussian", mu=n, sigma=1.0) for e, n in counts]
        scores.append(chem.desirability(sum(have.values()), "gaussian", mu=total, sigma=2.0))
        return float(np.prod(scores) ** (1 / len(scores)))

    return _per_molecule(one)


def property_function(name: str) -> Callable[[Chem.Mol], float]:
    """A built-in property (``chem.PROPERTIES``) or an RDKit descriptor by its name."""
    if name in chem.PROPERTIES:
        return chem.PROPERTIES[name]
    from rdkit.Chem import Descriptors

    fn = dict(Descriptors.descList).get(name)
    if fn is None:
        raise OptimizationError(f"unknown property {name!r}: neither a molvae property "
                                f"({', '.join(chem.PROPERTIES)}) nor an RDKit descriptor name")
    return fn


def atom_count_scorer(element: str) -> Scorer:
    """Atoms of one element (hydrogens counted on the molecule with explicit hydrogens)."""
    parse_formula(element)  # a valid element symbol
    return _per_molecule(lambda m: float(element_counts(m)[element]))


def element_counts(mol: Chem.Mol) -> Counter:
    """Atoms per element symbol, hydrogens included."""
    return Counter(a.GetSymbol() for a in Chem.AddHs(mol).GetAtoms())


def smarts_scorer(pattern: str, present: bool = True) -> Scorer:
    with rdBase.BlockLogs():
        query = Chem.MolFromSmarts(pattern)
    if query is None:
        raise OptimizationError(f"smarts: {pattern!r} is not a valid SMARTS pattern")
    return _per_molecule(lambda m: float(m.HasSubstructMatch(query) == present))


# --------------------------------------------------------------------------- user code


def load_callable(ref: str) -> Callable:
    """``package.module:function`` or ``path/to/file.py:function`` -> the function."""
    module_name, sep, attr = ref.rpartition(":")
    if not sep or not module_name or not attr:
        raise OptimizationError(f"callable {ref!r}: write it as package.module:function or "
                                "path/to/file.py:function")
    if module_name.endswith(".py") or "/" in module_name or "\\" in module_name:
        path = Path(module_name).expanduser()
        if not path.is_file():
            raise OptimizationError(f"callable {ref!r}: no such file {path}")
        name = f"molvae_user_{abs(hash(str(path.resolve())))}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        try:
            sys.modules[name] = module  # lets pickling and dataclasses in it work
            spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(name, None)
            raise OptimizationError(f"callable {ref!r}: importing {path} failed: "
                                    f"{type(exc).__name__}: {exc}") from None
    else:
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise OptimizationError(f"callable {ref!r}: cannot import {module_name}: "
                                    f"{type(exc).__name__}: {exc}") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise OptimizationError(f"callable {ref!r}: {module_name} has no function {attr!r}")
    return fn


class BatchScorer:
    """Calls ``fn(list_of_smiles) -> list_of_floats`` in batches. A batch that raises is
    retried molecule by molecule, so one bad molecule costs only itself; a value that is
    not a finite number becomes NaN. ``failures`` counts the molecules it could not score.

    A scorer that is broken rather than unlucky stops the run with its error, before it
    spends the oracle budget: one that raised on every molecule of a batch before it ever
    scored one (a server down, a wrong signature), or one that returns anything but one
    value per molecule. The first error it raises is logged as a warning either way."""

    def __init__(self, fn: Callable, name: str, batch_size: int = 256):
        self.fn, self.name, self.batch_size = fn, name, batch_size
        self.failures = 0
        self.scored = 0  # molecules it gave a finite number for
        self.last_error = ""

    def __call__(self, smiles: Sequence[str], mols: Sequence[Chem.Mol | None] = ()) -> np.ndarray:
        out = np.full(len(smiles), math.nan)
        idx = [i for i, s in enumerate(smiles) if s and (not mols or mols[i] is not None)]
        for k in range(0, len(idx), self.batch_size):
            part = idx[k:k + self.batch_size]
            values = self._call([smiles[i] for i in part])
            if values is None:  # isolate the molecule(s) it failed on
                singles = [self._call([smiles[i]]) for i in part]
                if self.scored == 0 and all(v is None for v in singles):
                    raise OptimizationError(
                        f"scorer {self.name!r} raised on every one of the {len(part)} molecules "
                        f"it was given and has scored none: {self.last_error}")
                values = [v[0] if v is not None else math.nan for v in singles]
            out[part] = values
            self.scored += int(np.isfinite(out[part]).sum())
        self.failures += int(np.isnan(out[idx]).sum()) if idx else 0
        return out

    def _call(self, batch: list[str]) -> list[float] | None:
        try:
            result = self.fn(batch)
        except Exception as exc:  # the user's code: any failure is that molecule's
            if not self.last_error:
                logger.warning("scorer %r raised %s: %s (a molecule it cannot score is "
                               "unscorable)", self.name, type(exc).__name__, exc)
            self.last_error = f"{type(exc).__name__}: {exc}"
            return None
        if result is None or isinstance(result, (str, bytes, dict)) \
                or not hasattr(result, "__iter__"):
            raise OptimizationError(f"scorer {self.name!r} returned {type(result).__name__}; it "
                                    "must return a list of one number per molecule")
        values = list(result)
        if len(values) != len(batch):
            raise OptimizationError(f"scorer {self.name!r} returned {len(values)} values for "
                                    f"{len(batch)} molecules (it must return one per molecule)")
        return [self._as_float(v) for v in values]

    def _as_float(self, v) -> float:
        """A returned value as a float: None and non-finite numbers are NaN (a molecule it
        cannot score); anything but a number is a broken scorer."""
        if v is None:
            return math.nan
        if isinstance(v, (str, bytes)):
            raise OptimizationError(f"scorer {self.name!r} returned {v!r} ({type(v).__name__}) "
                                    "for a molecule; it must return numbers (None or NaN for "
                                    "a molecule it cannot score)")
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise OptimizationError(f"scorer {self.name!r} returned {v!r} for a molecule; it "
                                    "must return one number per molecule") from None
        return f if math.isfinite(f) else math.nan


def chemprop_predictor(path: str) -> Callable[[list[str]], list[float]]:
    """A chemprop v2 model file as a function of SMILES (its first output)."""
    try:
        import torch
        from chemprop import data, featurizers, models
    except ImportError:
        raise OptimizationError("chemprop scorers need chemprop: pip install 'molvae[chemprop]'"
                                ) from None
    if not Path(path).is_file():
        raise OptimizationError(f"chemprop: no such model file {path}")
    try:
        model = models.MPNN.load_from_file(path, map_location="cpu")
    except Exception as exc:
        raise OptimizationError(f"chemprop: {path} is not a chemprop v2 model file "
                                f"({type(exc).__name__}: {exc})") from None
    model.eval()
    featurizer = featurizers.SimpleMoleculeMolGraphFeaturizer()

    def predict(smiles: list[str]) -> list[float]:
        points = [data.MoleculeDatapoint.from_smi(s) for s in smiles]
        dataset = data.MoleculeDataset(points, featurizer=featurizer)
        batch = data.collate_batch([dataset[i] for i in range(len(dataset))])
        with torch.inference_mode():
            preds = model(batch.bmg, batch.V_d, batch.X_d)
        return preds.reshape(len(smiles), -1)[:, 0].tolist()

    return predict


# --------------------------------------------------------------------------- building


@functools.cache
def builtin_tasks() -> dict[str, ScorerConfig]:
    """The built-in tasks of ``tasks.toml`` (PMO's RDKit-only tasks), validated."""
    data = tomllib.loads(TASKS_FILE.read_text(encoding="utf-8"))
    return {name: validate(ScorerConfig, spec) for name, spec in data.items()}


def is_callable_ref(name: str) -> bool:
    head, sep, tail = name.rpartition(":")
    return bool(sep and head and tail.isidentifier()
                and (head.endswith(".py") or all(p.isidentifier() for p in head.split("."))))


def resolve(name: str, named: Mapping[str, ScorerConfig] = {}) -> ScorerConfig | None:
    """What a name in an objective or a term stands for: a ``[scorers]`` entry, a built-in
    task (``pmo:NAME``), ``chemprop:FILE``, a callable reference; None: a built-in property
    (checked by the caller)."""
    if name in named:
        return named[name]
    if name.startswith("pmo:"):
        task = builtin_tasks().get(name[4:])
        if task is None:
            raise OptimizationError(f"unknown task {name!r}; choose from "
                                    f"{', '.join('pmo:' + t for t in builtin_tasks())}")
        return task
    if name.startswith("chemprop:"):
        return ScorerConfig(kind="chemprop", target=name[len("chemprop:"):])
    if is_callable_ref(name):
        return ScorerConfig(kind="callable", target=name)
    return None


def build(cfg: ScorerConfig, named: Mapping[str, ScorerConfig] = {}, _depth: int = 0) -> Scorer:
    """The scorer a config describes (names in mpo terms resolved against ``named``)."""
    if _depth > 8:
        raise OptimizationError("scorers refer to each other in a loop")
    kind, target = cfg.kind, cfg.target
    if kind == "property":
        return _per_molecule(property_function(target))
    if kind == "atom_count":
        return atom_count_scorer(target)
    if kind == "similarity":
        return similarity_scorer(target, cfg.fingerprint)
    if kind == "isomer":
        return isomer_scorer(target)
    if kind == "smarts":
        return smarts_scorer(target, cfg.present)
    if kind == "callable":
        return BatchScorer(load_callable(target), target, cfg.batch_size)
    if kind == "chemprop":
        return BatchScorer(chemprop_predictor(target), f"chemprop:{target}", cfg.batch_size)
    return MPOScorer(cfg.terms, cfg.combine, named, _depth)


def term_scorer(term: DesirabilityTerm, named: Mapping[str, ScorerConfig] = {},
                _depth: int = 0) -> Scorer:
    spec = term.scorer if term.scorer is not None else resolve(term.property, named)
    if spec is None:
        spec = ScorerConfig(kind="property", target=term.property)
    return build(spec, named, _depth + 1)


class MPOScorer:
    """Desirability terms over scorers, combined by their weighted ``combine`` mean."""

    def __init__(self, terms: Sequence[DesirabilityTerm], combine: str = "geometric",
                 named: Mapping[str, ScorerConfig] = {}, _depth: int = 0):
        self.terms, self.combine = list(terms), combine
        self.parts = [term_scorer(t, named, _depth) for t in terms]

    @property
    def failures(self) -> int:
        return sum(failures(p) for p in self.parts)

    def __call__(self, smiles, mols) -> np.ndarray:
        columns = [fn(smiles, mols) for fn in self.parts]
        weights = [t.weight for t in self.terms]
        return np.array([
            chem.combine_desirabilities([chem.term_desirability(col[i], t)
                                         for col, t in zip(columns, self.terms, strict=True)],
                                        weights, self.combine)
            if mols[i] is not None else math.nan for i in range(len(smiles))])


def failures(scorer: Scorer) -> int:
    """Molecules a user's scorer could not score (0 for RDKit scorers)."""
    return getattr(scorer, "failures", 0)
