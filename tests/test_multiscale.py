"""The multi-scale RealNVP and batch normalization as a flow."""
import pytest
import torch

from nvp_edu.batchnorm import BatchNormFlow, recompute_running_stats
from nvp_edu.checks import check_flow
from nvp_edu.models import RealNVP
from nvp_edu.prior import standard_normal_log_prob


def _trained(channels, size, scales, batch_norm=True, steps=3):
    """A small model after a few Adam steps: weights and running statistics non-trivial."""
    model = RealNVP(channels, size, scales, mid_channels=4, num_blocks=1, batch_norm=batch_norm)
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    for _ in range(steps):
        x = torch.randn(16, channels, size, size) * 0.8 + 0.2
        loss = -model.log_prob(x).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture
def one_thread():
    """The Jacobians are hundreds of tiny backward passes: threads only add overhead."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("channels,size,scales", [(1, 8, 2), (3, 4, 2), (1, 8, 3)])
def test_realnvp_inverse_and_log_det_against_autograd(channels, size, scales, one_thread):
    model = _trained(channels, size, scales)
    bn = [m for m in model.modules() if isinstance(m, BatchNormFlow)]
    assert len(bn) == 6 * (scales - 1) + 4
    assert any((m.running_mean.abs() > 1e-3).any() for m in bn)  # stats really moved
    x = torch.randn(2, channels, size, size)
    report = check_flow(model, x)
    assert report.passed, str(report)
    assert report.log_det.max_error < 1e-8


@pytest.mark.parametrize("scales", [1, 2, 3])
def test_shapes_and_encode_decode_round_trip(scales):
    model = _trained(2, 8, scales, steps=1)
    x = torch.randn(5, 2, 8, 8)
    z, log_det = model(x)
    assert z.shape == x.shape and log_det.shape == (5,)
    latents, log_dets = model.encode(x)
    expected = {1: [(2, 8, 8)], 2: [(4, 4, 4), (4, 4, 4)],
                3: [(4, 4, 4), (8, 2, 2), (8, 2, 2)]}[scales]
    assert [tuple(l.shape[1:]) for l in latents] == expected == model.latent_shapes()
    assert sum(l[0].numel() for l in latents) == x[0].numel()
    torch.testing.assert_close(torch.stack(log_dets).sum(0), log_det)
    torch.testing.assert_close(model.merge_latents(latents), z)
    for a, b in zip(model.split_latents(z), latents):
        torch.testing.assert_close(a, b)
    assert (model.decode(latents) - x).abs().max() < 1e-4
    assert (model.inverse(z) - x).abs().max() < 1e-4
    prior = sum(standard_normal_log_prob(l) for l in latents)
    torch.testing.assert_close(model.log_prob(x), prior + log_det)


def test_paper_cifar_configuration_latent_shapes():
    model = RealNVP(3, 32, num_scales=2, mid_channels=4, num_blocks=1)
    assert model.latent_shapes() == [(6, 16, 16), (6, 16, 16)]  # final scale at 16x16x6


def test_identity_at_initialization_without_batch_norm():
    model = RealNVP(1, 8, 2, mid_channels=4, num_blocks=1, batch_norm=False)
    x = torch.randn(3, 1, 8, 8)
    z, log_det = model(x)
    assert log_det.abs().max() == 0
    torch.testing.assert_close(model.inverse(z), x)


def test_sampling_shapes_and_temperature():
    model = _trained(1, 8, 2)
    g = torch.Generator().manual_seed(0)
    assert model.sample(7, generator=g).shape == (7, 1, 8, 8)
    assert torch.isfinite(model.sample(7, temperature=0.5)).all()


@pytest.mark.parametrize("shape,need", [
    ((2, 3, 8, 8), r"\(N, 1, 8, 8\); got shape \(2, 3, 8, 8\)"),
    ((2, 1, 6, 6), r"\(N, 1, 8, 8\); got shape \(2, 1, 6, 6\)"),
    ((2, 64), r"\(N, 1, 8, 8\); got shape \(2, 64\)"),
])
def test_wrong_input_shapes_raise(shape, need):
    model = RealNVP(1, 8, 2, mid_channels=4, num_blocks=1)
    with pytest.raises(ValueError, match=need):
        model(torch.randn(*shape))
    with pytest.raises(ValueError, match=need):
        model.inverse(torch.randn(*shape))


def test_wrong_latents_and_configs_raise():
    model = RealNVP(1, 8, 2, mid_channels=4, num_blocks=1)
    latents, _ = model.encode(torch.randn(2, 1, 8, 8))
    with pytest.raises(ValueError, match=r"needs latents .* \[\(2, 4, 4\), \(2, 4, 4\)\]; got "
                                         r"\[\(2, 4, 4\)\]"):
        model.decode(latents[:1])
    with pytest.raises(ValueError, match="image_size=6 cannot be squeezed 2 time"):
        RealNVP(1, 6, num_scales=3)
    with pytest.raises(ValueError, match="num_scales must be >= 1; got 0"):
        RealNVP(1, 8, num_scales=0)


# --- batch normalization as a flow ---------------------------------------------------


@pytest.mark.parametrize("shape", [(6, 3), (6, 3, 4, 4)])
def test_batchnorm_flow_exact_in_eval_mode(shape):
    bn = BatchNormFlow(3, affine=True)
    with torch.no_grad():
        bn.running_mean.copy_(torch.tensor([0.5, -1.0, 2.0]))
        bn.running_var.copy_(torch.tensor([0.3, 2.0, 5.0]))
        bn.log_gamma.copy_(torch.tensor([0.1, -0.2, 0.3]))
        bn.beta.copy_(torch.tensor([1.0, 0.0, -1.0]))
    x = torch.randn(*shape)
    report = check_flow(bn.eval(), x)
    assert report.passed, str(report)
    pixels = 1 if len(shape) == 2 else 16
    expected = (-0.5 * torch.log(bn.running_var + bn.eps) + bn.log_gamma).sum() * pixels
    _, log_det = bn(x)
    torch.testing.assert_close(log_det, expected.expand(shape[0]))


def test_batchnorm_flow_train_mode_normalizes_and_updates_running_averages():
    bn = BatchNormFlow(2, momentum=0.1)
    x = torch.tensor([[1.0, 10.0], [3.0, 30.0], [5.0, 20.0]])
    y, log_det = bn(x)
    mean, var = x.mean(0), x.var(0, unbiased=False)
    torch.testing.assert_close(y.mean(0), torch.zeros(2), atol=1e-6, rtol=0)
    torch.testing.assert_close(log_det, (-0.5 * torch.log(var + bn.eps).sum()).expand(3))
    # running = (1 - momentum) * running + momentum * batch, from mean 0 and variance 1
    torch.testing.assert_close(bn.running_mean, 0.1 * mean)
    torch.testing.assert_close(bn.running_var, 0.9 * torch.ones(2) + 0.1 * var)
    bn(x)
    torch.testing.assert_close(bn.running_mean, 0.9 * 0.1 * mean + 0.1 * mean)


def test_batchnorm_flow_shape_errors():
    bn = BatchNormFlow(3)
    with pytest.raises(ValueError, match=r"needs input \(N, 3\) or \(N, 3, H, W\); got shape "
                                         r"\(4, 2\)"):
        bn(torch.randn(4, 2))
    with pytest.raises(ValueError, match=r"more than one value per channel .* got shape \(1, 3\)"):
        bn(torch.randn(1, 3))


def test_recompute_running_stats_gives_exact_averages_and_keeps_settings():
    model = _trained(1, 8, 2)
    first = next(m for m in model.modules() if isinstance(m, BatchNormFlow))
    data = torch.randn(64, 1, 8, 8) * 2 + 1
    assert recompute_running_stats(model, data.split(32)) == 2
    assert not model.training and first.momentum == 0.1
    # the first BatchNormFlow sees the first coupling's output: the mean over the data of
    # the entries that coupling changed (mask 0)
    changed = first.mask[0, 0] == 0
    with torch.no_grad():
        model.train()
        outs = [model.scales[0]["checkerboard"][0](b)[0] for b in data.split(32)]
        model.eval()
    expected = torch.stack([o[:, :, changed].mean(dim=(0, 2)) for o in outs]).mean(0)
    torch.testing.assert_close(first.running_mean, expected, atol=1e-5, rtol=1e-5)
