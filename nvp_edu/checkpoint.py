"""Checkpoints that survive crashes and resume a run exactly.

Two promises:

1. **Atomic**: a checkpoint (or a download) is written to a temporary file in the same
   folder, ``.NAME.<8 hex digits>.part``, flushed and fsync'ed, then renamed over the
   final name with ``os.replace``. A crash at any moment leaves either the old file or the
   new one, never half of one, and never a file with the final name that only looks
   complete. The writer holds an exclusive lock (``flock``) on its temporary file, so a
   later write of the same name can tell a leftover of a killed run (unlocked) from a
   write in progress (locked) and removes only the leftovers (:func:`remove_stale_temp_files`).
2. **Exact resume**: besides the model and the optimizer, a checkpoint holds every random
   state a training step reads (torch CPU, CUDA, Python ``random``, NumPy, and the
   trainer's own generators) and the step counter. Restoring them makes step ``k+1`` of a
   resumed run draw the same noise, the same flips and the same batch as step ``k+1`` of
   an uninterrupted run, so the two end with bitwise-equal parameters.

Everything is stored as tensors, numbers, strings, lists and dicts, so
``torch.load(path, weights_only=True)`` (no arbitrary unpickling) reads it.

Example:
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "ckpt.pt")
    >>> save_checkpoint(path, {"step": 3, "rng": capture_rng_state()})
    >>> load_checkpoint(path)["step"]
    3
"""
from __future__ import annotations

import contextlib
import os
import random
import re
import secrets
import time
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

import numpy as np
import torch

try:  # POSIX: lock the temporary file while writing it
    import fcntl
except ImportError:  # Windows: an open file cannot be deleted there, which protects it instead
    fcntl = None  # type: ignore[assignment]

# A leftover younger than this is left alone: it may belong to a writer that has just
# created it and is about to lock it.
FRESH_TEMP_S = 2.0


def _temp_pattern(path: Path) -> re.Pattern[str]:
    return re.compile(rf"\.{re.escape(path.name)}\.[0-9a-f]{{8}}\.part")


def _new_temp(path: Path) -> tuple[int, Path]:
    """Create ``.NAME.<8 hex>.part`` next to ``path`` exclusively; ``(fd, its path)``."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.part"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file for {path} in {path.parent}")


def remove_stale_temp_files(path: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that killed writes of ``path`` left behind; return them.

    Only files named like :func:`atomic_open`'s (``.NAME.<8 hex digits>.part``) are
    considered, and only those that no live writer holds: on POSIX a writer keeps an
    exclusive ``flock`` on its file until it is renamed, so a file we can lock is a
    leftover; on Windows a file open in another process cannot be deleted. Files younger
    than ``FRESH_TEMP_S`` seconds are kept (a writer may be about to lock them).
    """
    path = Path(path)
    pattern, removed = _temp_pattern(path), []
    try:
        names = os.listdir(path.parent)
    except OSError:
        return removed
    for name in names:
        if not pattern.fullmatch(name):
            continue
        tmp = path.parent / name
        with contextlib.suppress(OSError):  # vanished, locked, or not ours to delete
            if time.time() - tmp.stat().st_mtime < FRESH_TEMP_S:
                continue
            with open(tmp, "rb") as f:
                if fcntl is not None:
                    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if live
                    os.unlink(tmp)
            if fcntl is None:
                os.unlink(tmp)  # PermissionError while another process has it open
            removed.append(tmp)
    return removed


def _fsync_dir(folder: Path) -> None:
    # make a rename durable (a no-op where directories cannot be opened)
    with contextlib.suppress(OSError):
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike,
                before_replace: Callable[[Path], None] | None = None) -> Iterator[BinaryIO]:
    """Open ``path`` for binary writing so that it appears complete or not at all.

    The data goes to a temporary file ``.NAME.<8 hex>.part`` next to ``path`` (same file
    system, so the final rename is atomic), locked while it is written; on success it is
    fsync'ed and renamed to ``path``; on any exception (including KeyboardInterrupt) the
    temporary file is deleted and ``path`` is untouched. Leftovers of earlier, killed
    writes of the same name are removed first (:func:`remove_stale_temp_files`).

    ``before_replace(tmp)``, if given, runs after the data is on disk and before the
    rename (``save_checkpoint`` verifies the file there); if it raises, nothing is renamed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(path)
    fd, tmp = _new_temp(path)
    try:
        with os.fdopen(fd, "wb") as f:
            if fcntl is not None:
                with contextlib.suppress(OSError):  # file systems without locks: no lock
                    fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            yield f
            f.flush()
            os.fsync(f.fileno())
            if before_replace is not None:
                before_replace(tmp)
            if fcntl is not None:
                os.replace(tmp, path)  # while still locked: never mistaken for a leftover
        if fcntl is None:
            os.replace(tmp, path)  # Windows cannot rename an open file
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """``torch.save(state)`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path) as f:
        torch.save(state, f)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``: tensors and plain containers only."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return torch.load(path, map_location=map_location, weights_only=True)


def _numpy_state() -> dict[str, Any]:
    # numpy's state holds an ndarray, which weights_only loading refuses: store a tensor
    name, key, pos, has_gauss, gauss = np.random.get_state()
    return {"name": name, "key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "gauss": float(gauss)}


def _set_numpy_state(s: dict[str, Any]) -> None:
    key = s["key"].numpy().astype(np.uint32)
    np.random.set_state((s["name"], key, s["pos"], s["has_gauss"], s["gauss"]))


def capture_rng_state(generators: dict[str, torch.Generator] | None = None) -> dict[str, Any]:
    """Every random state a training step may read, in a ``weights_only``-safe form.

    ``generators``: the trainer's own named generators (e.g. the one that draws the
    dequantization noise and the flips); their states are stored under the same names.
    """
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": _numpy_state(),
        "generators": {k: g.get_state() for k, g in (generators or {}).items()},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        # this process's device only (under torchrun every rank saves its own)
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng_state(state: dict[str, Any],
                      generators: dict[str, torch.Generator] | None = None) -> None:
    """Undo :func:`capture_rng_state`: put every random state back."""
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    _set_numpy_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    for name, g in (generators or {}).items():
        if name not in state["generators"]:
            raise KeyError(f"checkpoint has no state for generator {name!r}; it has "
                           f"{sorted(state['generators'])}")
        g.set_state(state["generators"][name])


def same_training_state(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """True if two checkpoints hold bitwise-identical model and optimizer states and step.

    The test of exact resume: a run stopped and resumed must match an uninterrupted one.
    """
    if a["step"] != b["step"] or a["model"].keys() != b["model"].keys():
        return False
    if not all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"]):
        return False
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    if sa.keys() != sb.keys():
        return False
    return all(torch.equal(torch.as_tensor(sa[i][k]), torch.as_tensor(sb[i][k]))
               for i in sa for k in sa[i])
