"""Drift terms of the Langevin kernel: estimates ``g(z)`` of the posterior score ``grad log p(z | data)``.

A term maps flat points ``z`` ``(P, D)`` and the kernel's potential ``energy(z, with_grad) -> (U, grad U)`` (or
``None`` when no potential is needed, as for ULA with a learned score) to ``(U or None, g)``:

    ExactScore      g = grad log p(z | data) = -grad U             (one model gradient per step)
    LearnedScore    g = s(z)   (a trained guide's score, e.g. AutoLangevin.score; no model evaluation)
    BlendedScore    g = w * exact + (1 - w) * learned              (a convex combination, w in [0, 1])

The guide's chain (:mod:`~pyro_node_uq.infer.autoguide.drift`) composes the same two sources differently: its
``score="hybrid"`` *adds* the weighted exact term to the learned correction; the kernel's blend interpolates.
"""
__all__ = ["BlendedScore", "ExactScore", "LearnedScore"]


class ExactScore:
    """``g = -grad U`` from the kernel's potential."""

    uses_gradient = True

    def __call__(self, z, energy):
        U, grad_U = energy(z, True)
        return U, -grad_U


class LearnedScore:
    """``g = score(z)``; the potential is evaluated (without gradient) only when ``energy`` is given (MH).

    :param score: ``score(z) -> (P, D)`` at flat points in the kernel's order.
    """

    uses_gradient = False

    def __init__(self, score):
        self.score = score

    def __call__(self, z, energy):
        U = None if energy is None else energy(z, False)[0]
        return U, self.score(z)


class BlendedScore:
    """``g = w * exact + (1 - w) * learned``.

    :param float exact_weight: ``w`` in [0, 1].
    :param LearnedScore learned: the learned term.
    """

    uses_gradient = True

    def __init__(self, exact_weight, learned):
        if not 0.0 <= exact_weight <= 1.0:
            raise ValueError(f"exact_weight must lie in [0, 1], got {exact_weight}")
        self.exact_weight, self.exact, self.learned = float(exact_weight), ExactScore(), learned

    def __call__(self, z, energy):
        U, g_exact = self.exact(z, energy)
        _, g_learned = self.learned(z, None)
        return U, self.exact_weight * g_exact + (1.0 - self.exact_weight) * g_learned
