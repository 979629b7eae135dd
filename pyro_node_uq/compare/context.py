"""The cache of shared fits of one comparison: each method is fitted once with the comparison's options, and a
method that starts from another (its ``start``) gets that method's cached fit, whatever order they run in."""
from ..infer.distributed import barrier
from ..methods import METHODS

__all__ = ["RunContext"]


class RunContext:
    """Shared state of one comparison run: the problem, the model, each method's options, notes and fits.

    A method's reported cost includes the cost of the fits it started from (the runners add it).

    :param problem: the :class:`~pyro_node_uq.data.Problem`.
    :param int seed: seed of every fit.
    :param bool progress_bar: show tqdm bars.
    :param dict options: method name -> the options it is run with.

    Example::

        >>> from pyro_node_uq.data import load_problem
        >>> ctx = RunContext(load_problem("chemical", num_train=2), progress_bar=False,
        ...                  options={"map": {"num_steps": 2}, "autonormal": {"num_steps": 2, "elbo_particles": 0}})
        >>> ctx.fit("autonormal").num_model_evals > ctx.fit("map").num_model_evals  # MAP ran once, shared
        True
    """

    def __init__(self, problem, seed=0, progress_bar=True, options=None):
        self.problem, self.seed, self.progress_bar = problem, seed, progress_bar
        self.options = options or {}
        self.notes = {}  # method name -> extra lines for the report
        self.sections = {}  # title -> {"text": introduction, "rows": table rows} of extra report sections
        self._model = None
        self._fits = {}

    @property
    def model(self):
        """The problem's default model (one instance shared by all methods; models hold no fitted state)."""
        if self._model is None:
            self._model = self.problem.default_model()
        return self._model

    def note(self, method, text):
        """Add a line about ``method`` (``"*"``: the whole run) to the report."""
        self.notes.setdefault(method, []).append(text)

    def section_row(self, title, text, row):
        """Add ``row`` (a dict, one table row) to the report section ``title`` introduced by ``text``."""
        self.sections.setdefault(title, {"text": text, "rows": []})["rows"].append(row)

    def fit(self, name):
        """The fit of registered method ``name`` on the training split, made once (its warm start first).

        Under ``torchrun`` every rank calls it in the same order, so that SVI fits run data-parallel.  A method
        whose runs are shared out to the ranks and gathered on rank 0 (an ensemble, MCMC chains) is ``None`` on the
        other ranks; a method started from one is fitted by rank 0 alone (the others raise here, without fitting
        the start again), and every rank waits at the end of each fit for the slowest."""
        if name not in self._fits:
            try:
                method = METHODS[name]
                start = self.fit(method.start) if method.start else None
                if method.start and start is None:
                    raise RuntimeError(f"{name} starts from {method.start}, whose result rank 0 alone holds: rank 0 "
                                       "fits it")
                self._fits[name] = method.runner(self.model, self.problem.train, warm_start=start, seed=self.seed,
                                                 progress_bar=self.progress_bar, **self.options.get(name, {}))
            finally:
                barrier()
            for line in getattr(self._fits[name], "notes", ()):
                self.note(name, line)
        return self._fits[name]
