"""LangevinKernel against closed-form posteriors (conjugate Normal, Bayesian linear regression), float64.

Moment checks: every posterior mean and variance must lie within 3 Monte Carlo standard errors of the closed
form, the MCSE estimated by ArviZ from the effective sample size (the variance as the mean of the squared
deviations). Ensemble particles are treated as independent chains.
"""
import warnings
from collections import OrderedDict

import arviz as az
import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import MCMC
from pyro.infer.mcmc.util import initialize_model

from pyro_node_uq.distributions import NODEDivergenceError
from pyro_node_uq.infer import LangevinKernel, particles_to_chains
from pyro_node_uq.infer.log_joint import LogJoint

SIGMA, PRIOR_SCALE = 1.0, 2.0


@pytest.fixture(autouse=True)
def _float64_seeded():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


# ---------------------------------------------------------------------------- the two posteriors
def normal_model(y):
    mu = pyro.sample("mu", dist.Normal(torch.tensor([0.0, 1.0]), torch.tensor([1.0, PRIOR_SCALE])).to_event(1))
    with pyro.plate("data", y.shape[0]):
        pyro.sample("y", dist.Normal(mu, SIGMA).to_event(1), obs=y)


def normal_data():
    y = torch.randn(10, 2, generator=torch.Generator().manual_seed(1)) + torch.tensor([1.0, -1.0])
    prec = torch.tensor([1.0, PRIOR_SCALE ** -2]) + len(y) / SIGMA ** 2
    mean = (torch.tensor([0.0, 1.0]) * torch.tensor([1.0, PRIOR_SCALE ** -2]) + y.sum(0) / SIGMA ** 2) / prec
    return (y,), OrderedDict(mu=(2,)), mean, torch.diag(1 / prec)


def linreg_model(X, y):
    w = pyro.sample("w", dist.Normal(0.0, PRIOR_SCALE).expand([3]).to_event(1))  # model order: w, then b
    b = pyro.sample("b", dist.Normal(0.0, PRIOR_SCALE))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Normal((X * w).sum(-1) + b, SIGMA), obs=y)


def linreg_data():
    gen = torch.Generator().manual_seed(2)
    X = torch.randn(20, 3, generator=gen) + 0.5 * torch.randn(20, 1, generator=gen)  # correlated features: correlated posterior
    y = X @ torch.tensor([1.0, -0.5, 0.2]) + 0.3 + SIGMA * torch.randn(20, generator=gen)
    A = torch.cat([torch.ones(20, 1), X], -1)  # kernel's flat order: sorted sites "b", "w"
    cov = torch.linalg.inv(torch.eye(4) / PRIOR_SCALE ** 2 + A.T @ A / SIGMA ** 2)
    return (X, y), OrderedDict(w=(3,), b=()), cov @ A.T @ y / SIGMA ** 2, cov


class GaussianScoreGuide:
    """Stand-in for AutoLangevin: score of Normal(loc, cov) in the guide's site order (``shapes``)."""

    def __init__(self, shapes, loc, cov, scale=None):
        self._unconstrained_shapes = shapes
        self.loc, self.prec = loc, torch.linalg.inv(cov)
        self.reference_scale = cov.diagonal().sqrt() if scale is None else scale

    def score(self, z):
        return -(z - self.loc) @ self.prec


def guide_for(shapes, mean, cov, bad=False):
    """Move the kernel-order closed form into the guide's (model) order; ``bad`` shifts and widens it."""
    sizes = OrderedDict((k, int(torch.Size(s).numel())) for k, s in shapes.items())
    starts = dict(zip(sorted(sizes), np.cumsum([0] + [sizes[k] for k in sorted(sizes)])))
    perm = torch.cat([torch.arange(starts[k], starts[k] + n) for k, n in sizes.items()])
    loc, cov = mean[perm], cov[perm][:, perm]
    if bad:  # mean off by 2 sd, diagonal-only precision 4x too weak, reference scale 3x too small
        sd = cov.diagonal().sqrt()
        return GaussianScoreGuide(shapes, loc + 2 * sd, torch.diag(4 * cov.diagonal()), scale=sd / 3)
    return GaussianScoreGuide(shapes, loc, cov)


# ---------------------------------------------------------------------------- helpers
def run(kernel, args, num_samples=1000, warmup_steps=300, num_chains=1):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="num_chains=")
        mcmc = MCMC(kernel, num_samples=num_samples, warmup_steps=warmup_steps, num_chains=num_chains,
                    disable_progbar=True)
        mcmc.run(*args)
    return mcmc


def grouped_flat(mcmc, kernel):
    """Samples as (chains, draws, D) in the kernel's flat order; ensemble particles become chains."""
    samples = mcmc.get_samples(group_by_chain=True)
    if kernel.num_particles > 1:
        samples = particles_to_chains(samples, kernel.num_particles)
    return torch.cat([samples[k].reshape(samples[k].shape[:2] + (-1,)) for k in sorted(samples)], -1).numpy()


def check_moments(draws, mean, cov, nsigma=3.0):
    """Means and variances of ``draws`` (chains, draws, D) within ``nsigma`` MCSE of the closed form."""
    mean, var = mean.numpy(), cov.diagonal().numpy()
    sq = (draws - draws.mean((0, 1))) ** 2
    data = az.convert_to_dataset({"x": draws, "sq": sq})
    mcse = az.mcse(data, method="mean")
    mean_err = np.abs(draws.mean((0, 1)) - mean) / mcse["x"].values
    var_err = np.abs(sq.mean((0, 1)) - var) / mcse["sq"].values
    assert np.all(mean_err < nsigma), f"posterior mean off by {mean_err} MCSE"
    assert np.all(var_err < nsigma), f"posterior variance off by {var_err} MCSE"
    return mean_err, var_err


def kernel_for(drift, shapes, mean, cov, bad=False, **kwargs):
    guide = None if drift == "exact" else guide_for(shapes, mean, cov, bad=bad)
    model = normal_model if "mu" in shapes else linreg_model
    return LangevinKernel(model, drift=drift, guide=guide, **kwargs)


# ---------------------------------------------------------------------------- MALA: exactness
@pytest.mark.parametrize("drift", ["exact", "learned", "blend"])
@pytest.mark.parametrize("data", [normal_data, linreg_data], ids=["normal", "linreg"])
def test_mala_ensemble_recovers_posterior(data, drift):
    args, shapes, mean, cov = data()
    kernel = kernel_for(drift, shapes, mean, cov, num_particles=16)
    mcmc = run(kernel, args, num_samples=600, warmup_steps=300)
    check_moments(grouped_flat(mcmc, kernel), mean, cov)
    assert 0.3 < mcmc.diagnostics()["acceptance rate"]["chain 0"] < 0.95


@pytest.mark.parametrize("drift", ["learned", "blend"])
def test_bad_learned_score_is_corrected_by_mh(drift):
    args, shapes, mean, cov = linreg_data()
    kernel = kernel_for(drift, shapes, mean, cov, bad=True, num_particles=32)
    check_moments(grouped_flat(run(kernel, args, num_samples=1000, warmup_steps=500), kernel), mean, cov)
    if drift == "blend":
        return
    # the same bad drift without the correction is far off: the check above has teeth
    pyro.set_rng_seed(0)
    ula = kernel_for("learned", shapes, mean, cov, bad=True, num_particles=32, adjust=False,
                     step_size=kernel.step_size)
    draws = grouped_flat(run(ula, args, num_samples=300, warmup_steps=100), ula)
    with pytest.raises(AssertionError, match="off by"):
        check_moments(draws, mean, cov)


def test_four_chains_rhat_and_arviz():
    args, _shapes, _mean, _cov = linreg_data()
    kernel = LangevinKernel(linreg_model)
    mcmc = run(kernel, args, num_samples=1000, warmup_steps=400, num_chains=4)
    idata = az.from_pyro(mcmc, log_likelihood=False)
    rhat = az.rhat(idata)
    assert max(float(rhat[k].max()) for k in rhat.data_vars) < 1.01
    assert idata.sample_stats["diverging"].shape == (4, 1000)
    assert idata.posterior["w"].shape == (4, 1000, 3)


def test_ensemble_with_arviz_and_chain_bookkeeping():
    args, _shapes, _mean, _cov = normal_data()
    kernel = LangevinKernel(normal_model, num_particles=4, step_size=0.3, adapt_step_size=False)
    mcmc = run(kernel, args, num_samples=20, warmup_steps=5, num_chains=2)
    grouped = mcmc.get_samples(group_by_chain=True)["mu"]
    assert grouped.shape == (2, 20, 4, 2)
    as_chains = particles_to_chains({"mu": grouped}, 4)["mu"]
    torch.testing.assert_close(as_chains[1 * 4 + 3], grouped[1, :, 3])  # chain c, particle p -> c * P + p
    assert az.from_pyro(mcmc, log_likelihood=False).posterior["mu"].shape == (2, 20, 4, 2)
    by_particle = mcmc.diagnostics()["divergences by particle"]["chain 0"]
    assert len(by_particle) == 4
    with pytest.raises(ValueError, match="expected shape"):
        particles_to_chains({"mu": grouped}, 3)


# ---------------------------------------------------------------------------- ULA: the bias and its size
def test_ula_bias_matches_closed_form_and_shrinks():
    """With preconditioner = posterior variances s^2, exact-drift ULA on a Gaussian is an AR(1) chain whose
    stationary law is Normal(mean, s^2 / (1 - eps^2 / 4)): unbiased mean, variance inflated by O(eps^2)."""
    args, _shapes, mean, cov = normal_data()
    var = cov.diagonal()
    biases = []
    for eps in (1.0, 0.5):
        kernel = LangevinKernel(normal_model, adjust=False, step_size=eps, adapt_step_size=False,
                                preconditioner=var, num_particles=64)
        draws = grouped_flat(run(kernel, args, num_samples=800, warmup_steps=100), kernel)
        check_moments(draws, mean, cov / (1 - eps ** 2 / 4))
        biases.append(float(np.abs(draws.var((0, 1)) / var.numpy() - 1).max()))
    assert biases[1] < biases[0] / 3, biases  # closed form: 33% and 7%
    assert biases[1] < 0.1  # the smaller step is close


# ---------------------------------------------------------------------------- ensemble mechanics
def test_ensemble_potential_matches_single_point_potential():
    def model(y):
        s = pyro.sample("s", dist.LogNormal(0.0, 1.0))
        p = pyro.sample("p", dist.Dirichlet(torch.ones(3)))
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("data", len(y)):
            loc = pyro.sample("loc", dist.Normal(mu * p[..., 0], s))
            pyro.sample("y", dist.Normal(loc, 1.0), obs=y)

    y = torch.randn(5)
    init, potential_fn, transforms, trace = initialize_model(model, (y,), num_chains=6)
    batched = -LogJoint(model, trace, transforms, (y,))(init)
    single = torch.stack([potential_fn({k: v[i] for k, v in init.items()}) for i in range(6)])
    assert init["p"].shape == (6, 2) and init["loc"].shape == (6, 5)
    torch.testing.assert_close(batched, single)


def test_node_model_ensemble_potential_and_steps():
    from pyro_node_uq.data import load_problem

    problem = load_problem("chemical", num_train=2)
    model = problem.default_model(R_hidden=(4,))
    split = problem.train
    init, potential_fn, transforms, trace = initialize_model(model, split.args, split.kwargs, num_chains=3)
    batched = -LogJoint(model, trace, transforms, split.args, split.kwargs)(init)
    single = torch.stack([potential_fn({k: v[i] for k, v in init.items()}) for i in range(3)])
    torch.testing.assert_close(batched, single)
    kernel = LangevinKernel(model, num_particles=3, step_size=1e-4, adapt_step_size=False, preconditioner="identity")
    mcmc = run(kernel, split.args, num_samples=3, warmup_steps=0)
    assert mcmc.get_samples()["R.0.weight"].shape == (3, 3, 4, 4)


class _CountingModel:
    def __init__(self, model):
        self.model, self.calls = model, 0

    def __call__(self, *args):
        self.calls += 1
        return self.model(*args)


@pytest.mark.parametrize("drift,adjust,calls", [("exact", True, 1), ("learned", True, 1), ("learned", False, 0)])
def test_one_vectorised_model_call_per_step(drift, adjust, calls):
    args, shapes, mean, cov = normal_data()
    model = _CountingModel(normal_model)
    guide = guide_for(shapes, mean, cov) if drift != "exact" else None
    kernel = LangevinKernel(model, drift=drift, guide=guide, adjust=adjust, step_size=0.1, num_particles=64)
    kernel.setup(0, *args)
    params, before = kernel.initial_params, model.calls
    for _ in range(10):
        params = kernel.sample(params)
    assert model.calls - before == 10 * calls
    assert params["mu"].shape == (64, 2)


# ---------------------------------------------------------------------------- divergences and errors
def test_exploding_proposals_are_divergences_never_nan():
    args, _shapes, _mean, _cov = normal_data()
    kernel = LangevinKernel(normal_model, step_size=30.0, adapt_step_size=False, preconditioner="identity")
    mcmc = run(kernel, args, num_samples=50, warmup_steps=10)
    assert len(kernel.diagnostics()["divergences"]) == 0  # cleared by cleanup; MCMC kept them
    divergences = mcmc.diagnostics()["divergences"]["chain 0"]
    assert len(divergences) > 40 and max(divergences) < 50
    assert torch.isfinite(mcmc.get_samples()["mu"]).all()
    assert az.from_pyro(mcmc, log_likelihood=False).sample_stats["diverging"].values.sum() == len(divergences)


def test_solver_failures_are_rejected_and_counted():
    def potential_fn(params):
        z = params["z"]
        if bool((z.abs() > 2.0).any(-1).any()):
            raise NODEDivergenceError("solve blew up")
        return 0.5 * (z ** 2).sum(-1)

    kernel = LangevinKernel(potential_fn=potential_fn, step_size=1.5, adapt_step_size=False, num_particles=1)
    kernel.initial_params = {"z": torch.zeros(2)}
    mcmc = run(kernel, (), num_samples=200, warmup_steps=0)
    assert len(mcmc.diagnostics()["divergences"]["chain 0"]) > 10
    assert mcmc.get_samples()["z"].abs().max() <= 2.0


def test_batched_potential_fn_ensemble():
    def potential_fn(params):  # Normal(1, 0.5^2) in 3 dims, batched over the leading particle dim
        return 0.5 * (((params["z"] - 1.0) / 0.5) ** 2).sum(-1)

    kernel = LangevinKernel(potential_fn=potential_fn, num_particles=16)
    mcmc = MCMC(kernel, num_samples=500, warmup_steps=200, initial_params={"z": torch.zeros(16, 3)},
                disable_progbar=True)
    mcmc.run()
    draws = grouped_flat(mcmc, kernel)
    check_moments(draws, torch.ones(3), 0.25 * torch.eye(3))


def test_bad_arguments_name_what_is_wrong():
    with pytest.raises(ValueError, match="exactly one of"):
        LangevinKernel()
    with pytest.raises(ValueError, match="drift must be"):
        LangevinKernel(normal_model, drift="magic")
    with pytest.raises(ValueError, match="needs a `guide`"):
        LangevinKernel(normal_model, drift="learned")
    with pytest.raises(ValueError, match="hybrid_weight"), pytest.warns(FutureWarning, match="exact_weight"):
        LangevinKernel(normal_model, hybrid_weight=2.0)
    with pytest.raises(ValueError, match="step_size: ULA"):
        LangevinKernel(normal_model, drift="learned", guide=object.__new__(GaussianScoreGuide), adjust=False)
    with pytest.raises(ValueError, match="initial_params"):
        LangevinKernel(potential_fn=lambda p: 0.0).setup(10)
    args, _shapes, mean, cov = normal_data()
    wrong = GaussianScoreGuide(OrderedDict(nu=(2,)), mean, cov)
    with pytest.raises(ValueError, match="latent sites"):
        LangevinKernel(normal_model, drift="learned", guide=wrong).setup(10, *args)
    with pytest.raises(ValueError, match="preconditioner"):
        LangevinKernel(normal_model, preconditioner=torch.ones(5)).setup(10, *args)


COV_X = torch.tensor([[1.0, 0.9], [0.9, 1.0]], dtype=torch.float64)


def correlated_potential(params):
    """x ~ N(0, COV_X), y ~ N(0, 4), batched over a leading particle dim."""
    x, y = params["x"], params["y"]
    return 0.5 * ((x @ torch.linalg.inv(COV_X)) * x).sum(-1) + 0.5 * y ** 2 / 4.0


def run_correlated(kernel, num_samples):
    mcmc = MCMC(kernel, num_samples=num_samples, warmup_steps=300, disable_progbar=True,
                initial_params={"x": torch.zeros(16, 2), "y": torch.zeros(16)})
    mcmc.run()
    return mcmc


def test_full_mass_estimates_a_dense_block_and_exposes_hmcs_form():
    """full_mass=[("x",)] on N(0, [[1, 0.9], [0.9, 1]]) for x and N(0, 4) for y: after warm-up the ("x",) block
    is the dense covariance (correlation 0.9, which a diagonal estimate would miss; to 0.2 from a warm-up of 16
    particles), ("y",) the variance 4 (to 25%), and the chain recovers the moments."""
    cov_x = COV_X
    kernel = LangevinKernel(potential_fn=correlated_potential, num_particles=16, full_mass=[("x",)])
    mcmc = run_correlated(kernel, num_samples=400)
    mass = kernel.inverse_mass_matrix
    assert set(mass) == {("x",), ("y",)} and mass[("x",)].shape == (2, 2) and mass[("y",)].shape == (1,)
    assert torch.allclose(mass[("x",)], cov_x, atol=0.2)
    assert mass[("y",)].item() == pytest.approx(4.0, rel=0.25)
    assert kernel.variances[:2, 2].abs().max() == 0  # x and y are separate blocks
    cov = torch.zeros(3, 3)
    cov[:2, :2], cov[2, 2] = cov_x, 4.0
    check_moments(grouped_flat(mcmc, kernel), torch.zeros(3), cov)


@pytest.mark.parametrize("adapter", ["block", "arrowhead"])
def test_pyros_mass_matrix_adapters_estimate_the_preconditioner(adapter):
    """A Pyro adapter set as ``mass_matrix_adapter`` estimates the dense block of x ~ N(0, [[1, 0.9], [0.9, 1]])
    (BlockMassMatrix: its covariance from the points; ArrowheadMassMatrix: its precision from the gradients) and
    the kernel moves with the adapter's inverse mass matrix."""
    from pyro.infer.mcmc.adaptation import ArrowheadMassMatrix, BlockMassMatrix

    cov_x = COV_X
    prec_x = torch.linalg.inv(cov_x)
    kernel = LangevinKernel(potential_fn=correlated_potential, num_particles=16, full_mass=[("x",)])
    kernel.mass_matrix_adapter = BlockMassMatrix() if adapter == "block" else ArrowheadMassMatrix()
    run_correlated(kernel, num_samples=10)
    if adapter == "block":
        assert torch.allclose(kernel.inverse_mass_matrix[("x",)], cov_x, atol=0.2)
        assert kernel.inverse_mass_matrix[("y",)].item() == pytest.approx(4.0, rel=0.25)
    else:
        mass = kernel.mass_matrix_adapter.mass_matrix[("x", "y")]
        assert torch.allclose(mass.top, torch.cat([prec_x, torch.zeros(2, 1)], -1), atol=0.5 * prec_x.max())
        assert mass.bottom_diag.item() == pytest.approx(0.25, rel=0.25)
    expected = kernel.inverse_mass_matrix[("x",) if adapter == "block" else ("x", "y")]
    assert torch.allclose(kernel.variances[:2, :2], expected[:2, :2])
    with pytest.raises(TypeError, match="mass_matrix_adapter"):
        kernel.mass_matrix_adapter = object()


def test_inverse_mass_matrix_round_trips_and_checks_its_blocks():
    args, _shapes, _mean, _cov = normal_data()
    kernel = LangevinKernel(normal_model)
    assert kernel.inverse_mass_matrix == {}
    kernel.setup(10, *args)
    assert set(kernel.inverse_mass_matrix) == {("mu",)} and kernel.inverse_mass_matrix[("mu",)].shape == (2,)
    kernel.inverse_mass_matrix = {("mu",): torch.tensor([0.5, 2.0])}
    assert torch.equal(kernel.variances, torch.tensor([0.5, 2.0]))
    with pytest.raises(ValueError, match=r"\('mu',\) of shape \(2,\)"):
        kernel.inverse_mass_matrix = {("mu",): torch.ones(3)}
    dense = LangevinKernel(normal_model, full_mass=True)
    dense.setup(10, *args)
    dense.inverse_mass_matrix = {("mu",): torch.tensor([[2.0, 0.5], [0.5, 1.0]])}
    assert torch.equal(dense.variances, torch.tensor([[2.0, 0.5], [0.5, 1.0]]))
    with pytest.raises(ValueError, match="sites \\['nu'\\] are not latent"):
        LangevinKernel(normal_model, full_mass=[("nu",)]).setup(10, *args)
    with pytest.raises(ValueError, match="full_mass"):
        LangevinKernel(normal_model, full_mass=[("mu",), ("mu",)])
    with pytest.raises(ValueError, match="full_mass"):
        LangevinKernel(normal_model, full_mass=True, preconditioner="identity")


def test_a_cached_singular_point_is_a_divergence_not_an_error():
    """A potential that raises on a singular matrix (an error Pyro's HMC counts as a divergence) rejects the
    proposal; the chain stays at the cached point set with HMC's ``_cache``."""
    kernel = LangevinKernel(potential_fn=lambda p: torch.inverse(p["cov"]).sum(), step_size=1e-20,
                            adapt_step_size=False)
    kernel.initial_params = {"cov": torch.eye(3)}
    kernel.setup(warmup_steps=0)
    kernel._cache({"cov": torch.ones(3, 3)}, torch.tensor(0.0), {"cov": torch.zeros(3, 3)})
    params = {"cov": torch.ones(3, 3)}
    for _ in range(5):
        params = kernel.sample(params)
        assert kernel.last_info.divergent.all() and torch.equal(params["cov"], torch.ones(3, 3))


# ---------------------------------------------------------------------------- slow: single chains, each drift
@pytest.mark.slow
@pytest.mark.parametrize("drift", ["exact", "learned", "blend"])
def test_mala_four_chains_each_drift_linreg(drift):
    args, shapes, mean, cov = linreg_data()
    kernel = kernel_for(drift, shapes, mean, cov)
    mcmc = run(kernel, args, num_samples=2000, warmup_steps=500, num_chains=4)
    check_moments(grouped_flat(mcmc, kernel), mean, cov)
    rhat = az.rhat(az.from_pyro(mcmc, log_likelihood=False))
    assert max(float(rhat[k].max()) for k in rhat.data_vars) < 1.01


def ula_stationary_cov(cov, m, eps):
    """Exact stationary covariance C of preconditioned ULA on Normal(mean, cov): C = A C A^T + eps^2 M."""
    from scipy.linalg import solve_discrete_lyapunov

    A = torch.eye(len(m)) - 0.5 * eps ** 2 * torch.diag(m) @ torch.linalg.inv(cov)
    return torch.as_tensor(solve_discrete_lyapunov(A.numpy(), (eps ** 2 * torch.diag(m)).numpy()))


@pytest.mark.slow
def test_ula_matches_its_exact_law_and_bias_shrinks_correlated():
    """On the correlated linear-regression posterior ULA's stationary law is Normal(mean, C_eps) (a discrete
    Lyapunov equation): the kernel must match it at every step size, and ||C_eps - cov|| shrinks with eps."""
    args, _shapes, mean, cov = linreg_data()
    m = cov.diagonal()
    exact_bias, measured_bias = [], []
    for eps in (1.0, 0.5, 0.25):
        C = ula_stationary_cov(cov, m, eps)
        kernel = LangevinKernel(linreg_model, adjust=False, step_size=eps, adapt_step_size=False,
                                preconditioner=m, num_particles=64)
        draws = grouped_flat(run(kernel, args, num_samples=2000, warmup_steps=1000), kernel)
        check_moments(draws, mean, C)
        exact_bias.append(float((C.diagonal() / m - 1).abs().max()))
        measured_bias.append(float(np.abs(draws.var((0, 1)) / m.numpy() - 1).max()))
    assert exact_bias[0] > exact_bias[1] > exact_bias[2], exact_bias
    assert measured_bias[1] < measured_bias[0] / 2, measured_bias


def test_old_spellings_still_work_with_a_future_warning():
    """``drift="hybrid"`` and ``hybrid_weight`` (the names before the convex combination was called a blend)."""
    _args, shapes, mean, cov = normal_data()
    guide = guide_for(shapes, mean, cov)
    with pytest.warns(FutureWarning, match="drift='blend'"):
        old = LangevinKernel(normal_model, drift="hybrid", guide=guide, step_size=0.1)
    with pytest.warns(FutureWarning, match="exact_weight"):
        weighted = LangevinKernel(normal_model, drift="blend", guide=guide, hybrid_weight=0.25)
    assert old.drift == "blend" and weighted.exact_weight == 0.25 == weighted.hybrid_weight
