"""Shared utilities: crash-safe saves (:mod:`.persist`), param stores (:mod:`.seeding`), device and dtype
handling and shape broadcasting (:mod:`.tensors`)."""
from .persist import (
    FORMAT_VERSION,
    MANIFEST,
    SaveError,
    atomic_save,
    clean_orphans,
    file_digest,
    load_unit,
    pid_alive,
    read_manifest,
    save_unit,
    write_manifest,
)
from .seeding import param_scope
from .tensors import broadcast_shapes, move_tensors

__all__ = ["FORMAT_VERSION", "MANIFEST", "SaveError", "atomic_save", "broadcast_shapes", "clean_orphans", "file_digest",
           "load_unit", "move_tensors", "param_scope", "pid_alive", "read_manifest", "save_unit", "write_manifest"]
