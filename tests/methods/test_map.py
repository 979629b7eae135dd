"""run_map: shapes, counted evaluations, a point mass."""
import torch
from pyro.infer import Predictive

from pyro_node_uq.data import load_problem
from pyro_node_uq.methods import run_map


def test_map_result_and_predict(problem, small):
    _model, res = small
    assert res.name == "map" and res.elbo is None and res.stochastic_dim == 0
    assert res.num_model_evals == 1 + 40  # guide prototype trace + one solve per step
    out = res.predict(problem.test, num_samples=5)
    assert out["obs"].shape == out["y_mean"].shape == (5, 2, 11, 2)
    assert out["hidden"].shape == (5, 2, 11, 3)
    assert torch.allclose(out["y_mean"][0], out["y_mean"][4])  # a point mass: identical means


def test_map_fit_on_chemical_reaches_noise_level():
    """Must-show of the foundation: MAP test RMSE (against the noise-free truth) within 3x the noise level."""
    torch.set_default_dtype(torch.float32)
    problem = load_problem("chemical", num_test=8)
    model = problem.default_model()
    fit = run_map(model, problem.train, num_steps=800, lr=0.03, progress_bar=False)
    assert fit.losses[-1] < fit.losses[0]
    test = problem.test
    pred = Predictive(model, guide=fit.guide, num_samples=1, return_sites=["y_mean"])(test.t, test.x)
    rmse = float((pred["y_mean"][0] - test.y_true).pow(2).mean().sqrt())
    print(f"MAP chemical test RMSE = {rmse:.4f} (noise {problem.noise_scale}, {fit.wall_time:.1f} s)")
    assert rmse < 3 * problem.noise_scale
