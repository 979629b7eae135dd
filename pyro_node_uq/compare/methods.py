"""The registry of comparable methods: name -> runner with default, per-problem and quick options.

A runner is ``runner(ctx, **options) -> MethodResult`` (``ctx`` a :class:`~pyro_node_uq.compare.RunContext`); it
raises :class:`~pyro_node_uq.compare.MethodSkipped` when the method does not apply (a model too large for NUTS,
an optional method not installed).  Options resolve as ``defaults``, then ``problems[problem.name]``, then
(in quick mode) ``quick``, then the caller's overrides.
"""
import importlib
import logging
from dataclasses import dataclass, field, replace

import torch

from ..infer import param_scope, run_langevin_kernel, run_lowrank, run_map, run_nuts, run_svgd
from ..infer.ltau import node_latent
from .context import MethodSkipped
from .scoring import calibration_half, point_errors

__all__ = ["Method", "METHODS", "register", "resolve_methods", "DEMO_METHODS"]

log = logging.getLogger(__name__)


@dataclass
class Method:
    """One registered method.

    :ivar str name: registry name (CLI ``--methods``).
    :ivar runner: ``runner(ctx, **options) -> MethodResult``.
    :ivar str description: one line for the report.
    :ivar dict defaults: options of a full run.
    :ivar dict quick: overrides of a quick run (``--quick``).
    :ivar dict problems: problem name -> overrides (e.g. fewer steps on a slower problem).
    :ivar str kind: ``"posterior"`` (scored by predictive metrics) or ``"error"`` (an error predictor such as
        LTAU: scored by error ranking and out-of-domain detection, its predictive is its base fit's).
    """

    name: str
    runner: object
    description: str
    defaults: dict = field(default_factory=dict)
    quick: dict = field(default_factory=dict)
    problems: dict = field(default_factory=dict)
    kind: str = "posterior"

    def options(self, problem_name, quick=False, overrides=None):
        """The resolved options for ``problem_name``."""
        opts = dict(self.defaults)
        opts.update(self.problems.get(problem_name, {}))
        if quick:
            opts.update(self.quick)
        opts.update(overrides or {})
        return opts


METHODS = {}


def register(method):
    """Add (or replace) a :class:`Method` in :data:`METHODS`."""
    METHODS[method.name] = method
    return method


def resolve_methods(names):
    """Methods for a list of names (``"all"`` is every registered method); unknown names raise a clear error."""
    if names in (None, "all", ["all"]):
        return list(METHODS.values())
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise ValueError(f"methods: unknown {unknown}; registered methods are {sorted(METHODS)}")
    return [METHODS[n] for n in names]


def _optional(attr, *modules):
    """Import ``attr`` lazily from the first of ``modules`` (under ``pyro_node_uq``) that has it; skip the method
    (with a note) when none does (a method another part of the package adds later)."""
    errors = []
    for module in modules + ("infer",):
        try:
            return getattr(importlib.import_module(f"pyro_node_uq.{module}"), attr)
        except (ImportError, AttributeError) as e:
            errors.append(f"{module}: {e}")
    raise MethodSkipped(f"{attr} is not available in this installation ({'; '.join(errors)})")


# ---------------------------------------------------------------------------------------------------- runners
def _map(ctx, **_):
    return ctx.map_fit()[0]


def _calibrate_ltau(ltau, model, guide, split, half):
    """Calibrate ``ltau`` on the first ``half`` trajectories of ``split`` against the true errors there."""
    errors, _ = point_errors(node_latent(model, guide, split)[1], split)
    ltau.calibrate(ltau.predict_node(model, guide, split)[:half], errors[:half])


def _ltau(ctx, **_):
    res, ltau = ctx.map_fit()
    with param_scope(res.param_state):
        _, seconds = ctx.timed(ltau.fit_node, ctx.model, res.guide, ctx.train)
        half = calibration_half(ctx.problem.test)
        if half:
            _, cal = ctx.timed(_calibrate_ltau, ltau, ctx.model, res.guide, ctx.problem.test, half)
            ctx.note("ltau", f"calibrated (memory {ltau.calibration.memory:.3g}) on the first {half} test trajectories "
                             f"in {cal:.2f} s; every method's error scores use the other {len(ctx.problem.test) - half}")
    ctx.note("ltau", f"rides on the MAP fit: {seconds:.2f} s extra (index build) on top of MAP's "
                     f"{res.wall_time:.1f} s; no extra model evaluations beyond one solve for the latent features")
    out = replace(res, name="ltau", wall_time=res.wall_time + seconds, num_model_evals=res.num_model_evals + 1)
    out.ltau = ltau
    return out


def _autonormal(ctx, **_):
    return ctx.autonormal_fit()


def _lowrank(ctx, **opts):
    return run_lowrank(ctx.model, ctx.train, map_result=ctx.map_fit()[0], seed=ctx.seed,
                       progress_bar=ctx.progress_bar, **opts)


def _svgd(ctx, **opts):
    return run_svgd(ctx.model, ctx.train, map_result=ctx.map_fit()[0], seed=ctx.seed,
                    progress_bar=ctx.progress_bar, **opts)


def _nuts(ctx, max_latent_dim=300, **opts):
    res = ctx.map_fit()[0]
    dim = sum(int(v.numel()) for v in res.posterior_samples(1).values())
    if dim > max_latent_dim:
        raise MethodSkipped(f"the model has {dim} latent dimensions, above max_latent_dim={max_latent_dim}: "
                            "NUTS on a NODE this size does not finish in the budget")
    return run_nuts(ctx.model, ctx.train, map_result=res, max_latent_dim=max_latent_dim, seed=ctx.seed,
                    progress_bar=ctx.progress_bar, **opts)


def _ensemble(ctx, num_members=5, **opts):
    """A deep ensemble: ``num_members`` MAP fits from independent seeds; member ``i`` is chain ``i``."""
    from ..infer import MethodResult, map_values

    first = ctx.map_fit()[0]
    members = [first]
    map_opts, _ = ctx.map_options()
    map_opts.update(opts)  # the ensemble's own num_steps / lr override the MAP row's: members are trained alike
    for i in range(1, num_members):
        members.append(run_map(ctx.model, ctx.train, seed=ctx.seed + i, progress_bar=ctx.progress_bar, **map_opts))
    values = [map_values(m) for m in members]
    samples = {k: torch.stack([v[k] for v in values])[:, None] for k in values[0]}  # (members, 1, ...)
    return MethodResult(name="ensemble", model=ctx.model, samples=samples,
                        wall_time=sum(m.wall_time for m in members),
                        num_model_evals=sum(m.num_model_evals for m in members),
                        stochastic_dim=sum(int(v.numel()) for v in values[0].values()),  # every weight varies
                        param_state=first.param_state)


def _langevin(score):
    def runner(ctx, **opts):
        run_langevin = _optional("run_langevin", "infer.langevin_runner")
        res = run_langevin(ctx.model, ctx.train, score=score, autonormal_result=ctx.autonormal_fit(), seed=ctx.seed,
                           progress_bar=ctx.progress_bar, **opts)
        ctx.remember(f"langevin_{score}", res)
        return res
    return runner


def _layerwise(subset):
    def runner(ctx, **opts):
        run_layerwise = _optional("run_layerwise", "infer.layerwise")
        return run_layerwise(ctx.model, ctx.train, subset=subset, map_result=ctx.map_fit()[0], seed=ctx.seed,
                             progress_bar=ctx.progress_bar, name=f"layerwise_{subset.split('_')[0]}", **opts)
    return runner


def _langevin_kernel(ctx, start="autonormal", **opts):
    init = ctx.cached(start) if start != "autonormal" else ctx.autonormal_fit()
    if init is None:
        raise MethodSkipped(f"start={start!r}: run that method first (it is the warm start)")
    res = run_langevin_kernel(ctx.model, ctx.train, init, seed=ctx.seed, progress_bar=ctx.progress_bar, **opts)
    ctx.note("langevin_kernel", f"{opts.get('num_particles', 16)} particles warm-started at {start}; mean "
                                f"acceptance {float(res.sample_stats['acceptance_rate'].mean()):.2f}")
    return res


# ---------------------------------------------------------------------------------------------------- registry
_SLOW = {"elastoplastic": 0.6}  # per-step cost relative to chemical is ~1.7x: fewer steps in the same budget


_LOOP_KEYS = ("num_steps", "num_iters", "num_samples", "warmup_steps", "map_steps")


def _scaled(options, problem, keys=_LOOP_KEYS):
    f = _SLOW.get(problem, 1.0)
    return {k: max(1, int(v * f)) if k in keys else v for k, v in options.items()}


def _add(name, runner, description, defaults=None, quick=None, kind="posterior", keys=_LOOP_KEYS):
    defaults = defaults or {}
    problems = {p: _scaled(defaults, p, keys) for p in _SLOW}
    register(Method(name, runner, description, defaults, quick or {}, problems, kind))


_add("map", _map, "MAP point estimate (AutoDelta), Glorot start; the warm start of the other methods",
     {"num_steps": 800}, {"num_steps": 150})
_add("ltau", _ltau, "LTAU error predictor riding on the MAP fit (loss trajectories + faiss neighbours)",
     kind="error")
_add("autonormal", _autonormal, "mean-field Gaussian VI (AutoNormal), from MAP",
     {"num_steps": 500, "num_particles": 8}, {"num_steps": 100, "num_particles": 4, "elbo_particles": 16})
_add("lowrank", _lowrank, "low-rank + diagonal Gaussian VI, from MAP",
     {"num_steps": 500, "num_particles": 8}, {"num_steps": 100, "num_particles": 4, "elbo_particles": 16})
_add("langevin_learned", _langevin("learned"), "AutoLangevin guide, learned score (path-KL ELBO), from AutoNormal",
     {"num_iters": 300, "num_particles": 8}, {"num_iters": 60, "num_particles": 4, "elbo_particles": 16})
for _score in ("exact", "hybrid"):  # a model gradient per chain step: shorter chains and fewer iterations
    _add(f"langevin_{_score}", _langevin(_score), f"AutoLangevin guide, {_score} score (path-KL ELBO), from AutoNormal",
         {"num_iters": 100, "num_steps": 5, "num_particles": 8},
         {"num_iters": 30, "num_steps": 3, "num_particles": 4, "elbo_particles": 16}, keys=("num_iters",))
del _score
_add("layerwise_last", _layerwise("last_layer"), "layer-wise AutoLangevin: last layer stochastic, the rest point "
     "estimates re-optimised jointly, from MAP", {"num_steps": 400}, {"num_steps": 60, "elbo_particles": 16})
_add("layerwise_first", _layerwise("first_layer"), "layer-wise AutoLangevin: first layer stochastic, the rest point "
     "estimates re-optimised jointly, from MAP", {"num_steps": 400}, {"num_steps": 60, "elbo_particles": 16})
_add("langevin_kernel", _langevin_kernel, "LangevinKernel (MALA, exact drift), particle ensemble from AutoNormal",
     {"num_particles": 16, "warmup_steps": 150, "num_samples": 150, "thin": 5},
     {"num_particles": 8, "warmup_steps": 30, "num_samples": 30, "thin": 3})
_add("nuts", _nuts, "NUTS (2 chains from MAP), only for small models",
     {"num_samples": 200, "warmup_steps": 200}, {"num_samples": 20, "warmup_steps": 20})
_add("svgd", _svgd, "SVGD with an RBF kernel, particles around MAP",
     {"num_particles": 16, "num_steps": 300}, {"num_particles": 8, "num_steps": 60})
_add("ensemble", _ensemble, "deep ensemble of 5 MAP fits from independent seeds (member 0 is the MAP row)",
     {"num_members": 5})

#: a method set and quick options that finish within 5 minutes on 2 cores (``make demo``)
DEMO_METHODS = ["map", "ltau", "autonormal", "lowrank", "langevin_learned", "layerwise_last", "langevin_kernel", "svgd",
                "ensemble"]
