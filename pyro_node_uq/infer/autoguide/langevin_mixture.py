"""AutoLangevinMixture: the Langevin guide with a reference that is an equal-weight mixture of M Gaussians, one
per basin of a multimodal posterior (a NODE's weights: several MAP fits from different initialisations land in
different basins, and a deep ensemble's spread over them is what a single-basin guide misses).

Each particle belongs to one component ``j`` (particles are stratified: component ``i mod M`` for particle ``i``,
at a random offset when their number is not a multiple of M), starts at ``z_0 ~ Normal(m_j, S_j)`` and moves under
the OU kernel of that component with the shared drift (the score net reads the latent whitened by its own
component, ``u = (z - m_j) / sqrt(diag S_j)``).  With the label ``j`` part of the path, the path KL to the
reference path law is the sum of the per-step KLs of that component's kernel, and the reference's marginal at
step K is the mixture ``r(z) = (1/M) sum_j Normal(z | m_j, S_j)`` (every component is invariant under its kernel).
So ``Delta(z_K, log r(z_K) + PKL)`` under ``Trace_ELBO`` is a lower bound on the ELBO of the guide's marginal, as
for :class:`AutoLangevin`; for well-separated components it is the mean of the components' bounds plus ``log M``.
"""
import math

import torch
from pyro.infer.autoguide.initialization import init_to_median
from torch.distributions import biject_to

from .langevin import AutoLangevin
from .mixture_reference import MixtureReference

__all__ = ["AutoLangevinMixture"]


class AutoLangevinMixture(AutoLangevin):
    """:class:`AutoLangevin` whose reference r is an equal-weight mixture of Gaussians started at several points.

    :param callable model: a Pyro model with continuous latent sites.
    :param init_loc_fns: one per-site initialisation function per component (e.g.
        ``init_to_value(values=...)`` of MAP fits from different seeds, a deep ensemble's members): component
        ``j``'s mean starts at ``init_loc_fns[j]``'s values.
    :param int num_components: with ``init_loc_fns=None``, this many components each started by ``init_loc_fn``
        (called once per component, so a random one such as ``init_to_sample`` spreads them).
    :param callable init_loc_fn: the initialisation of the prototype trace (default: the first of
        ``init_loc_fns``).
    :param str reference: the components' covariances: ``"full"``, ``"diagonal"`` or ``"auto"`` (full rank up to
        :data:`~pyro_node_uq.infer.autoguide.langevin.FULL_RANK_MAX_DIM` latent coordinates, diagonal above).
    :param float init_scale: initial std of every component.
    :param kwargs: the other options of :class:`AutoLangevin` (``num_steps``, ``score``, ``step_size``,
        ``score_net``...; not ``init_from``).

    All components share the score net, the step size and (``score="exact"``/``"hybrid"``) the exact term's
    weights; each has its own mean and covariance.  The particles of one call are spread evenly over the
    components, so a call with fewer particles than components draws from a random subset of them.

    Example::

        >>> import pyro, pyro.distributions as dist, torch
        >>> from pyro.infer.autoguide import init_to_value
        >>> def model():
        ...     pyro.sample("x", dist.Normal(0.0, 1.0))
        >>> guide = AutoLangevinMixture(model, num_steps=3, init_scale=0.1,
        ...                             init_loc_fns=[init_to_value(values={"x": torch.tensor(v)}) for v in (-2., 2.)])
        >>> x = guide.sample_ensemble(1000)["x"]
        >>> round(float((x > 0).float().mean()), 1)  # half of the members in each component
        0.5
    """

    _auto_large_reference = "diagonal"

    def __init__(self, model, *, init_loc_fns=None, num_components=None, init_loc_fn=None, reference="auto",
                 **kwargs):
        if "init_from" in kwargs:
            raise TypeError("AutoLangevinMixture: init_from is not supported; give each component's start as "
                            "init_loc_fns")
        if reference not in ("auto", "full", "diagonal"):
            raise ValueError(f"AutoLangevinMixture: reference must be 'auto', 'full' or 'diagonal', got {reference!r}")
        if init_loc_fns is None:
            if not (isinstance(num_components, int) and num_components >= 1):
                raise ValueError("AutoLangevinMixture: give init_loc_fns (one per component) or num_components (a "
                                 f"positive int), got num_components={num_components!r}")
            init_loc_fn = init_to_median if init_loc_fn is None else init_loc_fn
            init_loc_fns = [init_loc_fn] * num_components
        else:
            init_loc_fns = list(init_loc_fns)
            if not init_loc_fns or not all(callable(f) for f in init_loc_fns):
                raise ValueError("AutoLangevinMixture: init_loc_fns must be a non-empty sequence of per-site "
                                 f"initialisation functions, got {init_loc_fns!r}")
            if num_components is not None and num_components != len(init_loc_fns):
                raise ValueError(f"AutoLangevinMixture: num_components={num_components} but {len(init_loc_fns)} "
                                 "init_loc_fns")
            init_loc_fn = init_loc_fns[0] if init_loc_fn is None else init_loc_fn
        self.num_components = len(init_loc_fns)
        self._component_inits = tuple(init_loc_fns)
        super().__init__(model, init_loc_fn=init_loc_fn, reference=reference, **kwargs)

    # ------------------------------------------------------------------ parameters
    def _init_loc(self):
        """The components' initial means ``(M, D)``: each init function on the prototype trace's sites."""
        rows = []
        for fn in self._component_inits:
            parts = []
            for _, site in self.prototype_trace.iter_stochastic_nodes():
                with torch.no_grad():
                    value = torch.as_tensor(fn(site), dtype=site["value"].dtype, device=site["value"].device)
                    value = value.expand(site["value"].shape)
                    parts.append(biject_to(site["fn"].support).inv(value).reshape(-1))
            rows.append(torch.cat(parts))
        return torch.stack(rows)

    def reference_law(self):
        """The mixture reference r (a :class:`~.mixture_reference.MixtureReference` of the current parameters)."""
        return MixtureReference.from_scale(self.loc, self.scale, self.scale_tril if self.reference == "full" else None)

    def _loc_scale(self, *args, **kwargs):
        """The mixture's mean and marginal std (its components' means and covariances, equally weighted)."""
        ref = self.reference_law()
        mean = ref.loc.mean(0)
        var = (ref.marginal_std().pow(2) + ref.loc.pow(2)).mean(0) - mean.pow(2)
        return mean, var.clamp(min=0).sqrt()

    # ------------------------------------------------------------------ the chain, component by component
    def _chain_shape(self, batch_shape):
        """``(ceil(N / M), M)`` chains for ``N`` particles: the components along the second-to-last dim."""
        return torch.Size((-(-batch_shape.numel() // self.num_components), self.num_components))

    def _particles(self, state, batch_shape):
        """Particle ``i`` takes chain ``(i + offset) mod (n M)``, so component ``(i + offset) mod M``; the offset is
        random only when ``N`` is not a multiple of ``M`` (each particle's component is then uniform)."""
        M, N = self.num_components, batch_shape.numel()
        z = state.z.reshape(-1, state.z.shape[-1])
        path_kl = state.path_kl.reshape(-1)
        if z.shape[0] != N:
            offset = int(torch.randint(M, ()))
            z, path_kl = z.roll(-offset, 0)[:N], path_kl.roll(-offset, 0)[:N]
        return z.reshape(batch_shape + z.shape[-1:]), path_kl.reshape(batch_shape)

    def _reference_log_prob(self, reference, z):
        return reference.log_prob(z)

    def _fixed_ensemble_size(self):
        """``num_quantile_samples`` rounded up to a multiple of ``2 M``: antithetic pairs within every component and
        no random offset, so :meth:`median` is deterministic."""
        step = 2 * self.num_components
        return step * math.ceil(self.num_quantile_samples / step)

    def score(self, z):
        raise NotImplementedError("AutoLangevinMixture has no single learned score (each component whitens the "
                                  "latent by its own covariance); use LangevinKernel with drift='exact'")
