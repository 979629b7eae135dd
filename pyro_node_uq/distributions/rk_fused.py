"""The hand-written Runge-Kutta solve of :mod:`~pyro_node_uq.distributions.rk_backprop` as one compiled C++ call
per direction, for CPU tensors.

At small ensembles the cost of the solve is dispatch: the TorchScript loops make a few torch calls per stage, each
paying the dispatcher whatever its size.  ``rk_fused.cpp`` runs the same forward solve and the same discrete
adjoint (the exact gradient of the computed solution) as plain loops over contiguous buffers, member by member of
the batch (each member's weights and buffers stay in cache), with the weight gradients gathered as per-column
partial sums so that every inner loop is elementwise over the trajectories and the compiler vectorises it.
``tanh`` is the vectorised one ATen itself uses (SLEEF's, exported by ``libtorch_cpu``) where it is available.
Values and gradients equal the TorchScript path's to rounding.

The source includes no torch header: it is built by :func:`torch.utils.cpp_extension.load` at first use (a few
seconds) into a per-machine cache, ``$TORCH_EXTENSIONS_DIR`` or ``~/.cache/pyro_node_uq/extensions`` (one
directory per source, compiler flags, torch version and CPU, so the build is paid once per machine), and called
through :mod:`ctypes` with the tensors' data pointers.  Where no compiler is present or the build fails, one
warning is given and the TorchScript path runs.  Set :data:`USE_EXTENSION` to ``False``, or the environment
variable ``PYRO_NODE_UQ_EXTENSION=0``, to skip the build and always run the TorchScript path.

Layouts and arguments are those of :func:`~pyro_node_uq.distributions.rk_backprop.rk_solve`, which calls
:func:`fused_solve` when :func:`usable` says so.
"""
import ctypes
import functools
import glob
import hashlib
import os
import platform
import shutil
import sys
import threading
import time
import warnings

import torch

__all__ = ["STALE_LOCK_S", "USE_EXTENSION", "StepCheck", "build_directory", "clear_stale_lock", "fused_solve",
           "fused_steps", "library", "usable"]

#: use the compiled solve for CPU tensors (built at first use)
USE_EXTENSION = os.environ.get("PYRO_NODE_UQ_EXTENSION", "1") != "0"

_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "rk_fused.cpp")
_LOADED = {}  # "lib": the loaded library, or None after a failed build (not tried again in this process)
_LOCK = threading.Lock()
_P = ctypes.c_void_p
_I64 = ctypes.c_int64
_F64 = ctypes.c_double
#: age in seconds past which a build directory's ``lock`` file is taken as left by a killed build (one takes seconds)
STALE_LOCK_S = 600


def build_directory():
    """The root of the per-machine build cache: ``$TORCH_EXTENSIONS_DIR`` when set, else
    ``$XDG_CACHE_HOME/pyro_node_uq/extensions`` (``~/.cache`` by default)."""
    root = os.environ.get("TORCH_EXTENSIONS_DIR")
    if root:
        return root
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "pyro_node_uq", "extensions")


def _cpu():
    """A description of this CPU (model and feature flags), so that a cache shared by machines builds per CPU."""
    try:
        with open("/proc/cpuinfo") as f:
            lines = [line for line in f if line.startswith(("model name", "flags", "Features"))]
        return "".join(dict.fromkeys(lines))
    except OSError:
        return platform.processor() or platform.machine()


def _has_sleef():
    """Whether ``libtorch_cpu`` exports the vectorised SLEEF ``tanh`` functions the source can call."""
    libs = glob.glob(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.*"))
    try:
        lib = ctypes.CDLL(libs[0])
        return all(hasattr(lib, f"Sleef_tanh{v}_u35") for v in ("f8", "d4", "f16", "d8"))
    except (IndexError, OSError):
        return False


def clear_stale_lock(directory, max_age=STALE_LOCK_S):
    """Remove the ``lock`` file a build killed mid-way left in ``directory`` (older than ``max_age`` seconds).

    :func:`torch.utils.cpp_extension.load` holds that file while it builds and every other process waits for it to
    go, with no time limit: a build that was killed (a timed-out job, an interrupted test run) would otherwise make
    every later process hang at its first solve.  Returns whether a lock was removed (with a warning)."""
    lock = os.path.join(directory, "lock")
    try:
        age = time.time() - os.path.getmtime(lock)
    except OSError:  # no lock: nothing to do
        return False
    if age <= max_age:
        return False
    try:
        os.remove(lock)
    except OSError:  # another process removed it first
        return False
    warnings.warn(f"rk_fused: removed the lock file {lock}, {age:.0f} s old, that a killed build left behind",
                  RuntimeWarning, stacklevel=2)
    return True


def _build():
    """Build (or find in the cache) and load the library; set its functions' argument types."""
    from torch.utils import cpp_extension

    here = os.path.dirname(sys.executable)  # a virtual environment's ninja (a dependency), not activated
    if shutil.which("ninja") is None and shutil.which("ninja", path=here):
        os.environ["PATH"] = here + os.pathsep + os.environ.get("PATH", "")
    flags = ["-O3", "-Wno-psabi"]
    if platform.machine().lower() in ("x86_64", "amd64"):
        flags.append("-march=native")  # the build directory is per CPU
        if _has_sleef():
            flags.append("-DPYRO_NODE_UQ_SLEEF")
    with open(_SOURCE, "rb") as f:
        key = hashlib.sha256(f.read() + repr((flags, torch.__version__, _cpu())).encode()).hexdigest()[:16]
    name = f"pyro_node_uq_rk_{key}"
    directory = os.path.join(build_directory(), name)
    os.makedirs(directory, exist_ok=True)
    clear_stale_lock(directory)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the compiler-version notices of cpp_extension
        path = cpp_extension.load(name, [_SOURCE], extra_cflags=flags, build_directory=directory,
                                  is_python_module=False, verbose=False)
    lib = ctypes.CDLL(path)
    lib.pnu_rk_forward.restype = lib.pnu_rk_backward.restype = ctypes.c_int
    lib.pnu_rk_forward.argtypes = [ctypes.c_int] + [_P] * 14
    lib.pnu_rk_backward.argtypes = [ctypes.c_int] + [_P] * 17
    lib.pnu_rk_check.restype = ctypes.c_int
    lib.pnu_rk_check.argtypes = [ctypes.c_int] + [_P] * 4 + [_I64] + [_P] * 10
    lib.pnu_node_forward.restype = lib.pnu_node_backward.restype = ctypes.c_int
    lib.pnu_node_forward.argtypes = [ctypes.c_int] + [_P] * 14 + [_I64] + [_P] * 5 + [_I64, _F64] + [_P] * 3
    lib.pnu_node_backward.argtypes = [ctypes.c_int] + [_P] * 5 + [_I64, _I64] + [_P] * 14
    return lib


def library():
    """The compiled library, built at the first call (once per process: a failed build is warned about once and
    not tried again), or ``None`` when :data:`USE_EXTENSION` is off or the build failed."""
    if not USE_EXTENSION:
        return None
    if "lib" not in _LOADED:
        with _LOCK:
            if "lib" not in _LOADED:
                try:
                    _LOADED["lib"] = _build()
                except Exception as e:  # noqa: BLE001 - no compiler, failed build or load: the fallback computes the same
                    _LOADED["lib"] = None
                    warnings.warn(f"rk_fused: the C++ Runge-Kutta solve could not be built ({type(e).__name__}: "
                                  f"{str(e).strip().splitlines()[-1] if str(e).strip() else e}); the TorchScript "
                                  "solve runs instead (slower at small ensembles). Set PYRO_NODE_UQ_EXTENSION=0 to "
                                  "skip the build.", RuntimeWarning)
    return _LOADED["lib"]


def usable(h, *tensors):
    """Whether the compiled solve takes these tensors: all on the CPU, float32 or float64 (one dtype), and the
    library available (built here at the first call)."""
    if not USE_EXTENSION or h.device.type != "cpu" or h.dtype not in (torch.float32, torch.float64):
        return False
    if any(t is not None and (t.device != h.device or t.dtype != h.dtype) for t in tensors):
        return False
    return library() is not None


@functools.lru_cache(maxsize=32)
def _tableau(a, b):
    """The Butcher matrix padded to ``(S, S)`` and the weights, as C arrays (made once per method)."""
    S = len(b)
    flat = [float(row[j]) if j < len(row) else 0.0 for row in a for j in range(S)]
    return (_F64 * (S * S))(*flat), (_F64 * S)(*map(float, b))


@functools.lru_cache(maxsize=64)
def _shape_arrays(dims, sizes):
    """The C arrays of a solve's dimensions and layer widths (made once per shape; the library only reads them)."""
    return (_I64 * len(dims))(*dims), (_I64 * len(sizes))(*sizes)


def _checked(status):
    if status != 0:
        raise RuntimeError("rk_fused: the compiled solve was called with an unsupported block width")


def _ptrs(tensors):
    return (_P * max(len(tensors), 1))(*[t.data_ptr() for t in tensors])


class StepCheck:
    """The step-doubling check of :mod:`~pyro_node_uq.distributions.fixed_grid`, for the compiled solve to run
    right after its forward pass, in the same call's buffers: from the observation time ``k`` (every
    ``substeps``-th state, not the last) where the states are largest, one step of the widest width against two
    half steps.  After the solve, ``err`` is their relative difference and ``k`` the time (``k = -1``: a state
    is not finite, nothing checked; both ``None``: the compiled solve did not run).

    :param torch.Tensor reuse: bool ``(T - 1,)``: the solve's own step from time ``k`` is that one step.
    :param torch.Tensor widths: float64 ``(T - 1, 3)``: the widths of the one step and of the two halves.
    :param torch.Tensor xs: their stage inputs ``(T - 1, 3, S, B, D, M)`` (the solve's dtype), or ``None``.
    :param int substeps: solver steps per observation interval.
    """

    def __init__(self, reuse, widths, xs, substeps):
        self.reuse, self.widths, self.xs, self.substeps = reuse, widths, xs, substeps
        self.err = self.k = None


class _Spec:
    """The shapes, step widths and tableau of one solve as the C arrays the library takes, and the contiguous
    tensors it reads."""

    def __init__(self, h, x, w_in, b_in, dt, weights, biases, a, b):
        B, H, M = h.shape
        K, S, L = dt.shape[0], len(b), len(weights) - 1
        D = x.shape[-2] if x is not None else 0
        if x is not None and x.shape != (K, S, B, D, M):
            raise ValueError(f"rk_fused: x: expected the inputs at every stage, {(K, S, B, D, M)}, got "
                             f"{tuple(x.shape)}")
        V = min(16 if h.dtype == torch.float32 else 8, 1 << (M - 1).bit_length())  # columns per block
        self.shape, self.saved = (B, H, M, K, S, L), B * -(-M // V) * K * S * V  # saved elements per row
        self.dims, self.sizes = _shape_arrays((B, H, M, D, K, S, L, V, H, D, 0), (H, *(w.shape[-2] for w in weights)))
        self.dts = (_F64 * K)(*dt.tolist())
        self.a, self.b = _tableau(tuple(map(tuple, a)), tuple(b))
        self.double = int(h.dtype == torch.float64)
        self.h, self.x = h.contiguous(), x.contiguous() if x is not None else None
        self.w_in, self.b_in = w_in.contiguous(), b_in.contiguous()
        self.weights = [w.contiguous() for w in weights]
        self.biases = [v.contiguous() for v in biases]
        self.pw, self.pb = _ptrs(self.weights), _ptrs(self.biases)

    def forward(self, save):
        """States ``(K + 1, B, H, M)``, and with ``save`` the stage inputs and hidden activations."""
        B, H, M, K, _, L = self.shape
        h = self.h
        states = h.new_empty(K + 1, B, H, M)
        Y = h.new_empty(self.saved * H) if save else None  # (B, blocks, K, S, H, V)
        acts = [h.new_empty(self.saved * w.shape[-2]) for w in self.weights[:L]] if save else []
        _checked(library().pnu_rk_forward(
            self.double, self.dims, self.sizes, self.dts, self.a, self.b, h.data_ptr(),
            self.x.data_ptr() if self.x is not None else None, self.w_in.data_ptr(), self.b_in.data_ptr(),
            self.pw, self.pb, states.data_ptr(), Y.data_ptr() if save else None, _ptrs(acts)))
        return states, Y, acts

    def check(self, states, check):
        """Run :class:`StepCheck` ``check`` on the solved ``states``, filling in its ``err`` and ``k``."""
        out = (_F64 * 2)()
        scratch = self.h.new_empty(5 * self.h.numel())
        _checked(library().pnu_rk_check(
            self.double, self.dims, self.sizes, self.a, self.b, check.substeps, check.reuse.data_ptr(),
            check.widths.data_ptr(), states.data_ptr(), check.xs.data_ptr() if check.xs is not None else None,
            self.w_in.data_ptr(), self.b_in.data_ptr(), self.pw, self.pb, scratch.data_ptr(),
            out))
        check.err, check.k = out[0], int(out[1])

    def backward(self, g_states, Y, acts, grad_x):
        """``(grad_h, grad_x, grad_w_in, grad_b_in, grads_w, grads_b)`` from the gradients of every state."""
        gs = g_states.contiguous()
        grad_h = torch.empty_like(self.h)
        grad_w_in, grad_b_in = torch.empty_like(self.w_in), torch.empty_like(self.b_in)
        grads_w, grads_b = [torch.empty_like(w) for w in self.weights], [torch.empty_like(v) for v in self.biases]
        gx = torch.empty_like(self.x) if grad_x and self.x is not None else None
        _checked(library().pnu_rk_backward(
            self.double, self.dims, self.sizes, self.dts, self.a, self.b, gs.data_ptr(),
            self.x.data_ptr() if self.x is not None else None, self.w_in.data_ptr(), self.pw,
            Y.data_ptr(), _ptrs(acts), grad_h.data_ptr(), grad_w_in.data_ptr(), grad_b_in.data_ptr(), _ptrs(grads_w),
            _ptrs(grads_b), gx.data_ptr() if gx is not None else None))
        return grad_h, gx, grad_w_in if self.x is not None else None, grad_b_in, grads_w, grads_b


class _FusedSolve(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, x, w_in, b_in, dt, a, b, stream, check, *wb):
        n = len(wb) // 2 + 1
        spec = _Spec(h, x, w_in, b_in, dt, wb[:n], wb[n:], a, b)
        states, ctx.Y, ctx.acts = spec.forward(save=True)
        if check is not None:
            spec.check(states, check)
        ctx.spec = spec
        return states

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_states):
        grad_h, grad_x, grad_w_in, grad_b_in, grads_w, grads_b = ctx.spec.backward(
            g_states, ctx.Y, ctx.acts, ctx.needs_input_grad[1])
        return (grad_h, grad_x, grad_w_in, grad_b_in, None, None, None, None, None, *grads_w, *grads_b)


def fused_solve(h, x, w_in, b_in, dt, weights, biases, a, b, stream=False, check=None):
    """:func:`~pyro_node_uq.distributions.rk_backprop.rk_solve` by the compiled library (same arguments; ``stream``
    is ignored: the input term is always formed stage by stage), then the :class:`StepCheck` ``check`` when given.
    Check :func:`usable` first.

    Example::

        >>> h, w_in, b_in = torch.zeros(1, 2, 3), torch.zeros(1, 4, 0), torch.zeros(1, 4, 1)
        >>> weights, biases = [torch.ones(1, 4, 2), torch.ones(1, 2, 4)], [torch.ones(1, 2, 1)]
        >>> if usable(h):
        ...     states = fused_solve(h, None, w_in, b_in, torch.full((5,), 0.1), weights, biases, [[]], [1.0])
        ...     assert states.shape == (6, 1, 2, 3)
    """
    return _FusedSolve.apply(h, x, w_in, b_in, dt, a, b, stream, check, *weights, *biases)


def fused_steps(h, x, w_in, b_in, dt, weights, biases, a, b, stream=False, check=None):
    """The same solve without a gradient (arguments as :func:`fused_solve`)."""
    with torch.no_grad():
        spec = _Spec(h, x, w_in, b_in, dt, weights, biases, a, b)
        states = spec.forward(save=False)[0]
        if check is not None:
            spec.check(states, check)
        return states
