"""A fast fixed-step solve of the NODE on its observation grid, written for few ops and ``torch.compile``.

``torchdiffeq`` is general: every vector-field call interpolates the inputs at a data-dependent time
(``searchsorted``, clamps, gathers), concatenates them with the state and runs the MLP through ``einsum``.  At
small ensembles Python dispatch of those ~20 small ops, not arithmetic, is the cost.  For the fixed-step methods
everything data-dependent is known before the solve, so this module precomputes it:

* the stage times of every step of the grid (the observation times, each interval cut into ``substeps`` equal
  steps) and the inputs at all of them in ONE vectorised interpolation;
* for a ``tanh`` field (the default), the solve of :mod:`~pyro_node_uq.distributions.rk_backprop`: R's
  first-layer input term ``W_x x(t) + b`` of every stage formed at once (up to :data:`_FUSE_BUDGET` elements;
  larger ensembles form it stage by stage), states stored features-first ``(B, H, M)`` so that each layer is
  one batched product, each stage input one product of a coefficient row with the step's stage buffer, and the
  gradient a hand-written discrete adjoint, without the autograd tape (no-gradient solves, e.g. ``Predictive``,
  run the same forward pass).

Other fields, ``torch.compile`` and a ``torch.jit`` trace (which records the ops inside a custom autograd
function and cannot keep the hand-written gradient) run the step loop below under autograd; it has no
data-dependent branching, so ``torch.compile`` can capture one step or a chunk of steps.
Which of these runs is decided by :func:`~pyro_node_uq.distributions.solve_path.select`.  Compiled chunks are
cached per (method, shapes, dtype, device) in :data:`~pyro_node_uq.distributions.solve_cache.CACHE`: with
``compile="auto"`` a shape is compiled only after it has been solved a few times (a one-off solve never waits for
a compiler), with ``compile=True`` at its first solve; ``False`` (the default) always runs eagerly, and a failed
compile falls back to eager with a warning.  On a CPU the eager hand-written solve is the fastest of these at every
ensemble size.

After a solve, ``step_check=True`` runs the step-doubling check of
:mod:`~pyro_node_uq.distributions.step_check` with this module's own steps.

Any explicit Runge-Kutta solver of :mod:`~pyro_node_uq.distributions.solvers` (one with a tableau) runs here; the
tableaus of ``"euler"``, ``"midpoint"`` and ``"rk4"`` (the 3/8 rule) are ``torchdiffeq``'s, so both back-ends agree
to rounding error on the same grid.
"""
import math
import warnings

import torch

from . import rk_fused, solve_cache
from .rk_backprop import rk_solve, rk_steps
from .solve_path import GRID_PATHS, hand_written_field, select
from .solvers import get_solver
from .step_check import relative_difference, warn_if_unstable

__all__ = ["solve_node_fixed", "stage_times"]

# elements of the precomputed input term (4 MB in float32); beyond it the term is computed stage by stage, which
# is faster than writing and re-reading a term as large as the activations (P >= 16 on chemical; measured)
_FUSE_BUDGET = 2 ** 20


def stage_times(t, method, substeps=1):
    """Times of every step's stages: ``(K, stages)`` with ``K = (len(t) - 1) * substeps``, and the widths ``(K,)``.

    :param torch.Tensor t: strictly increasing grid ``(T,)``.
    :param str method: an explicit Runge-Kutta solver (name or object) of
        :mod:`~pyro_node_uq.distributions.solvers`.
    :param int substeps: equal steps per interval of ``t``.
    """
    c = torch.tensor(_tableau_of(method).c, dtype=t.dtype, device=t.device)
    frac = torch.arange(substeps, dtype=t.dtype, device=t.device) / substeps
    t0 = t[:-1, None] + (t[1:] - t[:-1])[:, None] * frac  # (T-1, substeps) step starts
    t1 = torch.cat([t0[:, 1:], t[1:, None]], dim=1)
    t0, t1 = t0.reshape(-1), t1.reshape(-1)
    dt = t1 - t0
    times = t0[:, None] + dt[:, None] * c
    times[:, c == 1] = t1[:, None]  # the last stage sits exactly on the step's end, as in torchdiffeq
    return times, dt


class _Layout:
    """The solve's layout of the ensemble ``batch``: states stored features-first, ``(B, features, M)``.

    ``W @ h`` with the M trajectories as columns keeps the small output widths (the hidden dimension) off the
    matrix products' column dimension, which is about twice as fast on CPU as ``h @ W^T``.  Weights shared by
    the trajectories (the last batch dim) give ``B`` = the other batch dims and ``M`` = the trajectories; weights
    that differ per trajectory give ``B`` = the whole batch and ``M = 1``.
    """

    def __init__(self, R, params, batch):
        self.shared = all(params[k].dim() - len(s) < len(batch) or params[k].shape[params[k].dim() - len(s) - 1] == 1
                          for k, s in R.param_shapes().items())
        self.B, self.M = (math.prod(batch[:-1]), batch[-1]) if self.shared else (math.prod(batch), 1)

    def columns(self, v, batch):
        """``lead + xbatch + (D,)`` (``xbatch`` right-aligned with ``batch``) as ``lead + (B, D, M)``."""
        lead = v.shape[: v.dim() - 1 - len(batch)]
        v = v.expand(lead + batch + v.shape[-1:]).reshape(lead + (self.B, self.M, v.shape[-1]))
        return v.transpose(-1, -2)


class _Field(_Layout):
    """R's weights as batched matrices ``(B, out, in)`` acting on states in the :class:`_Layout` ``(B, in, M)``."""

    def __init__(self, R, params, batch):
        super().__init__(R, params, batch)
        H = R.sizes[-1]
        self.weights, self.biases = [], []
        for i in range(R.num_layers):
            w = self.bmm(params[f"{R.name}.{i}.weight"], batch)
            b = self.bmm(params[f"{R.name}.{i}.bias"][..., None], batch)
            if i == 0:
                w, self.w_in, self.b_in = w[..., :H].contiguous(), w[..., H:], b  # the input half: per stage time
            self.weights.append(w)
            if i > 0:
                self.biases.append(b)

    def bmm(self, value, batch):
        """A matrix ``wbatch + (r, c)`` (``wbatch`` right-aligned with ``batch``) as ``(B, r, c)``.  Steps that
        would not change the shape are skipped: each is a node of the autograd graph, and the common layouts
        (one weight per particle) need one."""
        if value.dim() < len(batch) + 2:
            value = value.reshape((1,) * (len(batch) + 2 - value.dim()) + value.shape)
        lead = batch[:-1] if self.shared else batch
        if self.shared:
            value = value.squeeze(len(batch) - 1)
        shape = lead + value.shape[-2:]
        if value.shape != shape:
            value = value.expand(shape)
        return value if value.dim() == 3 and value.shape[0] == self.B else value.reshape((self.B,) + shape[-2:])


def _chunk(h, u, coef, weights, biases, wx, bx, act, out_act, a, b):
    """Steps of one chunk of ``c`` steps, returning the states after each, ``(c, B, H, M)``.

    ``u`` is R's first-layer input term ``W_x x + b`` at every stage ``(c, stages, B, n1, M)`` (``wx`` None), or
    the stage inputs ``x`` themselves ``(c, stages, B, D, M)`` with ``wx`` ``(B, n1, D)`` and ``bx`` ``(B, n1, 1)``.
    ``coef`` ``(c, len(b) + sum(len(a_i)))`` holds each step's width times the ``b_j``, then times the ``a_ij``.
    """
    from ..nn import ACTIVATIONS

    act = ACTIVATIONS[act]
    out = []
    for u_k, coef_k in zip(u.unbind(0), coef.unbind(0)):  # unbind, not indexing: one backward op, no zero fills
        dts, uk = coef_k.unbind(), u_k.unbind()
        ks, pos = [], len(b)
        for i, row in enumerate(a):
            y = h
            for j in range(len(row)):
                y = torch.addcmul(y, ks[j], dts[pos + j])
            pos += len(row)
            if wx is None:
                z = torch.baddbmm(uk[i], weights[0], y)
            elif wx.shape[-1] == 1:  # one input: an outer product, not a matrix product
                z = torch.baddbmm(torch.addcmul(bx, wx, uk[i]), weights[0], y)
            else:
                z = torch.baddbmm(torch.baddbmm(bx, wx, uk[i]), weights[0], y)
            for w, bias in zip(weights[1:], biases):
                z = torch.baddbmm(bias, w, act(z))
            ks.append(ACTIVATIONS[out_act](z) if out_act is not None else z)
        for j, kj in enumerate(ks):
            if b[j] != 0.0:
                h = torch.addcmul(h, kj, dts[j])
        out.append(h)
    return torch.stack(out)


def _tableau_of(method):
    """The tableau of ``method``, which must be an explicit Runge-Kutta solver."""
    tableau = get_solver(method).tableau
    if tableau is None:
        raise ValueError(f"solve_node_fixed: method {method!r} has no Runge-Kutta tableau; the fixed-step path "
                         "solves explicit Runge-Kutta methods only")
    return tableau


def _compile(fn):
    return torch.compile(fn, dynamic=False, fullgraph=True)


def _tableau(method, like):
    """The method's ``b`` then the rows of ``a``, flat, as a tensor like ``like`` (each step's ``coef`` is its
    width times this)."""
    tab = _tableau_of(method)
    return like.new_tensor(list(tab.b) + [x for row in tab.a for x in row])


def _stage_inputs(field, interp, times, batch):
    """The inputs at every stage time ``times`` ``(K, S)`` in the solve's layout, ``(K, S, B, D, M)``
    contiguous (so that each stage's input term is one block), or ``None`` without inputs."""
    if interp is None:
        return None
    K, S = times.shape
    xs = interp.at_grid(times.reshape(-1)).movedim(-2, 0)  # (K * S,) + xbatch + (D,)
    xs = field.columns(xs.reshape(xs.shape[:1] + (1,) * (len(batch) + 2 - xs.dim()) + xs.shape[1:]), batch)
    return xs.contiguous().reshape((K, S) + xs.shape[1:])


def _grid(field, interp, t, method, substeps, batch):
    """The stage times ``(K, S)``, step widths ``(K,)`` and stage inputs (:func:`_stage_inputs`) of a solve,
    memoised per data: a model evaluated thousands of times on the same ``t`` and ``x`` (SVI, MCMC) computes
    them once (about 20 small ops of a ~5 ms evaluation).  The key is the data's memory (a solve gets a new view
    of the same times each call) and version (an in-place change, through any view, is computed again); the
    memo (in :data:`~pyro_node_uq.distributions.solve_cache.CACHE`, with its limits) holds the data themselves, so
    their memory cannot be reused while held.  Inputs that need a gradient, traced solves and solves in inference
    mode (whose tensors autograd cannot use later) are never memoised."""
    data = (t,) if interp is None else (t, interp.times, interp.x)

    def compute():
        times, dt = stage_times(t, method, substeps)
        return data, times, dt, _stage_inputs(field, interp, times, batch)

    if torch.jit.is_tracing() or torch.is_inference_mode_enabled() or any(v.requires_grad for v in data):
        return compute()[1:]
    key = (tuple((v.data_ptr(), v.shape, v.stride(), v.dtype, v.device, v._version) for v in data),
           interp and interp.kind, method, substeps, tuple(batch), field.B, field.M)  # memory, not ids: views
    return solve_cache.CACHE.grid(key, compute)[1:]


def _streamed(field, K, S):
    """Whether the first layer's input term of all stages, ``K S B n1 M`` elements, exceeds :data:`_FUSE_BUDGET`
    (it is then applied stage by stage)."""
    return K * S * field.B * field.M * field.w_in.shape[-2] > _FUSE_BUDGET


def _input_term(field, xs, K, S):
    """R's first-layer input term ``W_x x + b`` at every stage for the autograd step loop: ``(u, None, None)``
    with ``u`` ``(K, S, B, n1, M)``, or when :func:`_streamed` the inputs with the weights ``(x, W_x, b)``."""
    if xs is None:
        return field.b_in.expand((K, S) + field.b_in.shape), None, None
    if _streamed(field, K, S):
        return xs, field.w_in, field.b_in
    if xs.shape[-2] == 1:  # one input: an outer product, cheaper than a broadcast matrix product
        return torch.addcmul(field.b_in, field.w_in, xs), None, None
    return torch.matmul(field.w_in, xs) + field.b_in, None, None


def _check_tables(field, interp, t, dt, method, substeps, batch):
    """What the step-doubling check needs from each observation time ``k`` but the states, memoised with the
    grid (:func:`_grid`'s rules): ``(reuse, reuse_mask, dts, widths, xs)``, with ``reuse`` a list of bools (the
    solve's own step from ``k`` is the widest one, up to rounding: it is the check's "one" step) and
    ``reuse_mask`` the same as a tensor, the widths ``dts`` ``(T - 1, 3)`` of one step of the widest width and of
    two half steps (``widths``: the same in float64, for the compiled check), and the inputs at their stage times
    ``(T - 1, 3, S, B, D, M)`` (or ``None`` without inputs)."""
    def compute():
        width = (t[1:] - t[:-1]).max() / substeps
        own = dt[::substeps]  # the solve's step from each observation time
        reuse = own >= width * (1 - 8 * torch.finfo(t.dtype).eps)
        w = torch.where(reuse, own, width)[:, None]  # (T - 1, 1)
        c = t.new_tensor(_tableau_of(method).c)
        starts = t.new_tensor([0.0, 0.0, 0.5])[:, None] + c * t.new_tensor([1.0, 0.5, 0.5])[:, None]  # (3, S)
        times = t[:-1, None, None] + w[..., None] * starts  # (T - 1, 3, S)
        xs = _stage_inputs(field, interp, times.reshape(-1, len(c)), batch)
        xs = xs.view((len(t) - 1, 3) + xs.shape[1:]) if xs is not None else None
        dts = w * t.new_tensor([1.0, 0.5, 0.5])
        return data, reuse.tolist(), reuse, dts, dts.double(), xs

    data = (t,) if interp is None else (t, interp.times, interp.x)
    if torch.jit.is_tracing() or torch.is_inference_mode_enabled() or any(v.requires_grad for v in data):
        return compute()[1:]
    key = (tuple((v.data_ptr(), v.shape, v.stride(), v.dtype, v.device, v._version) for v in data),
           interp and interp.kind, method, substeps, tuple(batch), field.B, field.M, "step check")
    return solve_cache.CACHE.grid(key, compute)[1:]


def _check_step(R, field, interp, batch, steps, dt, t, method, substeps):
    """The step-doubling check of :mod:`~pyro_node_uq.distributions.step_check` on this path's own steps:
    from the observation time where the state is largest, one step of the largest width against two half
    steps, for the whole ensemble in one go; warns once per solve.  ``steps`` ``(K + 1, B, H, M)`` are the states
    after every step of the solve and ``dt`` ``(K,)`` its widths: where the solve's own step from that time is the
    widest (a uniform grid), it is the "one step" and only the two half steps are taken.  Everything but the
    states is read from :func:`_check_tables` (a few ops per solve)."""
    if len(t) < 2:
        return float("nan")
    largest = steps[::substeps].abs().flatten(1).amax(1).tolist()  # per observation time (nan or inf: diverged)
    if not all(math.isfinite(v) for v in largest):
        return float("nan")  # divergence is reported by the caller
    k = max(range(len(largest) - 1), key=largest.__getitem__)
    reuse, _, dts, _, xs = _check_tables(field, interp, t, dt, method, substeps, batch)
    tab = _tableau_of(method)
    y, a, b, xs, dts = steps[k * substeps], tab.a, tab.b, xs[k] if xs is not None else None, dts[k]
    if hand_written_field(R) is None:  # no gradient here: the hand-written forward steps, for any solve's path
        run = (lambda s: rk_steps(y, xs[s] if xs is not None else None, field.w_in, field.b_in, dts[s],
                                  field.weights, field.biases, a, b)[-1])
    else:
        u, wx, bx = _input_term(field, xs, len(dts), len(b))
        coef = dts[:, None] * _tableau(method, dts)
        args = (field.weights, field.biases, wx, bx, R.activation, R.out_activation, a, b)
        run = (lambda s: _chunk(y, u[s], coef[s], *args)[-1])
    one = steps[k * substeps + 1] if reuse[k] else run(slice(0, 1))
    err = relative_difference(one, run(slice(1, 3)), y)
    warn_if_unstable(err, method, dts[0], t[k])
    return err


def solve_node_fixed(R, params, h0, t, batch, interp=None, method="rk4", substeps=1, compile=False, chunk=None,
                     step_check=False, path=None):
    """Solve ``dh/dt = R(h, x(t))`` for the whole ensemble with a fixed-step method on the grid ``t``.

    :param BatchedMLP R: vector field network, input ``hidden_dim + input_dim``.
    :param dict params: site name -> weight tensor with leading batch dims (right-aligned with ``batch``).
    :param torch.Tensor h0: initial state broadcastable to ``batch + (H,)``.
    :param torch.Tensor t: strictly increasing output times ``(T,)``.
    :param torch.Size batch: the ensemble batch shape.
    :param Interpolator interp: the inputs x(t), or ``None`` (autonomous).
    :param method: an explicit Runge-Kutta solver of :mod:`~pyro_node_uq.distributions.solvers` (``"euler"``,
        ``"midpoint"``, ``"rk4"`` (torchdiffeq's 3/8 rule)...), by name or as an object.
    :param int substeps: equal steps per observation interval.
    :param compile: ``False`` (eager), ``True`` (compile at the first solve of a shape) or ``"auto"``
        (compile a shape once solved a few times, see :class:`~pyro_node_uq.distributions.solve_cache.SolveCache`).
    :param int chunk: steps per compiled call (default: one observation interval, ``substeps`` steps).
    :param bool step_check: after the solve, warn (``StepSizeWarning``) when a step-doubling check shows the
        step far above the stable step (the check of :func:`~pyro_node_uq.distributions.step_check.
        check_fixed_step`, run here with this path's own steps: a few small ops instead of a ``torchdiffeq``
        solve).
    :param str path: the execution path, one of :data:`~pyro_node_uq.distributions.solve_path.GRID_PATHS`
        (default: :func:`~pyro_node_uq.distributions.solve_path.select` for these options and ``R``).
    :returns: states ``(T,) + batch + (H,)``, like ``torchdiffeq.odeint``.

    Example::

        >>> from pyro_node_uq.nn import BatchedMLP
        >>> from pyro_node_uq.distributions import Interpolator
        >>> R = BatchedMLP("R", (3, 8, 2))                                             # H = 2, one input
        >>> params = {k: v.expand((4, 1) + v.shape) for k, v in R.init_params().items()}  # 4 particles
        >>> t = torch.linspace(0, 1, 5)
        >>> interp = Interpolator(t, torch.randn(6, 5, 1))                               # 6 trajectories
        >>> solve_node_fixed(R, params, torch.zeros(2), t, torch.Size([4, 6]), interp).shape
        torch.Size([5, 4, 6, 2])
    """
    tab = _tableau_of(method)
    a, b = tab.a, tab.b
    H = R.sizes[-1]
    D = R.sizes[0] - H
    if D > 0 and interp is None:
        raise ValueError(f"solve_node_fixed: R expects {D} inputs but interp is None")
    interp = interp if D else None
    out_shape = (t.shape[0],) + tuple(batch) + (H,)
    batch = torch.Size(batch) if len(batch) else torch.Size([1])
    field = _Field(R, params, batch)
    times, dt, xs = _grid(field, interp, t, method, substeps, batch)  # (K, S), (K,), (K, S, B, D, M)
    h = field.columns(h0.reshape((1,) * (len(batch) + 1 - h0.dim()) + h0.shape), batch).contiguous()  # (B, H, M)
    weights, biases = field.weights, field.biases
    if path is None:
        from .solve import ODESolver

        options = ODESolver(method=method, substeps=substeps, compile=compile, backend="fixed", step_check=False)
        path = select(options, R, times_grad=dt.requires_grad, tracing=torch.jit.is_tracing())
    if path not in GRID_PATHS:
        raise ValueError(f"solve_node_fixed: path must be one of {GRID_PATHS}, got {path!r}")
    check = None
    if path == "discrete_adjoint":  # the hand-written solve: few ops, and with a gradient no autograd tape
        tape = torch.is_grad_enabled() and any(v is not None and v.requires_grad
                                                for v in (h, xs, field.w_in, field.b_in, *weights, *biases))
        stream = _streamed(field, *times.shape)
        if step_check and len(t) > 1 and not torch.jit.is_tracing():  # for the compiled solve to run in its call
            _, reuse, dts, widths, xs_check = _check_tables(field, interp, t, dt, method, substeps, batch)
            check = rk_fused.StepCheck(reuse, widths, xs_check, substeps)
        steps = (rk_solve if tape else rk_steps)(h, xs, field.w_in, field.b_in, dt, weights, biases, a, b, stream,
                                                 check)
    else:
        u, wx, bx = _input_term(field, xs, *times.shape)
        steps = _solve_chunks(h, u, dt, field, wx, bx, R, method, substeps, compile if path == "compiled" else False,
                              chunk)
    if step_check and not torch.jit.is_tracing():
        if check is not None and check.k is not None:  # run by the compiled solve (k < 0: a state not finite)
            if check.k >= 0:
                warn_if_unstable(check.err, method, dts[check.k, 0], t[check.k])
        else:
            with torch.no_grad():
                _check_step(R, field, interp, batch, steps.detach(), dt, t, method, substeps)
    return (steps[::substeps] if substeps > 1 else steps).transpose(-1, -2).reshape(out_shape)


def _solve_chunks(h, u, dt, field, wx, bx, R, method, substeps, compile, chunk):
    """The step loop under autograd, in chunks of ``chunk`` steps, compiled per the ``compile`` policy: the states
    after every step, ``(K + 1, B, H, M)``."""
    tab = _tableau_of(method)
    a, b = tab.a, tab.b
    K = dt.shape[0]
    coef = dt[:, None] * _tableau(method, dt)
    weights, biases = field.weights, field.biases
    chunk = int(chunk or substeps)
    key = (method, chunk, tuple(h.shape), tuple(w.shape for w in weights), tuple(field.w_in.shape), h.dtype,
           h.device.type, torch.is_grad_enabled())
    compiled = solve_cache.CACHE.runner(key, compile, _chunk, _compile)
    out = [h.unsqueeze(0)]
    for start, u_c, coef_c in zip(range(0, K, chunk), u.split(chunk), coef.split(chunk)):
        stop = start + u_c.shape[0]
        args = (h, u_c, coef_c, weights, biases, wx, bx, R.activation, R.out_activation, a, b)
        fn = compiled if stop - start == chunk else _chunk
        try:
            hs = fn(*args)
        except Exception as e:
            if fn is _chunk:
                raise
            warnings.warn(f"solve_node_fixed: torch.compile failed ({type(e).__name__}: {e}); solving eagerly",
                          RuntimeWarning)
            solve_cache.CACHE.hold_compiled(key, _chunk)
            compiled = _chunk
            hs = _chunk(*args)
        out.append(hs)
        h = hs[-1]
    return torch.cat(out)  # (K + 1, B, H, M)
