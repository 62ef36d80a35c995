"""CIFAR-10 from the official python tarball, without torchvision.

The tarball ``cifar-10-python.tar.gz`` (Krizhevsky 2009) holds six pickles under
``cifar-10-batches-py/``: ``data_batch_1`` .. ``data_batch_5`` (training) and
``test_batch``. Each is a dict with ``b"data"``, a ``uint8`` array of shape
``(n, 3072)`` whose rows are one image as its red plane, then green, then blue (each
32x32, row-major), and ``b"labels"``, a list of ``n`` ints in 0..9.

Safety and robustness, in the order they happen:

1. the file is downloaded (if missing and allowed) atomically: into a temporary file in
   the same folder, fsync'ed, then renamed. An interrupted, cut-short (fewer bytes than
   the server announced) or stalled download (``timeout`` seconds without data, 60 by
   default) leaves no file with the final name and raises an error that says how to
   place the file by hand; temporary files of killed runs are removed by the next try;
2. its MD5 is checked **before anything is unpickled** (unpickling runs code, so only the
   exact official bytes are trusted). A mismatch moves the file aside to ``*.corrupt``;
3. the batches are read straight from the tarball (no extraction to disk).

Example (with the real file in ``data/``):
    >>> train = CIFAR10(root="data", train=True)      # doctest: +SKIP
    >>> image, label = train[0]                        # doctest: +SKIP
    >>> image.shape, image.dtype, label                # doctest: +SKIP
    (torch.Size([3, 32, 32]), torch.uint8, 6)
"""
from __future__ import annotations

import hashlib
import http.client
import os
import pickle
import re
import socket
import tarfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from .checkpoint import atomic_open

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_FILENAME = "cifar-10-python.tar.gz"
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCHES = ("test_batch",)
DOWNLOAD_TIMEOUT = 60.0  # seconds without any data before a download gives up


class ChecksumError(RuntimeError):
    """The file's MD5 is not the expected one: it was not used."""


def md5sum(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex MD5 of a file, read in chunks."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            h.update(chunk)
    return h.hexdigest()


class DownloadError(OSError):
    """A download did not complete (cut short, timed out, refused); nothing was saved.

    ``what`` is the short reason; ``str(error)`` adds what to do about it.
    """

    def __init__(self, url: str, path: Path, what: str) -> None:
        self.url, self.path, self.what = url, Path(path), what
        super().__init__(f"downloading {url} failed: {what}. Nothing was saved as {path}. Try "
                         f"again later, or download the file by other means (a browser, or "
                         f"curl/wget on another machine) and put it at {Path(path).resolve()}.")


def _is_timeout(err: BaseException) -> bool:
    if isinstance(err, urllib.error.URLError):
        err = err.reason if isinstance(err.reason, BaseException) else err
    return isinstance(err, (TimeoutError, socket.timeout))


def _content_length(response: object) -> int | None:
    headers = getattr(response, "headers", None)
    value = headers.get("Content-Length") if headers is not None else None
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def download_file(url: str, path: str | os.PathLike, opener: Callable | None = None,
                  progress: bool = True, timeout: float | None = DOWNLOAD_TIMEOUT) -> Path:
    """Fetch ``url`` into ``path`` atomically, with a tqdm progress bar.

    The bytes go to a temporary file next to ``path`` (``.NAME.<8 hex>.part``, see
    :func:`nvp_edu.checkpoint.atomic_open`) that is renamed to ``path`` only when the whole
    file has arrived; leftovers of earlier, killed downloads of the same name are removed
    first. If the transfer stops for any reason, the temporary file is removed, ``path``
    does not exist, and:

    - a body shorter than the server's ``Content-Length``, or a chunked body cut off
      (``http.client.IncompleteRead``), raises :class:`DownloadError` saying so;
    - ``timeout`` seconds without any data (connecting, waiting for the answer, or in the
      middle of the body) raise :class:`DownloadError` (``None``: wait forever);
    - other network errors (refused, reset, HTTP 404, ...) raise :class:`DownloadError`
      too, with the original error chained; KeyboardInterrupt passes through.

    ``opener`` is ``urllib.request.urlopen`` by default (which also understands
    ``file://`` URLs) and gets ``timeout``; tests may pass their own ``opener(url)``.
    """
    from tqdm.auto import tqdm

    path = Path(path)
    default = opener is None or opener is urllib.request.urlopen
    try:
        with (urllib.request.urlopen(url, timeout=timeout) if default else opener(url)) as response:
            total = _content_length(response)
            received = 0
            with atomic_open(path) as f, tqdm(total=total, unit="B", unit_scale=True,
                                              desc=path.name, disable=not progress) as bar:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    f.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
                if total is not None and received != total:  # inside: the temp file is dropped
                    raise DownloadError(url, path, f"the server closed the connection after "
                                        f"{received} of {total} bytes (Content-Length)")
    except DownloadError:
        raise
    except http.client.IncompleteRead as err:
        raise DownloadError(url, path, f"the server closed the connection in the middle of "
                            f"the file ({len(err.partial)} bytes of the last part received, "
                            "chunked transfer cut off)") from err
    except (OSError, http.client.HTTPException) as err:
        if _is_timeout(err):
            waited = (f"no data for {timeout:g} s (timeout={timeout:g})" if timeout is not None
                      else "the connection timed out")
            raise DownloadError(url, path, f"{waited}; the server did not answer or stopped "
                                "sending") from err
        raise DownloadError(url, path, f"{type(err).__name__}: {err}") from err
    return path


def _missing_message(path: Path, url: str, reason: str) -> str:
    return (f"CIFAR-10 file {path.name} not found in folder {path.parent.resolve()} and "
            f"{reason}. Download it from {url} (e.g. `curl -L -o {path} {url}` on a machine "
            f"with internet) and place it at {path.resolve()}; it is checked against its MD5 "
            "before use.")


def normalize_md5(md5: object) -> str:
    """``md5`` as 32 lower-case hex digits (case and surrounding blanks ignored).

    Raises ``ValueError`` for anything else, before any file is touched: a malformed
    expected checksum would otherwise make a good file look corrupt.
    """
    if not isinstance(md5, str) or not re.fullmatch(r"[0-9a-fA-F]{32}", md5.strip()):
        raise ValueError(f"an MD5 checksum is 32 hexadecimal digits (like {CIFAR10_MD5}); got "
                         f"{md5!r}")
    return md5.strip().lower()


def _verify(path: Path, md5: str) -> None:
    md5 = normalize_md5(md5)
    got = md5sum(path)
    if got != md5:
        aside = path.with_name(path.name + ".corrupt")
        os.replace(path, aside)
        raise ChecksumError(
            f"checksum failed for {path}: expected MD5 {md5}, got {got}. The file was NOT "
            f"used (nothing in it was unpickled) and was renamed to {aside}; delete it and "
            "download again (an interrupted or altered download is the usual cause).")


def _check_batch(batch: object, where: str) -> tuple[np.ndarray, np.ndarray]:
    """``(data, labels)`` of one unpickled batch, after checking everything the loader relies on.

    Only a file whose MD5 is the expected one gets here, but the expected MD5 may be the
    user's (``CIFAR10(md5=...)``), so the contents are checked rather than trusted: ``data``
    a ``uint8`` array ``(n, 3072)``, ``labels`` ``n`` ints in 0..9.
    """
    def bad(what: str) -> ValueError:
        return ValueError(f"{where}: {what}. This is not the official CIFAR-10 python tarball "
                          f"(whose MD5 is {CIFAR10_MD5}); use the official file.")

    if not isinstance(batch, dict):
        raise bad(f"expected a dict with b'data' and b'labels'; got {type(batch).__name__}")
    missing = [k for k in (b"data", b"labels") if k not in batch]
    if missing:
        raise bad(f"expected a dict with b'data' and b'labels'; {missing[0]!r} is missing")
    data, labels = batch[b"data"], batch[b"labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        got = (f"an array of dtype {data.dtype}" if isinstance(data, np.ndarray)
               else type(data).__name__)
        raise bad(f"b'data' must be a uint8 array (pixel values 0..255); got {got}")
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise bad(f"expected data of shape (n, 3072) (one 3x32x32 image per row); got "
                  f"{data.shape}")
    n = data.shape[0]
    if isinstance(labels, (str, bytes)) or not hasattr(labels, "__len__"):
        raise bad(f"labels must be a list of ints in 0..9; got {type(labels).__name__}")
    if len(labels) != n:
        raise bad(f"expected {n} labels (one per image); got {len(labels)}")
    arr = np.asarray(labels)
    if n and (arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer)):
        raise bad(f"labels must be ints in 0..9; got an array of {arr.dtype} with shape "
                  f"{arr.shape}")
    if n and (arr.min() < 0 or arr.max() > 9):
        raise bad(f"labels must be ints in 0..9; got values in {arr.min()}..{arr.max()}")
    return data, arr.astype(np.int64).reshape(n)


def _read_batches(path: Path, names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    with tarfile.open(path, "r:gz") as tar:
        for name in names:
            member = f"{CIFAR10_FOLDER}/{name}"
            try:
                f = tar.extractfile(member)
            except KeyError:
                raise ValueError(f"{path} has no member {member}: not the CIFAR-10 python "
                                 "tarball") from None
            batch = pickle.load(f, encoding="bytes")  # safe: the MD5 was checked first
            data, batch_labels = _check_batch(batch, f"{member} in {path}")
            images.append(data.reshape(-1, 3, 32, 32))  # rows are R, G, B planes
            labels.append(batch_labels)
    return np.concatenate(images), np.concatenate(labels)


class CIFAR10(Dataset):
    """CIFAR-10 as a torch Dataset: ``image, label = ds[i]``.

    ``image`` is a ``uint8`` tensor ``(3, 32, 32)`` with values 0..255, ``label`` an int.
    All images of the split are also available at once as ``ds.data`` (``(N, 3, 32, 32)``,
    uint8) and ``ds.targets`` (``(N,)``, int64): 50,000 / 10,000 for the real file.

    Args:
        root: folder that holds (or will hold) ``cifar-10-python.tar.gz``.
        train: the five training batches, or the test batch.
        download: fetch the file if it is missing.
        md5: expected MD5 of the tarball (the official one by default): 32 hex digits, in
            either case. With your own MD5 the contents are still checked (dtype, shape,
            labels) since they are then not known to be the official bytes.
        url: where to fetch it from (any ``urllib`` URL, ``file://`` included).
        opener: callable ``opener(url)`` returning a file-like response (for tests);
            ``urllib.request.urlopen`` by default.
        timeout: seconds without any data before the download gives up (None: never).

    Raises:
        FileNotFoundError: the file is missing and could not be downloaded; the message
            names the file, the folder and the URL, and how to place it by hand.
        ChecksumError: the MD5 differs; the file is moved aside to ``*.corrupt``.
        ValueError: ``md5`` is not 32 hex digits, or a batch is not in the official format
            (``data`` uint8 ``(n, 3072)``, ``n`` labels in 0..9).
    """

    def __init__(self, root: str | os.PathLike = "data", train: bool = True,
                 download: bool = True, md5: str = CIFAR10_MD5, url: str = CIFAR10_URL,
                 opener: Callable | None = None, timeout: float | None = DOWNLOAD_TIMEOUT) -> None:
        self.root, self.train = Path(root), train
        md5 = normalize_md5(md5)  # before anything is downloaded or moved aside
        path = self.root / CIFAR10_FILENAME
        if not path.is_file():
            if not download:
                raise FileNotFoundError(_missing_message(path, url, "download=False"))
            try:
                download_file(url, path, opener=opener, timeout=timeout)
            except OSError as e:  # DownloadError included
                reason = e.what if isinstance(e, DownloadError) else e
                raise FileNotFoundError(_missing_message(
                    path, url, f"downloading it failed ({reason}); no partial file was kept")) from e
        _verify(path, md5)
        images, labels = _read_batches(path, TRAIN_BATCHES if train else TEST_BATCHES)
        self.data: Tensor = torch.from_numpy(images)
        self.targets: Tensor = torch.from_numpy(labels)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.data[i], int(self.targets[i])

    def __repr__(self) -> str:
        split = "train" if self.train else "test"
        return f"CIFAR10(root={str(self.root)!r}, split={split}, n={len(self)})"


def write_fake_tarball(path: str | os.PathLike, train_sizes: tuple[int, ...] = (3, 2, 2, 2, 2),
                       test_size: int = 3, seed: int = 0) -> str:
    """Write a small tarball in exactly the official format; return its MD5.

    Same member names, same pickle layout (``b"data"`` uint8 ``(n, 3072)`` rows of R, G, B
    planes, ``b"labels"`` list of ints), but ``n`` images per batch instead of 10,000. For
    tests and offline demos: the loader reads it like the real file.
    """
    import io

    rng = np.random.default_rng(seed)
    names = TRAIN_BATCHES + TEST_BATCHES
    sizes = tuple(train_sizes) + (test_size,)
    if len(train_sizes) != len(TRAIN_BATCHES):
        raise ValueError(f"train_sizes needs {len(TRAIN_BATCHES)} entries (one per training "
                         f"batch); got {len(train_sizes)}")
    with atomic_open(path) as f, tarfile.open(fileobj=f, mode="w:gz") as tar:
        for name, n in zip(names, sizes):
            batch = {b"batch_label": name.encode(),
                     b"labels": [int(v) for v in rng.integers(0, 10, n)],
                     b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                     b"filenames": [f"img_{i}.png".encode() for i in range(n)]}
            blob = pickle.dumps(batch, protocol=2)
            info = tarfile.TarInfo(f"{CIFAR10_FOLDER}/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return md5sum(path)
