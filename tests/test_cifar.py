"""CIFAR-10 loader on a small tarball in the official format: layout, download, failures."""
import io
import os
import pickle
import tarfile

import numpy as np
import pytest
import torch

from nvp_edu.cifar import (CIFAR10_FILENAME, ChecksumError, download_file, md5sum,
                           write_fake_tarball)
from nvp_edu.data import CIFAR10


@pytest.fixture
def tarball(tmp_path):
    src = tmp_path / "src" / CIFAR10_FILENAME
    md5 = write_fake_tarball(src, train_sizes=(3, 2, 1, 2, 2), test_size=4, seed=1)
    return src, md5


def test_reads_official_layout_planes_and_labels(tmp_path, tarball):
    src, md5 = tarball
    root = tmp_path / "data"
    root.mkdir()
    os.link(src, root / CIFAR10_FILENAME)
    train = CIFAR10(root, train=True, download=False, md5=md5)
    test = CIFAR10(root, train=False, download=False, md5=md5)
    assert len(train) == 10 and len(test) == 4  # no hard-coded 10000 / 50000
    image, label = train[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.uint8 and isinstance(label, int)
    # the first row of data_batch_1, read independently: R plane, then G, then B
    with tarfile.open(src) as tar:
        raw = pickle.load(tar.extractfile("cifar-10-batches-py/data_batch_1"), encoding="bytes")
        raw5 = pickle.load(tar.extractfile("cifar-10-batches-py/data_batch_5"), encoding="bytes")
    row = raw[b"data"][0]
    assert torch.equal(image[0].flatten(), torch.from_numpy(row[:1024]))
    assert torch.equal(image[1, 0, :4], torch.from_numpy(row[1024:1028]))
    assert torch.equal(image[2, 31, 31], torch.tensor(row[3071]))
    assert label == raw[b"labels"][0]
    # batches concatenate in order 1..5: the last image is data_batch_5's last row
    assert torch.equal(train[9][0].flatten(), torch.from_numpy(raw5[b"data"][-1]))
    assert train.targets.tolist()[-2:] == raw5[b"labels"]


def test_downloads_from_file_url_atomically(tmp_path, tarball):
    src, md5 = tarball
    root = tmp_path / "data"
    ds = CIFAR10(root, train=False, md5=md5, url=src.resolve().as_uri())
    assert len(ds) == 4
    assert sorted(os.listdir(root)) == [CIFAR10_FILENAME]  # no temp file left behind
    assert md5sum(root / CIFAR10_FILENAME) == md5


class _Broken:
    """A response that delivers some bytes and then fails, like a dropped connection."""

    def __init__(self, data: bytes, fail_after: int):
        self.buf, self.fail_after, self.sent = io.BytesIO(data), fail_after, 0
        self.headers = {"Content-Length": str(len(data))}

    def read(self, n):
        if self.sent >= self.fail_after:
            raise ConnectionResetError("connection reset by peer")
        chunk = self.buf.read(min(n, self.fail_after - self.sent))
        self.sent += len(chunk)
        return chunk

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_interrupted_download_leaves_no_file(tmp_path, tarball):
    src, md5 = tarball
    root = tmp_path / "data"
    data = src.read_bytes()
    with pytest.raises(FileNotFoundError, match="downloading it failed"):
        CIFAR10(root, md5=md5, url="https://example.invalid/c.tar.gz",
                opener=lambda url: _Broken(data, fail_after=len(data) // 2))
    assert os.listdir(root) == []  # neither the final name nor a temp file
    # a Ctrl-C in the middle behaves the same
    with pytest.raises(KeyboardInterrupt):
        def interrupt(url):
            resp = _Broken(data, len(data))
            resp.read = lambda n: (_ for _ in ()).throw(KeyboardInterrupt())
            return resp
        download_file("x", root / CIFAR10_FILENAME, opener=interrupt, progress=False)
    assert os.listdir(root) == []


def test_corrupted_file_is_moved_aside_before_unpickling(tmp_path, tarball, monkeypatch):
    src, md5 = tarball
    root = tmp_path / "data"
    root.mkdir()
    bad = bytearray(src.read_bytes())
    bad[len(bad) // 2] ^= 0xFF
    (root / CIFAR10_FILENAME).write_bytes(bytes(bad))
    unpickled = []
    monkeypatch.setattr(pickle, "load", lambda *a, **k: unpickled.append(1))
    with pytest.raises(ChecksumError) as e:
        CIFAR10(root, md5=md5, download=False)
    msg = str(e.value)
    assert "checksum failed" in msg and f"expected MD5 {md5}" in msg
    assert f"got {md5sum(root / (CIFAR10_FILENAME + '.corrupt'))}" in msg
    assert "renamed to" in msg and not unpickled
    assert sorted(os.listdir(root)) == [CIFAR10_FILENAME + ".corrupt"]


def test_wrong_md5_refuses_a_good_file(tmp_path, tarball):
    src, _ = tarball
    with pytest.raises(ChecksumError, match="expected MD5 0{32}"):
        CIFAR10(tmp_path / "d", md5="0" * 32, url=src.resolve().as_uri())


def test_missing_offline_names_file_folder_and_url(tmp_path):
    root = tmp_path / "nowhere"
    url = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"

    def offline(u):
        import urllib.error
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    with pytest.raises(FileNotFoundError) as e:
        CIFAR10(root, opener=offline)
    msg = str(e.value)
    assert CIFAR10_FILENAME in msg and str(root.resolve()) in msg and url in msg
    assert "place it at" in msg and "name resolution" in msg
    with pytest.raises(FileNotFoundError, match="download=False"):
        CIFAR10(root, download=False)


def test_fake_tarball_rejects_wrong_batch_count(tmp_path):
    with pytest.raises(ValueError, match="needs 5 entries"):
        write_fake_tarball(tmp_path / "x.tar.gz", train_sizes=(1, 1))


# Issue 13, fault B: the reader validates what it unpickles; the MD5 is compared sanely --

def _tarball_with(path, override):
    """The fake tarball with data_batch_1's dict entries replaced (or the dict itself)."""
    write_fake_tarball(path, train_sizes=(3, 2, 2, 2, 2))
    with tarfile.open(path) as tar:
        blobs = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    name = "cifar-10-batches-py/data_batch_1"
    batch = pickle.loads(blobs[name], encoding="bytes")
    batch = override["whole"] if "whole" in override else {**batch, **override}
    blobs[name] = pickle.dumps(batch, protocol=2)
    with tarfile.open(path, "w:gz") as tar:
        for member, blob in blobs.items():
            info = tarfile.TarInfo(member)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return md5sum(path)


@pytest.mark.parametrize("override, match", [
    ({b"data": np.full((3, 3072), 7, dtype=np.int64)}, r"uint8 array.*got an array of dtype int64"),
    ({b"data": np.full((3, 3072), 300.0)}, r"uint8 array.*got an array of dtype float64"),
    ({b"data": [[0] * 3072] * 3}, r"uint8 array.*got list"),
    ({b"data": np.zeros((3, 3, 32, 32), dtype=np.uint8)}, r"shape \(n, 3072\).*\(3, 3, 32, 32\)"),
    ({b"labels": [0, 1]}, r"3 labels \(one per image\); got 2"),
    ({b"labels": [0, 1, 10]}, r"labels must be ints in 0\.\.9; got values in 0\.\.10"),
    ({b"labels": [-1, 1, 2]}, r"labels must be ints in 0\.\.9; got values in -1\.\.2"),
    ({b"labels": [0.0, 1.5, 2.0]}, r"labels must be ints.*float64"),
    ({b"labels": "abc"}, r"labels must be.*str"),
    ({"whole": [1, 2, 3]}, r"expected a dict with b'data' and b'labels'; got list"),
    ({"whole": {b"data": np.zeros((1, 3072), np.uint8)}}, r"b'labels'.*missing"),
])
def test_reader_validates_dtype_shape_and_labels(tmp_path, override, match):
    root = tmp_path / "data"
    md5 = _tarball_with(root / CIFAR10_FILENAME, override)
    with pytest.raises(ValueError, match=match) as e:
        CIFAR10(root, train=True, download=False, md5=md5)
    assert "cifar-10-batches-py/data_batch_1" in str(e.value)
    assert "not the official CIFAR-10" in str(e.value)
    # the test split does not read the broken batch
    assert len(CIFAR10(root, train=False, download=False, md5=md5)) == 3


def test_upper_case_md5_accepts_a_good_file(tmp_path, tarball):
    src, md5 = tarball
    root = tmp_path / "data"
    root.mkdir()
    os.link(src, root / CIFAR10_FILENAME)
    ds = CIFAR10(root, train=False, download=False, md5=md5.upper())
    assert len(ds) == 4 and sorted(os.listdir(root)) == [CIFAR10_FILENAME]
    assert len(CIFAR10(root, train=False, download=False, md5=f"  {md5.upper()}\n")) == 4


@pytest.mark.parametrize("bad", ["abc", "g" * 32, "0" * 31, "0" * 33, "", None, 123])
def test_malformed_md5_is_refused_before_touching_the_file(tmp_path, tarball, bad):
    src, md5 = tarball
    root = tmp_path / "data"
    root.mkdir()
    os.link(src, root / CIFAR10_FILENAME)
    with pytest.raises(ValueError, match="32 hexadecimal digits"):
        CIFAR10(root, train=False, download=False, md5=bad)
    assert sorted(os.listdir(root)) == [CIFAR10_FILENAME]  # nothing moved aside
