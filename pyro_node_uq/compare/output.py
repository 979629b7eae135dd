"""The comparison job owns its output folder: a lock, a private staging folder, one atomic swap at the end.

A run writes everything into a fresh hidden sibling ``.<out>.tmp-<pid>-...`` of the output folder; when it ends
(finished, or stopped by SIGINT) the staging folder gets a ``MANIFEST.json`` (file list, checksums, whether the
run is complete, each method's status) and replaces the output folder in one step (Linux ``renameat2`` with
``RENAME_EXCHANGE``; elsewhere two renames), so the folder always holds exactly one run's files: never a new
table beside an old report, never an old figure or netCDF of a method that failed this time.  A second run into
the same folder while one is running is refused (an ``flock`` on ``.<out>.lock`` beside it, released by the
kernel if the process dies).  A folder that holds anything other than a comparison's output is never replaced.
"""
import contextlib
import ctypes
import errno
import fcntl
import os
import shutil
import tempfile

from ..utils.persist import MANIFEST, clean_orphans, read_manifest, write_manifest

__all__ = ["OutputFolder", "OutputFolderBusy", "OUTPUT_ENTRIES"]

#: what a comparison writes at the top of its folder (a folder of these, or empty, may be replaced)
OUTPUT_ENTRIES = {"table.csv", "table.md", "report.md", "idata", "figures", "logs", MANIFEST}


class OutputFolderBusy(RuntimeError):
    """Another comparison is writing into the same output folder."""


def _exchange(a, b):
    """Atomically swap two paths (Linux ``renameat2(RENAME_EXCHANGE)``); ``False`` where unsupported."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EPERM, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), a)


class OutputFolder:
    """Context manager: lock ``out``, give a staging folder, and :meth:`publish` it over ``out`` in one step.

    Leaving the block without :meth:`publish` (an error, a second Ctrl-C) removes the staging folder and leaves
    ``out`` as it was.

    :param str out: the output folder (created on publish if missing).

    Example::

        >>> import os, tempfile
        >>> out = os.path.join(tempfile.mkdtemp(), "results")
        >>> with OutputFolder(out) as folder:
        ...     _ = open(os.path.join(folder.stage, "report.md"), "w").write("# run")
        ...     _ = folder.publish(complete=True, methods={})
        >>> sorted(os.listdir(out))
        ['MANIFEST.json', 'report.md']
    """

    def __init__(self, out):
        self.out = os.path.abspath(os.fspath(out))
        self.parent, self.name = os.path.split(self.out)
        self.stage = None
        self._lock_fd = None

    # ------------------------------------------------------------------ checks and lock
    def _check_replaceable(self):
        if not os.path.lexists(self.out):
            return
        if os.path.islink(self.out) or not os.path.isdir(self.out):
            raise ValueError(f"out: {self.out!r} exists and is not a folder (a file or a symlink); choose another "
                             "output folder")
        names = set(os.listdir(self.out))
        if MANIFEST in names:
            read_manifest(self.out, "comparison")  # raises if it is some other save
            return
        foreign = sorted(names - OUTPUT_ENTRIES)
        if foreign:
            raise ValueError(f"out: {self.out!r} holds files that are not a comparison's output ({foreign[:5]}); "
                             "the comparison replaces its output folder as a whole, so choose an empty or new folder")

    def __enter__(self):
        os.makedirs(self.parent, exist_ok=True)
        self._check_replaceable()
        lock = os.path.join(self.parent, f".{self.name}.lock")
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            raise OutputFolderBusy(f"out: another comparison{f' (pid {holder})' if holder else ''} is writing into "
                                   f"{self.out!r}; wait for it to finish or choose another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd
        try:
            clean_orphans(self.parent, f".{self.name}.tmp-")  # staging folders of runs that were killed
            self.stage = tempfile.mkdtemp(prefix=f".{self.name}.tmp-{os.getpid()}-", dir=self.parent)
        except BaseException:
            self._unlock()
            raise
        return self

    def _unlock(self):
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def __exit__(self, *exc):
        try:
            if self.stage is not None and os.path.lexists(self.stage):
                shutil.rmtree(self.stage, ignore_errors=True)
        finally:
            self._unlock()
        return False

    # ------------------------------------------------------------------ publish
    def publish(self, complete, methods):
        """Write the manifest into the staging folder and swap it in as ``out``.

        :param bool complete: whether every requested method was attempted (``False`` after SIGINT).
        :param dict methods: method name -> status (``ok``, ``failed``, ``skipped``).
        """
        files = []
        for root, _, names in os.walk(self.stage):
            files += [os.path.relpath(os.path.join(root, n), self.stage) for n in names if n != MANIFEST]
        write_manifest(self.stage, "comparison", sorted(files), complete=bool(complete), methods=methods)
        self._check_replaceable()
        if not os.path.lexists(self.out):
            os.rename(self.stage, self.out)
        elif _exchange(self.stage, self.out):
            pass  # the old output now sits at self.stage and is removed on exit
        else:
            old = tempfile.mkdtemp(prefix=f".{self.name}.tmp-{os.getpid()}-", dir=self.parent)
            os.rename(self.out, os.path.join(old, "old"))
            os.rename(self.stage, self.out)
            with contextlib.suppress(OSError):
                os.rename(old, self.stage)
        return self.out
