"""A deep ensemble: MAP fits from independent seeds, member ``i`` stored as chain ``i``."""
import torch

from ..infer.distributed.chains import map_across_ranks
from ..validation import check_int
from .common import as_process_model, map_values
from .map import run_map
from .registry import register
from .result import MethodResult

__all__ = ["run_ensemble"]


@register("ensemble", "deep ensemble of 5 MAP fits from independent seeds (member 0 is the MAP row)", start="map",
          demo=True, defaults={"num_members": 5}, quick={"num_steps": 150, "num_starts": 1})
def run_ensemble(model, split, *, warm_start=None, num_members=5, num_steps=None, seed=0, progress_bar=True,
                 **map_options):
    """``num_members`` MAP fits from seeds ``seed, seed + 1, ...``; member ``i`` is chain ``i`` of the samples.

    Under ``torchrun`` (an initialised ``torch.distributed`` group) the members are shared out to the processes
    and gathered on rank 0 (the other ranks return ``None``).

    :param model: a :class:`~pyro_node_uq.models.ProcessModel` or a plain Pyro model.
    :param split: the training split.
    :param MethodResult warm_start: member 0 (a MAP fit with seed ``seed`` trained like the others); fitted
        here with the others when ``None``.
    :param int num_members: ensemble size (>= 1).
    :param int num_steps: MAP steps of every member (default: :func:`~pyro_node_uq.methods.run_map`'s).
    :param int seed: seed of member 0.
    :param bool progress_bar: show tqdm bars.
    :param map_options: further :func:`~pyro_node_uq.methods.run_map` options of every member.
    :returns: :class:`MethodResult` with samples ``(num_members, 1, ...)``; its cost is the sum of the members'.

    Example::

        >>> from pyro_node_uq.data import load_problem
        >>> problem = load_problem("chemical", num_train=2)
        >>> res = run_ensemble(problem.default_model(), problem.train, num_members=2, num_steps=2,
        ...                    progress_bar=False)
        >>> res.samples["R.0.bias"].shape
        torch.Size([2, 1, 32])
    """
    num_members = check_int(num_members, "num_members", minimum=1)
    model = as_process_model(model, split)
    options = dict(map_options, progress_bar=progress_bar)
    if num_steps is not None:
        options["num_steps"] = num_steps
    first = [] if warm_start is None else [warm_start]
    members = map_across_ranks(lambda i: run_map(model, split, seed=seed + i, **options),
                               range(len(first), num_members))
    if members is None:  # another rank: rank 0 holds the result
        return None
    members = first + members
    values = [map_values(m) for m in members]
    samples = {k: torch.stack([v[k] for v in values])[:, None] for k in values[0]}  # (members, 1, ...)
    return MethodResult(name="ensemble", model=model, samples=samples, wall_time=sum(m.wall_time for m in members),
                        num_model_evals=sum(m.num_model_evals for m in members),
                        stochastic_dim=sum(int(v.numel()) for v in values[0].values()),  # every weight varies
                        param_state=members[0].param_state)
