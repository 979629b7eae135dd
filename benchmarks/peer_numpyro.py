"""Ours against a JAX peer (NumPyro + diffrax, jit + vmap) on the same NODE (not a test).

The peer is the ``chemical`` problem's default NODE written in JAX: R = MLP(4 -> 32 tanh -> 3), the first two
hidden components observed with Normal(0.02) noise, h0 = (1, 0, 0), the temperature input linearly
interpolated, and torchdiffeq's 3/8-rule RK4 stepping exactly on the observation grid (a diffrax
``AbstractERK`` with that tableau and ``StepTo`` the grid).  With the same weights the two log-likelihoods must
agree to a relative 1e-5 (checked in float64 first; the script stops if they do not); the float32 log p and
its gradient are then compared with each peer's, and each implementation's float32 values with the float64 ones
(the truth all agree on): two float32 implementations differ by their round-off, each measured here.

Timings are in float32 on one thread (pin the run to one core with ``taskset``: the worker processes inherit
it and only one process computes at a time), every variant's calls interleaved, repeated, medians, printed
as ratios ours / peer (< 1: ours faster).  The peer is jitted; its compile time is reported separately and not in
the per-call times.  Rows:

* log p + gradient at P = 1, 8, 64, 256: log p(y | w) of every trajectory summed, plus its gradient, for P
  weight particles in one vectorised call (``vmap`` for the peers, none at P = 1), against two JAX peers:
  diffrax, and the same RK4 written by hand under ``jax.lax.scan``; ``ours / best`` divides by the faster peer.
  Ours runs in worker processes (:mod:`logp_worker`): the current tree with the default fixed-step path and
  with ``torchdiffeq``, and, with ``--baseline-src``, an older checkout, so a change is measured against its
  baseline in the same run;
* ``svi step``: one AutoNormal SVI step with 16 vectorised particles (Pyro against NumPyro);
* ``nuts grad``: ours, the cost per potential-energy gradient inside a short NUTS run at tree depth 6 (the
  kernel of ``run_nuts``, eager, tree building included); the peer, its jitted potential gradient alone
  (a lower bound of its NUTS cost per gradient, which adds only the compiled tree building);
* ``nuts potential grad``: like for like, interleaved: the potential energy and its gradient as NUTS asks for
  them, Pyro's ``potential_fn`` of the same kernel against the peer's jitted one.

    taskset -c 1 python benchmarks/peer_numpyro.py [--repeats 7] [--skip-nuts] [--baseline-src ../old-checkout]

Needs the ``bench`` extra: ``pip install pyro-node-uq[bench]`` (jax, diffrax, numpyro).
"""
import argparse
import os
import subprocess
import sys
import time

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as ndist
import pyro
import torch
from logp_worker import particle_weights
from timing import interleaved

from pyro_node_uq.data import load_problem
from pyro_node_uq.distributions import NODETrajectory

jax.config.update("jax_enable_x64", True)


class RK38(diffrax.AbstractERK):
    """torchdiffeq's ``rk4``: the 3/8-rule fourth-order Runge-Kutta method."""

    tableau = diffrax.ButcherTableau(
        c=np.array([1 / 3, 2 / 3, 1.0]), b_sol=np.array([0.125, 0.375, 0.375, 0.125]), b_error=np.zeros(4),
        a_lower=(np.array([1 / 3]), np.array([-1 / 3, 1.0]), np.array([1.0, -1.0, 1.0])))
    interpolation_cls = diffrax.ThirdOrderHermitePolynomialInterpolation.from_k

    def order(self, terms):
        return 4


def jax_problem(split, dtype):
    t = jnp.asarray(split.t.double().numpy(), dtype=dtype)
    x = jnp.asarray(split.x.double().numpy(), dtype=dtype)  # (N, T, 1)
    y = jnp.asarray(split.y.double().numpy(), dtype=dtype)  # (N, T, 2)
    return t, x, y


def make_loglik(t, x, y, scale=0.02):
    """``loglik(weights)``: summed log p(y | w) of every trajectory, all N trajectories in one RK4 solve."""
    h0 = jnp.broadcast_to(jnp.array([1.0, 0.0, 0.0], dtype=t.dtype), (x.shape[0], 3))
    inputs = diffrax.LinearInterpolation(ts=t, ys=jnp.swapaxes(x, 0, 1))  # (T, N, 1)

    def field(s, h, w):  # h: (N, 3)
        z = jnp.tanh(jnp.concatenate([h, inputs.evaluate(s)], -1) @ w["R.0.weight"].T + w["R.0.bias"])
        return z @ w["R.1.weight"].T + w["R.1.bias"]

    def loglik(w):
        w = {k: v.astype(t.dtype) for k, v in w.items()}  # a guide may hand over float64 under jax_enable_x64
        sol = diffrax.diffeqsolve(diffrax.ODETerm(field), RK38(), t0=t[0], t1=t[-1], dt0=None, y0=h0, args=w,
                                  saveat=diffrax.SaveAt(ts=t), stepsize_controller=diffrax.StepTo(ts=t),
                                  max_steps=t.shape[0])
        hs = jnp.swapaxes(sol.ys, 0, 1)  # (N, T, 3)
        return ndist.Normal(hs[..., :2], scale).log_prob(y).sum()

    return loglik


def make_loglik_scan(t, x, y, scale=0.02):
    """The same log-likelihood with the 3/8-rule RK4 written by hand under ``jax.lax.scan`` (what a JAX user
    writes without a solver library): one step per observation interval, the input's stage values
    interpolated linearly ahead of the loop."""
    h0 = jnp.broadcast_to(jnp.array([1.0, 0.0, 0.0], dtype=t.dtype), (x.shape[0], 3))
    dt = t[1:] - t[:-1]
    xs = jnp.swapaxes(x, 0, 1)  # (T, N, 1)
    u = [xs[:-1] + c * (xs[1:] - xs[:-1]) for c in (0.0, 1 / 3, 2 / 3, 1.0)]  # stage inputs, each (T - 1, N, 1)

    def loglik(w):
        w = {k: v.astype(t.dtype) for k, v in w.items()}

        def f(h, ui):
            z = jnp.tanh(jnp.concatenate([h, ui], -1) @ w["R.0.weight"].T + w["R.0.bias"])
            return z @ w["R.1.weight"].T + w["R.1.bias"]

        def step(h, inp):
            d, u0, u1, u2, u3 = inp
            k1 = f(h, u0)
            k2 = f(h + d * k1 / 3, u1)
            k3 = f(h + d * (k2 - k1 / 3), u2)
            k4 = f(h + d * (k1 - k2 + k3), u3)
            h = h + d * (k1 + 3 * (k2 + k3) + k4) / 8
            return h, h

        _, hs = jax.lax.scan(step, h0, (dt, *u))
        hs = jnp.swapaxes(jnp.concatenate([h0[None], hs]), 0, 1)  # (N, T, 3)
        return ndist.Normal(hs[..., :2], scale).log_prob(y).sum()

    return loglik


PEERS = {"diffrax": make_loglik, "lax.scan": make_loglik_scan}


def _relative(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def check_agreement(problem):
    """Log-likelihoods with the same (random) weights: ours against each peer in float64 (all back-ends; the
    script stops above 1e-5), then ours (default path) against each peer in float64 and float32, log p and
    gradient."""
    split = problem.train.to(torch.float64)
    model = problem.default_model()
    model.init = model.init.double()
    gen = torch.Generator().manual_seed(1)
    w = {k: torch.randn(s, generator=gen, dtype=torch.float64) / s[-1] ** 0.5 for k, s in model.weight_shapes().items()}
    data = jax_problem(split, jnp.float64)
    peers = {name: float(make(*data)({k: jnp.asarray(v.numpy()) for k, v in w.items()}))
             for name, make in PEERS.items()}
    worst = 0.0
    print("agreement (float64, same weights): " + ", ".join(f"{n} log p = {v:.10g}" for n, v in peers.items()))
    for backend in ("fixed", "torchdiffeq"):
        d = NODETrajectory(model.R, model.Z, w, split.t, split.x, h0=model.init, scale=model.scale,
                           solver={"backend": backend}, obs_dim=model.obs_dim)
        ours = float(d.log_prob(split.y).sum())
        rel = {n: abs(ours - v) / abs(v) for n, v in peers.items()}
        worst = max(worst, *rel.values())
        print(f"  ours ({backend:<11}) log p = {ours:.10g}   relative difference " +
              ", ".join(f"{n} {r:.2e}" for n, r in rel.items()))
    if not worst < 1e-5:
        raise SystemExit(f"likelihoods disagree: relative difference {worst:.2e} >= 1e-5")
    truth = None
    for dtype in (torch.float64, torch.float32):
        truth = gradient_agreement(model, split, w, dtype, truth)


def gradient_agreement(model, split, w, dtype, truth=None):
    """Print the relative differences of log p and of its gradient in ``dtype``: ours (default path) against each
    peer, and the two peers against each other (the floor of round-off); with ``truth`` (the float64 ``(log p,
    gradient)``), each one's error against it.  Returns ours ``(log p, gradient)``."""
    split = split.to(dtype)
    wt = {k: v.detach().to(dtype).clone().requires_grad_() for k, v in w.items()}
    d = NODETrajectory(model.R, model.Z, wt, split.t, split.x, h0=model.init.to(dtype), scale=model.scale,
                       solver=model.solver, obs_dim=model.obs_dim)
    lp = d.log_prob(split.y).sum()
    lp.backward()
    data = jax_problem(split, jnp.float32 if dtype == torch.float32 else jnp.float64)
    wj = {k: jnp.asarray(v.detach().numpy()) for k, v in wt.items()}
    peer = {name: jax.value_and_grad(make(*data))(wj) for name, make in PEERS.items()}
    ours = (np.float64(lp.item()), {k: v.grad.numpy() for k, v in wt.items()})
    print(f"agreement ({str(dtype)[6:]}, same weights): relative difference of log p and of its gradient (max over "
          "entries of |a - b| over b's largest entry), ours with the default path")
    pairs = [(f"ours - {name}", ours, peer[name]) for name in PEERS] + [("diffrax - lax.scan (the floor)",
                                                                      peer["diffrax"], peer["lax.scan"])]
    if truth is not None:  # the float64 value, which every implementation agrees on to ~1e-14
        pairs += [(f"{name} - float64", value, truth) for name, value in [("ours", ours), *peer.items()]]
    for label, (v1, g1), (v2, g2) in pairs:
        g_rel = max(_relative(np.asarray(g1[k], dtype=np.float64), np.asarray(g2[k], dtype=np.float64)) for k in g1)
        print(f"  {label:<31} log p {abs(float(v1) - float(v2)) / abs(float(v2)):.2e}   gradient {g_rel:.2e}")
    return ours


class Worker:
    """A :mod:`logp_worker` process for the package checkout ``src``: ``call(P, backend)`` -> seconds."""

    def __init__(self, src):
        here = os.path.dirname(os.path.abspath(__file__))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.abspath(src), here]))
        self.proc = subprocess.Popen([sys.executable, os.path.join(here, "logp_worker.py")], env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        if self.proc.stdout.readline().strip() != "ready":
            raise SystemExit(f"the timing worker for {src} did not start")

    def call(self, P, backend="default"):
        self.proc.stdin.write(f"{P} {backend}\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def close(self):
        self.proc.stdin.write("quit\n")
        self.proc.stdin.close()
        self.proc.wait()


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def time_logp(problem, sizes, repeats, baseline_src=None, torchdiffeq=True):
    """Median seconds per log p + gradient call at each P: ours (the current tree, and ``baseline_src`` when
    given, each in its own worker process), torchdiffeq, and each JAX peer, all calls interleaved."""
    split = problem.train
    model = problem.default_model()
    t, x, y = jax_problem(split, jnp.float32)
    workers = {"ours": Worker(os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))}
    if baseline_src:
        workers["base"] = Worker(baseline_src)
    rows = []
    try:
        for P in sizes:
            params = particle_weights(model.weight_shapes(), P)
            wj = {k: jnp.asarray(v[:, 0].numpy()) for k, v in params.items()}
            fns, compile_s = {k: (lambda w=w: w.call(P)) for k, w in workers.items()}, {}  # noqa: B023
            if torchdiffeq:
                fns["torchdiffeq"] = lambda: workers["ours"].call(P, "torchdiffeq")  # noqa: B023
            for name, make in PEERS.items():
                loglik = make(t, x, y)
                if P == 1:  # P = 1 without vmap: the peer's fastest form
                    vg, w = jax.jit(jax.value_and_grad(loglik)), {k: v[0] for k, v in wj.items()}
                else:
                    vg, w = jax.jit(jax.value_and_grad(lambda w, f=loglik: jax.vmap(f)(w).sum())), wj
                compile_s[name] = _timed(lambda vg=vg, w=w: jax.block_until_ready(vg(w)))
                fns[name] = lambda vg=vg, w=w: _timed(lambda: jax.block_until_ready(vg(w)))
            med = interleaved(fns, repeats, self_timed=True)
            rows.append((P, med, compile_s))
    finally:
        for w in workers.values():
            w.close()
    return rows


def print_logp(rows):
    peers = list(PEERS)
    base = "base" in rows[0][1]
    cols = ["ours"] + (["base"] if base else []) + (["torchdiffeq"] if "torchdiffeq" in rows[0][1] else []) + peers
    print(f"log p + gradient, ms (medians); ours / best JAX peer{' (now, and at the baseline commit)' if base else ''}")
    print(f"{'P':>4} " + " ".join(f"{c:>11}" for c in cols) + f" {'ours/best':>10}" +
          (f" {'base/best':>10}" if base else "") + "   peer jit s")
    for P, med, compile_s in rows:
        best = min(med[p] for p in peers)
        line = f"{P:>4} " + " ".join(f"{1e3 * med[c]:11.2f}" for c in cols) + f" {med['ours'] / best:10.2f}"
        if base:
            line += f" {med['base'] / best:10.2f}"
        print(line + "   " + ", ".join(f"{p} {compile_s[p]:.1f}" for p in peers))


def numpyro_model(model, split, latent_dtype, solve_dtype=jnp.float32, make=make_loglik):
    """The peer's NumPyro model of ``model``'s weights (standard normal priors, latents in ``latent_dtype``) with
    the RK4 log-likelihood of ``split`` made by ``make`` (diffrax by default) in ``solve_dtype``."""
    loglik = make(*jax_problem(split, solve_dtype))
    shapes = model.weight_shapes()

    def npmodel():
        w = {k: numpyro.sample(k, ndist.Normal(jnp.zeros(tuple(s), latent_dtype), 1.0).to_event(len(s)))
             for k, s in shapes.items()}
        numpyro.factor("obs", loglik(w))

    return npmodel


def time_svi(problem, repeats, particles=16):
    from numpyro.infer import SVI as NSVI
    from numpyro.infer import Trace_ELBO as NTrace_ELBO
    from numpyro.infer.autoguide import AutoNormal as NAutoNormal
    from pyro.infer import SVI, Trace_ELBO
    from pyro.infer.autoguide import AutoNormal

    split = problem.train
    model = problem.default_model(record=False)
    pyro.clear_param_store()
    guide = AutoNormal(model, init_loc_fn=model.init_loc_fn(0))
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-3}),
              Trace_ELBO(num_particles=particles, vectorize_particles=True, max_plate_nesting=1))
    svi.step(*split.args)

    npmodel = numpyro_model(model, split, jnp.float32)
    nsvi = NSVI(npmodel, NAutoNormal(npmodel), numpyro.optim.Adam(1e-3),
                NTrace_ELBO(num_particles=particles, vectorize_particles=True))
    state = nsvi.init(jax.random.PRNGKey(0))
    update = jax.jit(nsvi.update)
    start = time.perf_counter()
    holder = [jax.block_until_ready(update(state))[0]]
    compile_s = time.perf_counter() - start

    def peer_step():
        holder[0], loss = update(holder[0])
        jax.block_until_ready(loss)

    med = interleaved({"ours": lambda: svi.step(*split.args), "peer": peer_step}, repeats)
    return [(f"svi step ({particles} particles)", med["ours"], None, med["peer"], compile_s)]


def time_nuts(problem, num_warmup=10, num_samples=10, jit=False):
    """Seconds per potential gradient inside NUTS (depth 6): ``run_nuts``' kernel against NumPyro's."""
    from pyro.infer import MCMC

    from pyro_node_uq.methods.nuts import _CountingNUTS

    split = problem.train
    model = problem.default_model(record=False, on_divergence="reject")
    pyro.set_rng_seed(0)
    kernel = _CountingNUTS(model, max_tree_depth=6, jit_compile=jit, ignore_jit_warnings=True,
                           init_strategy=model.init_loc_fn(0), max_plate_nesting=1)
    start = time.perf_counter()
    MCMC(kernel, num_samples=num_samples, warmup_steps=num_warmup, disable_progbar=True).run(*split.args)
    n_grads = kernel.num_evaluations
    ours = (time.perf_counter() - start) / n_grads

    # latents in float64 (jax_enable_x64 makes NUTS' momenta float64); the solve casts them to float32
    npmodel = numpyro_model(model, split, jnp.float64)
    # NumPyro's NUTS evaluates this jitted potential gradient inside its compiled tree building; timed alone it
    # is a lower bound of the peer's cost per NUTS gradient (re-running a compiled NumPyro MCMC recompiles here)
    init = {k: jnp.asarray(v.numpy(), dtype=jnp.float64) for k, v in model.init_loc_fn(0).values.items()}
    info = numpyro.infer.util.initialize_model(jax.random.PRNGKey(0), npmodel,
                                               init_strategy=numpyro.infer.init_to_value(values=init))
    vg = jax.jit(jax.value_and_grad(info.potential_fn))
    z = info.param_info.z
    start = time.perf_counter()
    jax.block_until_ready(vg(z))
    compile_s = time.perf_counter() - start
    # like for like, interleaved: the potential energy's gradient as NUTS asks for it, Pyro's potential_fn of
    # run_nuts' kernel (model trace, transforms, priors, likelihood) against the peer's
    from pyro.ops.integrator import potential_grad

    kernel = _CountingNUTS(model, max_tree_depth=6, jit_compile=jit, ignore_jit_warnings=True,
                           init_strategy=model.init_loc_fn(0), max_plate_nesting=1)
    kernel.setup(0, *split.args)
    zt = kernel.initial_params
    med = interleaved({"ours": lambda: potential_grad(kernel.potential_fn, zt),
                       "peer": lambda: jax.block_until_ready(vg(z))}, 9)
    return [(f"nuts grad ({n_grads} in NUTS)/potential", ours, None, med["peer"], compile_s),
            ("nuts potential grad", med["ours"], None, med["peer"], compile_s)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--sizes", default="1,8,64,256")
    ap.add_argument("--baseline-src", default=None, help="a checkout of an older commit: its log p + gradient "
                    "is timed in the same run, calls interleaved")
    ap.add_argument("--skip-torchdiffeq", action="store_true")
    ap.add_argument("--skip-svi", action="store_true")
    ap.add_argument("--skip-nuts", action="store_true")
    ap.add_argument("--nuts-jit", action="store_true", help="trace the NUTS potential (Pyro's jit_compile)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    problem = load_problem("chemical", dtype=torch.float64)
    check_agreement(problem)
    torch.set_default_dtype(torch.float32)
    problem = problem.to(torch.float32)
    logp = time_logp(problem, [int(s) for s in args.sizes.split(",")], args.repeats, args.baseline_src,
                     not args.skip_torchdiffeq)
    rows = []
    if not args.skip_svi:
        rows += time_svi(problem, args.repeats)
    if not args.skip_nuts:
        rows += time_nuts(problem, jit=args.nuts_jit)
    print(f"chemical, float32, torch threads {torch.get_num_threads()}, jax {jax.__version__}, "
          f"diffrax {diffrax.__version__}, numpyro {numpyro.__version__}; medians of {args.repeats} interleaved calls"
          f"; CPUs {sorted(os.sched_getaffinity(0))}, load {os.getloadavg()[0]:.1f}")
    print_logp(logp)
    if rows:
        print(f"\n{'row':<34} {'ours ms':>9} {'peer ms':>9} {'ours/peer':>10} {'peer jit s':>10}")
    for name, ours, _, peer, compile_s in rows:
        print(f"{name:<34} {1e3 * ours:9.2f} {1e3 * peer:9.3f} {ours / peer:10.2f} {compile_s:10.1f}")


if __name__ == "__main__":
    main()
