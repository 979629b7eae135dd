"""Helpers shared by the speed benchmarks (not a test): interleaved timing and one log p + gradient call."""
import statistics
import time

from pyro_node_uq.distributions import NODETrajectory


def interleaved(fns, repeats, self_timed=False):
    """Median seconds of each callable, calls interleaved round-robin after one warm-up each; the round's order
    rotates by one each repeat, so no callable always follows the same one.  With ``self_timed`` each callable
    returns its own seconds (e.g. of a call made in another process)."""
    for fn in fns.values():
        fn()
    times, keys = {k: [] for k in fns}, list(fns)
    for r in range(repeats):
        for k in keys[r % len(keys):] + keys[:r % len(keys)]:
            start = time.perf_counter()
            out = fns[k]()
            times[k].append(out if self_timed else time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def logp_and_grad(model, split, params, solver=None):
    """log p(y | w) of ``split`` summed over trajectories and particles, and its gradient (``backward``)."""
    params = {k: v.detach().requires_grad_() for k, v in params.items()}
    d = NODETrajectory(model.R, model.Z, params, split.t, split.x, h0=model.init, scale=model.scale,
                       solver=model.solver if solver is None else solver, obs_dim=model.obs_dim)
    lp = d.log_prob(split.y).sum()
    lp.backward()
    return lp
