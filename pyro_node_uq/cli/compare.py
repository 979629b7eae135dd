"""``pyro-node-uq compare``: inference methods side by side on one problem."""
import sys

from .common import assignments, problem_from_args

__all__ = ["add_compare_parser", "cmd_compare"]


def _data_problem(args):
    """The problem of ``--data FILE --format nonmem`` (units held out by the seeded split)."""
    from ..data import events_problem

    if args.format != "nonmem":
        raise SystemExit(f"--format: only 'nonmem' event tables are supported, got {args.format!r}")
    covariates = [c.strip() for c in (args.covariates or "").split(",") if c.strip()]
    try:
        problem = events_problem(args.data, covariates=covariates, test_fraction=args.test_fraction, seed=args.seed)
    except (ValueError, TypeError, FileNotFoundError) as e:
        raise SystemExit(f"--data: {e}") from None
    return _with_structure(problem, args).to(device=args.device)


def _with_structure(problem, args):
    """``--structure`` / ``--correction``: the grey-box model of :func:`~pyro_node_uq.data.structured_problem`, or
    the pure hierarchical NODE with ``--structure none``."""
    from ..data.structured import structured_problem

    if args.structure == "none":
        return problem
    text = (args.correction or "none").strip()
    try:
        correction = None if text == "none" else tuple(int(w) for w in text.split(","))
    except ValueError:
        raise SystemExit(f"--correction: expected 'none' or comma-separated widths such as 16,16, got {text!r}") \
            from None
    try:
        return structured_problem(problem, args.structure, correction)
    except ValueError as e:
        raise SystemExit(f"--structure: {e}") from None


def cmd_compare(args):
    """Run inference methods side by side on one problem; write the table, InferenceData, figures and report.

    Exit status: 0 when every method ran ok or was skipped as not applicable, 1 when a method failed or none
    ran ok, 2 for bad arguments or a busy output folder, 130 when interrupted (SIGINT; the finished methods are
    written and the report says the run is incomplete)."""
    from ..compare import run_comparison
    from ..methods import METHODS, demo_methods
    from ..compare.output import OutputFolderBusy

    import torch

    if args.threads < 1:
        raise SystemExit(f"--threads: expected an integer >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)  # small tensors: extra intra-op threads only spin-wait on a busy machine
    if args.list:
        for m in METHODS.values():
            print(f"{m.name:<18} {m.description}")
        return 0
    if args.methods == "demo":
        methods = demo_methods()
    elif args.methods == "all":
        methods = None
    else:
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    overrides = {}
    for key, value in assignments(args.set, "--set").items():
        method, dot, option = key.partition(".")
        if not dot:
            raise SystemExit(f"--set: expected METHOD.OPTION=VALUE, got {key!r}")
        overrides.setdefault(method, {})[option] = value
    if args.device != "cpu":  # the data go there; Pyro's and the optimisers' own tensors follow the default
        torch.set_default_device(args.device)
    problem = _data_problem(args) if args.data else problem_from_args(args, args.problem_option)
    try:
        rows = run_comparison(problem, methods, out=args.out, quick=args.quick, seed=args.seed,
                              progress_bar=not args.no_progress, num_samples=args.num_samples, overrides=overrides)
    except (ValueError, TypeError, OutputFolderBusy) as e:  # bad names/options, busy folder: a message, no traceback
        print(f"pyro-node-uq compare: {e}", file=sys.stderr)
        return 2
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
    p.add_argument("--num-samples", type=int, default=200, help="predictive draws per method and split")
    p.add_argument("--set", action="append", metavar="METHOD.OPTION=VALUE",
                   help="override a method option, e.g. --set map.num_steps=300 (repeatable)")
    p.add_argument("--problem-option", action="append", metavar="KEY=VALUE",
                   help="option of the problem constructor, e.g. --problem-option num_train=4 (repeatable)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1: the tensors are small)")
    p.add_argument("--device", default="cpu", help="torch device of the data and every fit (default: cpu)")
    p.add_argument("--data", metavar="FILE.csv", help="compare on your own event table instead of --problem")
    p.add_argument("--format", default="nonmem", help="format of --data: 'nonmem' (ID, TIME, DV, AMT, EVID, MDV, CMT)")
    p.add_argument("--covariates", metavar="WT,APGR", help="comma-separated covariate columns of --data")
    p.add_argument("--structure", default="auto",
                   help="mechanistic structure of --data's model: 'auto' (default: one-compartment oral when doses "
                        "go into a depot, IV otherwise), one_compartment_iv|one_compartment_oral|two_compartment_iv|"
                        "two_compartment_oral|michaelis_menten_iv|michaelis_menten_oral, or 'none' (a pure "
                        "hierarchical NODE)")
    p.add_argument("--correction", default="none", metavar="WIDTHS",
                   help="hidden widths of the grey-box model's network correction, e.g. 16 (default: none)")
    p.add_argument("--test-fraction", type=float, default=0.25, help="fraction of --data units held out")
    p.add_argument("--list", action="store_true", help="list the registered methods and exit")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=cmd_compare)
