"""Downloads against a real local HTTP server that misbehaves on purpose (issue 13, fault A).

The server listens on 127.0.0.1 on an ephemeral port, in a thread. Each path is one kind
of failure: a body shorter than its Content-Length, a chunked body cut off, a server that
never answers, one that stalls mid-body. Every test is bounded by a short timeout.
"""
import http.server
import os
import signal
import sys
import threading
import time

import pytest

from nvp_edu.cifar import (CIFAR10_FILENAME, DOWNLOAD_TIMEOUT, DownloadError, download_file,
                           write_fake_tarball)
from nvp_edu.checkpoint import atomic_open, remove_stale_temp_files
from nvp_edu.data import CIFAR10

TIMEOUT = 0.5  # seconds of silence before a test download gives up


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # needed for chunked transfer encoding

    def log_message(self, *args):  # keep pytest's output clean
        pass

    def do_GET(self):
        data, mode = self.server.payload, self.path.strip("/")
        if mode == "silent":  # accept the connection, read the request, never answer
            self.server.release.wait(10)
            self.close_connection = True
            return
        self.send_response(200)
        if mode == "chunked-cut":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            half = data[: len(data) // 2]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(half), half))  # no terminating 0-chunk
            self.close_connection = True
            return
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if mode == "ok":
            self.wfile.write(data)
        elif mode == "short":  # promise len(data) bytes, send half, hang up
            self.wfile.write(data[: len(data) // 3])
            self.close_connection = True
        elif mode == "stall":  # send a part, then go quiet
            self.wfile.write(data[: len(data) // 3])
            self.wfile.flush()
            self.server.release.wait(10)
            self.close_connection = True


@pytest.fixture
def server(tmp_path):
    """``(base_url, payload, md5)``: the fake CIFAR tarball served in several broken ways."""
    src = tmp_path / "src" / CIFAR10_FILENAME
    md5 = write_fake_tarball(src, test_size=4, seed=2)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.payload, srv.release = src.read_bytes(), threading.Event()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", srv.payload, md5
    srv.release.set()
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def test_good_server_downloads_completely(tmp_path, server):
    base, payload, md5 = server
    path = download_file(f"{base}/ok", tmp_path / "d" / "f.bin", progress=False, timeout=TIMEOUT)
    assert path.read_bytes() == payload and os.listdir(path.parent) == ["f.bin"]
    ds = CIFAR10(tmp_path / "data", train=False, md5=md5, url=f"{base}/ok", timeout=TIMEOUT)
    assert len(ds) == 4


def test_short_body_despite_content_length_is_an_error_not_a_short_file(tmp_path, server):
    base, payload, _ = server
    root = tmp_path / "d"
    with pytest.raises(DownloadError) as e:
        download_file(f"{base}/short", root / "f.bin", progress=False, timeout=TIMEOUT)
    msg = str(e.value)
    assert f"{len(payload) // 3} of {len(payload)} bytes" in msg
    assert "closed the connection" in msg and "put it at" in msg and str(root / "f.bin") in msg
    assert os.listdir(root) == []  # neither the final name nor a temporary file


def test_chunked_body_cut_off_is_the_same_clear_error(tmp_path, server):
    base, payload, _ = server
    root = tmp_path / "d"
    with pytest.raises(DownloadError, match="closed the connection") as e:
        download_file(f"{base}/chunked-cut", root / "f.bin", progress=False, timeout=TIMEOUT)
    assert "IncompleteRead" not in type(e.value).__name__ and "put it at" in str(e.value)
    assert os.listdir(root) == []


@pytest.mark.parametrize("mode", ["silent", "stall"])
def test_a_server_that_goes_quiet_times_out(tmp_path, server, mode):
    base, _, _ = server
    root = tmp_path / "d"
    start = time.monotonic()
    with pytest.raises(DownloadError, match=f"no data for {TIMEOUT:g} s") as e:
        download_file(f"{base}/{mode}", root / "f.bin", progress=False, timeout=TIMEOUT)
    assert time.monotonic() - start < 5
    assert "timeout=" in str(e.value) and "put it at" in str(e.value)
    assert not root.exists() or os.listdir(root) == []


def test_cifar10_turns_every_failure_into_how_to_place_the_file(tmp_path, server):
    base, _, md5 = server
    root = tmp_path / "data"
    for mode, what in [("short", "closed the connection"), ("chunked-cut", "closed the connection"),
                       ("silent", "no data for")]:
        with pytest.raises(FileNotFoundError) as e:
            CIFAR10(root, md5=md5, url=f"{base}/{mode}", timeout=TIMEOUT)
        msg = str(e.value)
        assert what in msg and "place it at" in msg and str(root.resolve()) in msg, msg
        assert os.listdir(root) == []
    assert DOWNLOAD_TIMEOUT == 60


def _age(path, seconds=3600):
    t = time.time() - seconds
    os.utime(path, (t, t))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork to kill a writer mid-write")
def test_temp_files_of_killed_runs_are_removed_by_the_next_download(tmp_path, server):
    base, payload, _ = server
    root = tmp_path / "d"
    root.mkdir()
    target = root / "f.bin"
    pid = os.fork()
    if pid == 0:  # a run killed in the middle of writing: no cleanup code runs
        try:
            with atomic_open(target) as f:
                f.write(b"half a download")
                f.flush()
                os.kill(os.getpid(), signal.SIGKILL)
        finally:
            os._exit(1)
    os.waitpid(pid, 0)
    left = os.listdir(root)
    assert len(left) == 1 and left[0].startswith(".f.bin.") and left[0].endswith(".part")
    _age(root / left[0])  # from an earlier run
    unrelated = root / ".other.bin.0123abcd.part"  # another file's leftover is not ours to judge
    unrelated.write_bytes(b"x")
    _age(unrelated)
    download_file(f"{base}/ok", target, progress=False, timeout=TIMEOUT)
    assert sorted(os.listdir(root)) == [".other.bin.0123abcd.part", "f.bin"]
    assert target.read_bytes() == payload


def test_a_live_writers_temp_file_is_never_removed(tmp_path):
    target = tmp_path / "f.bin"
    with atomic_open(target) as f:
        f.write(b"in progress")
        f.flush()
        (tmp_name,) = os.listdir(tmp_path)
        _age(tmp_path / tmp_name)  # even if it has been quiet for an hour
        if sys.platform != "win32":
            assert remove_stale_temp_files(target) == []
        assert os.listdir(tmp_path) == [tmp_name]
        f.write(b", done")
    assert target.read_bytes() == b"in progress, done" and os.listdir(tmp_path) == ["f.bin"]


def test_a_fresh_leftover_is_kept_for_a_moment_then_removed(tmp_path):
    target = tmp_path / "f.bin"
    leftover = tmp_path / ".f.bin.89abcdef.part"
    leftover.write_bytes(b"x")  # unlocked, but just created: may be a writer about to lock it
    assert remove_stale_temp_files(target) == []
    _age(leftover)
    assert remove_stale_temp_files(target) == [leftover] and not leftover.exists()
