"""The trainer: exact resume, NaN guard, bits/dim bookkeeping, mixed precision, CLI."""
import json
import math

import pytest
import torch

from nvp_edu import train as T
from nvp_edu.checkpoint import load_checkpoint, same_training_state
from nvp_edu.training import objective
from nvp_edu.training.objective import l2_parameters

# a few tiny steps: 48 synthetic CIFAR-shaped images, batch 8 -> 6 steps per epoch
SMALL = ["--dataset", "synthetic", "--preset", "tiny", "--batch-size", "8", "--limit-train",
         "48", "--limit-test", "16", "--num-samples", "4", "--log-every", "1", "--no-progress"]


pytestmark = pytest.mark.usefixtures("one_thread")


def _run(out, *extra):
    return T.main([*SMALL, "--out", str(out), *extra])


def test_resumed_run_ends_bitwise_equal_to_uninterrupted(tmp_path, capsys):
    # stop at step 4 (mid epoch 1), resume to 8 (crossing the epoch boundary at 6)
    assert _run(tmp_path / "straight", "--max-steps", "8", "--seed", "3") == 0
    assert _run(tmp_path / "split", "--max-steps", "4", "--seed", "3") == 0
    assert _run(tmp_path / "split", "--max-steps", "8", "--seed", "3", "--resume") == 0
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    b = load_checkpoint(tmp_path / "split" / "checkpoint.pt")
    assert a["step"] == b["step"] == 8
    assert same_training_state(a, b)
    assert torch.equal(a["rng_per_rank"][0]["generators"]["aug"],
                       b["rng_per_rank"][0]["generators"]["aug"])
    # the logged losses agree step by step, and no step is logged twice
    la = [(r["step"], r["loss"]) for r in T.read_metrics(tmp_path / "straight")
          if r["kind"] == "train"]
    lb = [(r["step"], r["loss"]) for r in T.read_metrics(tmp_path / "split")
          if r["kind"] == "train"]
    assert la == lb and [s for s, _ in la] == list(range(1, 9))
    capsys.readouterr()
    assert T.main([*SMALL, "--dataset", "digits", "--seed", "3", "--out", str(tmp_path / "split"),
                   "--resume"]) == 2  # one line, no traceback
    assert "trained with --dataset synthetic; got --dataset digits" in capsys.readouterr().err
    # the comparison can fail: another seed ends elsewhere
    assert _run(tmp_path / "other", "--max-steps", "2", "--seed", "4") == 0
    c = load_checkpoint(tmp_path / "other" / "checkpoint.pt")
    assert not all(torch.equal(a["model"][k], c["model"][k]) for k in a["model"])
    c["step"] = 8
    assert not same_training_state(a, c)
    run = tmp_path / "straight"
    assert (run / "metrics.png").is_file() and (run / "samples" / "step_0000008.png").is_file()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 8 and math.isfinite(summary["test_bpd"])


def test_nan_guard_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    real = T.to_model_space
    calls = {"train": 0}

    def poisoned(x, levels, generator=None):
        y, ld = real(x, levels, generator)
        if torch.is_grad_enabled():  # training steps only, not evaluation
            calls["train"] += 1
            if calls["train"] == 5:
                y = y.clone()
                y[0, 0, 0, 0] = math.inf
        return y, ld

    monkeypatch.setattr(objective, "to_model_space", poisoned)
    out = tmp_path / "nan"
    digits = ["--dataset", "digits", "--limit-train", "64", "--limit-test", "16"]
    assert _run(out, *digits, "--max-steps", "8", "--eval-every", "2") == 2
    err = capsys.readouterr().err
    assert "non-finite loss or gradient at step 5" in err
    assert "last good checkpoint" in err and "(step 4)" in err
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["step"] == 4
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    with pytest.raises(T.NonFiniteLossError, match="no checkpoint was written yet"):
        calls["train"] = 0
        T.train(T.parse_args([*SMALL, *digits, "--out", str(tmp_path / "nan2"),
                              "--max-steps", "8"]))


def test_preprocessing_log_det_and_bits_per_dim_constant():
    # the logit's log-det against autograd, per sample, in float64
    x = torch.tensor([[0, 17, 255], [128, 3, 200]], dtype=torch.uint8)
    u = torch.rand(2, 3, generator=torch.Generator().manual_seed(0))
    y, ld = T.to_model_space(x, 256, torch.Generator().manual_seed(0))
    x01 = ((x.double() + u.double()) / 256).requires_grad_()
    p = T.LOGIT_ALPHA + (1 - 2 * T.LOGIT_ALPHA) * x01
    yy = torch.log(p / (1 - p))
    (d,) = torch.autograd.grad(yy.sum(), x01)
    torch.testing.assert_close(y.double(), yy.detach(), rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(ld.double(), d.log().sum(1), rtol=1e-5, atol=1e-5)
    # a uniform density on [0, 1]^D is exactly log2(levels) bits/dim
    bpd = T.bits_per_dim(-ld, ld, D=3, levels=256)
    torch.testing.assert_close(bpd, torch.full((2,), 8.0))
    torch.testing.assert_close(T.from_model_space(y).double(), x01.detach().clamp(0, 1),
                               rtol=0, atol=1e-5)


def test_bf16_autocast_runs_nets_in_bf16_but_log_dets_in_float32():
    model = T.build_model("tiny", 3, 32)
    y, _ = T.to_model_space(torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8), 256)
    seen = []
    conv = model.final[0].net.conv_in
    conv.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    with torch.no_grad():
        z32, ld32 = model(y)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            z16, ld16 = model(y)
    assert seen == [torch.float32, torch.bfloat16]
    assert z16.dtype == torch.float32 and ld16.dtype == torch.float32
    assert (z16 - z32).abs().max() < 0.1 and (ld16 - ld32).abs().max() < 1.0


def test_bf16_channels_last_training_step_is_finite(tmp_path):
    out = tmp_path / "bf16"
    assert _run(out, "--max-steps", "2", "--precision", "bf16", "--channels-last") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["precision"] == "bf16" and summary["channels_last"] is True
    assert math.isfinite(summary["test_bpd"]) and 6 < summary["test_bpd"] < 12


@pytest.mark.parametrize("clip", [1e9, "half"])
def test_objective_is_nats_plus_l2_and_the_clip_acts_on_that_gradient(monkeypatch, clip):
    """The gradient that reaches Adam is d(mean NLL in nats + l2 * sum g^2), clipped to
    global norm ``grad_clip`` in those units (the official code), in float64."""
    to_model = T.to_model_space
    monkeypatch.setattr(objective, "to_model_space",
                        lambda x, levels, g=None: tuple(t.double() for t in to_model(x, levels, g)))
    cfg = T.Config(dataset="synthetic", preset="tiny", out=None, limit_train=32, limit_test=8,
                   batch_size=8, l2=0.3, progress=False)  # a large l2: its share is visible
    trainer = T.Trainer(cfg, T._Dist("cpu"))
    model = trainer.model.double()
    torch.nn.init.normal_(model.final[0].net.out[2].magnitude, std=0.5)  # away from zero init
    xb = trainer.train_x[:8]
    params = list(model.parameters())
    state = trainer.aug.get_state()
    nll = T.nll_nats(model, xb, 256, trainer.aug).mean()
    nats_grad = torch.autograd.grad(nll, params, allow_unused=True)
    l2_ids = {id(p) for p in l2_parameters(model)}
    expected = [(torch.zeros_like(p) if g is None else g) + (2 * 0.3 * p.detach()
                if id(p) in l2_ids else 0) for p, g in zip(params, nats_grad)]
    norm = torch.sqrt(sum(e.pow(2).sum() for e in expected))
    # in nats the tiny model's gradient norm is far above the official clip of 100 (in
    # bits/dim it would be 2129x smaller, and the clip would never act)
    assert norm > 100
    trainer.cfg.grad_clip = float(norm) / 2 if clip == "half" else clip
    if clip == "half":
        expected = [e / 2 for e in expected]
    seen = []
    monkeypatch.setattr(trainer.optimizer, "step", lambda: seen.append(
        [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in params]))
    trainer.aug.set_state(state)  # the same dequantization noise
    out = trainer.train_step(xb)
    torch.testing.assert_close(out["nll"], nll.detach())
    for got, want in zip(seen[0], expected):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-9)


def test_l2_term_is_part_of_the_logged_loss(tmp_path):
    assert _run(tmp_path / "r", "--max-steps", "2") == 0
    rec = [r for r in T.read_metrics(tmp_path / "r") if r["kind"] == "train"][-1]
    assert rec["loss"] > rec["nll_nats"]  # + l2 * sum g^2 > 0
    assert abs(rec["bpd"] - (rec["nll_nats"] + 3072 * math.log(256)) / (3072 * math.log(2))) < 1e-9


def test_cli_help_and_bad_input(capsys):
    with pytest.raises(SystemExit):
        T.main(["--help"])
    text = capsys.readouterr().out
    for flag in ["--dataset", "--preset", "--out", "--max-steps", "--epochs", "--resume",
                 "--seed", "--device", "--batch-size", "--precision", "--compile",
                 "--data-root"]:
        assert flag in text
    with pytest.raises(ValueError, match="batch size 64 x 1 process"):
        T.train(T.parse_args(["--dataset", "digits", "--out", "/tmp/x", "--batch-size", "64",
                              "--limit-train", "10"]))
    assert T.main(["--dataset", "cifar10", "--no-download", "--data-root", "/nonexistent",
                   "--out", "/tmp/x"]) == 1
    assert "cifar-10-python.tar.gz not found in folder /nonexistent" in capsys.readouterr().err
    with pytest.raises(ValueError, match="got 'fp8'"):
        T.train(T.Config(precision="fp8", out=None))


def test_recalibration_uses_a_seeded_sample_of_all_training_images_not_the_first():
    # photos are stored photograph by photograph: the first n images are one photograph,
    # whose statistics made the recalibrated model 1.7 bits/dim worse (4.03 -> 5.72)
    x = torch.arange(1000).view(1000, 1, 1, 1)
    picked = T.recalibration_images(x, 100, seed=0)
    assert picked.shape == (100, 1, 1, 1)
    assert len(set(picked.flatten().tolist())) == 100          # no image twice
    assert picked.max() > 500                                   # reaches past the first half
    assert torch.equal(picked, T.recalibration_images(x, 100, seed=0))   # reproducible
    assert not torch.equal(picked, T.recalibration_images(x, 100, seed=1))
    assert torch.equal(T.recalibration_images(x[:50], 100, seed=0), x[:50])  # all if few
