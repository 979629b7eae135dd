"""The user's own trajectories: ``trajectories_problem`` (NumPy float64 arrays, NaN as unobserved, no
extrapolation split unless asked, a learned noise scale), ``read_trajectories`` (long-format CSV, errors by file,
row and column) and the README's arrays-to-report example, run as written (with tiny budgets)."""
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from pyro_node_uq.data import read_trajectories, trajectories_problem

ROOT = Path(__file__).resolve().parents[2]


def _arrays(n=6, T=8):
    t = np.linspace(0.0, 2.0, T)
    rates = np.linspace(0.5, 1.5, n)
    return t, np.exp(-np.outer(rates, t))


def test_from_arrays_defaults():
    t, y = _arrays()
    p = trajectories_problem(t, y, obs_names=["conc"])
    assert p.extrapolation is None and sorted(p.splits) == ["test", "train"]
    assert (len(p.train), len(p.test)) == (5, 1) or (len(p.train), len(p.test)) == (4, 2)
    assert sorted(p.train.ids.tolist() + p.test.ids.tolist()) == list(range(6))
    assert p.train.y.dtype == torch.get_default_dtype() and p.train.t.dtype == torch.get_default_dtype()
    assert p.model_kwargs["scale"] == "learned"  # real data: the noise is learned, not fixed at 0.1
    assert p.model_kwargs["scale_init"] == pytest.approx(0.1 * float(np.std(y, ddof=1)), rel=1e-5)
    model = p.default_model()
    assert model.obs_dim == 1 and model.input_dim == 0 and model.scale == "learned"
    assert p.to(dtype=torch.float64).train.y.dtype == torch.float64  # .to works without an extrapolation split
    rows = {int(i): k for k, i in enumerate(p.train.ids)}
    for i, k in rows.items():
        np.testing.assert_allclose(p.train.y[k, :, 0].double().numpy(), y[i], rtol=1e-6)


def test_from_arrays_inputs_nan_mask_time_split_and_dtype():
    t, y = _arrays(4, 10)
    y[1, 3] = np.nan
    x = np.ones((4, 10))
    p = trajectories_problem(t, y, x, time_fraction=0.5, seed=1, dtype=torch.float64, input_names="dose")
    assert p.train.y.dtype == torch.float64 and p.input_names == ("dose",) and p.model_kwargs["init"] == "input"
    assert p.extrapolation is not None and torch.equal(p.train.ids, p.extrapolation.ids)
    both = p.train.mask | p.extrapolation.mask
    assert not (p.train.mask & p.extrapolation.mask).any()
    if 1 in p.train.ids.tolist():
        k = p.train.ids.tolist().index(1)
        assert not both[k, 3] and int(both[k].sum()) == 9
    assert p.default_model().input_dim == 1


@pytest.mark.parametrize("kwargs, error, match", [
    ({"t": np.arange(3.0), "y": np.ones((3, 4))}, ValueError, r"y: 4 times per unit but t has 3"),
    ({"t": np.arange(4.0), "y": np.ones((1, 4))}, ValueError, r"y: 1 unit; holding out test units needs at least 2"),
    ({"t": np.arange(4.0), "y": np.ones(4)}, ValueError, r"y: expected 2-D or 3-D values, got shape \(4,\)"),
    ({"t": np.arange(2.0), "y": np.array([[1.0, 2.0], [np.nan, np.nan]])}, ValueError, r"units \[1\] have no obs"),
    ({"t": np.arange(2.0), "y": np.ones((2, 2)), "x": np.ones((3, 2))}, ValueError, r"x: expected 2 units and 2 times"),
    ({"t": np.arange(2.0), "y": np.ones((2, 2)), "ids": [4, 4]}, ValueError, r"ids: expected 2 distinct integer ids"),
    ({"t": np.arange(2.0), "y": np.ones((2, 2)), "obs_names": ["a", "b"]}, ValueError, r"obs_names: 2 names"),
    ({"t": np.arange(2.0), "y": [["a", "b"], ["c", "d"]]}, TypeError, r"y: expected an array of numbers"),
    ({"t": np.array([0.0, 0.0]), "y": np.ones((2, 2))}, ValueError, r"split 'train': t: times must be strictly"),
])
def test_from_arrays_errors_name_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        trajectories_problem(**kwargs)


def _long_csv(path, rows=None):
    rows = rows or [{"subject": u, "t": tv, "dose": float(tv < 1), "conc": np.exp(-0.3 * u * tv)}
                    for u in (1, 2, 3, 4) for tv in (0.0, 0.5, 1.0, 2.0)]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_read_trajectories_long_csv(tmp_path):
    path = _long_csv(tmp_path / "long.csv")
    p = read_trajectories(path, unit="subject", time="t", inputs=["dose"], outputs=["conc"], seed=0)
    assert p.name == "long" and p.obs_names == ("conc",) and p.input_names == ("dose",)
    assert p.train.t.tolist() == [0.0, 0.5, 1.0, 2.0] and p.train.x[0, :, 0].tolist() == [1.0, 1.0, 0.0, 0.0]
    assert sorted(p.train.ids.tolist() + p.test.ids.tolist()) == [1, 2, 3, 4] and p.extrapolation is None
    k = p.train.ids.tolist()[0]
    np.testing.assert_allclose(p.train.y[0, :, 0].numpy(), np.exp(-0.3 * k * np.array([0, 0.5, 1, 2])), rtol=1e-6)


def test_read_trajectories_ragged_times_and_missing_values(tmp_path):
    rows = [{"unit": "a", "time": 0, "y": 1.0}, {"unit": "a", "time": 1, "y": "."}, {"unit": "b", "time": 0.5, "y": 2.0},
            {"unit": "c", "time": 1, "y": 3.0}, {"unit": "c", "time": 2, "y": 4.0}]
    p = read_trajectories(_long_csv(tmp_path / "ragged.csv", rows), test_fraction=0.34)
    assert p.obs_names == ("y",) and p.train.t.tolist() == [0.0, 0.5, 1.0, 2.0]
    assert int(p.train.mask.sum() + p.test.mask.sum()) == 4  # "." is unobserved


@pytest.mark.parametrize("rows, kwargs, match", [
    ([{"unit": 1, "time": 0, "y": 1.0}, {"unit": "", "time": 1, "y": 1.0}], {}, r"row 2, column 'unit': missing unit id"),
    ([{"unit": 1, "time": 0, "y": 1.0}, {"unit": 1, "time": 0, "y": 2.0}], {}, (r"row 2, column 'time': unit '1' has two "
                                                                      r"rows at time 0 \(rows 1 and 2\)")),
    ([{"unit": 1, "time": "x", "y": 1.0}], {}, r"row 1, column 'time': expected a number, got 'x'"),
    ([{"unit": 1, "time": 0, "y": 1.0}], {"outputs": ["z"]}, r"no column 'z' \(argument outputs=\)"),
    ([{"unit": 1, "time": 0, "y": 1.0, "u": 1.0}, {"unit": 2, "time": 1, "y": 1.0, "u": 0.0}], {"inputs": ["u"]},
     r"unit '1' has no row at time 1; with inputs every unit needs a row at every time"),
    ([{"unit": 1, "time": 0, "y": 1.0}], {"inputs": ["y"], "outputs": ["y"]}, r"columns \['y'\] named more than once"),
])
def test_read_trajectories_errors_name_file_row_and_column(tmp_path, rows, kwargs, match):
    path = _long_csv(tmp_path / "bad.csv", rows)
    with pytest.raises(ValueError, match=match) as info:
        read_trajectories(path, **kwargs)
    assert "bad.csv" in str(info.value)


def test_read_trajectories_unreadable_files(tmp_path):
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(ValueError, match=r"read_trajectories: '.*empty.csv' is empty"):
        read_trajectories(tmp_path / "empty.csv")
    with pytest.raises(FileNotFoundError, match=r"read_trajectories: no file '.*nope.csv'"):
        read_trajectories(tmp_path / "nope.csv")


def _example(text, fence_start, indent=""):
    """The code block that follows the "Your own trajectories" heading."""
    section = text[text.index("Your own trajectories"):]
    block = section[section.index(fence_start) + len(fence_start):]
    lines = []
    for line in block.splitlines()[1:]:
        if line.startswith("```") or (line and not line.startswith(indent)):
            break
        lines.append(line[len(indent):])
    return "\n".join(lines).strip() + "\n"


def test_the_docs_example_goes_from_arrays_to_a_report(tmp_path, monkeypatch):
    """README and getting started show the same arrays-to-report example in under 10 lines; it runs as written
    (the step budgets cut to a few steps here, so the test is fast) and writes a report with no extrapolation
    split."""
    readme = _example((ROOT / "README.md").read_text(), "```python")
    rst = _example((ROOT / "docs" / "getting_started.rst").read_text(), ".. code-block:: python", "   ")
    assert readme == rst
    code = [line for line in readme.splitlines() if line.strip()]
    assert len(code) < 10 and "float64" in readme and "trajectories_problem" in readme
    tiny = ('quick=True, num_samples=4, idata_samples=4, progress_bar=False, '
            'overrides={"map": {"num_steps": 5}, "autonormal": {"num_steps": 3, "elbo_particles": 2}}')
    runnable = re.sub(r"quick=True", tiny, readme)
    monkeypatch.chdir(tmp_path)
    torch.set_default_dtype(torch.float32)  # a user's session: float64 arrays, float32 models (conftest resets it)
    scope = {}
    exec(compile(runnable, "README example", "exec"), scope)  # noqa: S102
    assert [(r["method"], r["status"]) for r in scope["rows"]] == [("map", "ok"), ("autonormal", "ok")]
    assert scope["problem"].train.y.dtype == torch.float32
    report = (tmp_path / "my_comparison" / "report.md").read_text()
    assert "no extrapolation" in report and "| autonormal |" in report
    assert (tmp_path / "my_comparison" / "idata" / "autonormal.nc").exists()
