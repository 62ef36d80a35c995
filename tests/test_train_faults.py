"""The trainer's faults of issue 13, each reproduced first: kills, resume, damage, blow-ups,
input checks. Tiny runs: synthetic CIFAR-shaped images, the tiny preset, a few steps."""
import json
import math
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from conftest import one_error_line, steps_logged

from nvp_edu import train as T
from nvp_edu.checkpoint import load_checkpoint, previous_checkpoint, save_checkpoint
from nvp_edu.training import objective, run_folder

REPO = Path(__file__).resolve().parents[1]
# 48 images, batch 8: 6 steps per epoch
SMALL = ["--dataset", "synthetic", "--preset", "tiny", "--batch-size", "8", "--limit-train",
         "48", "--limit-test", "16", "--num-samples", "4", "--log-every", "1", "--no-progress",
         "--no-plots"]


pytestmark = pytest.mark.usefixtures("one_thread")


def run(out, *extra):
    return T.main([*SMALL, "--out", str(out), *extra])


def strict_json(path):
    def refuse(name):
        raise ValueError(f"{path} holds {name}, which is not JSON")
    return json.loads(Path(path).read_text(), parse_constant=refuse)


# ---- 1. metrics.jsonl survives kills ------------------------------------------------------

def test_read_metrics_skips_a_line_cut_short_with_a_warning(tmp_path):
    lines = [json.dumps({"kind": "train", "step": s, "loss": 1.0}) for s in (1, 2, 3)]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + '\n{"kind": "train", "st')
    with pytest.warns(UserWarning, match=r"metrics.jsonl: skipped line\(s\) 4, not a complete"):
        records = T.read_metrics(tmp_path)
    assert [r["step"] for r in records] == [1, 2, 3]


def test_resume_after_a_torn_last_line_succeeds(tmp_path):
    assert run(tmp_path, "--max-steps", "2") == 0
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"kind": "train", "step": 3, "loss": -35')  # a kill in the middle of a write
    with pytest.warns(UserWarning, match="not a complete JSON record"):
        assert run(tmp_path, "--max-steps", "4", "--resume") == 0
    assert steps_logged(tmp_path) == [1, 2, 3, 4]
    assert '"loss": -35\n' not in (tmp_path / "metrics.jsonl").read_text()


def test_truncating_metrics_is_atomic(tmp_path, monkeypatch):
    lines = "".join(json.dumps({"kind": "train", "step": s}) + "\n" for s in range(1, 6))
    (tmp_path / "metrics.jsonl").write_text(lines)
    calls = []

    def dies_on_the_third_record(record):
        calls.append(record)
        if len(calls) == 3:
            raise KeyboardInterrupt  # a kill in the middle of the rewrite
        return json.dumps(record)

    monkeypatch.setattr(run_folder, "to_json", dies_on_the_third_record)
    with pytest.raises(KeyboardInterrupt):
        T._truncate_metrics(tmp_path, 4)
    assert (tmp_path / "metrics.jsonl").read_text() == lines  # the old file, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl"]  # no leftovers


# Run by the first training process of the kill test: at the logged step TEAR_AT it
# writes half of the metrics line, says so, and waits to be killed: a kill -9 in the
# middle of a write, at a known moment.
TEARING_CHILD = """
import json, pathlib, sys, time
from nvp_edu import train as T
marker, tear_at = pathlib.Path(sys.argv[1]), int(sys.argv[2])
log = T.Trainer._log

def tearing_log(self, record):
    if record.get("kind") == "train" and record["step"] == tear_at:
        line = json.dumps(record) + "\\n"
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(line[:len(line) // 2])
        marker.touch()
        time.sleep(300)
    log(self, record)

T.Trainer._log = tearing_log
sys.exit(T.main(sys.argv[3:]))
"""


def _start(out: Path, *extra: str, child: list[str] | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    args = [*SMALL, "--limit-train", "400", "--num-samples", "0", "--ckpt-every", "1",
            "--eval-every", "1000", "--out", str(out), *extra]
    cmd = [sys.executable, *(child or ["-m", "nvp_edu.train"]), *args]
    return subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=open(out.parent / f"{out.name}.stderr", "a"))


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 120.0) -> None:
    """SIGKILL ``proc`` as soon as ``ready()`` holds (bounded: fails after ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert proc.poll() is None, "the training run ended before it could be killed"
            assert time.monotonic() < deadline, "the training run did not get going in time"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)


def test_kill_9_mid_line_and_during_resume_then_resume_succeeds(tmp_path):
    out, marker = tmp_path / "run", tmp_path / "torn"
    out.mkdir()
    # kill -9 while a metrics line is half written (after the checkpoint of step 2)
    proc = _start(out, "--max-steps", "400",
                  child=["-c", TEARING_CHILD, str(marker), "3"])
    _kill_when(proc, marker.exists)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "metrics.jsonl").read_text().endswith("\n")  # torn
    # kill -9 of a resume as soon as it has resumed (around its metrics rewrite)
    proc = _start(out, "--max-steps", "400", "--resume")
    _kill_when(proc, lambda: "resumed from" in (tmp_path / "run.stderr").read_text())
    # the next resume goes on from the last intact checkpoint, every step logged once
    start = load_checkpoint(out / "checkpoint.pt")["step"]
    assert start >= 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the torn line, if the rewrite did not happen
        assert run(out, "--max-steps", str(start + 2), "--resume", "--limit-train", "400") == 0
    assert steps_logged(out) == list(range(1, start + 3))
    assert math.isfinite(strict_json(out / "summary.json")["test_bpd"])


# ---- 2. what a resume may change ----------------------------------------------------------

@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """A 2-step run (seed 3) to resume from; tests copy it."""
    out = tmp_path_factory.mktemp("base") / "run"
    assert run(out, "--max-steps", "2", "--seed", "3") == 0
    return out


def copy_run(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        if f.is_file():
            (dst / f.name).write_bytes(f.read_bytes())
    return dst


@pytest.mark.parametrize("change, old, new", [
    (["--batch-size", "16"], "--batch-size 8", "--batch-size 16"),
    (["--seed", "4"], "--seed 3", "--seed 4"),
    (["--val-fraction", "0.25"], "--val-fraction 0.0", "--val-fraction 0.25"),
    (["--limit-train", "40"], "--limit-train 48", "--limit-train 40"),
    (["--ema", "0.9"], "--ema off", "--ema on"),
    (["--preset", "digits", "--batch-size", "16"], "--preset tiny, --batch-size 8",
     "--preset digits, --batch-size 16"),
])
def test_resume_refuses_what_defines_the_run(base_run, tmp_path, capsys, change, old, new):
    out = copy_run(base_run, tmp_path / "run")
    before = (out / "checkpoint.pt").read_bytes()
    # before the fix another --batch-size was accepted and the epoch counter went backwards
    assert run(out, "--seed", "3", "--max-steps", "4", "--resume", *change) == 2
    line = one_error_line(capsys)
    assert f"was trained with {old}; got {new}. These settings define the run" in line
    assert (out / "checkpoint.pt").read_bytes() == before


def test_resume_may_change_how_it_optimizes_logs_and_runs(base_run, tmp_path):
    out = copy_run(base_run, tmp_path / "run")
    assert run(out, "--seed", "3", "--resume", "--max-steps", "4", "--lr", "5e-4",
               "--lr-schedule", "cosine", "--l2", "0", "--grad-clip", "50", "--log-every", "2",
               "--ckpt-every", "3", "--precision", "bf16", "--ema", "0.9") == 2  # ema: on/off
    assert run(out, "--seed", "3", "--resume", "--max-steps", "4", "--lr", "5e-4",
               "--lr-schedule", "cosine", "--l2", "0", "--grad-clip", "50", "--log-every", "2",
               "--ckpt-every", "3", "--precision", "bf16") == 0
    records = [r for r in T.read_metrics(out) if r["kind"] == "train"]
    assert [r["step"] for r in records] == [1, 2, 4]  # --log-every 2 from step 3 on
    last = records[-1]
    # step 4 ran at step index 3 of 4 of a cosine schedule from the new lr
    assert last["lr"] == pytest.approx(5e-4 * 0.5 * (1 + math.cos(math.pi * 3 / 4)))
    assert last["loss"] == last["nll_nats"]  # --l2 0
    assert load_checkpoint(previous_checkpoint(out / "checkpoint.pt"))["step"] == 3
    summary = strict_json(out / "summary.json")
    assert summary["precision"] == "bf16" and summary["steps"] == 4


def test_resume_on_another_device_type_reseeds_instead_of_failing(base_run, tmp_path, capsys):
    out = copy_run(base_run, tmp_path / "run")
    ckpt = load_checkpoint(out / "checkpoint.pt")
    # what a CUDA run stores: its generator's state is 16 bytes (seed and offset), which a
    # CPU generator cannot take (nor the other way round)
    ckpt["device_type"] = "cuda"
    ckpt["rng_per_rank"][0]["generators"]["aug"] = torch.zeros(16, dtype=torch.uint8)
    save_checkpoint(out / "checkpoint.pt", ckpt)
    assert run(out, "--seed", "3", "--resume", "--max-steps", "3") == 0
    assert "ran on 1 x cuda, this run on 1 x cpu: dequantization noise and flips are " \
           "reseeded" in capsys.readouterr().err


def test_help_says_what_a_resume_may_change_and_what_it_refuses(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "2000")  # no line breaks inside flag names
    with pytest.raises(SystemExit):
        T.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "May change, from the next step on: --lr, --lr-schedule, --l2, --grad-clip" in text
    assert ("Refused, naming old and new value: --dataset, --preset, --batch-size, --seed, "
            "--val-fraction, --limit-train, --ema on/off") in text
    assert "--resume-from-previous" in text and "--debug" in text
    for flag in ("--device", "--precision", "--compile", "--max-steps", "--ckpt-every"):
        assert flag in T.__doc__


# ---- 3. damaged checkpoints and blow-ups --------------------------------------------------

def damage(path: Path) -> bytes:
    """Invert 1 KiB in the middle: surely tensor bytes or zip structure, not only the
    alignment padding between a zip's records (which a one-byte flip may hit, unseen)."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 1024] = bytes(b ^ 0xFF for b in data[middle:middle + 1024])
    path.write_bytes(bytes(data))
    return bytes(data)


def test_a_damaged_checkpoint_stops_resume_and_previous_one_continues(tmp_path, capsys):
    out = tmp_path / "run"
    assert run(out, "--max-steps", "4", "--ckpt-every", "2") == 0
    damaged = damage(out / "checkpoint.pt")
    capsys.readouterr()
    assert run(out, "--max-steps", "6", "--resume") == 2
    line = one_error_line(capsys)
    assert f"checkpoint {out / 'checkpoint.pt'} is damaged and was NOT loaded" in line
    assert f"The previous good checkpoint is {out / 'checkpoint.pt.prev'} (step 2): add " \
           "--resume-from-previous to continue from it" in line
    assert (out / "checkpoint.pt").read_bytes() == damaged  # never overwritten
    assert run(out, "--max-steps", "6", "--resume-from-previous") == 0
    assert (out / "checkpoint.pt.damaged").read_bytes() == damaged  # kept for inspection
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 6
    assert steps_logged(out) == [1, 2, 3, 4, 5, 6]


def test_a_damaged_checkpoint_without_a_previous_one_says_so(tmp_path, capsys):
    out = tmp_path / "run"
    assert run(out, "--max-steps", "1") == 0
    damaged = damage(out / "checkpoint.pt")
    for flag in ("--resume", "--resume-from-previous"):
        capsys.readouterr()
        assert run(out, "--max-steps", "2", flag) == 2
        line = one_error_line(capsys)
        assert "is damaged and was NOT loaded" in line
        assert "There is no intact previous checkpoint (checkpoint.pt.prev)" in line
        assert (out / "checkpoint.pt").read_bytes() == damaged


def test_a_blow_up_in_the_optimizer_step_stops_and_keeps_the_last_good_checkpoint(
        tmp_path, capsys):
    out = tmp_path / "run"
    # before the fix: exit 0, a NaN held-out figure, the broken weights saved, and NaN
    # (not JSON) in summary.json
    assert run(out, "--lr", "1e30", "--max-steps", "1") == 2
    line = one_error_line(capsys)
    assert "after step 1 is not finite (nan)" in line and "were NOT saved" in line
    assert "no checkpoint was written yet" in line
    assert not (out / "checkpoint.pt").exists() and not (out / "summary.json").exists()
    assert run(out, "--max-steps", "2", "--overwrite") == 0
    good = (out / "checkpoint.pt").read_bytes()
    capsys.readouterr()
    assert run(out, "--max-steps", "3", "--resume", "--lr", "1e30") == 2
    line = one_error_line(capsys)
    assert "after step 3 is not finite" in line
    assert f"last good checkpoint: {out / 'checkpoint.pt'} (step 2), kept untouched" in line
    assert (out / "checkpoint.pt").read_bytes() == good


def test_non_finite_weights_are_never_checkpointed(tmp_path):
    cfg = T.Config(out=str(tmp_path), limit_train=16, limit_test=8, batch_size=8,
                   progress=False, plots=False)
    trainer = T.Trainer(cfg, T._Dist("cpu"))
    with torch.no_grad():
        next(trainer.model.parameters()).view(-1)[0] = math.inf
    with pytest.raises(T.NonFiniteLossError, match="the weights are not finite after step 0"):
        trainer._checkpoint()
    assert not (tmp_path / "checkpoint.pt").exists()


def test_summary_json_is_strict_json():
    assert T._to_json({"a": math.nan, "b": [math.inf, 1.5], "c": {"d": -math.inf}}) == \
        '{"a": null, "b": [null, 1.5], "c": {"d": null}}'


# ---- 4. a finished run resumed ------------------------------------------------------------

@pytest.mark.parametrize("extra", [[], ["--val-fraction", "0.25", "--ema", "0.9"]])
def test_resuming_a_finished_run_reports_its_test_figure(tmp_path, extra):
    out = tmp_path / "run"
    assert run(out, "--max-steps", "2", *extra) == 0
    first = strict_json(out / "summary.json")
    assert run(out, "--max-steps", "2", "--resume", *extra) == 0  # nothing left to train
    again = strict_json(out / "summary.json")
    assert again["steps"] == 2 and again["test_bpd"] is not None
    assert again["test_bpd"] == pytest.approx(first["test_bpd"], abs=1e-6)


# ---- 5. a non-finite batch never moves the batch-norm statistics ---------------------------

def test_a_refused_step_puts_every_batch_norm_running_average_back(monkeypatch):
    cfg = T.Config(out=None, limit_train=16, limit_test=8, batch_size=8, progress=False)
    trainer = T.Trainer(cfg, T._Dist("cpu"))
    trainer.train_step(trainer.train_x[:8])
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    real = T.to_model_space

    def poisoned(x, levels, generator=None):
        y, ld = real(x, levels, generator)
        y = y.clone()
        y[0, 0, 0, 0] = math.nan
        return y, ld

    monkeypatch.setattr(objective, "to_model_space", poisoned)
    with pytest.raises(T.NonFiniteLossError, match="non-finite loss or gradient at step 1"):
        trainer.train_step(trainer.train_x[8:16])
    after = trainer.model.state_dict()
    stats = [k for k in before if k.endswith(("running_mean", "running_var"))]
    assert any(".net." in k for k in stats) and any(".net." not in k for k in stats)
    for k in before:  # the torch batch norms of the s/t networks included
        assert torch.equal(before[k], after[k]), k


# ---- 6. settings are checked up front -------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["--max-steps", "0"], "--max-steps must be at least 1; got 0"),
    (["--batch-size", "0"], "--batch-size must be at least 1; got 0"),
    (["--batch-size", "-8"], "--batch-size must be at least 1; got -8"),
    (["--limit-train", "0"], "--limit-train must be at least 1; got 0"),
    (["--limit-test", "-1"], "--limit-test must be at least 1; got -1"),
    (["--epochs", "0"], "--epochs must be at least 1; got 0"),
    (["--log-every", "0"], "--log-every must be at least 1; got 0"),
    (["--eval-every", "-1"], "--eval-every must be at least 0 (0: once per epoch); got -1"),
    (["--ckpt-every", "-2"],
     "--ckpt-every must be at least 0 (0: at evaluations and the end); got -2"),
    (["--num-samples", "-1"], "--num-samples must be at least 0 (0: no sample grids); got -1"),
    (["--val-fraction", "1"], "--val-fraction must be in [0, 1); got 1.0"),
    (["--val-fraction", "-0.1"], "--val-fraction must be in [0, 1); got -0.1"),
    (["--ema", "1"], "--ema must be in (0, 1); got 1.0"),
    (["--ema", "0"], "--ema must be in (0, 1); got 0.0"),
    (["--lr", "0"], "--lr must be in (0, inf); got 0.0"),
    (["--lr", "nan"], "--lr must be in (0, inf); got nan"),
    (["--grad-clip", "-1"], "--grad-clip must be in (0, inf]; got -1.0"),
    (["--seed", "-1"], "--seed must be at least 0; got -1"),
    (["--device", "tpu"], "--device must be auto, cpu, cuda, cuda:N or mps; got 'tpu'"),
])
def test_bad_settings_are_one_line_errors(tmp_path, capsys, args, message):
    assert run(tmp_path / "run", *args) == 2
    assert one_error_line(capsys) == f"error: {message}"
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_an_out_that_is_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "taken").write_text("not a folder")
    assert run(tmp_path / "taken") == 2
    assert "--out" in one_error_line(capsys) and "existing file is in the way"
    assert run(tmp_path / "taken" / "run") == 2
    assert f"{tmp_path / 'taken'} is a file" in one_error_line(capsys)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a GPU")
def test_asking_for_a_gpu_that_is_not_there_is_an_error(tmp_path, capsys):
    for device in ("cuda", "cuda:1"):
        assert run(tmp_path / "run", "--device", device) == 2
        assert one_error_line(capsys) == (
            f"error: --device {device}: no CUDA GPU is available to this process "
            "(torch.cuda.is_available() is False); use --device auto or cpu")


def test_python_callers_get_type_errors_and_debug_shows_the_traceback(tmp_path):
    with pytest.raises(TypeError, match="--batch-size must be a whole number; got '8'"):
        T.train(T.Config(batch_size="8", out=None))
    with pytest.raises(TypeError, match="--ema must be a number; got 'on'"):
        T.train(T.Config(ema="on", out=None))
    with pytest.raises(ValueError, match="--max-steps must be at least 1; got 0"):
        run(tmp_path / "run", "--max-steps", "0", "--debug")
