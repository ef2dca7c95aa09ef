"""Conditions of the conditional VAE (CVAE): requested property values as model input.

A conditional model (``model.conditions = ["logp", "tpsa", ...]``) receives, beside each code,
a condition vector of 2K numbers for K properties: each property's standardized value and a
1/0 flag saying whether it is given. Training drops whole vectors and single properties
(condition dropout), so one model samples with every property given, with some, or with
none (the flags all 0: the unconditional model).

``ConditionSpace`` is what the checkpoint stores: names, standardization, and the range the
training data covers (a request outside it is refused).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .errors import GenerationError

# a request per property: one value, or a (low, high) range
Target = float | tuple[float, float]

COVERAGE = (0.001, 0.999)  # the quantiles of the training data that bound a request


@dataclass(frozen=True)
class ConditionSpace:
    names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    low: tuple[float, ...]  # the 0.1% quantile of the training data
    high: tuple[float, ...]  # the 99.9% quantile

    @property
    def size(self) -> int:
        return 2 * len(self.names)

    @classmethod
    def fit(cls, names: Sequence[str], values: Mapping[str, np.ndarray]) -> ConditionSpace:
        """Standardization and coverage of each named column of ``values``."""
        missing = [n for n in names if n not in values]
        if missing:
            raise GenerationError(f"conditions need properties the dataset lacks: {', '.join(missing)}")
        cols = [np.asarray(values[n], dtype=np.float64) for n in names]
        cols = [c[np.isfinite(c)] for c in cols]
        if any(len(c) == 0 for c in cols):
            raise GenerationError("a condition column has no finite values")
        return cls(tuple(names), tuple(float(c.mean()) for c in cols),
                   tuple(float(c.std()) or 1.0 for c in cols),
                   tuple(float(np.quantile(c, COVERAGE[0])) for c in cols),
                   tuple(float(np.quantile(c, COVERAGE[1])) for c in cols))

    def to_record(self) -> dict:
        return {"names": list(self.names), "mean": list(self.mean), "std": list(self.std),
                "low": list(self.low), "high": list(self.high)}

    @classmethod
    def from_record(cls, rec) -> ConditionSpace:
        keys = ("names", "mean", "std", "low", "high")
        if not isinstance(rec, dict) or set(rec) != set(keys):
            raise ValueError("malformed conditions")
        n = len(rec["names"])
        if n == 0 or any(len(rec[k]) != n for k in keys):
            raise ValueError("malformed conditions")
        return cls(tuple(str(s) for s in rec["names"]),
                   *(tuple(float(v) for v in rec[k]) for k in keys[1:]))

    # ------------------------------------------------------------------ requests

    def name_of(self, asked: str) -> str:
        """The model's name for a requested property, whatever its case ("LogP", "pic50")."""
        if asked in self.names:
            return asked
        same = [n for n in self.names if n.lower() == str(asked).lower()]
        if len(same) != 1:
            raise GenerationError(f"unknown condition {asked!r}; this model is conditioned "
                                  f"on {', '.join(self.names)}")
        return same[0]

    def check(self, targets: Mapping[str, Target]) -> dict[str, tuple[float, float]]:
        """Validate a request; returns each property's (low, high) (equal for one value)."""
        out = {}
        for asked, target in targets.items():
            name = self.name_of(asked)
            if name in out:
                raise GenerationError(f"condition {name} given twice")
            lo, hi = (target, target) if isinstance(target, (int, float)) else target
            lo, hi = float(lo), float(hi)
            if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
                raise GenerationError(f"condition {name}: need finite values with low <= high, "
                                      f"got {lo}:{hi}")
            k = self.names.index(name)
            # a value must lie in the covered range; a range must overlap it and is cut to
            # it ("tpsa=0:90" asks for TPSA under 90 among what the model knows)
            outside = (lo < self.low[k] or hi > self.high[k]) if lo == hi else (
                hi < self.low[k] or lo > self.high[k])
            if outside:
                raise GenerationError(
                    f"condition {name}={_text(lo, hi)} is outside what the training data covers "
                    f"({_rounded(self.low[k], up=True):g} to {_rounded(self.high[k], up=False):g}, "
                    "its 0.1-99.9% range)")
            out[name] = (max(lo, self.low[k]), min(hi, self.high[k])) if lo < hi else (lo, hi)
        return out

    def vector(self, values: Mapping[str, np.ndarray | float], n: int) -> torch.Tensor:
        """(n, 2K) condition input: standardized ``values`` per given property (a scalar or
        one value per row) and their flags; properties not given are 0 with flag 0."""
        out = torch.zeros(n, self.size)
        for name, v in values.items():
            k = self.names.index(name)
            col = torch.as_tensor(np.broadcast_to(np.asarray(v, dtype=np.float32), (n,)).copy())
            out[:, 2 * k] = (col - self.mean[k]) / self.std[k]
            out[:, 2 * k + 1] = 1.0
        return out

    def training_vector(self, values: Mapping[str, np.ndarray], idx: np.ndarray,
                        drop_all: float, drop_each: float, generator: torch.Generator) -> torch.Tensor:
        """Condition input of the molecules ``idx`` with condition dropout: the whole vector
        dropped with probability ``drop_all``, else each property with ``drop_each``;
        a missing value (NaN) is never given."""
        n = len(idx)
        out = self.known_vector({k: values[k][idx] for k in self.names}, n)
        keep = torch.rand(n, len(self.names), generator=generator) >= drop_each
        keep &= (torch.rand(n, 1, generator=generator) >= drop_all) & out[:, 1::2].bool()
        out[:, 0::2] *= keep
        out[:, 1::2] = keep.float()
        return out

    def known_vector(self, values: Mapping[str, np.ndarray], n: int) -> torch.Tensor:
        """(n, 2K) condition input with every property given where its value is known (one
        value per row; NaN: not given, value 0 and flag 0)."""
        out = self.vector({k: np.nan_to_num(values[k]) for k in self.names}, n)
        known = torch.as_tensor(np.stack([np.isfinite(values[k]) for k in self.names], 1))
        out[:, 0::2] *= known
        out[:, 1::2] = known.float()
        return out


def _rounded(x: float, up: bool, digits: int = 4) -> float:
    """``x`` to ``digits`` significant digits, rounded inwards (a range's low end up, its
    high end down), so that a bound a message shows is itself accepted."""
    if x == 0 or not math.isfinite(x):
        return x
    scale = 10.0 ** (digits - 1 - math.floor(math.log10(abs(x))))
    return (math.ceil(x * scale) if up else math.floor(x * scale)) / scale


def _text(lo: float, hi: float) -> str:
    return f"{lo:g}" if lo == hi else f"{lo:g}:{hi:g}"


_TERM = re.compile(r"^\s*([A-Za-z_][\w]*)\s*=\s*([^:]+?)\s*(?::\s*(.+?)\s*)?$")


def parse_targets(terms: Sequence[str] | str) -> dict[str, Target]:
    """``["logp=2.5", "tpsa=40:90"]`` (or one space-separated string) -> {name: value or
    (low, high)}; one clear error per malformed term."""
    if isinstance(terms, str):
        terms = terms.split()
    out: dict[str, Target] = {}
    for term in terms:
        m = _TERM.match(term)
        if not m:
            raise GenerationError(f"condition {term!r}: write NAME=VALUE or NAME=LOW:HIGH "
                                  "(e.g. logp=2.5 or tpsa=40:90)")
        name, a, b = m.group(1).lower(), m.group(2), m.group(3)
        try:
            value: Target = float(a) if b is None else (float(a), float(b))
        except ValueError:
            raise GenerationError(f"condition {term!r}: {a if b is None else a + ':' + b} "
                                  "is not a number (or LOW:HIGH)") from None
        if name in out:
            raise GenerationError(f"condition {name} given twice")
        out[name] = value
    return out


# what counts as a hit: |achieved - requested| within this much (a range: distance to it)
TOLERANCE = {"mw": 20.0, "logp": 0.5, "tpsa": 10.0, "hbd": 0.5, "hba": 0.5, "qed": 0.05,
             "sa": 0.5}


def hits(targets: Mapping[str, tuple[float, float]], values: Mapping[str, np.ndarray]
         ) -> np.ndarray:
    """True per molecule where every requested property is within its tolerance of the
    requested value or range (``TOLERANCE``; a property without one: exactly in range)."""
    ok = None
    for name, (lo, hi) in targets.items():
        v = np.asarray(values[name], dtype=float)
        t = TOLERANCE.get(name, 0.0)
        hit = np.isfinite(v) & (v >= lo - t) & (v <= hi + t)
        ok = hit if ok is None else ok & hit
    if ok is None:
        raise GenerationError("no condition given")
    return ok


def distance(targets: Mapping[str, tuple[float, float]], values: Mapping[str, np.ndarray],
             space: ConditionSpace) -> np.ndarray:
    """Each molecule's distance to a request: how far each value lies outside its requested
    range, in standard deviations of the training data, as a Euclidean norm over the
    requested properties; inf where a value is missing (a molecule that is not valid)."""
    d = 0.0
    for name, (lo, hi) in targets.items():
        v = np.asarray(values[name], dtype=float)
        d = d + ((np.clip(lo - v, 0, None) + np.clip(v - hi, 0, None))
                 / space.std[space.names.index(name)]) ** 2
    return np.where(np.isfinite(d), np.sqrt(d), np.inf)


def describe(ranges: Mapping[str, tuple[float, float]]) -> str:
    """A request as text: "logp=2:3 tpsa=70"."""
    return " ".join(f"{k}={_text(lo, hi)}" for k, (lo, hi) in ranges.items())


def mark_hits(df, space: ConditionSpace, targets: Sequence[Mapping]):
    """``df`` (annotated ``generate.conditional`` output) with ``hit``: the molecule is
    valid and within tolerance of every condition of its request."""
    hit = np.zeros(len(df), dtype=bool)
    valid = df["valid"].to_numpy(bool)
    for i, target in enumerate(targets):
        ranges = space.check(target)
        rows = (df["request_id"].to_numpy() == i) & valid
        if rows.any():
            hit[rows] = hits(ranges, {k: df.loc[rows, k].to_numpy(float) for k in ranges})
    return df.assign(hit=hit)


def request_table(df, space: ConditionSpace, targets: Sequence[Mapping]) -> list[dict]:
    """Per request of a ``mark_hits`` table: molecules, valid share, share hitting every
    condition within tolerance (of valid molecules), with ``novelty`` annotated the shares
    that are novel and that are novel hits, and per property the mean absolute error
    between requested and achieved values."""
    rows = []
    for i, target in enumerate(targets):
        ranges = space.check(target)
        part = df[(df["request_id"] == i) & df["valid"].astype(bool)]
        row = {"request": describe(ranges), "molecules": int((df["request_id"] == i).sum()),
               "valid": len(part) / max(int((df["request_id"] == i).sum()), 1)}
        if len(part) and "novel" in part:
            row["novel"] = float(part["novel"].mean())
        if len(part) and all(k in part for k in ranges):
            row["hit"] = float(part["hit"].mean())
            if "novel" in part:  # hits that are not training molecules
                row["novel_hit"] = float((part["hit"] & part["novel"]).mean())
            for k in ranges:
                row[f"mae_{k}"] = float(np.nanmean(np.abs(part[k].to_numpy(float)
                                                          - part[f"target_{k}"].to_numpy(float))))
        rows.append(row)
    return rows


def summary(df, targets: Mapping[str, tuple[float, float]]) -> str:
    """One line per requested property of an annotated conditional sample: mean achieved,
    mean absolute error against the value each molecule was asked for, the share inside a
    requested range and the share within it or the value ± ``TOLERANCE``; and the share
    that hits every request (and of novel hits, where the sample is annotated with
    ``novel``)."""
    valid = df[df["valid"].astype(bool)]
    lines = []
    for name, (lo, hi) in targets.items():
        if name not in valid:
            continue
        v = valid[name].to_numpy(dtype=float)
        asked = valid[f"target_{name}"].to_numpy(dtype=float)
        ok = hits({name: (lo, hi)}, {name: v})
        inside = (f"in {_text(lo, hi)} {np.mean((v >= lo) & (v <= hi)):.1%}, "
                  if lo < hi else "")  # a range: the share inside it, then with the tolerance
        lines.append(f"  {name} asked {_text(lo, hi)}: achieved mean {np.nanmean(v):.3g}, "
                     f"MAE {np.nanmean(np.abs(v - asked)):.3g} (to each molecule's asked value), "
                     f"{inside}within {_text(lo, hi)} ± {TOLERANCE.get(name, 0):g} {ok.mean():.1%}")
    present = {k: r for k, r in targets.items() if k in valid}
    if present and len(valid):
        hit_all = hits(present, {k: valid[k].to_numpy(dtype=float) for k in present})
        novel = (f"; novel hits (not training molecules) "
                 f"{(hit_all & valid['novel'].to_numpy(bool)).mean():.1%}" if "novel" in valid else "")
        lines.append(f"  every condition within its tolerance (±): {hit_all.mean():.1%} of valid "
                     "molecules" + novel)
    return "condition:\n" + "\n".join(lines) if lines else "condition: (properties not scored)"


def request_support(loaded, ranges: dict[str, tuple[float, float]]) -> tuple[int, int] | None:
    """How many of a conditional model's (``loaded``, a LoadedModel) stored training codes
    meet the request ``ranges`` (``request``'s answer) within tolerance, of how many: a
    request that few or none of the training molecules meet jointly gets few hits, though
    each value alone is covered. None when the model stores no property values with its
    codes."""
    props = (loaded.prior or {}).get("properties")
    if not ranges or props is None or loaded.conditions is None:
        return None
    names = loaded.conditions.names
    values = {name: props[:, names.index(name)].float().numpy() for name in ranges}
    return int(hits(ranges, values).sum()), len(props)


def support_note(loaded, ranges: dict[str, tuple[float, float]]) -> str | None:
    """A warning for a request that under 1% of the stored training codes meet, else None."""
    support = request_support(loaded, ranges)
    if support is None or support[0] >= 0.01 * support[1]:
        return None
    met, total = support
    share = f"only {met:,} ({met / total:.2%})" if met else "none"
    return (f"{describe(ranges)}: {share} of the model's {total:,} stored training molecules "
            "meet this request jointly; expect few hits")

