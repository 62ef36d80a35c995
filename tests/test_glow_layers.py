"""Glow's layers (issue 12): ActNorm and the invertible 1x1 convolution, checked against the
float64 autograd oracle of ``nvp_edu.checks``; their place in ``RealNVP``; the trainer's
``--norm``, ``--invconv`` and ``--dequant`` (the variational dequantizer through a small
stand-in defined here, not in the package)."""
import math
import sys
import types

import pytest
import torch
from torch import nn

from conftest import perturb, train_a_few_steps
from nvp_edu import train as T
from nvp_edu.actnorm import ActNorm
from nvp_edu.base import sum_except_batch
from nvp_edu.checkpoint import load_checkpoint, same_training_state
from nvp_edu.checks import check_flow
from nvp_edu.flows import BatchNormFlow
from nvp_edu.invconv import InvConv1x1
from nvp_edu.models import RealNVP
from nvp_edu.prior import standard_normal_log_prob

pytestmark = pytest.mark.usefixtures("one_thread")



def _data(shape):
    return 2.0 + 3.0 * torch.randn(shape) * torch.linspace(0.5, 2, shape[1]).view(
        1, -1, *([1] * (len(shape) - 2)))


# ----------------------------------------- ActNorm --------------------------------------

@pytest.mark.parametrize("shape", [(64, 3, 4, 4), (256, 5)])
def test_actnorm_initializes_from_the_first_training_batch(shape):
    norm = ActNorm(shape[1])
    assert not norm.initialized
    x = _data(shape)
    y, log_det = norm(x)
    dims = [0] if len(shape) == 2 else [0, 2, 3]
    assert bool(norm.initialized)
    torch.testing.assert_close(y.mean(dim=dims), torch.zeros(shape[1]), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.std(dim=dims, unbiased=False), torch.ones(shape[1]),
                               atol=1e-4, rtol=0)
    pixels = 1 if len(shape) == 2 else 16
    # log-det = H W sum(log_scale) = -H W sum(log std) on the init batch
    expected = -pixels * torch.log(x.std(dim=dims, unbiased=False)).sum()
    torch.testing.assert_close(log_det, expected.expand(shape[0]), atol=1e-4, rtol=1e-5)
    # a second batch does not initialize again: the parameters stay
    loc, scale = norm.loc.clone(), norm.log_scale.clone()
    norm(_data(shape) * 10)
    assert torch.equal(norm.loc, loc) and torch.equal(norm.log_scale, scale)


def test_actnorm_eval_mode_does_not_initialize_and_inverse_needs_init():
    norm = ActNorm(3).eval()
    x = torch.randn(4, 3, 2, 2)
    y, log_det = norm(x)
    assert torch.equal(y, x) and not norm.initialized and log_det.abs().max() == 0
    with pytest.raises(RuntimeError, match="has not been initialized.*train mode"):
        norm.inverse(y)


@pytest.mark.parametrize("shape", [(4, 3, 3, 3), (6, 4)])
def test_actnorm_against_autograd_after_init_and_after_training(shape):
    norm = ActNorm(shape[1])
    norm.train()(_data((64, *shape[1:])))  # data-dependent init
    x = _data(shape)
    report = check_flow(norm, x)
    assert report.passed, str(report)
    before = {k: v.clone() for k, v in norm.state_dict().items()}
    train_a_few_steps(norm, x)
    assert not torch.equal(before["loc"], norm.loc) and not torch.equal(before["log_scale"],
                                                                         norm.log_scale)
    report = check_flow(norm, x)
    assert report.passed, str(report)


def test_actnorm_oracle_bites_on_a_wrong_log_det(monkeypatch):
    norm = ActNorm(3)
    norm(_data((32, 3, 2, 2)))
    real = ActNorm.forward

    def half_log_det(self, x):  # forget H*W: the check must notice
        y, ld = real(self, x)
        return y, ld / 4

    monkeypatch.setattr(ActNorm, "forward", half_log_det)
    assert not check_flow(norm, _data((2, 3, 2, 2))).log_det.passed


def test_actnorm_state_dict_round_trip_keeps_initialized(tmp_path):
    norm = ActNorm(3)
    norm(_data((32, 3, 4, 4)))
    torch.save(norm.state_dict(), tmp_path / "actnorm.pt")
    fresh = ActNorm(3)
    fresh.load_state_dict(torch.load(tmp_path / "actnorm.pt", weights_only=True))
    assert bool(fresh.initialized)
    fresh(_data((32, 3, 4, 4)) * 7 + 1)  # training mode, new data: no second init
    assert torch.equal(fresh.loc, norm.loc) and torch.equal(fresh.log_scale, norm.log_scale)
    x = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(fresh.inverse(fresh(x)[0]), x)
    assert fresh.double().initialized.dtype == torch.bool  # not turned into a float


def test_actnorm_refuses_wrong_shapes_naming_them():
    norm = ActNorm(3)
    with pytest.raises(ValueError,
                       match=r"ActNorm\(3\) needs input \(N, 3\).*got shape \(2, 4, 5, 5\)"):
        norm(torch.randn(2, 4, 5, 5))
    with pytest.raises(ValueError, match=r"got shape \(2, 3, 5\)"):
        norm(torch.randn(2, 3, 5))
    assert not norm.initialized  # a refused batch initializes nothing


# ------------------------------------- InvConv1x1 ---------------------------------------

@pytest.mark.parametrize("lu", [True, False])
@pytest.mark.parametrize("shape", [(3, 4, 3, 3), (5, 3)])
def test_invconv_against_autograd_at_init_and_after_training(lu, shape):
    conv = InvConv1x1(shape[1], lu=lu)
    x = torch.randn(shape)
    report = check_flow(conv, x)
    assert report.passed, str(report)
    before = conv.weight_matrix().detach().clone()
    train_a_few_steps(conv, _data(shape))
    assert not torch.allclose(before, conv.weight_matrix(), atol=1e-3)
    perturb(conv, 0.3)  # far from a rotation: |det W| != 1
    assert conv.log_abs_det_weight().abs() > 1e-2
    report = check_flow(conv, x)
    assert report.passed, str(report)


def test_invconv_starts_as_a_seeded_random_rotation_and_lu_matches_w():
    torch.manual_seed(3)
    a = InvConv1x1(6)
    torch.manual_seed(3)
    b = InvConv1x1(6)
    w = a.weight_matrix().detach()
    assert torch.equal(w, b.weight_matrix().detach())
    torch.testing.assert_close(w @ w.T, torch.eye(6), atol=1e-5, rtol=0)
    assert not torch.allclose(w, InvConv1x1(6).weight_matrix().detach())  # the next draw
    # the LU parts: P a permutation, L unit lower, U strictly upper (after masking)
    perturb(a, 0.2)
    lower, upper = a._factors()
    assert torch.equal(torch.diagonal(lower), torch.ones(6)) and torch.equal(lower.triu(1),
                                                                              torch.zeros(6, 6))
    assert torch.equal(upper.tril(-1), torch.zeros(6, 6))
    assert torch.equal(a.perm.sum(0), torch.ones(6)) and torch.equal(a.perm.sum(1), torch.ones(6))
    w = a.weight_matrix().detach().double()
    torch.testing.assert_close(a.log_abs_det_weight().double(),
                               torch.linalg.slogdet(w).logabsdet, atol=1e-5, rtol=0)
    torch.testing.assert_close(a.inverse_weight_matrix().detach().double() @ w,
                               torch.eye(6, dtype=torch.float64), atol=1e-5, rtol=0)


def test_invconv_masked_entries_do_not_leak():
    conv = InvConv1x1(4)
    with torch.no_grad():  # garbage in the parts the parametrisation ignores
        conv.lower.add_(torch.triu(torch.full((4, 4), 5.0)))
        conv.upper.add_(torch.tril(torch.full((4, 4), 5.0)))
    assert check_flow(conv, torch.randn(2, 4, 2, 2)).passed


def test_invconv_runs_in_float32_under_bf16_autocast():
    conv = InvConv1x1(4)
    perturb(conv, 0.3)
    x = torch.randn(2, 4, 3, 3)
    y, log_det = conv(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y_bf16, log_det_bf16 = conv(x)
    assert y_bf16.dtype == torch.float32 and torch.equal(y_bf16, y)
    assert torch.equal(log_det_bf16, log_det)


def test_invconv_refuses_wrong_shapes_naming_them():
    with pytest.raises(ValueError,
                       match=r"InvConv1x1\(4\) needs input \(N, 4\).*got shape \(2, 3, 2, 2\)"):
        InvConv1x1(4)(torch.randn(2, 3, 2, 2))
    with pytest.raises(ValueError, match=r"got shape \(2, 6\)"):
        InvConv1x1(4, lu=False).inverse(torch.randn(2, 6))


# ------------------------------------- the model ----------------------------------------

def _count(model, cls):
    return sum(isinstance(m, cls) for m in model.modules())


def test_realnvp_norm_and_invconv_placement():
    base = RealNVP(1, 8, num_scales=2, mid_channels=4, num_blocks=1)
    glow = RealNVP(1, 8, num_scales=2, mid_channels=4, num_blocks=1, norm="actnorm",
                   invconv=True)
    couplings = 3 + 3 + 4
    assert _count(base, BatchNormFlow) == couplings and _count(base, ActNorm) == 0
    assert _count(base, InvConv1x1) == 0
    assert _count(glow, BatchNormFlow) == 0 and _count(glow, ActNorm) == couplings
    # the s/t ResNets keep their torch batch norms
    assert _count(glow, nn.BatchNorm2d) == _count(base, nn.BatchNorm2d) > 0
    # 1x1 convolutions only after the squeeze: channel-wise couplings and the final scale
    assert [type(m).__name__ for m in glow.scales[0]["checkerboard"]] == [
        "AffineCoupling", "ActNorm"] * 3
    assert [type(m).__name__ for m in glow.scales[0]["channelwise"]] == [
        "InvConv1x1", "AffineCoupling", "ActNorm"] * 3
    assert [type(m).__name__ for m in glow.final] == ["InvConv1x1", "AffineCoupling",
                                                      "ActNorm"] * 4
    assert [m.channels for m in glow.modules() if isinstance(m, InvConv1x1)] == [4] * 3 + [2] * 4


def test_realnvp_defaults_are_unchanged():
    torch.manual_seed(0)
    a = RealNVP(1, 8, num_scales=2, mid_channels=4, num_blocks=1)
    torch.manual_seed(0)
    b = RealNVP(1, 8, num_scales=2, mid_channels=4, num_blocks=1, batch_norm=True, norm="batch",
                invconv=False)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("norm,invconv", [("actnorm", False), ("batch", True), ("actnorm", True)])
def test_realnvp_with_glow_layers_against_autograd(norm, invconv):
    model = RealNVP(1, 8, num_scales=2, mid_channels=4, num_blocks=1, norm=norm,
                    invconv=invconv)
    x = torch.randn(16, 1, 8, 8)
    train_a_few_steps(model, x, steps=3)  # initializes ActNorm, moves every parameter
    report = check_flow(model, x[:2], atol=1e-5)
    assert report.passed, str(report)
    assert torch.isfinite(model.sample(3)).all()


def test_realnvp_refuses_bad_glow_settings():
    with pytest.raises(ValueError, match="norm must be one of batch, actnorm; got 'layer'"):
        RealNVP(1, 8, 2, 4, 1, norm="layer")
    with pytest.raises(ValueError, match="invconv=True needs num_scales >= 2"):
        RealNVP(1, 8, 1, 4, 1, invconv=True)
    with pytest.raises(ValueError, match="batch_norm=False"):
        RealNVP(1, 8, 2, 4, 1, batch_norm=False, norm="actnorm")


def test_untrained_actnorm_model_cannot_sample():
    model = RealNVP(1, 8, 2, 4, 1, norm="actnorm")
    with pytest.raises(RuntimeError, match="not been initialized"):
        model.sample(2)


# ------------------------------------- the trainer --------------------------------------

SMALL = ["--dataset", "digits", "--preset", "tiny", "--batch-size", "16", "--limit-train",
         "96", "--limit-test", "32", "--log-every", "1", "--no-progress", "--no-plots"]


def _run(out, *extra):
    return T.main([*SMALL, "--out", str(out), *extra])


def _straight_and_resumed(tmp_path, *options):
    """The checkpoints of 6 steps in one go and of 3 steps, stopped, then resumed to 6."""
    assert _run(tmp_path / "straight", *options, "--max-steps", "6") == 0
    assert _run(tmp_path / "split", *options, "--max-steps", "3") == 0
    assert _run(tmp_path / "split", *options, "--max-steps", "6", "--resume") == 0
    return (load_checkpoint(tmp_path / "straight" / "checkpoint.pt"),
            load_checkpoint(tmp_path / "split" / "checkpoint.pt"))


def test_trainer_glow_options_resume_exactly_and_are_run_defining(tmp_path, capsys):
    glow = ["--norm", "actnorm", "--invconv", "--seed", "2"]
    a, b = _straight_and_resumed(tmp_path, *glow)
    # a second data-dependent init after the resume would end elsewhere
    assert same_training_state(a, b)
    assert a["config"]["norm"] == "actnorm" and a["config"]["invconv"] is True
    assert any(k.endswith("initialized") and bool(v) for k, v in a["model"].items())
    assert any(k.endswith("log_s") for k in a["model"])
    capsys.readouterr()
    assert _run(tmp_path / "split", "--seed", "2", "--invconv", "--max-steps", "8",
                "--resume") == 2
    err = capsys.readouterr().err
    assert "trained with --norm actnorm" in err and "got --norm batch" in err


def test_trainer_refuses_bad_glow_settings(capsys):
    for name, value, error in (("norm", "layer", ValueError), ("dequant", "gauss", ValueError),
                               ("invconv", "yes", TypeError)):
        with pytest.raises(error, match=f"--{name}"):
            T.train(T.Config(out=None, **{name: value}))
    with pytest.raises(SystemExit):
        T.main([*SMALL, "--out", "x", "--norm", "layer"])
    assert "invalid choice: 'layer'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="a model was passed in"):
        T.train(T.Config(dataset="digits", out=None, max_steps=1, norm="actnorm"),
                model=RealNVP(1, 8, 2, 4, 1))


# ----------------------- variational dequantization (a stand-in q) ----------------------

class StandInDequantizer(nn.Module):
    """The interface nvp_edu.vardeq provides, with the simplest learnable q: per channel
    ``u = sigmoid(a + exp(log_b) * eps)``, ``eps ~ N(0, 1)``; ``log q(u|x)`` exact."""

    def __init__(self, in_channels: int, levels: int, hidden: int = 8) -> None:
        super().__init__()
        self.levels = levels
        self.a = nn.Parameter(torch.zeros(in_channels))
        self.log_b = nn.Parameter(torch.full((in_channels,), -1.0))

    def forward(self, x_int, generator=None):
        eps = torch.randn(x_int.shape, generator=generator, device=x_int.device)
        h = self.a.view(1, -1, 1, 1) + torch.exp(self.log_b).view(1, -1, 1, 1) * eps
        u = torch.sigmoid(h)
        # q(u) = N(eps) / |du/deps|, du/deps = exp(log_b) u (1 - u)
        log_q = (-0.5 * eps**2 - 0.5 * math.log(2 * math.pi) - self.log_b.view(1, -1, 1, 1)
                 - torch.nn.functional.logsigmoid(h) - torch.nn.functional.logsigmoid(-h))
        return (x_int.float() + u) / self.levels, sum_except_batch(log_q)


class UniformStandIn(nn.Module):
    """Uniform noise through the dequantizer interface: ``log q = 0``."""

    def forward(self, x_int, generator=None):
        x = T.dequantize(x_int, 17, generator)
        return x, torch.zeros(x.shape[0])


@pytest.fixture
def stand_in_vardeq(monkeypatch):
    module = types.ModuleType("nvp_edu.vardeq")
    module.VariationalDequantizer = StandInDequantizer
    monkeypatch.setitem(sys.modules, "nvp_edu.vardeq", module)


def test_uniform_noise_through_the_dequantizer_interface_gives_the_same_nll():
    model = RealNVP(1, 8, 2, 4, 1).eval()
    x = torch.randint(0, 17, (5, 1, 8, 8))
    plain = T.nll_nats(model, x, 17, torch.Generator().manual_seed(4))
    via = T.nll_nats(model, x, 17, torch.Generator().manual_seed(4),
                     dequantizer=UniformStandIn())
    assert torch.equal(plain, via)


def test_variational_dequantizer_adds_log_q_to_the_nll(stand_in_vardeq):
    model = RealNVP(1, 8, 2, 4, 1).eval()
    deq = StandInDequantizer(1, 17)
    x = torch.randint(0, 17, (5, 1, 8, 8))
    nll = T.nll_nats(model, x, 17, torch.Generator().manual_seed(1), dequantizer=deq)
    x01, log_q = deq(x, generator=torch.Generator().manual_seed(1))
    y, logit_ld = T._LOGIT(x01)
    z, ld = model(y)
    torch.testing.assert_close(nll, -(standard_normal_log_prob(z) + ld + logit_ld) + log_q)
    assert log_q.abs().min() > 1  # a real difference from uniform noise


def test_trainer_trains_the_variational_dequantizer_and_resumes_exactly(tmp_path,
                                                                         stand_in_vardeq):
    deq = ["--dequant", "variational", "--seed", "1", "--val-fraction", "0.25"]
    a, b = _straight_and_resumed(tmp_path, *deq)
    assert same_training_state(a, b)  # the optimizer state holds q's moments too
    assert all(torch.equal(a["dequantizer"][k], b["dequantizer"][k]) for k in a["dequantizer"])
    assert not torch.equal(a["dequantizer"]["a"], torch.zeros(1))  # q was trained
    flow_params = len(list(RealNVP(1, 8, 2, 8, 1).parameters()))  # the tiny preset
    assert len(a["optimizer"]["param_groups"][0]["params"]) == flow_params + 2  # + a, log_b


def test_variational_evaluation_is_repeatable_and_leaves_the_random_stream(stand_in_vardeq):
    cfg = T.Config(dataset="digits", preset="tiny", out=None, max_steps=2, batch_size=16,
                   limit_train=64, limit_test=32, dequant="variational", progress=False,
                   plots=False)
    T._validate(cfg)
    trainer = T.Trainer(cfg, T._Dist("cpu"))
    result = trainer.run()
    assert result.summary["dequantizer_params"] == 2 and result.dequantizer is not None
    state = torch.get_rng_state()
    first = trainer.evaluate(trainer.model, trainer.test_x)
    assert torch.equal(torch.get_rng_state(), state)
    assert first == trainer.evaluate(trainer.model, trainer.test_x)
    assert math.isfinite(first) and first == result.summary["test_bpd"]


def test_variational_without_the_module_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "nvp_edu.vardeq", None)  # import fails
    with pytest.raises(ValueError, match="--dequant variational needs nvp_edu.vardeq"):
        T.train(T.Config(dataset="digits", preset="tiny", out=None, max_steps=1,
                         dequant="variational", progress=False))


def test_trainer_with_the_real_variational_dequantizer(tmp_path):
    from nvp_edu import vardeq
    assert _run(tmp_path / "run", "--dequant", "variational", "--max-steps", "2") == 0
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    fresh = vardeq.VariationalDequantizer(1, 17)
    assert ckpt["dequantizer"].keys() == fresh.state_dict().keys()
    summary = T.read_metrics(tmp_path / "run")[-1]
    assert math.isfinite(summary["test_bpd"])


def test_ema_averages_the_variational_dequantizer_too(stand_in_vardeq):
    """With --ema, evaluation pairs the averaged flow with the averaged q(u|x), not the raw q."""
    cfg = T.Config(dataset="digits", preset="tiny", out=None, max_steps=4, batch_size=16,
                   limit_train=64, limit_test=32, dequant="variational", ema=0.5,
                   progress=False, plots=False)
    T._validate(cfg)
    trainer = T.Trainer(cfg, T._Dist("cpu"))
    result = trainer.run()
    averaged, raw = trainer.ema.module["dequantizer"], trainer.dequantizer
    assert result.dequantizer is averaged and trainer.eval_dequantizer is averaged
    assert result.model is trainer.ema.module["flow"]
    assert not torch.equal(averaged.a, raw.a)  # an average of 4 steps, not the last weights
    assert not torch.equal(averaged.a, torch.zeros(1))  # and q was trained
    # the reported figure is the averaged flow with the averaged q
    assert trainer.evaluate(trainer.eval_model, trainer.test_x) == result.summary["test_bpd"]
    assert trainer.evaluate(trainer.model, trainer.test_x) != result.summary["test_bpd"]


def test_ema_with_variational_dequantizer_resumes_exactly(tmp_path, stand_in_vardeq):
    deq = ["--dequant", "variational", "--ema", "0.5", "--seed", "3"]
    a, b = _straight_and_resumed(tmp_path, *deq)
    assert same_training_state(a, b)
    assert any(k.startswith("module.dequantizer.") for k in a["ema"])
    assert all(torch.equal(a["ema"][k], b["ema"][k]) for k in a["ema"])


def test_resume_of_an_older_flow_only_ema_checkpoint(tmp_path, stand_in_vardeq, capsys):
    """Checkpoints written when the EMA averaged the flow only still resume: the flow's
    average is kept, the dequantizer's starts from its checkpointed weights."""
    from nvp_edu.checkpoint import save_checkpoint
    deq = ["--dequant", "variational", "--ema", "0.5", "--seed", "3"]
    assert _run(tmp_path / "run", *deq, "--max-steps", "3") == 0
    path = tmp_path / "run" / "checkpoint.pt"
    ckpt = load_checkpoint(path)
    old = {("module." + k[len("module.flow."):] if k.startswith("module.flow.") else k): v
           for k, v in ckpt["ema"].items() if not k.startswith("module.dequantizer.")}
    ckpt["ema"] = old
    save_checkpoint(path, ckpt)
    capsys.readouterr()
    assert _run(tmp_path / "run", *deq, "--max-steps", "5", "--resume") == 0
    assert "averages the flow only" in capsys.readouterr().err
    new = load_checkpoint(path)["ema"]
    assert int(new["n_averaged"]) == 5  # the flow's average went on from step 3
    assert any(k.startswith("module.dequantizer.") for k in new)
