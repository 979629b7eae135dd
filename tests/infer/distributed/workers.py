"""What each spawned test process runs: everything the 2-process tests compare, in one spawn."""
import pyro
import pyro.distributions as dist
import torch

from pyro_node_uq.data import Split, load_problem
from pyro_node_uq.infer import LangevinKernel
from pyro_node_uq.infer.distributed import broadcast_object, get_rank, get_world_size
from pyro_node_uq.methods import run_chains, run_ensemble


def toy_model(t, x=None, y=None, mask=None, num_trajectories=None):
    """Normal mean of trajectories; a batched ``mu`` (particles) stays left of the plate."""
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    fn = dist.Normal(mu[..., None, None], 1.0).expand(mu.shape + (len(t), 1)).to_event(2)
    with pyro.plate("trajectories", num_trajectories or y.shape[0], dim=-1):
        return pyro.sample("obs", fn, obs=y)


def toy_split():
    return Split(t=torch.arange(3.0), x=None, y=torch.ones(4, 3, 1) * 0.5)


def chains():
    """3 LangevinKernel runs of 2 particles each, shared by the ranks."""
    kernel = lambda m: LangevinKernel(m, step_size=0.3, num_particles=2, max_plate_nesting=1)
    res = run_chains(toy_model, kernel, toy_split(), num_chains=3, num_samples=8, warmup_steps=3, seed=7,
                     num_particles=2)
    return None if res is None else res.samples


def ensemble():
    problem = load_problem("chemical", num_train=4, seed=0).to(torch.float64)
    res = run_ensemble(problem.default_model(R_hidden=(4,)), problem.train, num_members=3, num_steps=3,
                       progress_bar=False)
    return None if res is None else res.samples


def warm_start():
    """A parameter already in the store differs per rank before the fit; rank 0's value must win."""
    from pyro.infer import Trace_ELBO

    from pyro_node_uq.infer.distributed import DataParallelSVI

    pyro.clear_param_store()
    pyro.param("w", torch.full((3,), float(get_rank())))

    def model(y):
        with pyro.plate("trajectories", len(y)) as idx:
            pyro.sample("obs", dist.Normal(pyro.param("w").sum(), 1.0), obs=y[idx])

    svi = DataParallelSVI(model, lambda y: None, pyro.optim.Adam({"lr": 0.1}), Trace_ELBO(), plate="trajectories")
    losses = [svi.step(torch.arange(6.0)) for _ in range(3)]
    return losses, pyro.param("w").detach().clone()


def comparison():
    """``tests/compare/test_runner.py``'s tiny comparison, rank 0 writing into a new folder: ``(rows, the folder's
    parent's entries after the run)``."""
    import os
    import tempfile

    from ...compare.test_runner import compare_in_float64

    parent = broadcast_object(tempfile.mkdtemp() if get_rank() == 0 else None)
    rows = compare_in_float64(os.path.join(parent, "out"))
    return rows, sorted(os.listdir(parent)) if get_rank() == 0 else None


def run_all():
    from .test_svi import CASES, fit_case

    torch.set_default_dtype(torch.float64)
    out = {name: fit_case(name, get_world_size()) for name in CASES}
    out.update(chains=chains(), ensemble=ensemble(), warm_start=warm_start(), comparison=comparison(), rank=get_rank(),
               world_size=get_world_size())
    return out
