"""Data-parallel SVI: every rank fits its shard of the trajectory plate, gradients are all-reduced."""
import pyro
import torch
import torch.distributed as dist
from pyro.infer.autoguide import AutoGuide
from pyro.poutine.messenger import Messenger

from .._pyro_compat import SUBSAMPLE_DIST
from ..guarded_svi import GuardedSVI
from .process import (
    broadcast_object,
    comm_device,
    get_rank,
    get_world_size,
    sync_rng_state,
)

__all__ = ["DataParallelSVI", "data_plate", "gather_shards", "subsample_plate"]


class subsample_plate(Messenger):
    """Subsample the plate ``name`` of a model with the indices ``indices_fn(size)`` returns.

    Works for any model written in Pyro's subsampling idiom, ``with pyro.plate(name, N) as idx`` and data indexed
    by ``idx`` (as :class:`~pyro_node_uq.models.NODEModel` does): the plate keeps its full size ``N`` and scales
    the log-likelihood of its sites by ``N / len(indices)``, so the ELBO stays an unbiased estimate of the
    full-data ELBO.

    :param str name: the plate's name.
    :param indices_fn: ``indices_fn(size) -> LongTensor`` of the trajectories to keep.

    Example::

        >>> import pyro, pyro.distributions as dist, torch
        >>> def model(y):
        ...     with pyro.plate("trajectories", len(y)) as idx:
        ...         pyro.sample("obs", dist.Normal(0., 1.), obs=y[idx])
        >>> handler = subsample_plate("trajectories", lambda size: torch.tensor([0, 2]))
        >>> trace = pyro.poutine.trace(handler(model)).get_trace(torch.zeros(4))
        >>> trace.nodes["obs"]["value"].shape, trace.nodes["obs"]["scale"]
        (torch.Size([2]), 2.0)
    """

    def __init__(self, name, indices_fn):
        super().__init__()
        self.name, self.indices_fn, self.seen = name, indices_fn, False

    def _pyro_sample(self, msg):
        if msg["name"] == self.name and isinstance(msg["fn"], SUBSAMPLE_DIST):
            size = msg["fn"].size
            if msg["fn"].subsample_size not in (None, size):
                raise ValueError(f"plate {self.name!r}: the model subsamples it itself (subsample_size="
                                 f"{msg['fn'].subsample_size}); leave subsampling to the data-parallel fit")
            msg["value"], self.seen = self.indices_fn(size), True


def data_plate(model):
    """The name of ``model``'s data plate, the plate a data-parallel or minibatch fit shards and subsamples: the
    model's ``data_plate`` attribute (every :class:`~pyro_node_uq.models.ProcessModel` has one); a model without
    one must be given its plate by name.

    Example::

        >>> class Model:
        ...     data_plate = "units"
        >>> data_plate(Model())
        'units'
    """
    plate = getattr(model, "data_plate", None)
    if plate is None:
        raise ValueError(f"plate: {getattr(model, '__name__', type(model).__name__)} has no data_plate attribute; "
                         "name the model's data plate (plate=...)")
    return plate


def gather_shards(value, dim):
    """The full-data tensor from every rank's shard of a full-batch data-parallel step (:class:`DataParallelSVI`
    with ``subsample_size=None`` gives rank ``r`` the ``r``-th contiguous block of the plate), concatenated along
    ``dim`` in rank order; ``value`` itself without a process group.  Every rank must call it (a collective).

    :param torch.Tensor value: this rank's shard.
    :param int dim: the plate's dimension.
    """
    world = get_world_size()
    if world == 1:
        return value
    parts = [None] * world
    dist.all_gather_object(parts, value.cpu())
    return torch.cat(parts, dim).to(value.device)


class DataParallelSVI(GuardedSVI):
    """:class:`~pyro_node_uq.infer.GuardedSVI` over a process group: each rank computes the ELBO gradient on its
    shard of the plate ``plate`` and the ranks all-reduce the gradients, so every rank takes the same step.

    Each step draws one set of ``subsample_size`` trajectories (all of them when ``None``) from a generator
    seeded with ``seed`` and shared by every rank, splits it into ``world_size`` contiguous shards, and runs the
    model and the guide on this rank's shard with the plate's full size (see :class:`subsample_plate`; a guide's own
    plate, as autoguides have for per-unit latents, takes the same indices, so its local parameters are sliced to
    the shard).  Rank ``r``'s loss and
    gradients are weighted by its shard's share ``B_r / B`` and summed over ranks, which reproduces the loss of
    one process running minibatch ``B`` exactly: P processes with minibatch ``B`` equal one process with minibatch
    ``B`` split P ways, and with ``subsample_size=None`` the full-data fit.  At the first step rank 0's Pyro RNG
    state and the parameters already in the param store are broadcast, so all ranks draw the same particles.

    Guides that evaluate the model themselves (:class:`~pyro_node_uq.infer.autoguide.AutoLangevin` with the
    exact or hybrid score) do so isolated from this handler, that is on all trajectories, on every rank.

    :param model, guide, optim, loss: as for :class:`~pyro.infer.SVI`.
    :param str plate: the name of the model's data plate (default: the model's ``data_plate``, see
        :func:`data_plate`).
    :param int subsample_size: trajectories per step over all ranks (``None``: all).
    :param int seed: seed of the minibatch draws.
    :param int max_skips: see :class:`~pyro_node_uq.infer.GuardedSVI`.

    Example (one process; under ``torchrun`` the same code runs data-parallel)::

        >>> import pyro
        >>> from pyro.infer.autoguide import AutoNormal
        >>> from pyro_node_uq.data import load_problem
        >>> problem = load_problem("chemical", num_train=4)
        >>> model = problem.default_model()
        >>> svi = DataParallelSVI(model, AutoNormal(model), pyro.optim.Adam({"lr": 0.01}), pyro.infer.Trace_ELBO(),
        ...                       subsample_size=2)
        >>> loss = svi.step(*problem.train.args)
        >>> svi.last_indices.shape
        torch.Size([2])
    """

    def __init__(self, model, guide, optim, loss, plate=None, subsample_size=None, seed=0, max_skips=10, **kwargs):
        if subsample_size is not None and not int(subsample_size) >= 1:
            raise ValueError(f"subsample_size must be >= 1 or None, got {subsample_size}")
        plate = data_plate(model) if plate is None else plate
        self.plate, self.subsample_size = plate, None if subsample_size is None else int(subsample_size)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.handler = subsample_plate(plate, self._shard)
        self.rank, self.world_size = get_rank(), get_world_size()
        self.num_steps_taken, self.last_indices, self._indices = 0, None, None
        self._guide = guide
        super().__init__(self.handler(model), self._guide_on_shard, optim, loss, max_skips=max_skips, **kwargs)

    def _shard(self, size):
        """This rank's indices for this step (one draw per step, however often the ELBO calls the model)."""
        if self._indices is None:
            batch = size if self.subsample_size is None else self.subsample_size
            if batch > size:
                raise ValueError(f"subsample_size ({batch}) exceeds the {size} trajectories of plate {self.plate!r}")
            if batch < self.world_size:
                raise ValueError(f"plate {self.plate!r}: {batch} trajectories per step cannot be shared by "
                                 f"{self.world_size} processes; use at least one per process")
            indices = torch.arange(size) if self.subsample_size is None else \
                torch.randperm(size, generator=self.generator)[:batch]
            self.last_indices = indices
            self._indices = torch.tensor_split(indices, self.world_size)[self.rank]
            self._weight = len(self._indices) / batch
        return self._indices

    def _guide_on_shard(self, *args, **kwargs):
        """The guide on this rank's shard.  A guide with the plate (per-unit latents) would otherwise draw for every
        unit, and Pyro's replay would put its full indices into the model's plate.  An autoguide makes its copy of
        the plate with the prototype's size as its subsample size, which a shard contradicts: while it runs, its
        ``create_plates`` (Pyro's hook for subsampling autoguides) gives the plate without one, sized like the
        model's, so the shard's indices reach it and slice its per-unit parameters."""
        guide = self._guide
        own = isinstance(guide, AutoGuide) and guide.master is None and guide.create_plates is None
        if own:
            guide.create_plates = self._full_plate
        try:
            with self.handler:
                return guide(*args, **kwargs)
        finally:
            if own:
                guide.create_plates = None

    def _full_plate(self, *args, **kwargs):
        """The autoguide's copy of the data plate at the model's full size (see :meth:`_guide_on_shard`)."""
        for _, site in self._guide.prototype_trace.iter_stochastic_nodes():
            for frame in site["cond_indep_stack"]:
                if frame.name == self.plate:
                    return pyro.plate(self.plate, frame.full_size or frame.size, dim=frame.dim)
        return []

    def step(self, *args, **kwargs):
        if self.num_steps_taken == 0:
            self._broadcast_start()
        self._indices, self.handler.seen = None, False
        loss = super().step(*args, **kwargs)
        self.num_steps_taken += 1
        return loss

    def _broadcast_start(self):
        """Rank 0's RNG state and existing parameters on every rank."""
        if self.world_size == 1:
            return
        sync_rng_state()
        params = dict(pyro.get_param_store().named_parameters())
        names = broadcast_object(sorted(params))
        for name in names:
            if name not in params:
                raise RuntimeError(f"DataParallelSVI: parameter {name!r} exists on rank 0 but not on rank {self.rank}")
            value = params[name]
            buffer = value.detach().to(comm_device())
            dist.broadcast(buffer, src=0)
            with torch.no_grad():
                value.copy_(buffer.to(value.device))

    def reduce(self, params, loss):
        """Weighted all-reduce of the loss and of every gradient, in parameter-name order (the same on all ranks)."""
        if not self.handler.seen:  # before any parameter moves
            raise ValueError(f"DataParallelSVI: the model has no plate named {self.plate!r} to shard; name the "
                             "model's data plate with plate=...")
        if self.world_size == 1:
            return loss
        names = {id(v): k for k, v in pyro.get_param_store().named_parameters()}
        params = sorted(params, key=lambda p: names.get(id(p), ""))
        device = comm_device()
        parts = [(torch.zeros_like(p) if p.grad is None else p.grad).reshape(-1).to(device, torch.float64)
                 for p in params]
        parts.append(torch.as_tensor(loss, dtype=torch.float64).detach().reshape(1).to(device))
        has_grad = torch.tensor([p.grad is not None for p in params], dtype=torch.float64, device=device)
        buffer = torch.cat([torch.cat(parts) * self._weight, has_grad])
        dist.all_reduce(buffer)
        offset = 0
        for p, flag in zip(params, buffer[-len(params):].tolist()):
            n = p.numel()
            p.grad = buffer[offset: offset + n].view_as(p).to(p.device, p.dtype) if flag else None
            offset += n
        return buffer[offset].item()
