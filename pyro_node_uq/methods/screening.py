"""Screening a deep ensemble for failed fits: members whose training log-likelihood per observation falls far below
the best member's.

A deep ensemble weights its members equally, which is right for members in comparable basins: their total
training log-likelihoods differ by amounts of the order of the data's own sampling noise, and an over-parameterised
member's in-sample fit says little about its held-out answers (weighting members by it, Bayes' rule at point
masses, concentrates the weight on one member and predicts worse than equal weights).  A member that ended in a
poor basin is different in kind: a forced oscillator fitted without its oscillation, say, whose residuals are
several times the noise.  Its basin carries no posterior weight against the best member's (a gap of ``g`` nats
per observation is ``exp(n g)`` over ``n`` observations), yet with equal weights it takes a fifth of the
predictive.  :func:`failed_members` names such members: a mean gap above ``max_gap`` nats per observation.  With
the default 0.5 that is a likelihood ratio of ``e^0.5 = 1.65`` per observation: a member with a fixed noise scale
``sigma`` whose residual RMS is ``sqrt(2)`` times the best member's (when that is ``sigma``), or a member with a
learned scale 1.65 times the best one's.  Only a minority of the members can fail: when most of them are that far
apart, the fits have not reached their basins (a small step budget) and the gaps say nothing about basins.
"""
import torch

from ..utils.seeding import param_scope
from .result import conditioned_trace, set_draw_params

__all__ = ["failed_members", "member_log_likelihoods"]


def member_log_likelihoods(model, split, samples, draw_params=None, param_state=None):
    """The training log-likelihood of each draw: every observed site's log density, summed per draw, from one
    vectorised trace of ``model`` on ``split``.

    :param model: a :class:`~pyro_node_uq.models.ProcessModel`.
    :param split: the data (:class:`~pyro_node_uq.data.Split`).
    :param dict samples: site -> ``(M,) + shape``, the draws (a deep ensemble's members).
    :param dict draw_params: per-draw ``pyro.param`` values ``(M,) + shape`` (each member's learned noise scale).
    :param dict param_state: the param store state the model runs with.
    :returns: ``(log_liks, num_obs)``: a tensor ``(M,)`` (``-inf`` where a draw's solve diverged or its density is
        not finite) and the number of observed entries.
    """
    M = next(iter(samples.values())).shape[0]
    args, kwargs = model.fit_args(split)
    with param_scope(param_state):
        set_draw_params(draw_params or {})
        trace = conditioned_trace(model, samples, M, args, kwargs)
    nesting, total, count = model.max_plate_nesting, torch.zeros(M, dtype=torch.float64), 0
    for name, site in trace.nodes.items():
        if (site["type"] != "sample" or not site["is_observed"] or name in samples or name.startswith("_")
                or site["infer"].get("_deterministic")):  # the data only: not the conditioned draws
            continue
        with torch.no_grad():
            lp = site["fn"].log_prob(site["value"]).double()
        draws_dim = lp.dim() - nesting - 1
        if draws_dim >= 0 and lp.shape[draws_dim] == M:
            total = total + lp.movedim(draws_dim, 0).reshape(M, -1).sum(1)
        else:  # the site does not depend on the draws
            total = total + lp.sum()
        mask = getattr(split, "mask", None) if name == getattr(model, "obs_site", None) else None
        value = site["value"]
        count += int(value.numel() if mask is None else mask.sum() * value.numel() // mask.numel())
    return torch.nan_to_num(total, nan=-float("inf"), posinf=-float("inf")), max(count, 1)


def failed_members(log_liks, num_obs, max_gap=0.5):
    """Indices of the members whose log-likelihood per observation is more than ``max_gap`` nats below the best
    member's (a non-finite one counts as infinitely far), provided that they are a minority: when at most half of
    the members are within ``max_gap`` of the best, the members disagree as a whole (fits stopped long before
    their basins, at a small step budget), the gaps measure the budget rather than failed basins, and none is
    named.  Never the best member.

    :param log_liks: ``(M,)`` training log-likelihoods (:func:`member_log_likelihoods`).
    :param int num_obs: the number of observations they sum over.
    :param float max_gap: the largest mean gap per observation a member may have (``None``: none fails).
    :returns: a sorted list of indices.

    Example::

        >>> failed_members(torch.tensor([1600.0, 1590.0, 1610.0, 612.0, -float("inf")]), num_obs=656)
        [3, 4]
    """
    if max_gap is not None and not max_gap >= 0:
        raise ValueError(f"max_gap must be >= 0 nats per observation, got {max_gap}")
    log_liks = torch.as_tensor(log_liks, dtype=torch.float64)
    if max_gap is None or log_liks.numel() < 2 or not torch.isfinite(log_liks).any():
        return []
    gap = (log_liks.max() - log_liks) / num_obs
    failed = [i for i, g in enumerate(gap.tolist()) if not g <= max_gap]
    return failed if 2 * (len(log_liks) - len(failed)) > len(log_liks) else []
