"""``pyro-node-uq compare``: inference methods side by side on one problem."""
import os
import sys
from dataclasses import replace

from .common import (
    UsageError,
    assignments,
    check_count,
    check_problem_args,
    problem_from_args,
    usage_errors,
)

__all__ = ["add_compare_parser", "cmd_compare"]


def _data_problem(args):
    """The problem of ``--data FILE``: ``--format nonmem`` (an event table, units held out by the seeded split)
    or ``--format trajectories`` (a long-format table: ``--unit``, ``--time``, ``--inputs``, ``--outputs``)."""
    from ..data import events_problem, read_trajectories

    names = lambda text: [c.strip() for c in (text or "").split(",") if c.strip()]
    if args.format not in ("nonmem", "trajectories"):
        raise SystemExit(f"--format: expected 'nonmem' or 'trajectories', got {args.format!r}")
    try:
        if args.format == "trajectories":
            return read_trajectories(args.data, unit=args.unit, time=args.time, inputs=names(args.inputs),
                                     outputs=names(args.outputs) or None, test_fraction=args.test_fraction,
                                     time_fraction=args.time_fraction, seed=args.seed).to(device=args.device)
        problem = events_problem(args.data, covariates=names(args.covariates), test_fraction=args.test_fraction,
                                 time_fraction=args.time_fraction or 1.0, seed=args.seed)
    except (ValueError, TypeError, FileNotFoundError) as e:
        raise SystemExit(f"--data: {e}") from None
    return _with_structure(problem, args).to(device=args.device)


def _with_structure(problem, args):
    """``--structure`` / ``--correction``: the grey-box model of :func:`~pyro_node_uq.data.structured_problem`, or
    the pure hierarchical NODE with ``--structure none``."""
    from ..data.structured import structured_problem

    noise = {} if args.noise is None else {"noise": args.noise}
    if args.structure == "none":
        doses = problem.train.doses
        if doses is not None and bool(doses.modelled.any()):
            raise SystemExit("--structure none: the data have doses with a modelled rate or duration (RATE -1 / -2), "
                             "which only a structure's parameters R<n> / D<n> model; choose a --structure")
        return replace(problem, model_kwargs={**problem.model_kwargs, **noise})
    text = (args.correction or "none").strip()
    try:
        correction = None if text == "none" else tuple(int(w) for w in text.split(","))
    except ValueError:
        raise SystemExit(f"--correction: expected 'none' or comma-separated widths such as 16,16, got {text!r}") \
            from None
    try:
        return structured_problem(problem, args.structure, correction, **noise)
    except ValueError as e:
        raise SystemExit(f"--structure: {e}") from None


def _check_args(args):
    """Every argument checked before any work: the methods, ``--set`` keys and values against the runners'
    signatures, counts, the device, the data options, the problem and its options, and ``--out``.

    :returns: ``(methods, overrides)``.
    :raises UsageError: a bad argument (exit status 2).
    :raises ValueError: unknown methods, a bad ``--num-samples``, or an ``--out`` that is not replaceable (the
        command prints it and returns 2).
    """
    from ..compare.options import check_method_options
    from ..compare.output import OutputFolder
    from ..infer.distributed import is_main_process
    from ..methods import METHODS, demo_methods, resolve_methods
    from ..validation import check_device, check_int

    check_count(args.threads, "--threads")
    if args.methods == "demo":
        methods = demo_methods()
    elif args.methods == "all":
        methods = None
    else:
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    overrides = {}
    for key, value in assignments(args.set, "--set").items():
        method, dot, option = key.partition(".")
        if not dot or not method or not option:
            raise UsageError(f"--set: expected METHOD.OPTION=VALUE, got {key!r}")
        if method not in METHODS:
            raise UsageError(f"--set {key}: unknown method {method!r}; registered methods are {sorted(METHODS)}")
        overrides.setdefault(method, {})[option] = value
    for method, options in overrides.items():
        try:
            check_method_options(METHODS[method], options)
        except ValueError as e:
            raise UsageError(f"--set {e}") from None
    check_count(args.seed, "--seed", minimum=0)
    try:
        check_device(args.device, "--device")
    except (TypeError, ValueError) as e:
        raise UsageError(str(e)) from None
    if args.data is not None:
        if not os.path.isfile(args.data):
            raise UsageError(f"--data: no file at {args.data!r}")
        if not (0 < args.test_fraction < 1):
            raise UsageError(f"--test-fraction: expected a fraction of the units in (0, 1), got {args.test_fraction}")
        if args.time_fraction is not None and not (0 < args.time_fraction <= 1):
            raise UsageError(f"--time-fraction: expected a fraction of each fitted unit's samples in (0, 1], got "
                             f"{args.time_fraction}")
    else:
        check_problem_args(args, args.problem_option)
    selected = resolve_methods(methods)
    if not selected:
        raise ValueError("methods: no method selected; give at least one name (see --list)")
    check_int(args.num_samples, "num_samples", minimum=2)
    if is_main_process():  # under torchrun rank 0 alone owns --out
        OutputFolder(args.out).check()
    return methods, overrides


def cmd_compare(args):
    """Run inference methods side by side on one problem; write the table, InferenceData, figures and report.

    Exit status: 0 when every method ran ok or was skipped as not applicable, 1 when a method failed or none
    ran ok, 2 for bad arguments (all checked before any work begins) or a busy or foreign output folder, 130
    when interrupted (SIGINT; the finished methods are written and the report says the run is incomplete).

    Under ``torchrun`` every process takes part in each fit (SVI data-parallel over the training trajectories,
    MCMC chains and ensemble members shared out) and rank 0 alone predicts, scores, prints and writes ``--out``;
    the other ranks keep no outputs and exit with 0."""
    import torch

    from ..compare import run_comparison
    from ..infer.distributed import init_distributed
    from ..methods import METHODS
    from ..utils.persist import SaveBusy

    check_count(args.threads, "--threads")
    if args.list:
        for m in METHODS.values():
            print(f"{m.name:<18} {m.description}")
        return 0
    if args.float64:
        torch.set_default_dtype(torch.float64)
    # a method fitted by rank 0 alone (started from gathered members) keeps the others waiting at a barrier
    rank, _ = init_distributed(args.backend, timeout=6 * 3600.0)
    try:
        methods, overrides = _check_args(args)
    except (ValueError, TypeError) as e:
        print(f"pyro-node-uq compare: {e}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)  # small tensors: extra intra-op threads only spin-wait on a busy machine
    if args.device != "cpu":  # the data go there; Pyro's and the optimisers' own tensors follow the default
        torch.set_default_device(args.device)
    problem = usage_errors(_data_problem, args) if args.data else problem_from_args(args, args.problem_option)
    if args.float64:
        problem = problem.to(torch.float64)
    try:
        rows = run_comparison(problem, methods, out=args.out, quick=args.quick, seed=args.seed,
                              progress_bar=not args.no_progress, num_samples=args.num_samples, overrides=overrides)
    except (ValueError, TypeError, SaveBusy) as e:  # bad names/options, busy folder: a message, no traceback
        print(f"pyro-node-uq compare: {e}", file=sys.stderr)
        return 2
    if rank != 0:
        return 0
    for row in rows:
        print(f"{row['method']:<18} {row['status']:<8} {row.get('note') or ''}")
    print(f"wrote {rows.out}/report.md, table.md, table.csv, idata/*.nc, figures/*.png")
    if rows.interrupted:
        print("pyro-node-uq compare: interrupted; the report and MANIFEST.json mark the run incomplete",
              file=sys.stderr)
        return 130
    if rows.failed or not rows.num_ok:
        print(f"pyro-node-uq compare: {', '.join(rows.failed) or 'no method'} failed" if rows.failed else
              "pyro-node-uq compare: no method ran", file=sys.stderr)
        return 1
    return 0


def add_compare_parser(sub):
    """Add the ``compare`` command to the ``argparse`` sub-parsers ``sub``."""
    p = sub.add_parser("compare", help="compare inference methods on a problem and write a report",
                       description="Run inference methods side by side on one problem with one seed; write "
                                   "table.md/table.csv, idata/<method>.nc, figures/*.png and report.md to --out.")
    p.add_argument("--problem", default="chemical", help="problem name (default: chemical)")
    p.add_argument("--methods", default="all",
                   help="comma-separated method names, 'all' (default) or 'demo' (see --list)")
    p.add_argument("--out", default="results", help="output directory (default: results)")
    p.add_argument("--quick", action="store_true", help="each method's quick (smoke-test) options")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-samples", type=int, default=200, help="predictive draws per method and split (>= 2)")
    p.add_argument("--set", action="append", metavar="METHOD.OPTION=VALUE",
                   help="override a method option, e.g. --set map.num_steps=300 (repeatable)")
    p.add_argument("--problem-option", action="append", metavar="KEY=VALUE",
                   help="option of the problem constructor, e.g. --problem-option num_train=4 (repeatable)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1: the tensors are small)")
    p.add_argument("--device", default="cpu", help="torch device of the data and every fit (default: cpu)")
    p.add_argument("--data", metavar="FILE.csv", help="compare on your own event table instead of --problem")
    p.add_argument("--format", default="nonmem",
                   help="format of --data: 'nonmem' (ID, TIME, DV, AMT, EVID, MDV, CMT) or 'trajectories' (one "
                        "row per unit and time: --unit, --time, --inputs, --outputs columns)")
    p.add_argument("--covariates", metavar="WT,APGR", help="comma-separated covariate columns of --data")
    p.add_argument("--structure", default="auto",
                   help="mechanistic structure of --data's model: 'auto' (default: one-compartment oral when doses "
                        "go into a depot, IV otherwise), one_compartment_iv|one_compartment_oral|two_compartment_iv|"
                        "two_compartment_oral|michaelis_menten_iv|michaelis_menten_oral, or 'none' (a pure "
                        "hierarchical NODE)")
    p.add_argument("--correction", default="none", metavar="WIDTHS",
                   help="hidden widths of the grey-box model's network correction, e.g. 16 (default: none)")
    p.add_argument("--noise", choices=("normal", "studentt"), default=None,
                   help="residual law of --data's model (default: studentt with 4 degrees of freedom for a "
                        "--structure model, robust to samples no model explains; normal for --structure none)")
    p.add_argument("--test-fraction", type=float, default=0.25, help="fraction of --data units held out")
    p.add_argument("--time-fraction", type=float, default=None,
                   help="fraction of each fitted unit's samples of --data in the training data, the rest being the "
                        "extrapolation (forecast) split, e.g. 0.67 (default: 1, every sample is fitted and the held-out "
                        "units are the only test)")
    p.add_argument("--unit", default="unit", help="unit id column of --format trajectories (default: unit)")
    p.add_argument("--time", default="time", help="time column of --format trajectories (default: time)")
    p.add_argument("--inputs", metavar="U1,U2", help="input columns of --format trajectories (default: none)")
    p.add_argument("--outputs", metavar="Y1,Y2",
                   help="output columns of --format trajectories (default: every other column)")
    p.add_argument("--float64", action="store_true", help="data and fits in double precision")
    p.add_argument("--backend", choices=("gloo", "nccl"), default=None,
                   help="torch.distributed backend under torchrun (default: nccl with CUDA, else gloo)")
    p.add_argument("--list", action="store_true", help="list the registered methods and exit")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=cmd_compare)
