"""Property-based fuzzing (hypothesis) of NODE data and of the options of public constructors and fitters.

The only acceptable outcomes are a correct result or one of this package's own errors: an exception raised by
code in ``pyro_node_uq`` (a message that names the argument), never a raw torch / Pyro / faiss error from deep
inside a library.  The default run draws a bounded number of examples per property; ``make test-slow``
(``-m slow``) runs the same properties with many more.
"""
import os
import traceback
import types
import warnings

import pyro
import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyro_node_uq.data import StaticSplit
from pyro_node_uq.distributions import ODESolver
from pyro_node_uq.infer import LTAU, LossTrajectoryRecorder, fit_svi
from pyro_node_uq.methods import run_sdebnn
from pyro_node_uq.models import SDEBNN, NODEModel

PACKAGE = os.path.dirname(os.path.abspath(__import__("pyro_node_uq").__file__))
FAST = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
LONG = settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck), database=None)
COUNT = {}


def _ours(exc):
    """True when the innermost frame that raised ``exc`` is this package's code."""
    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and frames[-1].filename.startswith(PACKAGE)


def _outcome(name, fn):
    """Run ``fn``; return its result, or ``None`` after one of our errors; fail on any other exception."""
    COUNT[name] = COUNT.get(name, 0) + 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return fn()
        except (ValueError, TypeError, RuntimeError, KeyError, FloatingPointError) as e:
            if _ours(e):
                return None
            raise AssertionError(f"raw error escaped: {type(e).__name__}: {e}") from e


def _both(prop, *strategies):
    """The property as a bounded default test and a long ``slow`` one."""
    twin = types.FunctionType(prop.__code__, prop.__globals__, prop.__name__ + "_long", prop.__defaults__,
                              prop.__closure__)
    return FAST(given(*strategies)(prop)), pytest.mark.slow(LONG(given(*strategies)(twin)))


# ---------------------------------------------------------------------------------------------- data
DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.bool]
VALUES = st.sampled_from([0.0, 1.0, -2.5, float("nan"), float("inf"), 1e30, 1e5, 1e-30])


@st.composite
def tensors(draw, shape):
    dtype = draw(st.sampled_from(DTYPES))
    base = torch.randn(shape, generator=torch.Generator().manual_seed(draw(st.integers(0, 99))),
                       dtype=torch.float64)
    if base.numel() and draw(st.booleans()):
        flat = base.reshape(-1)
        flat[draw(st.integers(0, flat.numel() - 1))] = draw(VALUES)
    return base.to(dtype) if dtype != torch.bool else base > 0


@st.composite
def node_data(draw):
    N, T, D, O = draw(st.integers(0, 3)), draw(st.integers(0, 5)), draw(st.integers(0, 2)), draw(st.integers(1, 3))
    kind = draw(st.sampled_from(["sorted", "random", "dtype"]))
    if kind == "sorted":
        t = torch.linspace(0, 1, T, dtype=torch.float64)
    elif kind == "random":
        t = draw(tensors((T,))).double() if T else torch.zeros(0)
    else:
        t = draw(tensors((T,)))
    x = None if draw(st.booleans()) else draw(tensors((draw(st.integers(0, 3)), T, D)))
    y = None if draw(st.booleans()) else draw(tensors((N, T, O)))
    mask = None if draw(st.booleans()) else draw(tensors((N, T)))
    return t, x, y, mask


def _node_property(data):
    t, x, y, mask = data
    model = NODEModel(obs_dim=2, input_dim=1, R_hidden=(3,), scale=0.5)
    pyro.set_rng_seed(0)

    def run():
        trace = pyro.poutine.trace(model).get_trace(t, x, y, mask=mask)
        obs = trace.nodes["obs"]
        assert obs["value"].shape[-2:] == (len(t), 2)
        lp = obs["fn"].log_prob(obs["value"])
        assert not torch.isnan(lp).any(), "a NaN log-density without an error"
        return trace

    _outcome("NODEModel data", run)


test_fuzz_node_model_data, test_fuzz_node_model_data_long = _both(_node_property, node_data())

# ---------------------------------------------------------------------------------------------- options
ANY = st.one_of(st.integers(-3, 40), st.floats(allow_nan=True, allow_infinity=True), st.none(), st.booleans(),
                st.text(max_size=3), st.sampled_from(["learned", "latent", "zero", "input", "rk4", "dopri5",
                                                      "flat", "hnsw", "full", "histogram", "studentt"]))


def _options(names):
    return st.dictionaries(st.sampled_from(names), ANY, max_size=3)


NODE_OPTIONS = ["obs_dim", "input_dim", "hidden_dim", "R_hidden", "Z_hidden", "init", "noise", "df", "scale",
                "scale_init", "scale_prior", "prior_scale", "interpolation", "on_divergence"]


def _node_options_property(opts):
    def run():
        model = NODEModel(**{"obs_dim": 1, **opts})
        t = torch.linspace(0, 1, 4)
        x = torch.zeros(2, 4, model.input_dim) if model.input_dim else None
        pyro.set_rng_seed(0)
        pyro.poutine.trace(model).get_trace(t, x, torch.zeros(2, 4, model.obs_dim))

    _outcome("NODEModel options", run)


test_fuzz_node_model_options, test_fuzz_node_model_options_long = _both(
    _node_options_property, _options(NODE_OPTIONS))


def _solver_property(opts):
    def run():
        solver = ODESolver.coerce(opts)
        out = solver.odeint(lambda s, h: -h, torch.ones(2), torch.linspace(0, 1, 3))
        assert torch.isfinite(out).all()

    _outcome("ODESolver options", run)


test_fuzz_solver_options, test_fuzz_solver_options_long = _both(
    _solver_property, _options(["method", "rtol", "atol", "step_size", "max_abs"]))


def _ltau_property(opts, rec_opts):
    def run():
        ltau = LTAU(**opts, recorder=LossTrajectoryRecorder(**rec_opts))
        keys = torch.arange(12)
        for epoch in range(3):
            ltau.record(keys, torch.linspace(0.1, 1, 12) / (epoch + 1))
        ltau.fit(torch.randn(12, 2, generator=torch.Generator().manual_seed(0)), keys)
        assert torch.isfinite(ltau.predict(torch.zeros(3, 2)).mean).all()

    _outcome("LTAU options", run)


test_fuzz_ltau_options, test_fuzz_ltau_options_long = _both(
    _ltau_property, _options(["k", "index", "hnsw_m", "ef_search"]), _options(["mode", "bins", "error_range"]))


def _fit_property(opts):
    from pyro.infer.autoguide import AutoDelta

    from pyro_node_uq.data import Split

    model = NODEModel(obs_dim=1, R_hidden=(2,))
    split = Split(t=torch.linspace(0, 1, 3), x=None, y=torch.zeros(2, 3, 1))

    def run():
        pyro.clear_param_store()
        fit_svi(model, AutoDelta(model), split, **{"num_steps": 2, **opts}, progress_bar=False)

    _outcome("fit_svi options", run)


test_fuzz_fit_svi_options, test_fuzz_fit_svi_options_long = _both(
    _fit_property, _options(["num_steps", "lr", "lr_final", "clip_norm"]))


def _sdebnn_property(opts, fit_opts):
    x = torch.linspace(-1, 1, 6)[:, None]

    def run():
        net = SDEBNN(1, 1, **{"width": (3,), "solver": {"dt": 0.5}, **opts})
        run_sdebnn(net, StaticSplit(x=x, y=torch.sin(x)), **{"num_steps": 1, "elbo_particles": 0, **fit_opts},
                   progress_bar=False)

    _outcome("SDEBNN options", run)


test_fuzz_sdebnn_options, test_fuzz_sdebnn_options_long = _both(
    _sdebnn_property, _options(["hidden_dim", "sigma", "obs_scale", "bottleneck", "estimator", "likelihood"]),
    _options(["num_steps", "batch_size", "lr", "num_particles"]))


def teardown_module(module):
    print("\nfuzz examples run:", ", ".join(f"{k}: {v}" for k, v in sorted(COUNT.items())))
