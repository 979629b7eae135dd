"""The log joint density of a Pyro model at a batch of unconstrained latent values, in one vectorised call.

For P points ``u_p`` (one unconstrained tensor per latent site, each with a leading dim P)::

    log p(data, x(u_p)) + log |dx/du|(u_p),     x = T^{-1}(u)  (T: constrained -> unconstrained)

The model runs once inside a plate of size P placed left of its own plates, *outside* every effect handler of
the caller (``isolated_handlers`` in the package's Pyro adapter module): the result does not depend on the plates
the caller happens to run under (vectorised ELBO particles, ``Predictive`` samples, an ``MCMC`` run).  This is
the potential of the ensemble Langevin kernel and the exact score of
:class:`~pyro_node_uq.infer.AutoLangevin`.
"""
import math
import warnings
from collections import OrderedDict

import pyro
import torch
from pyro import poutine
from pyro.distributions.util import is_identically_zero
from pyro.poutine.util import prune_subsample_sites
from pyro.util import get_rng_state, set_rng_state
from torch.distributions import biject_to

from ._pyro_compat import SUBSAMPLE_DIST, is_registered_solver_error, isolated_handlers

__all__ = ["LogJoint", "UnconditionedSiteError", "model_plate_nesting", "value_and_grad"]


def model_plate_nesting(trace):
    """The depth of a traced model's vectorised plates (0 without plates)."""
    return max([-f.dim for site in trace.nodes.values() if site["type"] == "sample"
                for f in site["cond_indep_stack"] if f.vectorized and f.dim is not None] + [0])


class LogJoint:
    """Vectorised log joint of ``model(*args, **kwargs)`` as a function of unconstrained latent values.

    :param model: a Pyro model.
    :param trace: a trace of the model with its data (its latent sites fix the site order and shapes, all its
        sites the plate depth); see :meth:`from_model`.
    :param dict transforms: constrained -> unconstrained transform per latent site (default ``biject_to(support)
        .inv``, as :class:`~pyro.infer.mcmc.MCMC` uses).
    :param tuple args: the model's arguments (the data the density conditions on).
    :param dict kwargs: the model's keyword arguments.

    Calling it with ``{site: u}`` (each ``u`` of shape ``(P,) + unconstrained shape``) returns ``(P,)``.  A site the
    model samples that is neither observed nor given is a prior draw, not data: that raises a ``ValueError``
    naming it (the density would silently depend on a random draw).  Discrete latent sites raise too: they are
    not summed out here (use Pyro's own potential, which enumerates them).

    Example::

        >>> import pyro, pyro.distributions as dist, torch
        >>> from pyro import poutine
        >>> def model(y):
        ...     mu = pyro.sample("mu", dist.Normal(0., 1.))
        ...     with pyro.plate("data", len(y)):
        ...         pyro.sample("obs", dist.Normal(mu, 1.), obs=y)
        >>> y = torch.zeros(3)
        >>> lj = LogJoint(model, poutine.trace(model).get_trace(y), args=(y,))
        >>> lj({"mu": torch.zeros(4)}).shape
        torch.Size([4])
    """

    def __init__(self, model, trace, transforms=None, args=(), kwargs=None):
        self.model, self.args, self.kwargs = model, tuple(args), dict(kwargs or {})
        self.max_plate_nesting = model_plate_nesting(trace)
        self.sites = OrderedDict()
        for name, site in prune_subsample_sites(trace).iter_stochastic_nodes():
            if site["fn"].support.is_discrete:
                raise ValueError(f"site {name!r} is discrete: the vectorised log joint does not enumerate it; "
                                 "marginalise it in the model, or use a method that enumerates (num_particles=1 "
                                 "kernels, HMC/NUTS, TraceEnum_ELBO)")
            t = (transforms or {}).get(name) or biject_to(site["fn"].support).inv
            # singleton dims that put the particle dim left of the plates the site lives in
            pad = self.max_plate_nesting - len(site["fn"].batch_shape)
            self.sites[name] = (t, pad, site["value"].shape)
        self.vectorized = None  # found out on the first call

    @classmethod
    def from_model(cls, model, args=(), kwargs=None, transforms=None, latent_sites=None):
        """Trace ``model(*args, **kwargs)`` at top level (outside the caller's handlers) and build its log joint.

        The global random state is left as it was (the trace draws the latents from the prior).  With
        ``latent_sites``, any other unobserved site is an error (a density over those sites only)."""
        rng = get_rng_state()
        try:
            with isolated_handlers(), torch.no_grad():
                trace = poutine.trace(model).get_trace(*args, **(kwargs or {}))
        finally:
            set_rng_state(rng)
        if latent_sites is not None:
            for name, _ in prune_subsample_sites(trace).iter_stochastic_nodes():
                if name not in latent_sites:
                    raise UnconditionedSiteError(
                        f"site {name!r} is neither observed nor a latent of the density: the data it was given "
                        f"({len(args)} arguments, keywords {sorted(kwargs or {})}) leave it unobserved.  Give the data "
                        "it conditions on (for a guide: guide.condition_on(*args, **kwargs) with the training data)")
        return cls(model, trace, transforms, args, kwargs)

    def _per_particle(self, log_prob, P):
        mpn = self.max_plate_nesting
        if log_prob.dim() > mpn:  # (P or 1, *plate dims)
            log_prob = (log_prob.sum(tuple(range(-mpn, 0))) if mpn else log_prob).reshape(-1)
        else:  # a term shared by all particles
            log_prob = log_prob.sum().reshape(1)
        return log_prob.expand(P) if log_prob.numel() == 1 else log_prob.reshape(P)

    def __call__(self, unconstrained):
        """Log joint ``(P,)`` of the points ``{site: u}`` (each ``u`` with a leading dim P).

        A model that cannot be vectorised over particles (a ``PyroModule[nn.Linear]`` with sampled weights) is
        detected on the first call and evaluated one particle at a time from then on, with a warning."""
        if self.vectorized is not False:
            try:
                out = self._evaluate(unconstrained, vectorized=True)
                self.vectorized = True
                return out
            except Exception as e:
                if self.vectorized or isinstance(e, UnconditionedSiteError) or is_registered_solver_error(e):
                    raise
                first = {k: v[:1] for k, v in unconstrained.items()}
                try:
                    self._evaluate(first, vectorized=False)
                except Exception:  # noqa: BLE001
                    raise e from None
                self.vectorized = False
                warnings.warn(f"the model cannot be vectorised over particles ({type(e).__name__}: {e}); its log "
                              "density is evaluated one particle at a time (slower).  Declare every batch dim with "
                              "pyro.plate and broadcast over leading dims to vectorise it", RuntimeWarning)
        return self._evaluate(unconstrained, vectorized=False)

    def _evaluate(self, unconstrained, vectorized):
        first = next(iter(unconstrained.values()))
        P = first.shape[0]
        log_jac, values = first.new_zeros(P), {}
        for name, (t, pad, shape) in self.sites.items():
            u = unconstrained[name]
            x = t.inv(u)
            log_jac = log_jac - t.log_abs_det_jacobian(x, u).reshape(P, -1).sum(-1)
            values[name] = x.reshape((P,) + (1,) * pad + shape)
        if vectorized:
            with isolated_handlers(), pyro.plate("_log_joint_particles", P, dim=-self.max_plate_nesting - 1):
                trace = poutine.trace(poutine.condition(self.model, values)).get_trace(*self.args, **self.kwargs)
            return log_jac + self._trace_log_joint(trace, values, P)
        out = []
        for p in range(P):
            single = {name: v[p].reshape(self.sites[name][2]) for name, v in values.items()}
            with isolated_handlers():
                trace = poutine.trace(poutine.condition(self.model, single)).get_trace(*self.args, **self.kwargs)
            out.append(self._trace_log_joint(trace, single, 1))
        return log_jac + torch.cat(out)

    def _trace_log_joint(self, trace, values, P):
        trace.compute_log_prob()
        total = 0.0
        for site in trace.nodes.values():
            if site["type"] != "sample" or isinstance(site["fn"], SUBSAMPLE_DIST):
                continue
            if not site["is_observed"] and site["name"] not in values:
                raise UnconditionedSiteError(
                    f"site {site['name']!r} is neither observed nor a latent of the density: the model drew it "
                    "from its prior.  Give the data it conditions on (for a guide: guide.condition_on(*args, "
                    "**kwargs) with the training data)")
            if not is_identically_zero(site["log_prob"]):
                total = total + self._per_particle(site["log_prob"], P)
        return total


class UnconditionedSiteError(ValueError):
    """The model sampled a site that is neither data nor a latent of the density (e.g. ``y=None``)."""


def value_and_grad(fn, z, with_grad=True):
    """``(value, grad, ok)`` of a batched log density ``fn(z) -> (P,)`` at points ``z`` ``(P, D)``.

    Members whose value or gradient is not finite are not ``ok``: their value is ``-inf`` and their gradient zero
    (zeros, not NaN: a NaN kept out of the forward pass by ``torch.where`` would still reach parameters' gradients
    as ``0 * NaN``).  A solver failure that raises an error registered with
    ``pyro.ops.integrator.register_exception_handler`` (as :class:`~pyro_node_uq.distributions.NODEDivergenceError`
    is) makes every member not ``ok``.
    With ``with_grad=False`` no backward pass is made and ``grad`` is ``None``.
    """
    leaf = z.detach().requires_grad_(with_grad)
    grad = None
    try:
        with torch.set_grad_enabled(with_grad):
            value = fn(leaf)
            if with_grad:
                grad = torch.autograd.grad(value.sum(), leaf)[0] if value.requires_grad else torch.zeros_like(leaf)
    except Exception as e:
        if not is_registered_solver_error(e):
            raise
        value, grad = z.new_full(z.shape[:1], -math.inf), (torch.zeros_like(z) if with_grad else None)
    value = value.detach()
    ok = torch.isfinite(value)
    if grad is not None:
        grad = grad.detach()
        ok = ok & torch.isfinite(grad).all(-1)
        grad = torch.where(ok.unsqueeze(-1), grad, torch.zeros_like(grad))
    return torch.where(ok, value, torch.full_like(value, -math.inf)), grad, ok
