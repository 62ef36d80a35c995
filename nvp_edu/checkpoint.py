"""Checkpoints that survive crashes, refuse damage, and resume a run exactly.

Four promises:

1. **Atomic**: a checkpoint (or a download) is written to a temporary file in the same
   folder, ``.NAME.<8 hex digits>.part``, fsync'ed, then renamed over the final name: a
   crash leaves the old file or the new one, never half of one. The writer holds a lock
   (``flock``) on its temporary file, so a later write can tell a killed run's leftover
   (unlocked) from a write in progress and removes only leftovers. A full disk is an
   ``OSError`` naming the file, not torch's "unexpected pos".
2. **Checked**: :func:`save_checkpoint` stores a SHA-256 of the checkpoint's contents
   (every tensor's dtype, shape and bytes, every key, number and string, in order) inside
   the file, under ``"nvp_edu_checksum"``; :func:`load_checkpoint` recomputes it and
   refuses a damaged file with :class:`CheckpointCorruptError` naming the file, never
   loading it silently. A file that ``torch.load`` cannot even read (truncated, mangled
   zip or pickle) is refused the same way, and so is one without a checksum
   (:class:`CheckpointUnverifiedError`: older, or its checksum entry damaged) unless
   ``load_checkpoint(path, allow_unverified=True)``.
3. **A previous good one**: before replacing ``NAME``, :func:`save_checkpoint` verifies the
   new file as written, and only then keeps the old ``NAME`` (if intact) as ``NAME.prev``
   and renames the new one into place. :func:`previous_checkpoint` finds it, and the error
   for a damaged checkpoint says whether an intact ``NAME.prev`` exists and its step.
4. **Exact resume**: besides the model and the optimizer, a checkpoint holds every random
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
    >>> save_checkpoint(path, {"step": 4})
    >>> previous_checkpoint(path).name, load_checkpoint(previous_checkpoint(path))["step"]
    ('ckpt.pt.prev', 3)
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import random
import re
import secrets
import shutil
import time
import warnings
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

import numpy as np
import torch

try:  # POSIX: lock the temporary file while writing it
    import fcntl
except ImportError:  # Windows: an open file cannot be deleted there, which protects it instead
    fcntl = None  # type: ignore[assignment]

CHECKSUM_KEY = "nvp_edu_checksum"
CHECKSUM_ALGORITHM = "sha256-of-contents-v1"
PREV_SUFFIX = ".prev"
FRESH_TEMP_S = 2.0  # a younger leftover may be a writer's that is about to lock it


class CheckpointCorruptError(RuntimeError):
    """A checkpoint is damaged (checksum mismatch, truncated, unreadable): it was not loaded.

    Attributes: ``path`` (the damaged file), ``previous`` (an intact ``NAME.prev`` next to
    it, or None) and ``previous_step`` (its ``"step"`` entry, if any).
    """

    def __init__(self, path: Path, reason: str, previous: Path | None = None,
                 previous_step: Any = None) -> None:
        self.path, self.reason = Path(path), reason
        self.previous, self.previous_step = previous, previous_step
        if previous is not None:
            step = f" (step {previous_step})" if previous_step is not None else ""
            tail = (f"The previous good checkpoint is {previous}{step}: copy it over {path} "
                    "to resume from there.")
        else:
            tail = (f"There is no intact previous checkpoint ({path.name}{PREV_SUFFIX}); "
                    "start again or use another copy.")
        super().__init__(f"checkpoint {path} {self.verdict} and was NOT loaded: {reason}. "
                         f"{tail}")

    verdict = "is damaged"


class CheckpointUnverifiedError(CheckpointCorruptError):
    """A checkpoint has no checksum (older nvp_edu, or the entry itself is damaged)."""

    verdict = "cannot be verified"


# -- atomic writes and their leftovers -------------------------------------------------------

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

    Only files named like :func:`atomic_open`'s (``.NAME.<8 hex digits>.part``) that no
    live writer holds (POSIX: a file we can ``flock``; Windows: one we can delete), and
    older than ``FRESH_TEMP_S`` seconds (a writer may be about to lock it).
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


# -- checksums ---------------------------------------------------------------------------------

def _feed(h: "hashlib._Hash", obj: Any) -> None:
    """Hash ``obj`` by content, in a form that survives ``torch.save``/``torch.load``."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach()
        h.update(f"T{t.dtype}{tuple(t.shape)}|".encode())
        flat = t.to("cpu").contiguous().reshape(-1)
        if flat.numel():
            h.update(flat.view(torch.uint8).numpy())  # the tensor's own bytes, no copy
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)}|".encode())
        for k, v in obj.items():
            _feed(h, k)
            _feed(h, v)
    elif isinstance(obj, (list, tuple)):
        h.update(f"{'L' if isinstance(obj, list) else 'U'}{len(obj)}|".encode())
        for v in obj:
            _feed(h, v)
    elif isinstance(obj, str):
        b = obj.encode("utf-8", "surrogatepass")
        h.update(b"S%d|" % len(b) + b)
    elif isinstance(obj, (bytes, bytearray)):
        h.update(b"B%d|" % len(obj) + bytes(obj))
    elif isinstance(obj, float):
        h.update(f"F{obj.hex()}|".encode())
    elif obj is None or isinstance(obj, (bool, int)):
        h.update(f"{type(obj).__name__}{obj!r}|".encode())
    else:  # dtypes, devices and the like: their repr is their value
        h.update(f"O{type(obj).__qualname__}:{obj!r}|".encode())


def state_checksum(state: dict[str, Any]) -> str:
    """SHA-256 (hex) of a checkpoint's contents, the checksum entry itself excluded."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in state.items() if k != CHECKSUM_KEY})
    return h.hexdigest()


def file_sha256(path: Path, chunk_size: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            h.update(chunk)
    return h.hexdigest()


class _HashingWriter:
    """A write-only file wrapper that hashes every byte on its way to disk.

    It keeps the first ``OSError`` of a write (a full disk, a quota): ``torch.save``
    reports it only as an unrelated ``RuntimeError`` ("unexpected pos ...").
    """

    def __init__(self, f: BinaryIO) -> None:
        self.f, self.sha = f, hashlib.sha256()
        self.error: OSError | None = None

    def write(self, b: Any) -> int:
        self.sha.update(b)
        try:
            return self.f.write(b)
        except OSError as err:
            self.error = self.error or err
            raise

    def flush(self) -> None:
        self.f.flush()


# -- save and load -----------------------------------------------------------------------------

def previous_checkpoint(path: str | os.PathLike) -> Path | None:
    """``NAME.prev`` next to ``path`` if it exists (it is not verified here), else None."""
    prev = Path(str(path) + PREV_SUFFIX)
    return prev if prev.is_file() else None


# Files this process wrote and verified: (inode, size, mtime) by path. A checkpoint still
# matching its entry need not be read again to know it is intact before rotating it.
_VERIFIED: dict[str, tuple[int, int, int]] = {}


def _stat_key(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _condition(path: Path) -> str:
    """"intact", "unverified" (no checksum) or "damaged"."""
    key = _stat_key(path)
    if key is not None and _VERIFIED.get(str(path)) == key:
        return "intact"
    try:
        _load_verified(path, "cpu")
    except CheckpointUnverifiedError:
        return "unverified"
    except (CheckpointCorruptError, OSError):
        return "damaged"
    return "intact"


def _rotate_to_prev(path: Path) -> None:
    """Keep the current ``path`` as ``NAME.prev`` (atomically); ``path`` stays in place."""
    prev = Path(str(path) + PREV_SUFFIX)
    condition = _condition(path)
    # one without checksum (older nvp_edu) is kept only if there is nothing better
    if condition == "damaged" or (condition == "unverified" and prev.exists()):
        what = "is damaged" if condition == "damaged" else "has no checksum"
        warnings.warn(f"the checkpoint being replaced, {path}, {what}: it is not kept as "
                      f"{prev.name}" + (f" ({prev.name} is left as it was)" if prev.exists()
                                        else ""), stacklevel=4)
        return
    remove_stale_temp_files(prev)
    tmp = prev.parent / f".{prev.name}.{secrets.token_hex(4)}.part"
    try:
        os.link(path, tmp)  # a second name for the same bytes: nothing copied
    except FileExistsError:
        raise
    except OSError:  # no hard links on this file system: copy
        try:
            shutil.copyfile(path, tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
    try:
        os.replace(tmp, prev)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if str(path) in _VERIFIED:
        _VERIFIED[str(prev)] = _VERIFIED.pop(str(path))


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """``torch.save(state)`` to ``path`` atomically, with a checksum; keep the old one as ``.prev``.

    Order of events: the state (plus ``"nvp_edu_checksum"``) is written to a temporary
    file and fsync'ed; the file is read back and its bytes compared with what was written
    (a mismatch raises :class:`CheckpointCorruptError` and changes nothing); the current
    ``path``, if intact, becomes ``NAME.prev`` (a hard link, so ``path`` never disappears);
    finally the new file is renamed to ``path``.
    """
    path = Path(path)
    payload = dict(state)
    payload[CHECKSUM_KEY] = {"algorithm": CHECKSUM_ALGORITHM, "sha256": state_checksum(state)}
    writer: _HashingWriter | None = None

    def verify_then_rotate(tmp: Path) -> None:
        assert writer is not None
        if file_sha256(tmp) != writer.sha.hexdigest():
            raise CheckpointCorruptError(tmp, "the bytes read back differ from those written "
                                         "(disk or file-system fault); the new checkpoint "
                                         f"was discarded and {path} left as it was")
        if path.is_file():
            _rotate_to_prev(path)

    try:
        with atomic_open(path, before_replace=verify_then_rotate) as f:
            writer = _HashingWriter(f)
            torch.save(payload, writer)
    except (RuntimeError, OSError):
        if writer is None or writer.error is None:
            raise
        err = writer.error  # the cause, in one line: e.g. "No space left on device"
        raise OSError(err.errno, f"could not write checkpoint {path}: {err.strerror}; the "
                      "previous checkpoint (if any) was left as it was") from None
    key = _stat_key(path)
    if key is not None:
        _VERIFIED[str(path)] = key


def _load_verified(path: Path, map_location: Any, allow_unverified: bool = False) -> dict:
    """torch.load with ``weights_only=True``, then the checksum; CheckpointCorruptError if bad."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # truncated or mangled zip/pickle: torch raises many kinds
        raise CheckpointCorruptError(path, f"torch.load could not read it ({type(err).__name__}: "
                                     f"{str(err).splitlines()[0] if str(err) else ''}); it is "
                                     "truncated, damaged, or not a checkpoint") from None
    if not isinstance(state, dict):
        raise CheckpointCorruptError(path, f"it holds a {type(state).__name__}, not a dict")
    entry = state.pop(CHECKSUM_KEY, None)
    if entry is None and allow_unverified:
        warnings.warn(f"checkpoint {path} has no checksum: loaded WITHOUT verifying its "
                      "contents (allow_unverified=True); save_checkpoint adds one", stacklevel=4)
        return state
    if entry is None:
        raise CheckpointUnverifiedError(
            path, "it has no checksum: it was written by nvp_edu before checkpoints carried "
            "one, or its checksum entry is damaged. If you trust it, load it with "
            "load_checkpoint(path, allow_unverified=True) and save_checkpoint it again to add "
            "a checksum")
    if not isinstance(entry, dict) or entry.get("algorithm") != CHECKSUM_ALGORITHM:
        raise CheckpointCorruptError(path, f"unknown checksum entry {entry!r}")
    got = state_checksum(state)
    if got != entry.get("sha256"):
        raise CheckpointCorruptError(path, f"its contents do not match their SHA-256 (stored "
                                     f"{entry.get('sha256')}, computed {got})")
    return state


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu",
                    fallback_to_previous: bool = False, allow_unverified: bool = False) -> dict:
    """Load a checkpoint with ``weights_only=True`` and verify its checksum.

    Returns the state as saved (without the checksum entry). A damaged file raises
    :class:`CheckpointCorruptError` naming it; the error's ``previous`` is an intact
    ``NAME.prev`` if there is one (and its message says so). With
    ``fallback_to_previous=True`` that previous checkpoint is loaded instead, with a
    warning. A checkpoint without checksum (from before checksums, or with a damaged
    checksum entry) raises :class:`CheckpointUnverifiedError` unless
    ``allow_unverified=True``, which loads it with a ``UserWarning``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        return _load_verified(path, map_location, allow_unverified)
    except CheckpointCorruptError as err:
        prev, prev_state = previous_checkpoint(path), None
        if prev is not None:
            try:
                prev_state = _load_verified(prev, map_location)
            except (CheckpointCorruptError, OSError):
                prev = None
        step = prev_state.get("step") if prev_state is not None else None
        error = type(err)(path, err.reason, prev, step)
        if fallback_to_previous and prev_state is not None:
            warnings.warn(f"{error} Loaded {prev} instead.", stacklevel=2)
            return prev_state
        raise error from None


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
