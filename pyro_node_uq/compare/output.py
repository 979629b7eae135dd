"""A job owns its output folder: a lock, a private staging folder, one atomic swap at the end.

A run writes everything into a fresh hidden sibling ``.<out>.tmp-<pid>-...`` of the output folder; when it ends
(finished, or stopped by SIGINT) the staging folder gets a ``MANIFEST.json`` (file list, checksums, whether the
run is complete, each method's status) and replaces the output folder in one step (Linux ``renameat2`` with
``RENAME_EXCHANGE``; elsewhere two renames), so the folder always holds exactly one run's files: never a new
table beside an old report, never an old figure or netCDF of a method that failed this time.  A second run into
the same folder while one is running is refused (an ``flock`` on ``.<out>.lock`` beside it, released by the
kernel if the process dies).

Ownership: only a folder that is absent, empty, or an earlier output of the same kind holding exactly the files
its manifest lists (unchanged: same checksums) is replaced.  Anything else (a user's folder, a file added to or
edited in an earlier output) makes the run refuse before it starts, and of the replaced folder only the files
its manifest lists are deleted: a file that appears there during the run is kept.
"""
import contextlib
import ctypes
import errno
import os
import shutil
import tempfile
import time
import warnings

from ..utils.persist import (
    _UMASK,
    MANIFEST,
    SaveBusy,
    SaveError,
    clean_orphans,
    locked,
    read_manifest,
    verify_files,
    write_manifest,
)

__all__ = ["OUTPUT_ENTRIES", "OutputFolder", "OutputFolderBusy", "hold_on_rank_0"]

#: the sub-folders a comparison writes (they may be empty in its output)
OUTPUT_ENTRIES = {"table.csv", "table.md", "report.md", "idata", "figures", "logs", MANIFEST}
_FOLDERS = {"comparison": ("idata", "figures", "logs")}


class OutputFolderBusy(SaveBusy):
    """Another job is writing into the same output folder."""


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


def _tree(root):
    """Files (relative paths, symlinks included) and directories under ``root``."""
    files, dirs = [], []
    for top, subdirs, names in os.walk(root):
        rel = os.path.relpath(top, root)
        for d in list(subdirs):
            path = os.path.join(top, d)
            if os.path.islink(path):  # not followed: a link is an entry the job did not write
                files.append(os.path.normpath(os.path.join(rel, d)))
                subdirs.remove(d)
            else:
                dirs.append(os.path.normpath(os.path.join(rel, d)))
        files += [os.path.normpath(os.path.join(rel, n)) for n in names]
    return files, dirs


class OutputFolder:
    """Context manager: lock ``out``, give a staging folder, and :meth:`publish` it over ``out`` in one step.

    Leaving the block without :meth:`publish` (an error, a second Ctrl-C) removes the staging folder and leaves
    ``out`` as it was.

    :param str out: the output folder (created on publish if missing).
    :param str kind: what the job is (``"comparison"``, ``"fit"``); recorded in the manifest, and only an output
        of the same kind is replaced.

    Example::

        >>> import os, tempfile
        >>> out = os.path.join(tempfile.mkdtemp(), "results")
        >>> with OutputFolder(out) as folder:
        ...     _ = open(os.path.join(folder.stage, "report.md"), "w").write("# run")
        ...     _ = folder.publish(complete=True, methods={})
        >>> sorted(os.listdir(out))
        ['MANIFEST.json', 'report.md']
    """

    def __init__(self, out, kind="comparison"):
        self.out = os.path.abspath(os.fspath(out))
        self.parent, self.name = os.path.split(self.out)
        self.kind = kind
        self.stage = None
        self._lock = None

    # ------------------------------------------------------------------ checks and lock
    def check(self):
        """Raise ``ValueError`` (naming the entries) unless ``out`` may be replaced: absent, empty, or an output of
        this kind holding exactly the unchanged files its manifest lists.  Reads only; writes nothing."""
        if not os.path.lexists(self.out):
            return
        if os.path.islink(self.out) or not os.path.isdir(self.out):
            raise ValueError(f"out: {self.out!r} exists and is not a folder (a file or a symlink); choose another "
                             "output folder")
        files, dirs = _tree(self.out)
        if not files and not dirs:
            return
        hint = "choose an empty or new folder, or move those files away"
        if MANIFEST not in files:
            raise ValueError(f"out: {self.out!r} is not a {self.kind}'s output (no {MANIFEST}); it holds "
                             f"{sorted(files + dirs)[:5]}, which it would replace: {hint}")
        try:
            manifest = read_manifest(self.out, self.kind)
            verify_files(self.out, manifest, MANIFEST)
        except SaveError as e:
            raise ValueError(f"out: {self.out!r} is not a {self.kind}'s output as it was written: {e}; {hint}") \
                from None
        listed = set(manifest["files"]) | {MANIFEST}
        needed = {os.path.dirname(f) for f in listed} | set(_FOLDERS.get(self.kind, ()))
        needed |= {p for d in list(needed) for p in _parents(d)}
        foreign = sorted(set(files) - listed) + sorted(set(dirs) - needed)
        if foreign:
            raise ValueError(f"out: {self.out!r} is not a {self.kind}'s output: besides the files its {MANIFEST} "
                             f"lists it holds {foreign[:5]}, which the {self.kind} did not write; {hint}")

    def __enter__(self):
        self.check()
        os.makedirs(self.parent, exist_ok=True)
        stack = contextlib.ExitStack()
        stack.enter_context(locked(os.path.join(self.parent, f".{self.name}.lock"), self.out, error=self._busy))
        try:
            clean_orphans(self.parent, f".{self.name}.tmp-")  # staging folders of runs that were killed
            self.stage = tempfile.mkdtemp(prefix=f".{self.name}.tmp-{os.getpid()}-", dir=self.parent)
            os.chmod(self.stage, 0o777 & ~_UMASK)  # mkdtemp's 0700 would become the output folder's mode
        except BaseException:
            stack.close()
            raise
        self._lock = stack
        return self

    def _busy(self, holder):
        return OutputFolderBusy(f"out: another {self.kind}{f' (pid {holder})' if holder else ''} is writing into "
                                f"{self.out!r}; wait for it to finish or choose another --out")

    def __exit__(self, *exc):
        try:
            if self.stage is not None and os.path.lexists(self.stage):
                shutil.rmtree(self.stage, ignore_errors=True)
        finally:
            if self._lock is not None:
                self._lock.close()
                self._lock = None
        return False

    # ------------------------------------------------------------------ publish
    def publish(self, complete=True, **extra):
        """Write the manifest into the staging folder and swap it in as ``out``.

        The replaced folder's files are deleted only where its manifest lists them and they are unchanged;
        anything else found there (written during the run by someone else) is kept in a visible sibling folder
        ``<out>.kept-<time>`` and a warning names it.

        :param bool complete: whether every requested step was done (``False`` after SIGINT).
        :param extra: more manifest fields, e.g. ``methods``: method name -> status (``ok``, ``failed``,
            ``skipped``).
        """
        files = [f for f in _tree(self.stage)[0] if f != MANIFEST]
        write_manifest(self.stage, self.kind, sorted(files), complete=bool(complete), **extra)
        self.check()
        if not os.path.lexists(self.out):
            os.rename(self.stage, self.out)
        elif _exchange(self.stage, self.out):
            self._discard(self.stage)  # the old output now sits at self.stage
        else:
            old = tempfile.mkdtemp(prefix=f".{self.name}.tmp-{os.getpid()}-", dir=self.parent)
            os.rename(self.out, os.path.join(old, "old"))
            os.rename(self.stage, self.out)
            self._discard(os.path.join(old, "old"))
            with contextlib.suppress(OSError):
                os.rmdir(old)
        return self.out

    def _discard(self, old):
        """Delete a replaced output: the unchanged files its manifest lists, then its empty folders."""
        try:
            manifest = read_manifest(old, self.kind)
        except SaveError:
            manifest = {"files": {}}
        for name, entry in manifest["files"].items():
            path = os.path.join(old, name)
            with contextlib.suppress(SaveError, OSError):
                verify_files(old, {"files": {name: entry}}, MANIFEST)
                os.remove(path)
        with contextlib.suppress(OSError):
            os.remove(os.path.join(old, MANIFEST))
        for top, _, _ in sorted(os.walk(old), key=lambda item: -len(item[0])):
            with contextlib.suppress(OSError):
                os.rmdir(top)
        if os.path.lexists(old):
            kept = f"{self.out}.kept-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
            os.rename(old, kept)
            warnings.warn(f"out: files that appeared in {self.out!r} during the run were not the {self.kind}'s to "
                          f"delete; they are kept in {kept!r}", RuntimeWarning, stacklevel=3)


def _parents(path):
    while path:
        path = os.path.dirname(path)
        if path:
            yield path


def hold_on_rank_0(stack, out, kind="comparison"):
    """Rank 0's :class:`OutputFolder` for ``out``, entered on ``stack`` (a :class:`contextlib.ExitStack`);
    ``None`` on the other ranks under ``torchrun``, which keep no outputs.  When rank 0 cannot take the folder,
    every rank raises its error (``ValueError`` or :class:`~pyro_node_uq.utils.persist.SaveBusy`), so that none
    starts work the others will not join.  Every rank must call it (a collective under a process group)."""
    from ..infer.distributed import broadcast_object, is_main_process

    folder = error = None
    if is_main_process():
        try:
            folder = stack.enter_context(OutputFolder(out, kind=kind))
        except (ValueError, SaveBusy) as e:
            error = e
    error = broadcast_object(error)
    if error is not None:
        raise error
    return folder
