"""What the commands share: ``KEY=VALUE`` options, the problem named on the command line, up-front argument
checks (a bad argument exits with status 2 before any work begins), a quick RMSE."""
import inspect

__all__ = [
    "UsageError",
    "assignments",
    "check_count",
    "check_options",
    "check_problem_args",
    "problem_from_args",
    "rmse",
    "usage_errors",
]


class UsageError(SystemExit):
    """A bad command-line argument: the message names it; the command prints it and exits with status 2."""

    def __init__(self, message):
        super().__init__(2)
        self.message = str(message)

    def __str__(self):
        return self.message


def usage_errors(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` with a ``SystemExit("message")`` it raises turned into a :class:`UsageError`
    (exit status 2: ``SystemExit`` with a message would exit with 1)."""
    try:
        return fn(*args, **kwargs)
    except UsageError:
        raise
    except SystemExit as e:
        if isinstance(e.code, str):
            raise UsageError(e.code) from None
        raise


def assignments(items, what):
    """Parse ``KEY=VALUE`` strings (values as Python literals where they parse, else strings)."""
    import ast

    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"{what}: expected KEY=VALUE, got {item!r}")
        if key in out:
            raise UsageError(f"{what}: {key!r} is given twice")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            special = value.strip().lower().lstrip("+-")
            out[key] = float(value) if special in ("inf", "infinity", "nan") else value
    return out


def check_count(value, name, minimum=1):
    """An integer command-line option ``>= minimum``, or a :class:`UsageError` naming ``name``."""
    if value is None or isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UsageError(f"{name}: expected an integer >= {minimum}, got {value}")
    return value


def check_options(options, fn, what, fixed=()):
    """Check ``KEY=VALUE`` options given to ``fn`` (a function or class) against its signature: each key must be
    a parameter, and a value must have the type of the parameter's default (an integer where it is an integer,
    a finite positive number for rates and scales...).

    :param dict options: the parsed options.
    :param fn: the callable they are given to.
    :param str what: the option's name on the command line, for the messages.
    :param fixed: parameters the command sets itself (refused).
    """
    from ..compare.options import check_value, signature_defaults

    accepted = signature_defaults(fn, exclude=fixed)
    for key, value in options.items():
        if accepted is not None and key not in accepted:
            raise UsageError(f"{what}: {getattr(fn, '__name__', fn)} has no option {key!r}; its options are "
                             f"{sorted(accepted)}")
        try:
            check_value(key, value, None if accepted is None else accepted[key])
        except (TypeError, ValueError) as e:
            raise UsageError(f"{what}: {e}") from None


def check_problem_args(args, options=()):
    """``--problem`` is a known problem and ``--problem-option`` s are options of its constructor (nothing loaded);
    returns the parsed options."""
    from ..data import PROBLEMS

    kwargs = assignments(options, "--problem-option")
    if args.problem not in PROBLEMS:
        raise UsageError(f"--problem: unknown problem {args.problem!r}; choose from {sorted(PROBLEMS)}")
    accepted = inspect.signature(PROBLEMS[args.problem]).parameters
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise UsageError(f"--problem-option: problem {args.problem!r} has no option(s) {unknown}; its options are "
                         f"{sorted(k for k in accepted if k != 'seed')}")
    check_options(kwargs, PROBLEMS[args.problem], "--problem-option")
    return kwargs


def problem_from_args(args, options=()):
    """The problem named by ``--problem`` with its ``--problem-option`` s and ``--seed`` (when it takes one)."""
    from ..data import PROBLEMS, load_problem

    kwargs = check_problem_args(args, options)
    if "seed" in inspect.signature(PROBLEMS[args.problem]).parameters:
        kwargs.setdefault("seed", args.seed)
    try:
        return load_problem(args.problem, device=getattr(args, "device", "cpu"), **kwargs)
    except (TypeError, ValueError) as e:
        raise UsageError(f"--problem-option: {e}") from None


def rmse(model, guide, split):
    """RMSE of one posterior draw's noise-free prediction against the split's truth (its observations if none)."""
    import torch
    from pyro.infer import Predictive

    pred = Predictive(model, guide=guide, num_samples=1, return_sites=["y_mean"])
    with torch.no_grad():
        mean = pred(split.t, split.x, None, mask=split.mask, num_trajectories=len(split))["y_mean"][0]
    target = split.y_true if split.y_true is not None else split.y
    mask = torch.ones_like(target, dtype=torch.bool) if split.mask is None else split.mask[..., None].expand_as(target)
    return float((mean - target)[mask].pow(2).mean().sqrt())
