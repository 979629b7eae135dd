"""The ``fit`` command: one SVI fit of a problem, data-parallel when launched with ``torchrun``."""
import csv
import os
import sys

from .common import (
    UsageError,
    assignments,
    check_count,
    check_options,
    check_problem_args,
    problem_from_args,
)

#: guide constructor arguments the command sets itself
GUIDE_FIXED = ("init_loc_fn", "guide", "init_from", "model")
#: steps per window of the averaged loss the command reports
LOSS_WINDOW = 50

__all__ = ["add_fit_parser", "cmd_fit"]


def _recipe(name):
    """The registered :class:`~pyro_node_uq.methods.GuideRecipe` of ``--guide name``."""
    from ..methods import fit_guides

    return fit_guides()[name]


def _warm_start(args, model, problem):
    """The guide's ``init_loc_fn``: at a MAP fit of the training split with the registered ``map`` options
    (``--warm-start map``, the comparison's start), else the model's own initialisation.  A fit resuming from an
    existing checkpoint takes its parameters from there and skips the MAP fit.  Under ``torchrun`` every process
    fits the same MAP on the whole training split by itself (same data, same seed: one starting point, and no
    process stops its fit at another step than the others)."""
    from ..methods import METHODS
    from ..methods.common import init_loc, map_values

    if args.warm_start == "none" or (args.checkpoint and os.path.exists(args.checkpoint)):
        return init_loc(model, args.seed)
    fit = METHODS["map"].runner(model, problem.train, seed=args.seed, progress_bar=not args.no_progress,
                                record_errors=False, distributed=False, **METHODS["map"].options(problem.name))
    return init_loc(model, args.seed, map_values(fit))


def _lr_scales(args, guide, problem):
    """Per-parameter learning-rate multipliers of a warm-started guide that declares them
    (:meth:`~pyro_node_uq.infer.AutoLangevin.warm_start_lr_scales`), else ``None``.  They depend on the
    ``--warm-start`` choice alone (not on whether a checkpoint is resumed), so a resumed fit keeps them."""
    from ..infer._pyro_compat import setup_prototype

    if args.warm_start != "map" or not hasattr(guide, "warm_start_lr_scales"):
        return None
    setup_prototype(guide, *problem.train.args, **problem.train.kwargs)
    return guide.warm_start_lr_scales()


def _window_losses(losses, window=LOSS_WINDOW):
    """``(last, best, window)``: the mean of the last ``window`` losses and the lowest mean over any ``window``
    consecutive steps (a per-step loss is a few-particle Monte-Carlo estimate; its mean over a window is what the
    fits' stopping rule compares, too)."""
    import numpy as np

    window = min(window, len(losses))
    means = np.convolve(np.asarray(losses, dtype=float), np.ones(window) / window, mode="valid")
    return float(means[-1]), float(means.min()), window


def _write_outputs(out, fit, model, guide, problem, args):
    """Rank 0: the param store (Pyro's ``ParamStore.save`` format), the loss curve and the posterior on the test
    split, written into ``out`` (the staging folder of the output, published as one unit)."""
    import pyro
    import torch

    from ..diagnostics import to_inference_data
    from ..methods import MethodResult

    state = pyro.get_param_store().get_state()
    torch.save(state, os.path.join(out, "params.pt"))
    with open(os.path.join(out, "losses.csv"), "w", newline="") as f:
        csv.writer(f).writerows([("step", "loss"), *enumerate(fit.losses)])
    result = MethodResult(name=args.guide, model=model, guide=guide, losses=fit.losses, wall_time=fit.wall_time,
                          param_state=state, train_split=problem.train)
    idata = to_inference_data(result, problem.test, num_samples=args.num_samples, seed=args.seed,
                              output_names=problem.obs_names, input_names=problem.input_names or None)
    idata.to_netcdf(os.path.join(out, "posterior.nc"))


def _check_args(args):
    """Every argument checked before any work (exit status 2 with a message naming it); returns the parsed
    ``(problem_options, guide_options)``."""
    from ..compare.options import MAX_LR

    for name, minimum in (("threads", 1), ("steps", 1), ("num_particles", 1), ("checkpoint_every", 1),
                          ("num_samples", 1), ("seed", 0)):
        check_count(getattr(args, name), "--" + name.replace("_", "-"), minimum)
    if args.subsample_size is not None:
        check_count(args.subsample_size, "--subsample-size")
    if not (0 < args.lr <= MAX_LR):  # NaN fails too
        raise UsageError(f"--lr: expected a learning rate in (0, {MAX_LR:g}] (Adam moves every parameter by about lr "
                         f"per step), got {args.lr}")
    problem_options = check_problem_args(args, args.problem_option)
    guide_options = assignments(args.guide_option, "--guide-option")
    check_options(guide_options, _recipe(args.guide).guide_class, "--guide-option", fixed=GUIDE_FIXED)
    if args.checkpoint is not None and os.path.isdir(args.checkpoint):
        raise UsageError(f"--checkpoint: {args.checkpoint!r} is a folder; give a file path, e.g. run/fit.ckpt")
    return problem_options, guide_options


def _check_subsample_size(size, num_train, world_size):
    """``--subsample-size`` against the training split and the processes, before the MAP warm start (the fit
    itself would refuse it only after that)."""
    if size is None:
        return
    if size > num_train:
        raise ValueError(f"--subsample-size ({size}) exceeds the {num_train} training trajectories")
    if size < world_size:
        raise ValueError(f"--subsample-size ({size}): {size} trajectories per step cannot be shared by {world_size} "
                         "processes; use at least one per process")


def cmd_fit(args):
    """Fit one registered guide (:func:`~pyro_node_uq.methods.fit_guides`) with SVI; under ``torchrun`` every
    process fits a shard and rank 0 alone prints and writes.

    ``--out`` is owned like ``compare --out``: it must be absent, empty or an earlier ``fit`` output holding only
    the files its manifest lists, and it is replaced in one step when the fit ends.  Exit status: 0 ok, 2 for bad
    arguments (checked before any work), a foreign or busy output folder or a checkpoint that does not belong to
    this fit."""
    import contextlib

    import pyro
    import torch
    from pyro.infer import Trace_ELBO

    from ..compare.output import hold_on_rank_0
    from ..infer import fit_svi
    from ..infer.distributed import init_distributed
    from ..utils.persist import SaveBusy
    from .common import rmse

    problem_options, guide_options = _check_args(args)
    if args.out:
        from ..compare.output import OutputFolder

        try:
            OutputFolder(args.out, kind="fit").check()
        except ValueError as e:
            raise UsageError(str(e)) from None
    torch.set_num_threads(args.threads)
    if args.float64:
        torch.set_default_dtype(torch.float64)
    rank, world_size = init_distributed(args.backend)
    with contextlib.ExitStack() as stack:
        try:
            folder = hold_on_rank_0(stack, args.out, kind="fit") if args.out else None
            problem = problem_from_args(args, args.problem_option)
            if args.float64:
                problem = problem.to(torch.float64)
            _check_subsample_size(args.subsample_size, len(problem.train), world_size)
            model = problem.default_model()
            init = _warm_start(args, model, problem)
            pyro.clear_param_store()
            pyro.set_rng_seed(args.seed)
            guide = _recipe(args.guide).build(model, init, guide_options)
            lr_scales = _lr_scales(args, guide, problem)
            loss = Trace_ELBO(num_particles=args.num_particles, vectorize_particles=args.num_particles > 1,
                              max_plate_nesting=1)
            config = {"problem": problem.name, "problem_options": repr(sorted(problem_options.items())),
                      "guide_options": repr(sorted(guide_options.items())), "num_particles": args.num_particles,
                      "dtype": str(problem.train.y.dtype)}
            fit = fit_svi(model, guide, problem.train, num_steps=args.steps, lr=args.lr, loss=loss, seed=args.seed,
                          subsample_size=args.subsample_size, checkpoint=args.checkpoint,
                          checkpoint_every=args.checkpoint_every, progress_bar=not args.no_progress,
                          desc=f"{args.guide} (rank {rank}/{world_size})" if world_size > 1 else args.guide,
                          checkpoint_config=config, lr_scales=lr_scales)
        except (ValueError, SaveBusy) as e:
            print(f"pyro-node-uq fit: {e}", file=sys.stderr)
            return 2
        if rank != 0:
            return 0
        final, best, window = _window_losses(fit.losses)
        print(f"{args.guide} on {problem.name}: {len(problem.train)} training trajectories over {world_size} "
              f"process(es), {len(fit.losses)} steps, loss {fit.losses[0]:.6g} -> {fit.losses[-1]:.6g} "
              f"({fit.wall_time:.1f} s this run)")
        print(f"loss averaged over {window} steps: last {final:.6g}, best {best:.6g}")
        for name, split in problem.splits.items():
            print(f"{name:<14} RMSE of one posterior draw {rmse(model, guide, split):.4f}")
        if folder is not None:
            _write_outputs(folder.stage, fit, model, guide, problem, args)
            folder.publish(complete=True, guide=args.guide, problem=problem.name, steps=len(fit.losses))
            print(f"wrote {args.out}/params.pt, losses.csv, posterior.nc")
    return 0


def add_fit_parser(sub):
    """Register ``fit`` on the CLI's sub-command parser ``sub`` (its guides are the registered methods' guides)."""
    from ..methods import fit_guides

    p = sub.add_parser("fit", help="fit one SVI guide to a problem (data-parallel under torchrun)",
                       description="Fit one guide with SVI.  Launched as `torchrun --nproc-per-node P -m "
                                   "pyro_node_uq fit ...` every process fits a shard of the training trajectories "
                                   "and all end with the same parameters; rank 0 alone prints and writes.")
    p.add_argument("--problem", default="chemical", help="problem name (default: chemical)")
    p.add_argument("--problem-option", action="append", metavar="KEY=VALUE",
                   help="option of the problem constructor, e.g. --problem-option num_train=256 (repeatable)")
    p.add_argument("--guide", choices=sorted(fit_guides()), default="autonormal",
                   help="the guide of a registered method, with its registered defaults (default: autonormal)")
    p.add_argument("--guide-option", action="append", metavar="KEY=VALUE",
                   help="option of the guide constructor, e.g. --guide-option score=hybrid (repeatable)")
    p.add_argument("--warm-start", choices=("map", "none"), default="map",
                   help="start the guide at a MAP fit with the registered map options (default), or at the "
                        "model's initialisation (none)")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--num-particles", type=int, default=4, help="ELBO particles per step (vectorised)")
    p.add_argument("--subsample-size", type=int, default=None,
                   help="trajectories per step over all processes (default: all)")
    p.add_argument("--checkpoint", default=None, help="checkpoint file: saved by rank 0, resumed from if present")
    p.add_argument("--checkpoint-every", type=int, default=100)
    p.add_argument("--out", default=None,
                   help="folder for params.pt, losses.csv and posterior.nc (rank 0); new, empty or an earlier fit "
                        "output, replaced as a whole")
    p.add_argument("--num-samples", type=int, default=200, help="posterior draws in posterior.nc")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--float64", action="store_true", help="fit in double precision")
    p.add_argument("--backend", choices=("gloo", "nccl"), default=None,
                   help="torch.distributed backend under torchrun (default: nccl with CUDA, else gloo)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads per process (default 1)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=cmd_fit)
    return p
