"""Polishing a point fit with L-BFGS: a MAP fit's loss (``AutoDelta`` under ``Trace_ELBO``) is deterministic and
full-batch, the setting quasi-Newton methods are made for.

Adam with a decaying learning rate gets a NODE's weights into a basin quickly but then crawls: its steps are as
large in the stiff directions as in the flat ones, so it can stall with the fit well above the noise level while the
loss still falls (measured on the AutoLangevin page of the docs).  :func:`polish_lbfgs` runs
``torch.optim.LBFGS`` with the strong-Wolfe line search on the parameters the loss reads (the guide's and the
model's own ``pyro.param`` s) in chunks of iterations, and stops when a chunk improves the loss by less than
``rtol`` of its size.

A trial point of the line search whose ODE solve diverges (:class:`~pyro_node_uq.distributions.NODEDivergenceError`,
or a non-finite loss or gradient) is answered with a loss above every loss seen and a zero gradient, so the line
search backs off from it; the parameters are restored to the best chunk boundary if an accepted step is ever
non-finite, and the fit never ends worse than it started.
"""
import math
import time
from dataclasses import dataclass, field

import torch
from pyro import poutine
from pyro.infer import Trace_ELBO
from tqdm.auto import tqdm

from ..distributions import NODEDivergenceError
from ..validation import check_int, check_positive

__all__ = ["PolishResult", "polish_lbfgs"]


@dataclass
class PolishResult:
    """How an L-BFGS polish went.

    :ivar list losses: the loss at the start and after every chunk of iterations.
    :ivar int iterations: L-BFGS iterations run.
    :ivar int evaluations: loss-and-gradient evaluations (model runs), line-search trials included.
    :ivar bool converged: whether a chunk improved the loss by less than ``rtol`` (else the iterations ran out or
        the fit stopped at a non-finite step).
    :ivar str reason: ``"converged"``, ``"max_iter"`` or ``"non-finite"`` (an accepted step was not finite: the
        parameters are back at the last good chunk's).
    :ivar float wall_time: seconds.
    """

    losses: list = field(default_factory=list)
    iterations: int = 0
    evaluations: int = 0
    converged: bool = False
    reason: str = "max_iter"
    wall_time: float = 0.0


def polish_lbfgs(model, guide, split, *, max_iter=500, rtol=1e-6, chunk=25, history_size=50, progress_bar=False,
                 desc="L-BFGS"):
    """Minimise ``Trace_ELBO`` of a point guide (``AutoDelta``) with L-BFGS, in place in the current param store.

    :param model: the Pyro model, called as ``model(*split.args, **split.kwargs)``.
    :param guide: a guide whose loss is deterministic (``AutoDelta``; no subsampling), already set up (called once
        or fitted), so its parameters exist.
    :param split: the training :class:`~pyro_node_uq.data.Split`.
    :param int max_iter: the most L-BFGS iterations (``0``: only evaluate the loss).
    :param float rtol: stop when a chunk improves the loss by less than ``rtol * max(1, |loss|)``.
    :param int chunk: iterations between the stopping checks (and the best-point snapshots).
    :param int history_size: L-BFGS curvature pairs kept.
    :param bool progress_bar: show a tqdm bar of the chunks.
    :param str desc: the bar's label.
    :rtype: PolishResult
    :raises FloatingPointError: the loss at the start is not finite.

    Example::

        >>> import pyro, pyro.distributions as dist, torch
        >>> from pyro.infer.autoguide import AutoDelta
        >>> from pyro_node_uq.data import Split
        >>> def model(t, x, y):
        ...     mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
        ...     with pyro.plate("data", y.shape[0]):
        ...         pyro.sample("obs", dist.Normal(mu, 1.0).expand(y.shape[1:]).to_event(2), obs=y)
        >>> split = Split(t=torch.arange(1.0), x=None, y=torch.tensor([[[1.0]], [[2.0]], [[3.0]]]))
        >>> pyro.clear_param_store()
        >>> guide = AutoDelta(model)
        >>> _ = guide(*split.args)
        >>> out = polish_lbfgs(model, guide, split, max_iter=50)
        >>> round(float(guide.median()["mu"]), 3), out.reason  # the mode: 6 / (3 + 1/100)
        (1.993, 'converged')
    """
    max_iter = check_int(max_iter, "max_iter", 0)
    chunk = check_int(chunk, "chunk", 1)
    rtol = check_positive(rtol, "rtol")
    elbo = Trace_ELBO()
    args, kwargs = split.args, split.kwargs
    with poutine.trace(param_only=True) as captured:
        first = elbo.differentiable_loss(model, guide, *args, **kwargs)
    params = [site["value"].unconstrained() for site in captured.trace.nodes.values()]
    out = PolishResult(losses=[float(first.detach())], evaluations=1)
    if not math.isfinite(out.losses[0]):
        raise FloatingPointError(f"{desc}: the loss at the start is {out.losses[0]}")
    if max_iter == 0 or not params:
        out.converged, out.reason = True, "converged"
        return out
    best = {"loss": out.losses[0], "values": [p.detach().clone() for p in params]}

    def closure():
        out.evaluations += 1
        for p in params:
            p.grad = None
        try:
            loss = elbo.differentiable_loss(model, guide, *args, **kwargs)
            if torch.isfinite(loss):
                loss.backward()
        except NODEDivergenceError:
            loss = None
        if (loss is None or not torch.isfinite(loss)
                or not all(p.grad is None or torch.isfinite(p.grad).all() for p in params)):
            for p in params:  # a diverged trial point: worse than anything seen, no direction to follow
                p.grad = torch.zeros_like(p)
            return torch.tensor(abs(best["loss"]) * 10.0 + 1e10, dtype=first.dtype)
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        return loss.detach()

    optimizer = torch.optim.LBFGS(params, lr=1.0, max_iter=chunk, history_size=history_size,
                                  line_search_fn="strong_wolfe")
    clock = time.perf_counter()
    with tqdm(total=max_iter, desc=desc, disable=not progress_bar, leave=False) as bar:
        while out.iterations < max_iter:
            optimizer.param_groups[0]["max_iter"] = min(chunk, max_iter - out.iterations)
            before = optimizer.state[params[0]].get("n_iter", 0)  # LBFGS keeps its state under the first param
            optimizer.step(closure)
            done = optimizer.state[params[0]].get("n_iter", 0) - before
            out.iterations += done
            bar.update(done)
            with torch.no_grad():
                loss = float(elbo.differentiable_loss(model, guide, *args, **kwargs))
            out.evaluations += 1
            finite = math.isfinite(loss) and all(torch.isfinite(p).all() for p in params)
            if not finite or loss > best["loss"]:  # (the line search only accepts decreases: a non-finite step)
                with torch.no_grad():
                    for p, v in zip(params, best["values"]):
                        p.copy_(v)
                out.converged, out.reason = finite, "converged" if finite else "non-finite"
                break
            out.losses.append(loss)
            improvement = best["loss"] - loss
            best.update(loss=loss, values=[p.detach().clone() for p in params])
            bar.set_postfix(loss=f"{loss:.6g}")
            if improvement <= rtol * max(1.0, abs(loss)) or done == 0:
                out.converged, out.reason = True, "converged"
                break
    out.wall_time = time.perf_counter() - clock
    return out
