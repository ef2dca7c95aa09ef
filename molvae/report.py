"""Files a reviewer looks at: structure grids, interpolation strips, plots, a sortable HTML
report. Everything is written to disk first (tracking then logs the files), so an MLflow
outage loses nothing.
"""

from __future__ import annotations

import contextlib
import html
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from . import chem
from .errors import OutputError

logger = logging.getLogger(__name__)

REPORT_COLUMNS = ["rank", "smiles", "score", "novel", "nearest_similarity", "nearest_known",
                  "pass_all", "reasons", "top", "qed", "sa", "logp", "plogp", "mw", "tpsa",
                  "heavy_atoms", "similarity", "source", "method"]


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temp path beside ``path``; rename it into place only if the block succeeds,
    so an interrupted run (Ctrl-C) never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(text: str, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    """CSV or Parquet by extension, written atomically (temp file + rename)."""
    path = Path(path)
    if path.suffix not in (".parquet", ".csv", ".gz"):
        raise OutputError(f"{path}: output must end in .csv or .parquet")
    with atomic_path(path) as tmp:
        if path.suffix == ".parquet":
            df.to_parquet(tmp, index=False)
        else:
            df.to_csv(tmp, index=False, compression="gzip" if path.suffix == ".gz" else None)
    return path


def grid_image(smiles: Sequence[str], legends: Sequence[str], path: str | Path,
               per_row: int = 6, size: int = 240) -> Path | None:
    """PNG grid of structures with a legend under each (None when nothing is drawable)."""
    from rdkit.Chem import Draw

    pairs = [(chem.to_mol(s), lg) for s, lg in zip(smiles, legends, strict=True)]
    pairs = [(m, lg) for m, lg in pairs if m is not None]
    if not pairs:
        return None
    img = Draw.MolsToGridImage([m for m, _ in pairs], molsPerRow=per_row,
                               subImgSize=(size, size), legends=[lg for _, lg in pairs])
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


def interpolation_strips(df: pd.DataFrame, path: str | Path) -> Path | None:
    """One row per interpolation segment, start to end, each point labelled with t."""
    if df.empty:
        return None
    steps = int(df["step"].max()) + 1
    legends = [f"seg {s} t={t:.2f}" for s, t in zip(df["segment"], df["t"], strict=True)]
    smiles = [s if s else "C" for s in df["smiles"]]  # keep the grid aligned
    return grid_image(smiles, legends, path, per_row=steps, size=200)


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


def _svg(smiles: str, size: int = 160) -> str:
    from rdkit.Chem.Draw import rdMolDraw2D

    mol = chem.to_mol(smiles)
    if mol is None:
        return ""
    d = rdMolDraw2D.MolDraw2DSVG(size, size)
    d.DrawMolecule(mol)
    d.FinishDrawing()
    svg = d.GetDrawingText()
    return svg[svg.find("<svg"):]


def html_report(df: pd.DataFrame, path: str | Path, title: str = "molvae candidates",
                summary: dict | None = None, max_rows: int = 500) -> Path:
    """Self-contained HTML: inline SVG structures, every column sortable by a click."""
    cols = [c for c in REPORT_COLUMNS if c in df.columns]
    cols += [c for c in df.columns if c.startswith("pass_") and c not in cols]
    rows = df.head(max_rows)
    head = "".join(f"<th onclick='sortBy({i + 1})'>{html.escape(c)}</th>"
                   for i, c in enumerate(cols))
    body = []
    for _, r in rows.iterrows():
        cells = [f"<td>{_svg(r['smiles'])}</td>"]
        for c in cols:
            v = r[c]
            if isinstance(v, float | np.floating):
                shown, key = ("" if not np.isfinite(v) else f"{v:.3f}"), (v if np.isfinite(v) else "")
            else:
                shown, key = str(v), str(v)
            cells.append(f"<td data-v='{html.escape(str(key))}'>{html.escape(shown)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    summ = ""
    if summary:
        items = "".join(f"<li><b>{html.escape(str(k))}</b>: {html.escape(_fmt(v))}</li>"
                        for k, v in summary.items())
        summ = f"<ul>{items}</ul>"
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:1em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 6px;font-size:12px}}th{{cursor:pointer;background:#eee;
position:sticky;top:0}}td svg{{display:block}}</style></head><body>
<h2>{html.escape(title)}</h2>{summ}<p>{len(rows)} of {len(df)} molecules; click a column to sort.</p>
<table id="t"><thead><tr><th>structure</th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>
<script>
let dir = {{}};
function sortBy(i) {{
  const tb = document.querySelector('#t tbody');
  const rows = Array.from(tb.rows);
  dir[i] = -(dir[i] || -1);
  rows.sort((a, b) => {{
    const x = a.cells[i].dataset.v, y = b.cells[i].dataset.v;
    const nx = parseFloat(x), ny = parseFloat(y);
    const c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
    return dir[i] * c;
  }});
  rows.forEach(r => tb.appendChild(r));
}}
</script></body></html>"""
    return write_text(doc, path)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict | list):
        return json.dumps(v)
    return str(v)
