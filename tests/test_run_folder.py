"""Issue 20: a run folder has one owner and one history, and every failure a user can
cause is one line. Each test reproduces a defect the hostile probe found (it fails on the
trainer before the fix). Tiny runs: 16 synthetic images, batch 8 (2 steps per epoch)."""
import errno
import math
import os
import shutil
import signal
from pathlib import Path

import pytest
import torch
from conftest import one_error_line, steps_logged

from nvp_edu import checkpoint as ckpt_module
from nvp_edu import train as T
from nvp_edu.checkpoint import load_checkpoint
from nvp_edu.models import RealNVP

TINY = ["--dataset", "synthetic", "--preset", "tiny", "--batch-size", "8", "--limit-train",
        "16", "--limit-test", "8", "--num-samples", "4", "--log-every", "1", "--no-progress",
        "--no-plots"]

pytestmark = pytest.mark.usefixtures("one_thread")


def run(out, *extra):
    return T.main([*TINY, "--out", str(out), *extra])


def test_an_empty_out_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # before the fix: trained here, wrote nothing, exit 0
    assert T.main([*TINY, "--out", "", "--max-steps", "1"]) == 2
    assert "--out is empty" in one_error_line(capsys)
    assert list(tmp_path.iterdir()) == []


def test_a_second_trainer_is_refused_naming_the_holder(tmp_path, capsys):
    from nvp_edu.training.run_folder import RunFolder
    holder = RunFolder.claim(tmp_path / "run")  # what a running trainer holds
    try:
        assert run(tmp_path / "run", "--max-steps", "1") == 2
        line = one_error_line(capsys)
        assert f"is in use by another trainer (pid {os.getpid()} on " in line
        assert not (tmp_path / "run" / "metrics.jsonl").exists()
    finally:
        holder.release()
    assert not (tmp_path / "run").exists()  # released: no folder left by the claim


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """A finished 2-step run with a checkpoint at each step (so also a .prev); tests copy it."""
    out = tmp_path_factory.mktemp("base") / "run"
    assert run(out, "--max-steps", "2", "--ckpt-every", "1") == 0
    return out


def test_a_fresh_run_into_a_run_folder_is_refused_unless_overwrite(base_run, tmp_path, capsys):
    out = Path(shutil.copytree(base_run, tmp_path / "run"))
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    # before the fix: appended to metrics.jsonl and rotated the checkpoint away, exit 0
    assert run(out, "--max-steps", "1") == 2
    assert ("already holds files (checkpoint.pt, checkpoint.pt.prev, metrics.jsonl, "
            "summary.json)") in one_error_line(capsys)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    (out / "notes.txt").write_text("mine")
    assert run(out, "--max-steps", "1", "--overwrite") == 0  # a clean history
    assert steps_logged(out) == [1]
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 1
    assert not (out / "checkpoint.pt.prev").exists()
    assert (out / "notes.txt").read_text() == "mine"  # not the trainer's: kept


def test_resume_with_nothing_to_resume_refuses_and_keeps_the_history(base_run, tmp_path,
                                                                     capsys):
    assert run(tmp_path / "none", "--max-steps", "1", "--resume") == 2
    assert "no checkpoint at" in one_error_line(capsys)
    assert not (tmp_path / "none").exists()
    out = Path(shutil.copytree(base_run, tmp_path / "run"))
    for name in ("checkpoint.pt", "checkpoint.pt.prev"):
        (out / name).unlink()
    metrics = (out / "metrics.jsonl").read_bytes()
    # before the fix: started from scratch and logged steps 1, 2, 1, 2, ...
    assert run(out, "--max-steps", "4", "--resume") == 2
    assert "nothing to resume" in one_error_line(capsys)
    assert (out / "metrics.jsonl").read_bytes() == metrics


def test_resume_from_previous_uses_an_intact_prev(base_run, tmp_path, capsys):
    out = Path(shutil.copytree(base_run, tmp_path / "run"))
    (out / "checkpoint.pt").unlink()  # lost; checkpoint.pt.prev (step 1) is intact
    assert run(out, "--max-steps", "3", "--resume") == 2
    assert "add --resume-from-previous" in one_error_line(capsys)
    # before the fix: started from scratch, then rotated that .prev away
    assert run(out, "--max-steps", "3", "--resume-from-previous") == 0
    assert steps_logged(out) == [1, 2, 3]
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 3
    assert load_checkpoint(out / "checkpoint.pt.prev")["step"] == 2


def test_a_refused_run_leaves_no_empty_folder(tmp_path, capsys):
    # before the fix: the folder was made before the batch size was found too large
    assert run(tmp_path / "a" / "run", "--batch-size", "64") == 2
    assert "larger than the training set" in one_error_line(capsys)
    assert not (tmp_path / "a").exists()


def test_every_file_the_trainer_writes_is_renamed_into_place(tmp_path, monkeypatch):
    renamed = []
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (renamed.append(os.path.basename(b)),
                                                     real(a, b))[1])
    out = tmp_path / "run"
    assert T.main([*TINY[:-1], "--out", str(out), "--max-steps", "1"]) == 0  # with plots
    written = {p.name for p in out.rglob("*") if p.is_file()}
    assert written == {"checkpoint.pt", "metrics.jsonl", "metrics.png", "step_0000001.png",
                       "summary.json"}
    # metrics.jsonl is appended one write per record (a torn last line is skipped on read)
    assert written - {"metrics.jsonl"} <= set(renamed)


def test_a_full_disk_during_a_save_is_one_line(tmp_path, capsys, monkeypatch):
    class FillsUp:
        """A file on a disk that is full after 64 KiB."""

        def __init__(self, f):
            self.f, self.written = f, 0

        def write(self, b):
            self.written += len(b)
            if self.written > 65536:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.f.write(b)

        def flush(self):
            self.f.flush()

    real_init = ckpt_module._HashingWriter.__init__
    monkeypatch.setattr(ckpt_module._HashingWriter, "__init__",
                        lambda self, f: real_init(self, FillsUp(f)))
    # before the fix: a 40-line traceback ending in "inline_container.cc ... unexpected pos"
    assert run(tmp_path / "run", "--max-steps", "1") == 2
    line = one_error_line(capsys)
    assert "could not write checkpoint" in line and "No space left on device" in line
    with pytest.raises(OSError, match="No space left"):
        run(tmp_path / "run", "--max-steps", "1", "--overwrite", "--debug")


def test_a_cifar_tarball_with_the_wrong_md5_is_one_line(tmp_path, capsys):
    (tmp_path / "cifar-10-python.tar.gz").write_text("<html>captive portal</html>")
    assert T.main([*TINY, "--dataset", "cifar10", "--data-root", str(tmp_path), "--no-download",
                   "--out", str(tmp_path / "run")]) == 2
    assert "checksum failed for" in one_error_line(capsys)
    assert not (tmp_path / "run").exists()


def test_a_val_fraction_of_no_image_is_an_error(tmp_path, capsys):
    # 0.01 of 16 images rounds to 0: before the fix the run selected on the test set
    assert run(tmp_path / "run", "--val-fraction", "0.01", "--max-steps", "1") == 2
    assert "--val-fraction 0.01 of 16 training images is 0 images" in one_error_line(capsys)


def test_a_nan_batch_leaves_every_batch_norm_average_finite():
    model = RealNVP(3, 8, num_scales=2, mid_channels=8, num_blocks=1).train()
    model(torch.randn(4, 3, 8, 8))
    bad = torch.randn(4, 3, 8, 8)
    bad[0, 0, 0, 0] = math.nan
    model(bad)  # before the fix: NaN in the s/t networks' 80-odd batch-norm buffers
    stats = {k: v for k, v in model.state_dict().items() if "running" in k}
    assert any(".net." in k for k in stats)
    assert all(torch.isfinite(v).all() for v in stats.values())
    model.eval()
    assert torch.isfinite(model.log_prob(torch.randn(2, 3, 8, 8))).all()
    assert torch.isfinite(model.sample(2)).all()
    assert not hasattr(T.Trainer, "_save_batch_norm_state")  # no per-step snapshot


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_saves_a_checkpoint_and_says_how_to_resume(tmp_path, capsys, monkeypatch,
                                                            signum, status):
    def not_deferred(*_):  # what the trainer before the fix let through (instead of dying)
        raise RuntimeError("the signal was not deferred")

    real_step = T.Trainer.train_step

    def step_then_signal(self, xb):
        out = real_step(self, xb)
        if self.step == 1:  # during step 2
            os.kill(os.getpid(), signum)
        return out

    monkeypatch.setattr(T.Trainer, "train_step", step_then_signal)
    before = {s: signal.signal(s, not_deferred) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        out = tmp_path / "run"
        assert run(out, "--max-steps", "6") == status
    finally:
        for s, h in before.items():
            signal.signal(s, h)
    line = one_error_line(capsys)
    assert f"after step 2: checkpoint {out / 'checkpoint.pt'} saved at step 2" in line
    assert "resume with --resume: python -m nvp_edu.train --dataset synthetic" in line
    assert line.endswith("--max-steps 6 --resume")
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 2
    if signum == signal.SIGTERM:  # the checkpoint continues the run
        monkeypatch.setattr(T.Trainer, "train_step", real_step)
        assert run(out, "--max-steps", "3", "--resume") == 0
        assert steps_logged(out) == [1, 2, 3]
