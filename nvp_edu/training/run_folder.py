"""The run folder (``--out``): one owner, one history, every file written whole.

What a run folder holds:

- ``metrics.jsonl``: one JSON object per logged step and per evaluation, appended one
  ``write`` per record (a kill leaves at most a torn last line, which :func:`read_metrics`
  skips with a warning); cut back to the checkpoint's step on resume, by an atomic rewrite;
- ``checkpoint.pt`` and the one before it, ``checkpoint.pt.prev`` (:mod:`nvp_edu.checkpoint`:
  atomic, checksummed, ``weights_only``-loadable; resume rules in
  :mod:`nvp_edu.training.resume`);
- ``summary.json`` (strict JSON: a figure that is not finite is written as ``null``),
  ``metrics.png`` and ``samples/step_NNNNNNN.png``: each written to a temporary file and
  renamed into place (:func:`nvp_edu.checkpoint.atomic_open`), never half a file;
- ``.lock`` while a trainer owns the folder.

The rules (:meth:`RunFolder.claim`): a second trainer on a folder that is in use is refused,
naming the holder (pid, host, start time). A fresh run into a folder that holds a run is
refused unless ``--overwrite`` (which deletes the trainer's files first: a clean history);
``--resume`` with no checkpoint is refused (``--resume-from-previous`` accepts an intact
``checkpoint.pt.prev``). A refused run leaves no folder it created behind.

Example:
    >>> import tempfile, pathlib
    >>> folder = RunFolder.claim(pathlib.Path(tempfile.mkdtemp()) / "run")
    >>> folder.log({"kind": "train", "step": 1, "bpd": float("nan")})
    >>> read_metrics(folder.path)
    [{'kind': 'train', 'step': 1, 'bpd': None}]
    >>> folder.release()
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
import shutil
import socket
import time
import warnings
from pathlib import Path
from typing import Any

from ..checkpoint import PREV_SUFFIX, atomic_open

try:  # POSIX: an flock dies with its process, so a killed trainer never leaves a stale lock
    import fcntl
except ImportError:  # Windows: an exclusively created file instead
    fcntl = None  # type: ignore[assignment]

CHECKPOINT_NAME = "checkpoint.pt"
LOCK_NAME = ".lock"


class RunFolderError(RuntimeError):
    """The run folder cannot be used as asked (in use, holds another run, nothing to resume)."""


def _json_safe(obj: Any) -> Any:
    """``obj`` with every NaN/inf float replaced by None: strict JSON, readable anywhere
    (Python would write ``NaN``, which JSON does not have)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def to_json(obj: Any, **kwargs: Any) -> str:
    return json.dumps(_json_safe(obj), allow_nan=False, **kwargs)


def read_metrics(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of ``metrics.jsonl``, in order; a line that is not a JSON object (the
    last one, cut short by a kill) is skipped with a warning."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    records, bad = [], []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict):
            records.append(record)
        else:
            bad.append(number)
    if bad:
        warnings.warn(f"{path}: skipped line(s) {', '.join(map(str, bad))}, not a complete JSON "
                      "record (a run killed while writing it)", stacklevel=2)
    return records


def truncate_metrics(out: Path, step: int) -> None:
    """Drop records logged after the checkpoint, so a resumed run never duplicates steps.
    Rewritten atomically: a kill during the rewrite leaves the old file whole."""
    keep = [r for r in read_metrics(out) if r.get("step", 0) <= step]
    with atomic_open(out / "metrics.jsonl") as f:
        f.write("".join(to_json(r) + "\n" for r in keep).encode())


def write_figure(fig: Any, path: Path, **savefig: Any) -> None:
    """Save a matplotlib figure as PNG atomically (rendered in memory, then renamed in)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", **savefig)
    with atomic_open(path) as f:
        f.write(buffer.getvalue())


def _is_trainer_file(name: str) -> bool:
    """A file this trainer writes (what ``--overwrite`` deletes), temporary files included."""
    base = name.lstrip(".") if name.endswith(".part") else name  # .NAME.<hex>.part
    return base == "samples" or base.startswith((CHECKPOINT_NAME, "metrics.jsonl",
                                                 "metrics.png", "summary.json"))


class RunFolder:
    """The folder of one run, owned by this process from :meth:`claim` to :meth:`release`."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._lock_fd: int | None = None
        self._created: list[Path] = []  # folders this claim made, deepest last

    @classmethod
    def claim(cls, path: str | os.PathLike, resume: bool = False,
              from_previous: bool = False, overwrite: bool = False) -> "RunFolder":
        """Create and lock the folder and check its history; RunFolderError if refused
        (and then nothing this call created is left behind)."""
        folder = cls(path)
        if resume:
            folder._check_resumable(from_previous)
        folder._make()
        try:
            folder._lock()
            if not resume:
                folder._check_fresh(overwrite)
        except BaseException:
            folder.release()
            raise
        return folder

    def _check_resumable(self, from_previous: bool) -> None:
        ckpt = self.path / CHECKPOINT_NAME
        prev = ckpt.with_name(CHECKPOINT_NAME + PREV_SUFFIX)
        if ckpt.is_file() or (from_previous and prev.is_file()):
            return
        hint = (f"{prev.name} is there: add --resume-from-previous to continue from it"
                if prev.is_file() else "start a new run without --resume (with --overwrite "
                "if the folder holds an old run)")
        raise RunFolderError(f"--resume: no checkpoint at {ckpt}, nothing to resume; {hint}")

    def _check_fresh(self, overwrite: bool) -> None:
        entries = sorted(p.name for p in self.path.iterdir() if p.name != LOCK_NAME)
        if not entries:
            return
        if not overwrite:
            shown = ", ".join(entries[:4]) + (", ..." if len(entries) > 4 else "")
            raise RunFolderError(f"--out {self.path} already holds files ({shown}): continue "
                                 "that run with --resume, start a clean history there with "
                                 "--overwrite, or choose another --out")
        for name in entries:  # a clean history: the trainer's files go, others stay
            if _is_trainer_file(name):
                target = self.path / name
                shutil.rmtree(target) if target.is_dir() else target.unlink()

    def _make(self) -> None:
        missing = [p for p in (self.path, *self.path.parents) if not p.exists()]
        self.path.mkdir(parents=True, exist_ok=True)
        self._created = list(reversed(missing))

    def _lock(self) -> None:
        path = self.path / LOCK_NAME
        while True:
            flags = os.O_RDWR | os.O_CREAT | (os.O_EXCL if fcntl is None else 0)
            try:
                fd = os.open(path, flags, 0o644)
            except FileExistsError:  # Windows: an existing file is the lock
                raise RunFolderError(self._busy(path)) from None
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    raise RunFolderError(self._busy(path)) from None
                # the holder before us may have deleted the file between our open and lock
                with contextlib.suppress(FileNotFoundError):
                    if os.fstat(fd).st_ino == os.stat(path).st_ino:
                        break
                os.close(fd)
                continue
            break
        holder = f"pid {os.getpid()} on {socket.gethostname()}, since " \
                 f"{time.strftime('%Y-%m-%d %H:%M:%S')}"
        os.ftruncate(fd, 0)
        os.write(fd, holder.encode())
        self._lock_fd = fd

    def _busy(self, path: Path) -> str:
        holder = ""
        with contextlib.suppress(OSError):
            holder = path.read_text().strip()
        return (f"--out {self.path} is in use by another trainer ({holder or 'holder unknown'}"
                "): wait for it to finish, or choose another --out")

    def release(self) -> None:
        """Give up the lock; remove the folders this claim created if they are empty."""
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path / LOCK_NAME)  # while still locked: see _lock
            os.close(self._lock_fd)
            self._lock_fd = None
        for folder in reversed(self._created):  # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty
        self._created = []

    # ---- the files ----
    def log(self, record: dict[str, Any]) -> None:
        """Append one record to ``metrics.jsonl`` with a single ``write``."""
        fd = os.open(self.path / "metrics.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (to_json(record) + "\n").encode())
        finally:
            os.close(fd)

    def write_summary(self, summary: dict[str, Any]) -> None:
        with atomic_open(self.path / "summary.json") as f:
            f.write(to_json(summary, indent=1).encode())


def claim_for_run(out: Path | None, cfg: Any, env: Any) -> RunFolder | None:
    """Rank 0 claims the run folder of ``cfg`` (None without one); every rank learns
    whether it could, and raises with it if not (no rank waits in a collective)."""
    folder, error = None, None
    if out is not None and env.main:
        resume = cfg.resume or cfg.resume_from_previous
        try:
            folder = RunFolder.claim(out, resume, cfg.resume_from_previous, cfg.overwrite)
        except Exception as e:  # noqa: BLE001 (raised below, once every rank knows)
            error = e
    if env.flag(error is not None):
        raise error or RunFolderError(f"rank 0 could not take the run folder {out}")
    return folder
