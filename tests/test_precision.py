"""Precision per device (issue 19, item 4): auto picks bf16 on Ampere+, fp16 with a
gradient scaler on older CUDA GPUs (T4, V100), fp32 on CPU/MPS; the fp16 path is tested
on the CPU, where torch has fp16 autocast and a CPU GradScaler."""
import math

import pytest
import torch

from nvp_edu import train as T
from nvp_edu.checkpoint import load_checkpoint, save_checkpoint
from nvp_edu.training.precision import Precision, choose_precision, initial_loss_scale

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = ["--dataset", "synthetic", "--preset", "tiny", "--batch-size", "8", "--limit-train",
        "16", "--limit-test", "8", "--log-every", "1", "--no-progress", "--no-plots"]


@pytest.mark.parametrize("device, capability, expected", [
    ("cuda", (7, 5), "fp16"),  # T4 (Turing)
    ("cuda", (7, 0), "fp16"),  # V100 (Volta)
    ("cuda", (8, 0), "bf16"),  # A100
    ("cuda", (9, 0), "bf16"),  # H100
    ("cpu", None, "fp32"),
    ("mps", None, "fp32"),
])
def test_auto_picks_the_precision_of_the_device(monkeypatch, device, capability, expected):
    # the capability as torch reports it, mocked: no GPU is needed to test the decision
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: capability)
    assert choose_precision("auto", torch.device(device)) == expected
    for name in ("fp32", "bf16", "fp16"):  # an explicit choice always wins
        assert choose_precision(name, torch.device(device)) == name


def test_the_initial_loss_scale_keeps_the_scaled_loss_inside_fp16():
    for dims, levels in [(3 * 32 * 32, 256), (64, 17), (3 * 64 * 64, 256)]:
        scale = initial_loss_scale(dims, levels)
        assert scale * 2 * dims * math.log(levels) <= 65504  # fp16's largest value
        assert scale * 2 * dims * math.log(levels) * 2 > 65504 or scale == 2**16
    assert Precision("fp16", torch.device("cpu"), 64, 17).scaler.get_scale() == 128.0
    assert Precision("bf16", torch.device("cpu"), 64, 17).scaler is None


def _trainer(**kw):
    cfg = T.Config(out=None, limit_train=16, limit_test=8, batch_size=8, progress=False,
                   precision="fp16", device="cpu", **kw)
    return T.Trainer(cfg, T.Dist("cpu"))


def test_an_fp16_step_runs_the_nets_in_fp16_and_the_log_dets_in_fp32():
    trainer = _trainer()
    seen = []
    hook = trainer.model.final[0].net.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    before = [p.detach().clone() for p in trainer.params]
    record = trainer.train_step(trainer.train_x[:8])
    hook.remove()
    assert seen == [torch.float16]
    assert math.isfinite(record["loss"].item()) and record["loss"].dtype == torch.float32
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.params))  # it stepped
    assert trainer.precision.scaler.get_scale() == initial_loss_scale(3 * 32 * 32, 256)


def test_a_step_with_inf_gradients_is_skipped_by_the_scaler():
    trainer = _trainer(ema=0.9)
    p = trainer.model.final[0].net.out[2].magnitude
    hook = p.register_hook(lambda g: g * math.inf)  # an fp16 overflow in the backward pass
    before = [q.detach().clone() for q in trainer.params]
    ema_before = [q.detach().clone() for q in trainer.ema.parameters()]
    scale = trainer.precision.scaler.get_scale()
    record = trainer.train_step(trainer.train_x[:8])  # no NonFiniteLossError: skipped
    hook.remove()
    assert not math.isfinite(record["grad_norm"].item())
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.params))
    assert all(torch.equal(a, b) for a, b in zip(ema_before, trainer.ema.parameters()))
    assert trainer.precision.scaler.get_scale() == scale / 2
    trainer.train_step(trainer.train_x[8:16])  # the next step goes through
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.params))


def test_the_scaler_state_survives_resume_and_the_precision_is_reported(tmp_path, capsys):
    out = tmp_path / "run"
    assert T.main([*TINY, "--out", str(out), "--max-steps", "1", "--precision", "fp16"]) == 0
    assert "precision: fp16 autocast with a gradient scaler (--precision fp16)" in \
        capsys.readouterr().err
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["scaler"]["scale"] == 1.0
    ckpt["scaler"]["scale"], ckpt["scaler"]["_growth_tracker"] = 0.25, 7  # as if it had moved
    save_checkpoint(out / "checkpoint.pt", ckpt)
    assert T.main([*TINY, "--out", str(out), "--max-steps", "2", "--precision", "fp16",
                   "--resume"]) == 0
    resumed = load_checkpoint(out / "checkpoint.pt")["scaler"]
    assert resumed["scale"] == 0.25 and resumed["_growth_tracker"] == 8  # loaded, one more step
    summary = T.read_metrics(out)  # and summary.json names the precision
    assert (out / "summary.json").read_text().count('"precision": "fp16"') == 1
    assert [r["step"] for r in summary if r["kind"] == "train"] == [1, 2]
