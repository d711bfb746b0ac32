"""The layering of docs/architecture.md, read from the source: who may import whom, one update rule,
one overlap-add."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "bufnmf"

# layer of each top-level module or package, lowest first
LAYERS = {
    "errors": 0, "checks": 0, "resources": 0,
    "dsp": 1, "models": 2, "clients": 3, "io": 3, "workflows": 4, "plot": 4, "demo": 4,
    "cli": 5, "web": 5, "batch": 5, "__init__": 6, "__main__": 6,
}
ALLOWED_UP = {("resources", "dsp"), ("clients", "io")}  # documented exceptions (sizes; reading a source)
IO_MAY_IMPORT = {"errors", "checks", "io"}


def _unit(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


def _imports(path: Path) -> set[str]:
    """Top-level bufnmf units a module imports (relative or absolute)."""
    tree = ast.parse(path.read_text())
    depth = len(path.relative_to(SRC).parts) - 1  # 0 for bufnmf/x.py, 1 for bufnmf/pkg/x.py
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                if node.level - 1 > depth:
                    continue
                if node.level - 1 == depth:  # from the package root: from .. import x / from ..x import y
                    target = node.module.split(".")[0] if node.module else None
                    names = [target] if target else [a.name for a in node.names]
                else:  # within the same package
                    names = [path.relative_to(SRC).parts[0]]
                found.update(n for n in names if n)
            elif node.module and node.module.startswith("bufnmf"):
                parts = node.module.split(".")
                found.add(parts[1] if len(parts) > 1 else "__init__")
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("bufnmf."):
                    found.add(a.name.split(".")[1])
    return found


def test_layers_import_one_way():
    problems = []
    for path in SRC.rglob("*.py"):
        unit = _unit(path)
        for dep in _imports(path):
            if dep == unit or dep not in LAYERS:
                continue
            if dep == "__init__" and unit not in ("__init__", "__main__"):
                # only __version__ may come from the package root
                text = path.read_text()
                if re.search(r"from \.+ import (?!__version__)", text):
                    problems.append(f"{path.relative_to(SRC)} imports from the package root")
                continue
            if unit == "io" and dep not in IO_MAY_IMPORT:
                problems.append(f"{path.relative_to(SRC)} (io) imports {dep}")
            elif LAYERS[dep] > LAYERS[unit] and (unit, dep) not in ALLOWED_UP:
                problems.append(f"{path.relative_to(SRC)} ({unit}) imports {dep}, a layer above it")
    assert problems == []


def test_one_update_rule_and_one_overlap_add():
    """No module but models/mu.py (and its numba fast path) and the convolutive model, models/nmfd.py,
    updates W or H; NMFD is a second model, not a second rule: its steps are mu.py's terms (w_factor,
    h_terms, penalise_h, blend_toward) applied over its templates' frames. One overlap-add."""
    update = re.compile(r"\b[WH]\s*(\[[^\]]*\])?\s*\*=")
    writers = sorted(str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if update.search(p.read_text()))
    assert writers == ["models/_kernels.py", "models/mu.py", "models/nmfd.py"]
    term = re.compile(r"def (_ratios|w_factor|h_terms|penalise_h|blend_toward|_gamma)\(")
    definers = sorted(str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if term.search(p.read_text()))
    assert definers == ["models/mu.py"]  # the rule's terms exist once
    nmfd = (SRC / "models" / "nmfd.py").read_text()
    for name in ("w_factor(", "h_terms(", "penalise_h(", "blend_toward("):
        assert name in nmfd, name  # NMFD's steps are the rule's terms
    assert not re.search(r"\bV\s*/|\*\*\s*\(beta", nmfd)  # and it forms no ratio of its own
    mu = (SRC / "models" / "mu.py").read_text()
    assert mu.count("kern.w_pass(") == 1 and mu.count("kern.h_pass(") == 1  # called from the rule only
    for path in SRC.rglob("*.py"):
        if path.name not in ("mu.py", "_kernels.py"):
            assert "w_pass" not in path.read_text() and "h_pass" not in path.read_text(), path
    ola_def = re.compile(r"def \w*overlap_add\(")
    ola = sorted(str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if ola_def.search(p.read_text()))
    assert ola == ["dsp/stft.py"]
    assert len(re.findall(r"def overlap_add\(", (SRC / "dsp" / "stft.py").read_text())) == 1


def test_front_ends_hold_no_numerics_and_write_no_files():
    for path in (SRC / "cli").rglob("*.py"):
        text = path.read_text()
        assert "OutputSet" not in text, path
        assert not re.search(r"\bnp\.(fft|linalg)|scipy", text), path
    for path in (SRC / "batch").rglob("*.py"):  # the batch writes its index and records, no numerics
        assert not re.search(r"\bnumpy|\bnp\.|scipy", path.read_text()), path


def test_the_web_front_end_runs_jobs_and_holds_no_numerics():
    """web/ calls the jobs (in its worker processes) and writes no outputs itself; front ends import
    no other front end, except the one command that starts the page (cli/serve.py)."""
    web = list((SRC / "web").rglob("*.py"))
    assert web
    for path in web:
        text = path.read_text()
        assert "OutputSet" not in text, path
        assert not re.search(r"\bnp\.(fft|linalg)|scipy|import numpy", text), path
        assert not _imports(path) & {"cli", "batch", "models", "dsp"}, path
    assert "decompose_job" in (SRC / "web" / "worker.py").read_text()
    for path in (SRC / "cli").rglob("*.py"):
        if "web" in _imports(path):
            assert path.name == "serve.py", path


def test_front_ends_do_not_call_each_other():
    """cli/batch.py is the batch runner's command line and cli/serve.py starts the web page; otherwise
    cli, batch and web stay apart."""
    for front in ("cli", "batch", "web"):
        for path in (SRC / front).rglob("*.py") if (SRC / front).exists() else []:
            allowed = {SRC / "cli" / "batch.py": {"batch"}, SRC / "cli" / "serve.py": {"web"}}.get(path, set())
            others = {"cli", "batch", "web"} - {front} - allowed
            assert not (_imports(path) & others), path


def test_start_up_leaves_out_what_one_object_needs():
    """scipy.optimize (0.12 s to import) is loaded by NMFMorph's pairing when it runs, not by
    ``import bufnmf``: every command and every batch worker starts that much sooner."""
    from .conftest import src_env

    code = "import sys, bufnmf, bufnmf.cli, bufnmf.batch.worker; print('scipy.optimize' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=src_env(), timeout=120)
    assert res.stdout.strip() == "False", res.stderr
