"""run_map: shapes, counted evaluations, a point mass."""
import pytest
import torch
from pyro.infer import Predictive

from pyro_node_uq.data import load_problem
from pyro_node_uq.methods import run_map


def test_map_result_and_predict(problem, small):
    _model, res = small
    assert res.name == "map" and res.elbo is None and res.stochastic_dim == 0
    # guide prototype trace + one solve per step, then the L-BFGS polish's (40 // 4 = 10 iterations, each with its
    # line search's trials, and a check of the loss after every chunk)
    polish = next(n for n in res.notes if n.startswith("polished with L-BFGS"))
    assert "10 iterations" in polish or "converged" in polish
    assert 1 + 40 + 10 < res.num_model_evals <= 1 + 40 + 10 * 25 + 2
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


def test_the_polish_lowers_the_loss_and_can_be_switched_off(problem):
    """The L-BFGS polish after the SVI fit: the training loss (the negative log joint) at the polished point is
    below the SVI fit's; ``polish_iters=0`` leaves the SVI fit as it is (one solve per step, no note)."""
    from pyro_node_uq.methods.common import estimate_elbo
    from pyro_node_uq.utils.seeding import param_scope

    model = problem.default_model(R_hidden=(4,))
    options = {"num_steps": 40, "lr": 0.05, "num_starts": 1, "stop_rtol": 0, "progress_bar": False}
    plain = run_map(model, problem.train, polish_iters=0, **options)
    polished = run_map(model, problem.train, polish_iters=30, **options)
    assert plain.num_model_evals == 1 + 40 and not any("L-BFGS" in n for n in plain.notes)
    assert any(n.startswith("polished with L-BFGS") for n in polished.notes)
    with param_scope(plain.param_state):
        before = -estimate_elbo(model, plain.guide, problem.train, num_particles=1)
    with param_scope(polished.param_state):
        after = -estimate_elbo(model, polished.guide, problem.train, num_particles=1)
    assert after < before - 1.0, (before, after)


@pytest.mark.parametrize("omega", ["latent", "learned"])
def test_a_hierarchical_map_ends_with_omega_at_its_effects_spread(omega, monkeypatch):
    """The joint mode of a non-centred hierarchical model leaves omega wherever its ridge ``eta_z = eta / omega``
    took it; ``run_map`` ends by moving it to the fitted effects' spread (the EM update, within its prior's central
    95%; the units' mean rate effect goes into the network).  The fitted units' likelihood is unchanged, omega is
    moved, and a second move changes nothing."""
    import math

    import pyro
    from pyro import poutine

    from pyro_node_uq.data import pk_repeated
    from pyro_node_uq.methods.map import settle_point
    from pyro_node_uq.utils.seeding import param_scope

    problem = pk_repeated(num_units=12, num_obs=5, noise=0.1, seed=2)
    model = problem.default_model(R_hidden=(4,), omega=omega)
    monkeypatch.setattr("pyro_node_uq.methods.map.settle_point", lambda result: result)
    raw = run_map(model, problem.train, num_steps=40, progress_bar=False)

    def point(result):
        with param_scope(result.param_state):
            values = {k: v.detach().clone() for k, v in result.guide.median().items()}
            tr = poutine.trace(poutine.condition(model, values)).get_trace(*problem.train.args, **problem.train.kwargs)
            tr.compute_log_prob()
            w = values["omega"] if "omega" in values else pyro.param("omega").detach().clone()
            return values["eta_z"] * w, w, float(tr.nodes["obs"]["log_prob_sum"])

    _, before, loglik = point(raw)
    moved_eta, after, moved_loglik = point(settle_point(raw))
    assert moved_loglik == pytest.approx(loglik, rel=1e-9)
    spread = moved_eta.pow(2).mean(0).sqrt().clamp(model.omega_init * math.exp(-2 * model.omega_prior),
                                             model.omega_init * math.exp(2 * model.omega_prior))
    torch.testing.assert_close(after, spread, rtol=1e-6, atol=0)
    assert (after - before).abs().max() > 1e-3
    _, again, _ = point(settle_point(raw))
    torch.testing.assert_close(again, after, rtol=1e-9, atol=0)
