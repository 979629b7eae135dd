"""The base of :class:`~pyro_node_uq.distributions.ODESolver` and :class:`~pyro_node_uq.distributions.SDESolver`:
a dataclass of options, coerced from a dict, checked once at construction, serialisable as a dict."""
from dataclasses import asdict

__all__ = ["SolverOptions"]


class SolverOptions:
    """Shared behaviour of the solver option classes (dataclasses with a ``method`` and ``max_abs`` field).

    A subclass checks its fields in ``_check`` (called by ``__post_init__``), so that an instance is valid and
    the inner layers trust it; :meth:`coerce` accepts what a model's ``solver=`` argument may be.
    """

    def __post_init__(self):
        self._check()
        from ..validation import check_positive

        try:
            self.max_abs = check_positive(self.max_abs, "max_abs")
        except (TypeError, ValueError) as e:
            raise type(e)(f"{type(self).__name__}: {e}") from None

    def _check(self):
        raise NotImplementedError

    @classmethod
    def _from_other(cls, solver):
        """An instance from another kind of value (a subclass may accept, e.g., a solver object), or ``None``."""

    @classmethod
    def coerce(cls, solver):
        """Accept an instance, a dict of its fields, or ``None`` (defaults)."""
        if solver is None:
            return cls()
        if isinstance(solver, cls):
            return solver
        if isinstance(solver, dict):
            unknown = set(solver) - set(cls.__dataclass_fields__)
            if unknown:
                raise ValueError(f"solver: unknown options {sorted(unknown)}; "
                                 f"known are {sorted(cls.__dataclass_fields__)}")
            return cls(**solver)
        other = cls._from_other(solver)
        if other is None:
            raise TypeError(f"solver must be an {cls.__name__}, a dict or None{cls._coerce_hint}, got "
                            f"{type(solver).__name__}")
        return other

    _coerce_hint = ""

    def to_dict(self):
        return asdict(self)
