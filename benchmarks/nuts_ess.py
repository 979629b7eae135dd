"""NUTS time per effective sample: ``run_nuts`` (Pyro's NUTS) against NumPyro's NUTS on the same models (not a test).

Two models, float64 on both sides:

* ``eight_schools``: the non-centred eight schools model on Pyro's data (``mu ~ N(0, 5)``, ``tau ~ HalfCauchy(5)``,
  ``theta_tilde ~ N(0, 1)`` per school, ``y ~ N(mu + tau theta_tilde, sigma)``);
* ``node``: the ``chemical`` problem's NODE with a small hidden layer (``R_hidden=(8,)``, 67 weights) on a few
  training trajectories (every ``--time-stride``-th observation time), against the JAX peer of
  ``peer_numpyro.py`` (the hand-written RK4 under ``jax.lax.scan``, the faster JAX variant at one particle).

Both samplers get the same warm-up, draws, chains (run one after another), target acceptance and maximum tree
depth, and start from the same point: the MAP fit ``run_nuts`` starts from (its cost is printed apart and counted
on neither side).  Before timing, each side's log joint density at that point is printed; they must agree (the
same target distribution).  Each side runs in its own process (``taskset`` pins it to ``--cpu``, one thread),
sides alternating, ``--repeats`` times; medians are printed.  Per side: wall and CPU seconds of warm-up plus
sampling, the bulk ESS (ArviZ) of the slowest latent scalar, seconds per effective sample, leapfrog steps per
draw and ``log2(steps + 1)`` (the tree depth they amount to) in the sampling phase, gradients of the whole run,
seconds per gradient, the final step size and divergences; the CPU time of one potential + gradient call alone
and, for ours, the rest of NUTS' CPU time per gradient (tree building, adaptation, Pyro's bookkeeping).

NumPyro compiles its warm-up and sampling loops anew in every run (each chain), so it runs twice in one process
with JAX's persistent compilation cache on: the first run compiles and fills the cache, the second (the rows) loads
from it, and its remaining compile events (tracing, lowering, cache loads) are taken out of its wall time.
NumPyro's compile time is the first run's wall time less the second's compile-free time; one ratio adds it back
(a user pays it once per run).  NumPyro's CPU time is the second run's, cache loads included.

    taskset -c 1 python benchmarks/nuts_ess.py [--models eight_schools,node] [--repeats 3] [--ours '{"jit_compile": true}']

Needs the ``bench`` extra (jax, numpyro, diffrax) and ArviZ.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
Y8 = [28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0]
SIGMA8 = [15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0]


def min_bulk_ess(grouped):
    """Smallest bulk ESS over every scalar of a dict ``site -> (chains, draws, ...)`` array, and its site."""
    import arviz as az
    import numpy as np

    ess = az.ess(az.convert_to_dataset({k: np.asarray(v) for k, v in grouped.items()}), method="bulk")
    worst = {k: float(np.min(v.values)) for k, v in ess.data_vars.items()}
    site = min(worst, key=worst.get)
    return worst[site], site


def steps_summary(steps):
    """Mean leapfrog steps per draw and mean ``log2(steps + 1)`` over draws."""
    import numpy as np

    steps = np.asarray(steps, dtype=float).ravel()
    return float(steps.mean()), float(np.log2(steps + 1).mean())


def best_of(fn, repeats=5, number=20):
    """CPU seconds per call of ``fn`` (this process, all threads; the load of other processes does not count): the
    best of ``repeats`` means over ``number`` calls, after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        clock = time.process_time()
        for _ in range(number):
            fn()
        best = min(best, (time.process_time() - clock) / number)
    return best


# ------------------------------------------------------------------------------------------------------ ours
def eight_schools(sigma, x=None, y=None, num_trajectories=None):
    """Non-centred eight schools as a plain Pyro model on a :class:`Split` (``t`` holds the schools' sigmas)."""
    import pyro
    import pyro.distributions as dist
    import torch

    mu = pyro.sample("mu", dist.Normal(torch.tensor(0.0, dtype=sigma.dtype), 5.0))
    tau = pyro.sample("tau", dist.HalfCauchy(torch.tensor(5.0, dtype=sigma.dtype)))
    with pyro.plate("schools", sigma.shape[0], dim=-1):
        theta_tilde = pyro.sample("theta_tilde", dist.Normal(torch.zeros((), dtype=sigma.dtype), 1.0))
        return pyro.sample("obs", dist.Normal(mu[..., None] + tau[..., None] * theta_tilde, sigma), obs=y)


def node_problem(cfg):
    """The ``chemical`` split (first ``num_train`` trajectories, every ``time_stride``-th time) and its small NODE."""
    from dataclasses import replace

    import torch

    from pyro_node_uq.data import load_problem

    problem = load_problem("chemical", num_train=cfg["num_train"], dtype=torch.float64)
    split, k = problem.train, cfg["time_stride"]
    cut = lambda v: None if v is None else v[:, ::k].contiguous()
    split = replace(split, t=split.t[::k].contiguous(), x=cut(split.x), y=cut(split.y), mask=cut(split.mask),
                    y_true=cut(split.y_true), h_true=cut(split.h_true))
    return problem.default_model(R_hidden=(cfg["hidden"],)), split


def ours_model(cfg):
    import torch

    from pyro_node_uq.data import Split

    if cfg["model"] == "eight_schools":
        sigma = torch.tensor(SIGMA8, dtype=torch.float64)
        return eight_schools, Split(t=sigma, x=None, y=torch.tensor(Y8, dtype=torch.float64))
    return node_problem(cfg)


def run_ours(cfg):
    import pyro
    import torch
    from pyro import poutine

    from pyro_node_uq.methods import nuts as nuts_module
    from pyro_node_uq.methods import run_map, run_nuts
    from pyro_node_uq.methods.common import as_process_model, map_values

    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    model, split = ours_model(cfg)
    clock = time.perf_counter()
    start = run_map(model, split, num_steps=cfg["map_steps"], seed=cfg["seed"], progress_bar=False)
    map_s = time.perf_counter() - clock
    values = {k: v.detach() for k, v in map_values(start).items()}
    pm = as_process_model(model, split)
    with torch.no_grad():
        args, kwargs = pm.fit_args(split)
        log_joint = float(poutine.trace(poutine.condition(pm, values)).get_trace(*args, **kwargs).log_prob_sum())

    class Recording(nuts_module.SamplerStats):  # also the potential evaluations (leapfrog steps) of each draw
        def __init__(self):
            super().__init__()
            self.steps, self._evals = [], 0

        def __call__(self, kernel, params, stage, i):
            if stage.startswith("Sample"):
                self.steps.append(kernel.num_evaluations - self._evals)
            self._evals = kernel.num_evaluations
            super().__call__(kernel, params, stage, i)

    recorders = []
    nuts_module.SamplerStats = lambda: recorders.append(Recording()) or recorders[-1]
    pyro.set_rng_seed(cfg["seed"])
    clock, cpu = time.perf_counter(), time.process_time()
    res = run_nuts(model, split, warm_start=start, num_samples=cfg["num_samples"], warmup_steps=cfg["warmup"],
                   num_chains=cfg["chains"], max_tree_depth=cfg["max_tree_depth"],
                   target_accept_prob=cfg["target_accept"], seed=cfg["seed"], progress_bar=False, **cfg["ours"])
    wall, cpu = time.perf_counter() - clock, time.process_time() - cpu
    from pyro.infer.autoguide import init_to_value
    from pyro.ops.integrator import potential_grad

    kernel = nuts_module._CountingNUTS(res.model, init_strategy=init_to_value(values=values),
                                       max_plate_nesting=res.model.max_plate_nesting, ignore_jit_warnings=True,
                                       jit_compile=cfg["ours"].get("jit_compile", False))
    kernel.setup(0, *args, **kwargs)
    z = kernel.initial_params
    grad_s = best_of(lambda: potential_grad(kernel.potential_fn, z))
    ess, site = min_bulk_ess({k: v.detach().numpy() for k, v in res.samples.items()})
    steps, depth = steps_summary(recorders[-1].steps)
    stats = res.sample_stats
    return {"wall": wall, "cpu": cpu, "ess": ess, "ess_site": site, "steps": steps, "depth": depth,
            "grads": res.num_model_evals - start.num_model_evals, "step_size": float(stats["step_size"][:, -1].mean()),
            "divergences": int(stats["diverging"].sum()), "log_joint": log_joint, "map_s": map_s, "grad_alone": grad_s,
            "start": {k: v.tolist() for k, v in values.items()}}


# ---------------------------------------------------------------------------------------------------- numpyro
def numpyro_model(cfg):
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as ndist

    if cfg["model"] == "eight_schools":
        y, sigma = jnp.array(Y8), jnp.array(SIGMA8)

        def model():
            mu = numpyro.sample("mu", ndist.Normal(0.0, 5.0))
            tau = numpyro.sample("tau", ndist.HalfCauchy(5.0))
            with numpyro.plate("schools", 8):
                theta_tilde = numpyro.sample("theta_tilde", ndist.Normal(0.0, 1.0))
                numpyro.sample("obs", ndist.Normal(mu + tau * theta_tilde, sigma), obs=y)

        return model
    import peer_numpyro

    model, split = node_problem(cfg)
    return peer_numpyro.numpyro_model(model, split, jnp.float64, jnp.float64, peer_numpyro.make_loglik_scan)


def run_numpyro(cfg):
    os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax

    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_compilation_cache_dir", tempfile.mkdtemp(prefix="nuts_ess_jax_cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    import jax.numpy as jnp
    import numpy as np
    from numpyro.infer import MCMC, NUTS, init_to_value
    from numpyro.infer.util import initialize_model, log_density

    model = numpyro_model(cfg)
    values = {k: jnp.asarray(v, dtype=jnp.float64) for k, v in cfg["start"].items()}
    log_joint = float(log_density(model, (), {}, values)[0])
    kernel = NUTS(model, target_accept_prob=cfg["target_accept"], max_tree_depth=cfg["max_tree_depth"],
                  init_strategy=init_to_value(values=values), **cfg["numpyro"])
    mcmc = MCMC(kernel, num_warmup=cfg["warmup"], num_samples=cfg["num_samples"], num_chains=cfg["chains"],
                chain_method="sequential", progress_bar=False)
    info = initialize_model(jax.random.PRNGKey(0), model, init_strategy=init_to_value(values=values))
    vg = jax.jit(jax.value_and_grad(info.potential_fn))
    grad_s = best_of(lambda: jax.block_until_ready(vg(info.param_info.z)))
    events = {}  # JAX's own compile events (tracing, lowering, XLA compilation or a load from the cache)
    jax.monitoring.register_event_duration_secs_listener(
        lambda name, secs, **kw: events.__setitem__(name, events.get(name, 0.0) + secs))
    runs = []
    for key in (cfg["seed"] + 1000, cfg["seed"]):  # the first run fills the compilation cache, the second is kept
        events.clear()
        clock, cpu = time.perf_counter(), time.process_time()
        mcmc.warmup(jax.random.PRNGKey(key), collect_warmup=True, extra_fields=("num_steps",))
        warm_steps = np.asarray(mcmc.get_extra_fields()["num_steps"])
        mcmc.run(mcmc.post_warmup_state.rng_key, extra_fields=("num_steps", "diverging", "adapt_state.step_size"))
        samples = jax.block_until_ready(mcmc.get_samples(group_by_chain=True))
        compile_s = sum(v for k, v in events.items() if k.startswith("/jax/core/compile/"))
        runs.append((time.perf_counter() - clock, time.process_time() - cpu, compile_s))
    wall = runs[1][0] - runs[1][2]
    extra = mcmc.get_extra_fields(group_by_chain=True)
    ess, site = min_bulk_ess({k: np.asarray(v) for k, v in samples.items()})
    steps, depth = steps_summary(extra["num_steps"])
    grads = int(warm_steps.sum() + np.asarray(extra["num_steps"]).sum())
    return {"wall": wall, "cpu": runs[1][1], "compile": runs[0][0] - wall,
            "wall_cached": runs[1][0], "cpu_first": runs[0][1], "ess": ess, "ess_site": site,
            "steps": steps, "depth": depth, "grads": grads,
            "step_size": float(np.asarray(extra["adapt_state.step_size"])[:, -1].mean()),
            "divergences": int(np.asarray(extra["diverging"]).sum()), "log_joint": log_joint, "grad_alone": grad_s}


# ------------------------------------------------------------------------------------------------------- main
def side(name, cfg, cpu):
    """Run one side in a fresh process pinned to ``cpu`` (one thread) and return its result dict."""
    with tempfile.NamedTemporaryFile("w+", suffix=".json") as f:
        json.dump(cfg, f)
        f.flush()
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                   PYTHONPATH=os.pathsep.join([os.path.join(HERE, os.pardir), HERE]))
        cmd = ([] if cpu is None else ["taskset", "-c", str(cpu)]) + [sys.executable, __file__, "--side", name,
                                                                      "--config", f.name]
        out = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True)
        if out.returncode:
            raise SystemExit(f"{name} side failed:\n{out.stderr[-4000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])


def med(rows, key):
    return statistics.median(r[key] for r in rows)


def report(model, cfg, rows):
    ours, peer = rows["ours"], rows["numpyro"]
    print(f"\n{model}: {cfg['chains']} chains x ({cfg['warmup']} warm-up + {cfg['num_samples']} draws), "
          f"target accept {cfg['target_accept']}, max tree depth {cfg['max_tree_depth']}, float64; "
          f"ours {cfg['ours'] or 'defaults'}; medians of {len(ours)} runs; MAP start {med(ours, 'map_s'):.1f} s "
          f"(not counted); NumPyro compile {med(peer, 'compile'):.1f} s")
    print(f"  log joint at the start: ours {ours[0]['log_joint']:.10g}, NumPyro {peer[0]['log_joint']:.10g}")
    head = (f"  {'side':<8} {'wall s':>8} {'cpu s':>8} {'minESS':>8} {'site':>12} {'s/ESS':>9} {'steps':>7} "
            f"{'depth':>6} {'grads':>8} {'ms/grad':>8} {'step':>7} {'div':>4}")
    print(head)
    for name, rs in (("ours", ours), ("numpyro", peer)):
        print(f"  {name:<8} {med(rs, 'wall'):8.2f} {med(rs, 'cpu'):8.2f} {med(rs, 'ess'):8.0f} "
              f"{rs[0]['ess_site']:>12} {statistics.median(r['wall'] / r['ess'] for r in rs):9.4f} "
              f"{med(rs, 'steps'):7.1f} {med(rs, 'depth'):6.2f} {med(rs, 'grads'):8.0f} "
              f"{1e3 * statistics.median(r['wall'] / r['grads'] for r in rs):8.3f} {med(rs, 'step_size'):7.4f} "
              f"{med(rs, 'divergences'):4.0f}")
        for r in rs:
            print(f"    run: wall {r['wall']:.2f} s, cpu {r['cpu']:.2f} s, ESS {r['ess']:.0f}, grads {r['grads']}")
    per_ess = statistics.median(r["wall"] / r["ess"] for r in ours)
    peer_ess = statistics.median(r["wall"] / r["ess"] for r in peer)
    peer_ess_c = statistics.median((r["wall"] + r["compile"]) / r["ess"] for r in peer)
    per_grad = statistics.median(r["wall"] / r["grads"] for r in ours)
    peer_grad = statistics.median(r["wall"] / r["grads"] for r in peer)
    ess_grad = statistics.median(r["ess"] / r["grads"] for r in ours)
    peer_ess_grad = statistics.median(r["ess"] / r["grads"] for r in peer)
    alone, peer_alone = med(ours, "grad_alone"), med(peer, "grad_alone")
    cpu_grad = statistics.median(r["cpu"] / r["grads"] for r in ours)
    print(f"  CPU ms per gradient: potential + gradient alone (best of 5 x 20 calls at the start) ours "
          f"{1e3 * alone:.3f}, NumPyro {1e3 * peer_alone:.4f} (jitted); inside NUTS ours {1e3 * cpu_grad:.3f}, so "
          f"tree building and the rest {1e3 * (cpu_grad - alone):.3f} ({(cpu_grad - alone) / cpu_grad:.0%}); "
          f"NumPyro's NUTS per gradient (wall, compile out) {1e3 * peer_grad:.4f}")
    print(f"  ours / NumPyro: s per ESS {per_ess / peer_ess:.2f} (with NumPyro's compile {per_ess / peer_ess_c:.2f}); "
          f"= s per gradient {per_grad / peer_grad:.2f} x gradients per ESS {peer_ess_grad / ess_grad:.2f}")
    cpu_ess = statistics.median(r["cpu"] / r["ess"] for r in ours)
    print(f"  ours / NumPyro in CPU seconds per ESS (less sensitive to the load): "
          f"{cpu_ess / statistics.median(r['cpu'] / r['ess'] for r in peer):.2f} (NumPyro's CPU time of its run "
          "from the compilation cache: tracing and cache loads included); with its first run's CPU time "
          f"(compilation included) {cpu_ess / statistics.median(r['cpu_first'] / r['ess'] for r in peer):.2f}")
    return per_ess / peer_ess


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", choices=("ours", "numpyro"), help=argparse.SUPPRESS)
    ap.add_argument("--config", help=argparse.SUPPRESS)
    ap.add_argument("--models", default="eight_schools,node")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--node-warmup", type=int, default=100)
    ap.add_argument("--node-samples", type=int, default=100)
    ap.add_argument("--max-tree-depth", type=int, default=8)
    ap.add_argument("--node-max-tree-depth", type=int, default=6, help="run_nuts' default")
    ap.add_argument("--target-accept", type=float, default=0.8)
    ap.add_argument("--num-train", type=int, default=3)
    ap.add_argument("--time-stride", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=8)
    ap.add_argument("--map-steps", type=int, default=1200)
    ap.add_argument("--ours", default="{}", help="JSON of extra run_nuts options, e.g. '{\"jit_compile\": true}'")
    ap.add_argument("--numpyro", default="{}", help="JSON of extra NumPyro NUTS options, e.g. '{\"dense_mass\": true}'")
    ap.add_argument("--cpu", type=int, default=1, help="core both sides are pinned to (-1: not pinned)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.side:
        with open(args.config) as f:
            cfg = json.load(f)
        print(json.dumps(run_ours(cfg) if args.side == "ours" else run_numpyro(cfg)))
        return
    cpu = None if args.cpu < 0 else args.cpu
    print(f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; both sides pinned to CPU {cpu}, one thread")
    ratios = {}
    for model in args.models.split(","):
        node = model == "node"
        cfg = {"model": model, "warmup": args.node_warmup if node else args.warmup,
               "num_samples": args.node_samples if node else args.samples, "chains": args.chains,
               "max_tree_depth": args.node_max_tree_depth if node else args.max_tree_depth,
               "target_accept": args.target_accept, "seed": args.seed,
               "num_train": args.num_train, "time_stride": args.time_stride, "hidden": args.hidden,
               "map_steps": args.map_steps, "ours": json.loads(args.ours), "numpyro": json.loads(args.numpyro)}
        rows = {"ours": [], "numpyro": []}
        for r in range(args.repeats):  # ours first in the first round: its MAP fit is both sides' start
            for name in (("ours", "numpyro") if r % 2 == 0 else ("numpyro", "ours")):
                rows[name].append(side(name, cfg, cpu))
                cfg.setdefault("start", rows[name][-1].get("start"))
        ratios[model] = report(model, cfg, rows)
    print(f"load {os.getloadavg()[0]:.1f}")
    print("RESULT " + " ".join(f"{m}_s_per_ess_over_numpyro={v:.2f}" for m, v in ratios.items()))


if __name__ == "__main__":
    main()
