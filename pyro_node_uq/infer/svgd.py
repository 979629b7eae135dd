"""SVGD with the kernel applied to whole particles (a fix of Pyro's ``SVGD`` packing)."""
import pyro
import torch
from pyro import poutine
from pyro.infer import SVGD
from torch.distributions import biject_to

from ._pyro_compat import setup_prototype, unpack_latent

__all__ = ["ParticleSVGD"]


class ParticleSVGD(SVGD):
    """Pyro's :class:`~pyro.infer.SVGD` with the kernel applied to whole particles.

    Pyro packs the vectorised particles site by site (all particles of site 1, then of site 2, ...), while its
    ``step`` reads the flat tensor as ``(num_particles, D)`` rows: with more than one latent site a "row" then
    mixes different particles.  Here the flat tensor is indexed through a ``(num_particles, D)`` index matrix
    whose rows are true particles; the Stein update itself is Pyro's (same kernel, same modes).
    """

    def particle_index(self, *args, **kwargs):
        """``(num_particles, D)`` indices into the flat particle tensor, one row per particle."""
        if getattr(self, "_index", None) is None:
            shapes = setup_prototype(self.guide, *args, **kwargs)
            n = sum(int(v.numel()) for v in shapes.values())
            flat = torch.arange(n)
            rows = [v.reshape(self.num_particles, -1) for _, v in unpack_latent(self.guide, flat)]
            self._index = torch.cat(rows, dim=-1)
        return self._index

    @torch.no_grad()
    def step(self, *args, **kwargs):
        """One SVGD update of all particles; returns the mean squared update per site (as Pyro's)."""
        index = self.particle_index(*args, **kwargs)
        with torch.enable_grad(), poutine.trace(param_only=True) as param_capture:
            loss = self.loss(self.model, self.guide, *args, **kwargs)
            loss.backward()
        flat = pyro.param("svgd_particles").unconstrained()
        x, grad = flat[index], flat.grad[index]  # (P, D): rows are particles
        log_kernel, kernel_grad = self.kernel.log_kernel_and_grad(x)
        if self.mode == "multivariate":
            kernel = log_kernel.sum(-1).exp()
            update = kernel @ grad + torch.einsum("nm,nm...->n...", kernel, kernel_grad)
        else:
            kernel = log_kernel.exp()
            update = torch.einsum("nmd,md->nd", kernel, grad) + torch.einsum("nmd,nmd->nd", kernel, kernel_grad)
        flat.grad = torch.zeros_like(flat).index_put_((index,), update / self.num_particles)
        squared = {site["name"]: v.mean().item() for site, v in unpack_latent(self.guide, flat.grad.pow(2))}
        params = {site["value"].unconstrained() for site in param_capture.trace.nodes.values()}
        self.optim(params)
        pyro.infer.util.zero_grads(params)
        return squared

    def initial_particles(self, values, jitter, *args, **kwargs):
        """Flat particle tensor: the constrained point ``values`` (site -> tensor) plus Gaussian jitter."""
        index = self.particle_index(*args, **kwargs)
        loc = []
        for name, site in self.guide.prototype_trace.iter_stochastic_nodes():
            loc.append(biject_to(site["fn"].support).inv(values[name]).reshape(-1))
        loc = torch.cat(loc)
        if loc.numel() != index.shape[1]:
            raise ValueError(f"initial_particles: values have {loc.numel()} dims, the model {index.shape[1]}")
        rows = loc + jitter * torch.randn(index.shape, dtype=loc.dtype, device=loc.device)
        return torch.empty(index.numel(), dtype=loc.dtype, device=loc.device).index_put_((index.to(loc.device),), rows)
