"""The one-way flow of imports (STYLE.md): molvae never imports prefect or flows; only
molvae/tracking.py imports mlflow; `import molvae` loads nothing heavy."""

import ast
import subprocess
import sys
from pathlib import Path

MOLVAE = Path(__file__).resolve().parent.parent / "molvae"
ORDER = ["config", "chem", "vocab", "data", "model", "train", "generate", "metrics", "optimize",
         "report", "tracking"]


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            names.add("." * node.level + mod)
    return names


def test_no_prefect_flows_and_mlflow_only_in_tracking():
    for path in MOLVAE.glob("*.py"):
        mods = _imports(path)
        assert not any(m.split(".")[0] in ("prefect", "flows", "prefect_dask") for m in mods), path
        if path.stem != "tracking":
            assert not any(m.split(".")[0] == "mlflow" for m in mods), path


def test_imports_point_down_the_chain():
    for path in MOLVAE.glob("*.py"):
        if path.stem not in ORDER:
            continue
        me = ORDER.index(path.stem)
        for m in _imports(path):
            if m.startswith(".") and m.strip("."):
                target = m.strip(".").split(".")[0]
                if target in ORDER:
                    assert ORDER.index(target) < me, f"{path.stem} imports {target}"


def test_import_molvae_is_light():
    out = subprocess.run([sys.executable, "-c", "import sys, molvae; print(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True).stdout.split()
    for heavy in ("torch", "rdkit", "prefect", "mlflow", "pandas"):
        assert heavy not in out


def test_package_functions_are_not_hidden_by_their_modules():
    """`molvae.optimize` is the function even after its module is loaded (calls two and three
    failed with "'module' object is not callable" before)."""
    code = ("import molvae; f = molvae.optimize; import molvae.optimize; "
            "from molvae.optimize import optimize; import molvae.metrics; "
            "assert molvae.optimize is f is optimize and callable(molvae.optimize); "
            "assert molvae.evaluate is molvae.metrics.evaluate; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr
