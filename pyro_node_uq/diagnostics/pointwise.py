"""The log likelihood of each observed entry, the unit of ArviZ's LOO and WAIC."""
import torch
from pyro.distributions import ExpandedDistribution, Independent, MaskedDistribution

from ..infer._pyro_compat import mask_of

__all__ = ["pointwise_log_likelihood"]


def pointwise_log_likelihood(fn, value):
    """Log density of ``value`` per entry: shape ``batch + (T, outputs)``, unobserved entries 0.

    Unwraps ``Independent`` / ``Expanded`` / ``Masked`` wrappers down to an elementwise density; a distribution
    with a public ``log_prob_pointwise`` (:class:`~pyro_node_uq.distributions.NODEObservation`,
    :class:`~pyro_node_uq.distributions.NODETrajectory`: error model, mask, censoring, ``-inf`` for diverged
    members) gives its own.  Each observed entry (trajectory, time, output) is one observation for LOO / WAIC.
    """
    mask, target_dim = None, len(fn.batch_shape) + len(fn.event_shape)
    while True:
        if hasattr(fn, "log_prob_pointwise"):
            lp = fn.log_prob_pointwise(value)
            break
        if isinstance(fn, MaskedDistribution):
            mask = mask_of(fn) if mask is None else mask & mask_of(fn)
            fn = fn.base_dist
        elif isinstance(fn, (Independent, ExpandedDistribution)):
            fn = fn.base_dist
        else:
            lp = fn.log_prob(value)
            break
    if mask is not None and mask is not True:  # a False mask (nothing observed) zeroes every entry
        lp = torch.where(torch.as_tensor(mask).expand(lp.shape), lp, torch.zeros_like(lp))
    while lp.dim() > target_dim:  # dims below the entries (a joint law inside an entry) are summed
        lp = lp.sum(-1)
    return lp
