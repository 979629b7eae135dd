"""What the methods of one comparison share: the problem, the seed, and fits that several methods start from."""
import logging
import time

from ..infer import LTAU, MethodResult, run_autonormal, run_map

__all__ = ["MethodSkipped", "RunContext"]

log = logging.getLogger(__name__)


class MethodSkipped(Exception):
    """Raised by a method runner that does not apply to this problem or installation; the message says why."""


class RunContext:
    """Shared state of one comparison run: the problem, options, and cached fits.

    The MAP fit is made once (recording LTAU's loss trajectories as it trains, which costs only the per-step error
    bookkeeping) and is the warm start of every method that starts from MAP; the AutoNormal fit is likewise shared
    by the methods that start from it.  A method's reported cost includes the cost of the fits it started from.

    :param problem: the :class:`~pyro_node_uq.data.Problem`.
    :param int seed: seed of every fit.
    :param bool quick: use each method's quick options.
    :param bool progress_bar: show tqdm bars.
    :param dict options: method name -> the options it is run with (filled by the runner).
    """

    def __init__(self, problem, seed=0, quick=False, progress_bar=True, options=None):
        self.problem, self.seed, self.quick, self.progress_bar = problem, seed, quick, progress_bar
        self.options = options or {}
        self.notes = {}  # method name -> extra lines for the report
        self._model = None
        self._cache = {}

    @property
    def model(self):
        """The problem's default model (one instance shared by all methods; models hold no fitted state)."""
        if self._model is None:
            self._model = self.problem.default_model()
        return self._model

    @property
    def train(self):
        return self.problem.train

    def note(self, method, text):
        self.notes.setdefault(method, []).append(text)

    def map_options(self):
        """``(run_map options, LTAU options)`` of the ``"map"`` method: its ``ltau_*`` options configure the LTAU
        recorder riding on it (``ltau_k``, ``ltau_burn_in``), the rest are :func:`run_map`'s."""
        opts = dict(self.options.get("map") or {})
        ltau = {k[len("ltau_"):]: opts.pop(k) for k in list(opts) if k.startswith("ltau_")}
        unknown = set(ltau) - {"k", "burn_in"}
        if unknown:
            raise ValueError(f"map options: unknown {sorted('ltau_' + k for k in unknown)}; "
                             "known LTAU options are ['ltau_burn_in', 'ltau_k']")
        return opts, ltau

    def map_fit(self):
        """``(MethodResult, LTAU)``: the MAP fit with LTAU's loss trajectories recorded during training."""
        if "map" not in self._cache:
            opts, ltau_opts = self.map_options()
            ltau = LTAU(k=ltau_opts.get("k", 10))
            steps = opts.get("num_steps", 1500)
            monitor = ltau.monitor(self.train, start=int(ltau_opts.get("burn_in", 0.25) * steps))
            with monitor:
                res = run_map(self.model, self.train, seed=self.seed, progress_bar=self.progress_bar,
                              callback=monitor, **opts)
            self._cache["map"] = (res, ltau)
        return self._cache["map"]

    def autonormal_fit(self):
        """The AutoNormal fit (warm-started at :meth:`map_fit`), shared by the methods that start from it."""
        if "autonormal" not in self._cache:
            opts = dict(self.options.get("autonormal") or {})
            self._cache["autonormal"] = run_autonormal(self.model, self.train, map_result=self.map_fit()[0],
                                                       seed=self.seed, progress_bar=self.progress_bar, **opts)
        return self._cache["autonormal"]

    def remember(self, name, result):
        """Cache ``result`` under ``name`` (so later methods can start from it)."""
        if isinstance(result, MethodResult):
            self._cache[name] = result

    def cached(self, name):
        return self._cache.get(name)

    def timed(self, fn, *args, **kwargs):
        """``(fn(*args, **kwargs), seconds)``."""
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        return out, time.perf_counter() - start
