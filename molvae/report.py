"""Files a reviewer looks at: structure grids, interpolation strips, plots, a sortable HTML
report. Everything is written to disk first (tracking then logs the files), so an MLflow
outage loses nothing.
"""

from __future__ import annotations

import html
import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from . import chem
from .errors import OutputError
from .files import atomic_path

logger = logging.getLogger(__name__)

REPORT_COLUMNS = ["rank", "smiles", "score", "novel", "nearest_similarity", "nearest_known",
                  "pass_all", "reasons", "top", "qed", "sa", "logp", "plogp", "mw", "tpsa",
                  "heavy_atoms", "similarity", "source", "method"]


def write_text(text: str, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    """CSV or Parquet by extension, written atomically (temp file + rename)."""
    path = Path(path)
    suffix = path.suffix.lower()  # in any case
    if suffix not in (".parquet", ".csv", ".gz"):
        raise OutputError(f"{path}: output must end in .csv, .csv.gz or .parquet")
    try:
        with atomic_path(path) as tmp:
            if suffix == ".parquet":
                df.to_parquet(tmp, index=False)
            else:
                df.to_csv(tmp, index=False, compression="gzip" if suffix == ".gz" else None)
    except OSError as e:  # a full disk, a folder that refuses files: one line, not a bug
        raise OutputError(f"{path}: cannot write it ({e.strerror or e})") from e
    return path


def grid_image(smiles: Sequence[str], legends: Sequence[str], path: str | Path,
               per_row: int = 6, size: int = 240) -> Path | None:
    """PNG grid of structures with a legend under each, a blank cell for what is not a
    molecule (None when nothing is drawable)."""
    from rdkit import Chem
    from rdkit.Chem import Draw

    mols = [chem.to_mol(s) for s in smiles]
    if all(m is None for m in mols):
        return None
    # a blank cell where there is no molecule, so rows stay aligned
    img = Draw.MolsToGridImage([Chem.Mol() if m is None else m for m in mols],
                               molsPerRow=per_row, subImgSize=(size, size),
                               legends=list(legends))
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return Path(path)


def top_grid(df: pd.DataFrame, path: str | Path, k: int = 24, by: str = "score") -> Path | None:
    """The first ``k`` of a ranked table (one with ``rank``) as given, else the best ``k``
    by ``by``; each legend: rank, score, and the nearest known molecule's similarity (NN)
    or "known" for a training molecule."""
    if "rank" in df:
        top = df[df["rank"].notna()].head(k)
        ranks = top["rank"].astype(int).tolist()
    else:
        top = df[df["valid"]].drop_duplicates("smiles").sort_values(by, ascending=False).head(k)
        ranks = list(range(1, len(top) + 1))
    legends = []
    for i, (_, r) in zip(ranks, top.iterrows(), strict=True):
        text = f"#{i} {by} {r[by]:.3f}"
        if "novel" in r and not r["novel"]:
            text += " known"
        elif "nearest_similarity" in r and np.isfinite(r["nearest_similarity"]):
            text += f" NN {r['nearest_similarity']:.2f}"
        legends.append(text)
    return grid_image(top["smiles"].tolist(), legends, path)


def interpolation_strips(df: pd.DataFrame, path: str | Path,
                         ends: Sequence[str] | None = None) -> Path | None:
    """One row per interpolation segment, start to end, each point labelled with t; the
    end points say whether they decode back to the molecule asked for (``ends``: the input
    molecules, in order) or what similarity they reach."""
    if df.empty:
        return None
    steps = int(df["step"].max()) + 1
    legends = []
    for seg, step, t, smi in zip(df["segment"], df["step"], df["t"], df["smiles"], strict=True):
        text = f"t={t:.2f}"
        if ends is not None and step in (0, steps - 1):
            want = chem.canonical_smiles(ends[int(seg) + (step == steps - 1)])
            side = "start" if step == 0 else "end"
            text = (f"{side}: reconstructed" if smi == want else
                    f"{side}: sim {chem.tanimoto(smi, want) or 0:.2f} to input")
        legends.append(text)
    return grid_image(df["smiles"].fillna("").tolist(), legends, path, per_row=steps, size=200)


def neighbor_grid(df: pd.DataFrame, path: str | Path, per_row: int = 8) -> Path | None:
    """Per seed and radius one row of distinct analogues, most similar first, each
    labelled with its radius and Tanimoto similarity to the seed."""
    valid = df[df["valid"]] if "valid" in df else df
    if valid.empty:
        return None
    smiles: list[str] = []
    legends: list[str] = []
    keys = ["center", "radius"] if "center" in valid else ["radius"]
    for _, group in valid.groupby(keys, sort=True):
        row = group.drop_duplicates("smiles").sort_values("similarity", ascending=False)
        row = row.head(per_row)
        smiles += row["smiles"].tolist() + [""] * (per_row - len(row))  # keep rows aligned
        legends += [f"r={r:g} sim {s:.2f}" for r, s in zip(row["radius"], row["similarity"],
                                                           strict=True)]
        legends += [""] * (per_row - len(row))
    return grid_image(smiles, legends, path, per_row=per_row, size=180)


def property_scatter(df: pd.DataFrame, path: str | Path, x: str = "sa", y: str = "qed"
                     ) -> Path | None:
    """Candidates in the QED/SA plane: passing every filter vs not, training molecules
    marked, the top set ringed."""
    from matplotlib.figure import Figure

    d = df[df["valid"]] if "valid" in df else df
    if d.empty or x not in d or y not in d:
        return None
    fig = Figure(figsize=(6.4, 4.6))
    ax = fig.subplots()
    ok = d["pass_all"].to_numpy(bool) if "pass_all" in d else np.ones(len(d), bool)
    known = ~d["novel"].to_numpy(bool) if "novel" in d else np.zeros(len(d), bool)
    for mask, label, color in ((~ok, "fails a filter", "tab:gray"),
                               (ok, "passes every filter", "tab:blue")):
        m = mask & ~known
        ax.scatter(d[x][m], d[y][m], s=6, alpha=0.5, color=color, label=f"{label} ({m.sum():,})")
    if known.any():
        ax.scatter(d[x][known], d[y][known], s=14, marker="x", color="tab:red",
                   label=f"training molecule ({known.sum():,})")
    if "top" in d and d["top"].any():
        t = d[d["top"].astype(bool)]
        ax.scatter(t[x], t[y], s=40, facecolors="none", edgecolors="black",
                   label=f"top set ({len(t)})")
    ax.set_xlabel(chem.PROPERTY_LABELS.get(x, x))
    ax.set_ylabel(chem.PROPERTY_LABELS.get(y, y))
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return Path(path)


def condition_plot(df: pd.DataFrame, path: str | Path) -> Path | None:
    """Requested against achieved value, one panel per conditioned property, of a
    conditional sample (columns ``target_<name>`` and ``<name>``); the diagonal is a
    perfect hit."""
    from matplotlib.figure import Figure

    d = df[df["valid"].astype(bool)] if "valid" in df else df
    names = [c[7:] for c in d.columns if c.startswith("target_") and c[7:] in d]
    if d.empty or not names:
        return None
    fig = Figure(figsize=(3.6 * len(names), 3.6))
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    for ax, name in zip(axes, names, strict=True):
        m = d[f"target_{name}"].notna() & d[name].notna()
        x, y = d.loc[m, f"target_{name}"].to_numpy(float), d.loc[m, name].to_numpy(float)
        ax.scatter(x, y, s=5, alpha=0.35, color="tab:blue")
        lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
        ax.plot([lo, hi], [lo, hi], color="black", linewidth=1, linestyle="--")
        ax.set_xlabel(f"requested {name}")
        ax.set_ylabel(f"achieved: {chem.PROPERTY_LABELS.get(name, name)}", fontsize=8)
    fig.suptitle("conditional samples: requested vs achieved", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return Path(path)


def trajectory_plot(traj: pd.DataFrame, path: str | Path, baseline: pd.DataFrame | None = None,
                    title: str = "") -> Path:
    from matplotlib.figure import Figure  # no pyplot: the caller's backend stays as it is

    fig = Figure(figsize=(6, 3.6))
    ax = fig.subplots()
    t = traj[np.isfinite(traj["best_score"])]
    ax.plot(t["oracle_calls"], t["best_score"], label="optimizer", color="tab:blue")
    if baseline is not None and len(baseline):
        b = baseline[np.isfinite(baseline["best_score"])]
        ax.plot(b["oracle_calls"], b["best_score"], label="prior sampling", color="tab:gray",
                linestyle="--")
    ax.set_xlabel("oracle calls (RDKit evaluations)")
    ax.set_ylabel("best score")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return Path(path)


_BOND_STYLE = re.compile(r"style='fill:none;fill-rule:evenodd;stroke:(#[0-9A-Fa-f]{6});"
                         r"stroke-width:([\d.]+)px;stroke-linecap:butt;stroke-linejoin:miter;"
                         r"stroke-opacity:1'")


def _svg(smiles: str, size: int = 160) -> str:
    """Inline SVG of a molecule ('' when not drawable), made compact: atom labels as text,
    each bond's repeated style written as two attributes, no classes (a third of the size)."""
    from rdkit.Chem.Draw import rdMolDraw2D

    mol = chem.to_mol(smiles) if smiles else None
    if mol is None:
        return ""
    d = rdMolDraw2D.MolDraw2DSVG(size, size, -1, -1, True)  # no FreeType: labels as <text>
    d.DrawMolecule(mol)
    d.FinishDrawing()
    svg = d.GetDrawingText()
    svg = _BOND_STYLE.sub(r"fill='none' stroke='\1' stroke-width='\2'", svg[svg.find("<svg"):])
    return re.sub(r" class='[^']*'", "", svg)


COLUMN_HELP = {
    "rank": "position by score (ties broken by score_margin); empty: invalid or a duplicate",
    "score": "weighted desirability of the configured properties (QED, SA, logP by "
             "default), 0..1; 1 = every target met",
    "novel": "not in the model's training set (exact match of canonical SMILES)",
    "nearest_similarity": "Morgan (ECFP4) Tanimoto to the most similar molecule of the "
                          "training data, 0..1; 1 = same fingerprint",
    "nearest_known": "that most similar training molecule (drawn in the 'nearest known' column)",
    "pass_all": "passes every configured filter",
    "reasons": "why each failed filter failed: the alerts that fired (PAINS, Brenk, NIH, "
               "MOSES rule names) or the value outside its limit",
    "top": "in the top set: the best candidate of its chemotype, training molecules excluded",
    "qed": "quantitative estimate of drug-likeness (Bickerton 2012), 0..1, higher is better",
    "sa": "synthetic accessibility (Ertl 2009), 1 easy .. 10 hard",
    "logp": "Crippen logP (octanol/water)",
    "plogp": "penalized logP (JT-VAE): logP - SA - long rings, standardized",
    "mw": "molecular weight, g/mol",
    "tpsa": "topological polar surface area, Å²",
    "heavy_atoms": "atoms other than hydrogen",
    "similarity": "Tanimoto to the seed molecule (neighbours) or start (interpolation)",
    "source": "how the molecule was made (prior sample, interpolation, neighbour, optimizer)",
}


_STYLE = """body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:2px 6px;font-size:12px;vertical-align:top}
#t thead th{cursor:pointer;background:#eee;position:sticky;top:0}td svg{display:block}
.summary th{text-align:left;background:#f6f6f6}.cf{width:6em}.nn div{font-size:10px;
max-width:110px;word-break:break-all;color:#555}.bar{margin:.6em 0}.bar label{margin-right:1em}
"""

# sorting, the search box, per-column filters and the toggles
_SCRIPT = """
let dir = {};
function sortBy(i) {
  const tb = document.querySelector('#t tbody');
  const rows = Array.from(tb.rows);
  dir[i] = -(dir[i] || -1);
  rows.sort((a, b) => {
    const x = a.cells[i].dataset.v, y = b.cells[i].dataset.v;
    const nx = parseFloat(x), ny = parseFloat(y);
    const c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
    return dir[i] * c;
  });
  rows.forEach(r => tb.appendChild(r));
}
function test(rule, v) {
  rule = rule.trim().toLowerCase();
  if (!rule) return true;
  const n = parseFloat(v), m = rule.match(/^(-?[\\d.]+)\\s*\\.\\.\\s*(-?[\\d.]+)$/);
  if (m) return n >= parseFloat(m[1]) && n <= parseFloat(m[2]);
  if (/^[<>]=?\\s*-?[\\d.]+$/.test(rule)) {
    const x = parseFloat(rule.replace(/^[<>]=?/, ''));
    return rule[0] === '>' ? (rule[1] === '=' ? n >= x : n > x) : (rule[1] === '=' ? n <= x : n < x);
  }
  return String(v).toLowerCase().includes(rule);
}
function apply() {
  const q = document.getElementById('q').value.toLowerCase();
  const failing = document.getElementById('failing').checked;
  const known = document.getElementById('known').checked;
  const toponly = document.getElementById('toponly').checked;
  const cf = Array.from(document.querySelectorAll('.cf')).filter(e => e.value.trim());
  let shown = 0;
  for (const r of document.querySelector('#t tbody').rows) {
    let ok = (failing || r.dataset.pass_all !== '0') && (known || r.dataset.novel !== '0')
      && (!toponly || r.dataset.top === '1');
    if (ok && q) ok = r.textContent.toLowerCase().includes(q);
    for (const e of cf) { if (ok) ok = test(e.value, r.cells[+e.dataset.col].dataset.v); }
    r.style.display = ok ? '' : 'none';
    shown += ok;
  }
  document.getElementById('count').textContent = shown + ' shown';
}
document.querySelectorAll('#q, .cf').forEach(e => e.addEventListener('input', apply));
document.querySelectorAll('.bar input[type=checkbox]').forEach(e => e.addEventListener('change', apply));
document.querySelectorAll('.cf').forEach(e => e.addEventListener('click', ev => ev.stopPropagation()));
apply();
"""


def html_report(df: pd.DataFrame, path: str | Path, title: str = "molvae candidates",
                summary: dict | None = None, max_rows: int = 500) -> Path:
    """Self-contained HTML workbench (no network): the first ``max_rows`` rows of a ranked
    table with each molecule and its nearest known molecule drawn, a readable summary, a
    column legend, a search box, per-column filters (text, ``>0.5``, ``0.3..0.8``, ``true``),
    toggles for failing molecules, training molecules and the top set, sortable columns."""
    cols = [c for c in REPORT_COLUMNS if c in df.columns and c != "nearest_known"]
    cols += [c for c in df.columns if c.startswith("pass_") and c not in cols]
    rows = df.head(max_rows)
    near = "nearest_known" in df.columns
    head = "".join(f"<th onclick='sortBy({i + 1 + near})' title='{html.escape(COLUMN_HELP.get(c, c))}'>"
                   f"{html.escape(c)}</th>" for i, c in enumerate(cols))
    filters = "".join(f"<th><input class='cf' data-col='{i + 1 + near}' placeholder='filter'></th>"
                      for i in range(len(cols)))
    body = [_row_html(r, cols, near) for _, r in rows.iterrows()]
    summ = ""
    if summary:
        items = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>"
                        for k, v in summary.items())
        summ = f"<table class='summary'>{items}</table>"
    legend = "".join(f"<li><b>{html.escape(c)}</b>: {html.escape(COLUMN_HELP[c])}</li>"
                     for c in ["nearest_known", *cols] if c in COLUMN_HELP and c in df.columns)
    legend += ("<li><b>pass_&lt;filter&gt;</b>: passes that filter (lipinski, veber, pains, "
               "brenk, nih, moses, windows: the configured property windows)</li>")
    nn_head = "<th>nearest known</th>" if near else ""
    nn_filter = "<th></th>" if near else ""
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_STYLE}</style></head><body>
<h2>{html.escape(title)}</h2>{summ}
<details><summary>What the columns mean</summary><ul>{legend}</ul></details>
<div class="bar"><input id="q" placeholder="search SMILES, reasons, any text" size="40">
<label><input type="checkbox" id="failing"> show molecules failing a filter</label>
<label><input type="checkbox" id="known"> show training molecules</label>
<label><input type="checkbox" id="toponly"> top set only</label>
<span id="count"></span></div>
<p>The first {len(rows):,} of {len(df):,} molecules, best first (all of them: the run's
candidates.csv). Click a column name to sort; filter a column with text, <code>&gt;0.5</code>,
<code>&lt;3</code>, <code>0.3..0.8</code> or <code>true</code>.</p>
<table id="t"><thead><tr><th>structure</th>{nn_head}{head}</tr>
<tr class="filters"><th></th>{nn_filter}{filters}</tr></thead><tbody>{''.join(body)}</tbody></table>
<script>{_SCRIPT}</script></body></html>"""
    return write_text(doc, path)


def _row_html(r: pd.Series, cols: list[str], near: bool) -> str:
    """One table row: the structure, the nearest known molecule, the columns (each cell
    with its sort key), and the flags the toggles read."""
    flags = " ".join(f"data-{k}='{int(bool(r[k]))}'" for k in ("pass_all", "novel", "top")
                     if k in r and pd.notna(r[k]))
    cells = [f"<td>{_svg(r['smiles'])}</td>"]
    if near:
        known = r["nearest_known"] if isinstance(r["nearest_known"], str) else ""
        cells.append(f"<td class='nn' data-v='{html.escape(known)}'>{_svg(known, 110)}"
                     f"<div>{html.escape(known)}</div></td>")
    for c in cols:
        shown, key = _cell(r[c])
        cells.append(f"<td data-v='{html.escape(key)}'>{html.escape(shown)}</td>")
    return f"<tr {flags}>" + "".join(cells) + "</tr>"


def _cell(v) -> tuple[str, str]:
    """(shown text, sort key): integers as integers, other numbers to 3 decimals."""
    if v is None or (isinstance(v, float | np.floating) and not np.isfinite(v)) or v is pd.NA:
        return "", ""
    if isinstance(v, bool | np.bool_):
        return str(bool(v)).lower(), str(bool(v)).lower()
    if isinstance(v, int | np.integer) or (isinstance(v, float | np.floating) and float(v).is_integer()):
        return f"{int(v):,}", str(int(v))
    if isinstance(v, float | np.floating):
        return f"{v:.3f}", repr(float(v))
    return str(v), str(v)


def _fmt(v) -> str:
    if isinstance(v, dict | list):
        return json.dumps(v)
    shown, _ = _cell(v)
    return shown
