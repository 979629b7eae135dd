"""The ``fit`` command: one SVI fit of a problem, data-parallel when launched with ``torchrun``."""
import csv
import os
import sys

#: ``--guide`` name -> the registered method it runs (see :data:`~pyro_node_uq.methods.METHODS`)
GUIDES = {"autonormal": "autonormal", "lowrank": "lowrank", "langevin": "langevin_learned",
          "layerwise": "layerwise_last"}

__all__ = ["add_fit_parser", "cmd_fit"]


def _fit(args, model, train, options):
    """One fit of ``args.guide`` by its registered runner, with the registry's defaults for everything the command
    line does not set; the warm start it would fit first gets ``args.warm_start_steps`` steps (0: none, the guide
    starts at the model's initialisation)."""
    from ..methods import METHODS

    name = GUIDES[args.guide]
    if args.guide == "langevin" and "score" in options:  # --guide-option score=hybrid: that score's method
        name = f"langevin_{options.pop('score')}"
        if name not in METHODS:
            raise ValueError(f"--guide-option score: expected one of learned, exact, hybrid, got {name[9:]!r}")
    method = METHODS[name]
    loop = "num_iters" if "num_iters" in method.defaults else "num_steps"
    start = {"map_steps": args.warm_start_steps}
    if method.start == "autonormal":
        start["autonormal_steps"] = args.warm_start_steps
    run = dict(start, **{loop: args.steps}, lr=args.lr, num_particles=args.num_particles, elbo_particles=0,
               seed=args.seed, progress_bar=not args.no_progress, subsample_size=args.subsample_size,
               checkpoint=args.checkpoint, checkpoint_every=args.checkpoint_every, stop_rtol=args.stop_rtol)
    if method.start == "autonormal":  # SVI options of a method whose own num_steps is its chain length
        run["svi_kwargs"] = {k: run.pop(k) for k in ("subsample_size", "checkpoint", "checkpoint_every",
                                                     "stop_rtol")}
    return method.runner(model, train, **run, **options)


def _write_outputs(out, fit, model, guide, problem, args):
    """Rank 0: the param store, the loss curve and the posterior on the test split (each written atomically)."""
    import pyro
    import torch

    from ..diagnostics import to_inference_data
    from ..methods import MethodResult
    from ..utils import atomic_save

    os.makedirs(out, exist_ok=True)
    state = pyro.get_param_store().get_state()
    atomic_save(os.path.join(out, "params.pt"), lambda tmp: torch.save(state, tmp))

    def write_losses(tmp):
        with open(tmp, "w", newline="") as f:
            csv.writer(f).writerows([("step", "loss"), *enumerate(fit.losses)])

    atomic_save(os.path.join(out, "losses.csv"), write_losses)
    result = MethodResult(name=args.guide, model=model, guide=guide, losses=fit.losses, wall_time=fit.wall_time,
                          param_state=state, train_split=problem.train)
    idata = to_inference_data(result, problem.test, num_samples=args.num_samples, seed=args.seed,
                              output_names=problem.obs_names, input_names=problem.input_names or None)
    atomic_save(os.path.join(out, "posterior.nc"), idata.to_netcdf)


def cmd_fit(args):
    """Fit one guide with SVI; under ``torchrun`` every process fits a shard and rank 0 alone prints and writes."""
    import torch

    from .common import assignments, rmse
    from ..data import load_problem
    from ..infer.distributed import init_distributed

    torch.set_num_threads(args.threads)
    if args.float64:
        torch.set_default_dtype(torch.float64)
    rank, world_size = init_distributed(args.backend)
    try:
        problem = load_problem(args.problem, seed=args.seed, **assignments(args.problem_option, "--problem-option"))
        if args.float64:
            problem = problem.to(torch.float64)
        model = problem.default_model()
        fit = _fit(args, model, problem.train, assignments(args.guide_option, "--guide-option"))
        guide = fit.guide
    except ValueError as e:
        print(f"pyro-node-uq fit: {e}", file=sys.stderr)
        return 2
    if rank != 0:
        return 0
    print(f"{args.guide} on {problem.name}: {len(problem.train)} training trajectories over {world_size} "
          f"process(es), {len(fit.losses)} steps, loss {fit.losses[0]:.6g} -> {fit.losses[-1]:.6g} "
          f"({fit.wall_time:.1f} s this run)")
    for name, split in problem.splits.items():
        print(f"{name:<14} RMSE of one posterior draw {rmse(model, guide, split):.4f}")
    if args.out:
        _write_outputs(args.out, fit, model, guide, problem, args)
        print(f"wrote {args.out}/params.pt, losses.csv, posterior.nc")
    return 0


def add_fit_parser(sub):
    """Register ``fit`` on the CLI's sub-command parser ``sub``."""
    p = sub.add_parser("fit", help="fit one SVI guide to a problem (data-parallel under torchrun)",
                       description="Fit one guide with SVI.  Launched as `torchrun --nproc-per-node P -m "
                                   "pyro_node_uq fit ...` every process fits a shard of the training trajectories "
                                   "and all end with the same parameters; rank 0 alone prints and writes.")
    p.add_argument("--problem", default="chemical", help="problem name (default: chemical)")
    p.add_argument("--problem-option", action="append", metavar="KEY=VALUE",
                   help="option of the problem constructor, e.g. --problem-option num_train=256 (repeatable)")
    p.add_argument("--guide", choices=sorted(GUIDES), default="autonormal",
                   help="the registered method to run: " + ", ".join(f"{k} ({v})" for k, v in GUIDES.items()))
    p.add_argument("--guide-option", action="append", metavar="KEY=VALUE",
                   help="option of the method's runner (the registry's defaults otherwise), e.g. --guide-option "
                        "init_scale=0.05 (repeatable)")
    p.add_argument("--warm-start-steps", type=int, default=0,
                   help="steps of the fit(s) the method starts from (MAP; AutoNormal for langevin); 0 (default): "
                        "start at the model's initialisation")
    p.add_argument("--stop-rtol", type=float, default=0.0,
                   help="stop when the window-averaged loss improves by less than this fraction per window "
                        "(default 0: run every step)")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--num-particles", type=int, default=4, help="ELBO particles per step (vectorised)")
    p.add_argument("--subsample-size", type=int, default=None,
                   help="trajectories per step over all processes (default: all)")
    p.add_argument("--checkpoint", default=None, help="checkpoint file: saved by rank 0, resumed from if present")
    p.add_argument("--checkpoint-every", type=int, default=100)
    p.add_argument("--out", default=None, help="folder for params.pt, losses.csv and posterior.nc (rank 0)")
    p.add_argument("--num-samples", type=int, default=200, help="posterior draws in posterior.nc")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--float64", action="store_true", help="fit in double precision")
    p.add_argument("--backend", choices=("gloo", "nccl"), default=None,
                   help="torch.distributed backend under torchrun (default: nccl with CUDA, else gloo)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads per process (default 1)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=cmd_fit)
    return p
