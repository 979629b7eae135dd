"""The figures are written as PNGs with the expected panels."""
import matplotlib
import pyro
import pyro.distributions as dist
import torch

from pyro_node_uq.data import Split
from pyro_node_uq.diagnostics import (
    plot_calibration,
    plot_trajectories,
    plot_weights,
    to_inference_data,
)

matplotlib.use("Agg")


def model(t, x=None, y=None, mask=None, num_trajectories=None):
    w = pyro.sample("Z.0.weight", dist.Normal(torch.zeros(2, 2), 1.0).to_event(2))
    N = y.shape[0] if y is not None else num_trajectories
    loc = w.sum(-1)[..., None, None, :]
    with pyro.plate("trajectories", N, dim=-1):
        return pyro.sample("obs", dist.Normal(loc, 0.3).expand(loc.shape[:-3] + (N, len(t), 2)).to_event(2), obs=y)


def test_plots_write_pngs(tmp_path):
    gen = torch.Generator().manual_seed(0)
    t = torch.linspace(0, 1, 8)
    split = Split(t=t, x=None, y=torch.randn(3, 8, 2, generator=gen), y_true=torch.zeros(3, 8, 2))
    pred = {"obs": torch.randn(50, 3, 8, 2, generator=gen)}
    fig = plot_trajectories(pred, split, trajectories=(0, 2), output_names=("A", "C"))
    assert len(fig.axes) == 4
    plot_trajectories(pred, split, path=tmp_path / "bands.png")
    plot_calibration({"good": pred, "narrow": 0.3 * pred["obs"]}, split.y, path=tmp_path / "calib.png")
    idata = to_inference_data({"Z.0.weight": torch.randn(40, 2, 2, generator=gen)}, split, model=model)
    plot_weights(idata, trace_path=tmp_path / "trace.png", pair_path=tmp_path / "pair.png")
    for name in ("bands", "calib", "trace", "pair"):
        assert (tmp_path / f"{name}.png").stat().st_size > 10_000, name
