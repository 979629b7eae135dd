"""Pyro's SVI step, rejected when a gradient is not finite."""
import pyro
import torch
from pyro import poutine
from pyro.infer import SVI
from pyro.infer.util import torch_item, zero_grads

__all__ = ["GuardedSVI"]


class GuardedSVI(SVI):
    """Pyro's :class:`~pyro.infer.SVI` whose step is rejected when a gradient is not finite.

    A finite loss can still come with a NaN or inf gradient (an ODE solve whose backward pass overflows in float32,
    0 * inf in a discarded branch); one such step would make every parameter it touches NaN for good.  Such a step
    is skipped (no parameter moves; the gradients are zeroed) and counted in :attr:`skipped`; ``max_skips``
    consecutive rejections raise a :class:`FloatingPointError` that names the parameters.

    :param int max_skips: consecutive rejected steps tolerated.

    Example::

        >>> import pyro, pyro.distributions as dist, torch
        >>> def model():
        ...     pyro.sample("x", dist.Normal(0., 1.))
        >>> guide = pyro.infer.autoguide.AutoNormal(model)
        >>> svi = GuardedSVI(model, guide, pyro.optim.Adam({"lr": 0.1}), pyro.infer.Trace_ELBO())
        >>> _ = svi.step(); svi.skipped
        0
    """

    def __init__(self, model, guide, optim, loss, max_skips=10, **kwargs):
        if not int(max_skips) >= 1:
            raise ValueError(f"max_skips must be >= 1, got {max_skips}")
        super().__init__(model, guide, optim, loss, **kwargs)
        self.max_skips, self.skipped, self._run = int(max_skips), 0, 0

    def step(self, *args, **kwargs):
        with poutine.trace(param_only=True) as capture:
            loss = self.loss_and_grads(self.model, self.guide, *args, **kwargs)
        params = {site["value"].unconstrained() for site in capture.trace.nodes.values()}
        loss = self.reduce(params, loss)
        bad = [p for p in params if p.grad is not None and not torch.isfinite(p.grad).all()]
        if bad:
            self.skipped, self._run = self.skipped + 1, self._run + 1
            if self._run >= self.max_skips:
                names = {id(v): k for k, v in pyro.get_param_store().named_parameters()}
                raise FloatingPointError(f"SVI: {self._run} consecutive steps had non-finite gradients of "
                                         f"{sorted(names.get(id(p), '?') for p in bad)}; lower lr, or check the model "
                                         "for diverging solves")
        else:
            self._run = 0
            self.optim(params)
        zero_grads(params)
        return torch_item(loss)

    def reduce(self, params, loss):
        """Combine this step's ``loss`` and the gradients of ``params`` before they are checked and applied (the
        hook of :class:`~pyro_node_uq.infer.distributed.DataParallelSVI`); here, nothing to combine."""
        return loss
