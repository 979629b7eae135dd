"""Crash-safe saves: one file replaced atomically, a multi-file save published as one unit with a manifest.

Every temporary is created exclusively with :func:`tempfile.mkstemp` / :func:`tempfile.mkdtemp` inside the
target folder (a random name, ``O_EXCL``: a planted file or symlink is never written through), and carries the
writer's process id, so temporaries left by a process that died (``kill -9``, a power cut) are recognised and
removed by the next save into the same place.

A unit (:func:`save_unit`) is written into a fresh hidden folder, verified, and committed by atomically replacing
``MANIFEST.json`` (format version, file list, SHA-256 checksums) that points at it; :func:`load_unit` verifies the
manifest and every checksum and names the file and what is wrong.  A save that fails or is killed at any write
leaves the previous save loadable and unchanged.
"""
import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import tempfile
import time

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST",
    "SaveBusy",
    "SaveError",
    "atomic_save",
    "clean_orphans",
    "file_digest",
    "load_unit",
    "lock_path",
    "locked",
    "pid_alive",
    "read_manifest",
    "save_unit",
    "unit_lock",
    "verify_files",
    "write_manifest",
]

MANIFEST = "MANIFEST.json"
#: seconds a save or load waits for another process's save into the same folder
LOCK_WAIT = 60.0
FORMAT_VERSION = 1
_UMASK = os.umask(0o022)
os.umask(_UMASK)


class SaveError(ValueError):
    """A save on disk is missing, incomplete, corrupt or of another kind; the message names the file."""


class SaveBusy(RuntimeError):
    """Another process holds the lock of a save (it is writing into the same place)."""


@contextlib.contextmanager
def locked(path, what, shared=False, timeout=0.0, error=None):
    """Hold an ``flock`` on the lock file ``path`` (created) for the block; released by the kernel if the process
    dies, so a killed writer never leaves a stale lock.

    The exclusive holder writes its process id into the file.  Without the lock after ``timeout`` seconds (0: at
    once) raise :class:`SaveBusy` naming ``what`` and the holder's pid.  A lock file that cannot be created (a
    read-only folder) gives no lock: nobody can write there either.

    :param path: the lock file.
    :param str what: what is locked, for the message (e.g. ``"the LTAU save 'dir'"``).
    :param bool shared: a shared (reader) lock instead of an exclusive (writer) one.
    :param float timeout: seconds to wait for the lock.
    :param error: ``error(holder_pid_text) -> exception`` raised instead of the default :class:`SaveBusy`.
    """
    fd = None
    try:
        fd = os.open(os.fspath(path), os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except FileNotFoundError:
        raise
    except OSError:  # read-only folder or file system
        pass
    if fd is None:
        yield None
        return
    try:
        deadline = time.monotonic() + float(timeout)
        while True:
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
                    if error is not None:
                        raise error(holder) from None
                    raise SaveBusy(f"{what} is in use by another process{f' (pid {holder})' if holder else ''}; "
                                   "wait for it to finish") from None
                time.sleep(0.05)
        if not shared:
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield fd
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def pid_alive(pid):
    """Whether a process with id ``pid`` exists (a temporary of a live writer is never removed)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner_pid(name, prefix):
    """The pid encoded in a temporary's name ``<prefix><pid>-<random>``, or ``None``."""
    rest = name[len(prefix):] if name.startswith(prefix) else ""
    pid = rest.split("-", 1)[0]
    return int(pid) if pid.isdigit() else None


def _remove(path):
    if os.path.islink(path) or not os.path.isdir(path):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
    else:
        shutil.rmtree(path, ignore_errors=True)


def clean_orphans(directory, prefix):
    """Remove entries of ``directory`` named ``<prefix><pid>-...`` whose writer process is gone.

    :returns: the removed names.
    """
    removed = []
    try:
        names = os.listdir(directory or ".")
    except FileNotFoundError:
        return removed
    for name in names:
        pid = _owner_pid(name, prefix)
        if pid is not None and not pid_alive(pid):
            _remove(os.path.join(directory or ".", name))
            removed.append(name)
    return removed


def _fsync_dir(directory):
    with contextlib.suppress(OSError):
        fd = os.open(directory or ".", os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_file(path):
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_save(path, write):
    """Write a file with ``write(tmp_path)`` into a fresh temporary in the same folder, then rename it over ``path``.

    The temporary is created exclusively (never an existing file or symlink); a symlink at ``path`` itself is
    replaced, not followed.  If ``write`` fails (or the process dies) an existing file at ``path`` is unchanged and
    the temporary is removed (by this call, or by the next save to ``path`` after a crash).

    :param path: the destination file.
    :param write: ``write(tmp_path)`` writes the whole content to ``tmp_path``.

    Example::

        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "a.txt")
        >>> atomic_save(path, lambda tmp: open(tmp, "w").write("hello"))
        >>> open(path).read(), os.listdir(os.path.dirname(path))
        ('hello', ['a.txt'])
    """
    path = os.fspath(path)
    directory, base = os.path.dirname(path), os.path.basename(path)
    prefix = f".{base}.tmp-"
    clean_orphans(directory, prefix)
    fd, tmp = tempfile.mkstemp(prefix=f"{prefix}{os.getpid()}-", dir=directory or ".")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    _fsync_dir(directory)


def file_digest(path):
    """SHA-256 hex digest and size of a file."""
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
            size += len(block)
    return h.hexdigest(), size


def write_manifest(directory, kind, files, **extra):
    """Write ``MANIFEST.json`` of the files ``files`` (names relative to ``directory``) atomically.

    :param str kind: what the save is (``"ltau"``, ``"comparison"``...); :func:`read_manifest` checks it.
    :param files: file names relative to ``directory``.
    :param extra: more JSON fields (e.g. ``complete``, ``data``).
    """
    entries = {}
    for name in files:
        digest, size = file_digest(os.path.join(directory, name))
        entries[name] = {"sha256": digest, "bytes": size}
    manifest = {"format": "pyro-node-uq", "kind": kind, "version": FORMAT_VERSION,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **extra, "files": entries}
    text = json.dumps(manifest, indent=1, sort_keys=True)
    atomic_save(os.path.join(directory, MANIFEST), lambda tmp: _write_text(tmp, text))
    return manifest


def _write_text(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def read_manifest(directory, kind):
    """Read and check ``directory/MANIFEST.json``; raise :class:`SaveError` naming the file on any problem."""
    path = os.path.join(os.fspath(directory), MANIFEST)
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except FileNotFoundError:
        raise SaveError(f"{path}: no manifest; {os.fspath(directory)!r} is not a {kind} save") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise SaveError(f"{path}: the manifest is not valid JSON ({e}); the save is corrupt") from None
    if not isinstance(manifest, dict) or manifest.get("format") != "pyro-node-uq" \
            or not isinstance(manifest.get("files"), dict):
        raise SaveError(f"{path}: not a pyro-node-uq manifest")
    if manifest.get("kind") != kind:
        raise SaveError(f"{path}: a {manifest.get('kind')!r} save, expected a {kind!r} save")
    if not isinstance(manifest.get("version"), int) or manifest["version"] > FORMAT_VERSION:
        raise SaveError(f"{path}: format version {manifest.get('version')!r}; this version of pyro-node-uq reads "
                        f"versions up to {FORMAT_VERSION} (upgrade pyro-node-uq)")
    return manifest


def verify_files(root, manifest, where):
    """Check every file of ``manifest`` under ``root`` against its size and checksum."""
    for name, entry in manifest["files"].items():
        path = os.path.join(root, name)
        if not os.path.isfile(path):
            raise SaveError(f"{path}: listed in {where} but missing; the save is incomplete")
        digest, size = file_digest(path)
        if size != entry.get("bytes") or digest != entry.get("sha256"):
            raise SaveError(f"{path}: checksum mismatch with {where} ({size} bytes, expected {entry.get('bytes')}); "
                            "the file was changed or truncated after the save")


def save_unit(directory, files, kind):
    """Save several files as one unit into ``directory``: all of the new ones, or (on any failure) the old ones.

    The files go into a fresh hidden folder ``directory/.tmp-<pid>-...``, which is renamed to ``data-<random>``
    and committed by atomically replacing ``MANIFEST.json``; the previous data folder is removed afterwards.

    :param directory: the save's folder (created).
    :param dict files: file name -> ``write(path)``.
    :param str kind: the kind recorded in the manifest.
    """
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    with unit_lock(directory, kind):
        _save_unit(directory, files, kind)


def unit_lock(directory, kind, shared=False):
    """The lock of a unit's folder: exclusive while :func:`save_unit` writes, shared while a reader reads, so a
    reader never sees a data folder vanish under it and two writers take turns (each waits up to
    :data:`LOCK_WAIT` seconds, then :class:`SaveBusy`)."""
    return locked(lock_path(directory), f"the {kind} save {os.fspath(directory)!r}", shared=shared,
                  timeout=LOCK_WAIT)


def lock_path(path):
    """The lock file of ``path`` (a save's folder, a checkpoint): in a per-user folder of the temporary directory
    named after ``path``'s real location, so the user's folder gets no lock file and a killed process leaves
    nothing in it (the processes that take turns are those of one machine)."""
    key = hashlib.sha256(os.path.realpath(os.fspath(path)).encode()).hexdigest()[:24]
    folder = os.path.join(tempfile.gettempdir(), f"pyro-node-uq-locks-{os.getuid()}")
    with contextlib.suppress(OSError):
        os.makedirs(folder, mode=0o700, exist_ok=True)
    return os.path.join(folder, f"{key}.lock")


def _save_unit(directory, files, kind):
    clean_orphans(directory, ".tmp-")
    stage = tempfile.mkdtemp(prefix=f".tmp-{os.getpid()}-", dir=directory)
    try:
        for name, write in files.items():
            write(os.path.join(stage, name))
            _fsync_file(os.path.join(stage, name))
        data = f"data-{secrets.token_hex(6)}"
        os.rename(stage, os.path.join(directory, data))
    except BaseException:
        _remove(stage)
        raise
    try:
        write_manifest(directory, kind, [f"{data}/{name}" for name in files], data=data)
    except BaseException:
        _remove(os.path.join(directory, data))
        raise
    for name in os.listdir(directory):  # superseded data folders (and ones a crash left before the commit)
        if name.startswith("data-") and name != data:
            _remove(os.path.join(directory, name))
    _fsync_dir(directory)


def load_unit(directory, kind):
    """Paths ``name -> path`` of a unit written by :func:`save_unit`, after checking manifest and checksums."""
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"directory: {directory!r} does not exist or is not a folder (no {kind} save)")
    manifest = read_manifest(directory, kind)
    verify_files(directory, manifest, os.path.join(directory, MANIFEST))
    data = manifest.get("data", "")
    return {name.split("/", 1)[1] if name.startswith(data + "/") else name: os.path.join(directory, name)
            for name in manifest["files"]}
