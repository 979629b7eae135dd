"""Every tutorial in ``tutorials/`` runs as a plain script in smoke mode (``CI=1``) and converts to a notebook."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = sorted((ROOT / "tutorials").glob("*.py"))


def _env(tmp_path):
    env = dict(os.environ, CI="1", TUTORIAL_OUT=str(tmp_path), MPLBACKEND="Agg", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


def test_tutorials_found():
    assert len(TUTORIALS) >= 2, f"expected the tutorials in {ROOT / 'tutorials'}"


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.name)
def test_tutorial_smoke_run(path, tmp_path):
    proc = subprocess.run([sys.executable, str(path)], cwd=tmp_path, env=_env(tmp_path), capture_output=True,  # noqa: PLW1510
                          text=True, timeout=600)
    assert proc.returncode == 0, f"{path.name} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
    pngs = list(tmp_path.glob("*.png"))
    assert pngs, f"{path.name} saved no figure into TUTORIAL_OUT"
    assert all(p.stat().st_size > 5000 for p in pngs), "a saved figure is (nearly) empty"
    assert not list(path.parent.glob("*.png")), "tutorials must not write figures into the repository"


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.name)
def test_tutorial_converts_to_notebook(path, tmp_path):
    pytest.importorskip("jupytext")
    out = tmp_path / (path.stem + ".ipynb")
    proc = subprocess.run([sys.executable, "-m", "jupytext", "--to", "ipynb", "-o", str(out), str(path)],  # noqa: PLW1510
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    cells = json.loads(out.read_text())["cells"]
    kinds = [c["cell_type"] for c in cells]
    # percent format: the file splits into many cells, and the first one is the title
    assert kinds.count("markdown") >= 3 and kinds.count("code") >= 3, kinds
    assert kinds[0] == "markdown" and "".join(cells[0]["source"]).startswith("# ")
