"""Image flow layers (couplings with checkerboard / channel masks, squeeze, batch-norm flow)
checked against the float64 autograd oracle in ``nvp_edu.checks``, at initialization and
away from it (perturbed parameters, a few training steps)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import perturb, train_a_few_steps
from nvp_edu.checks import check_flow
from nvp_edu.flows import AdditiveCoupling, AffineCoupling, BatchNormFlow, Sequential, Squeeze
from nvp_edu.mask_study import top_half_mask
from nvp_edu.masks import alternating_vector_mask, channel_mask, checkerboard_mask
from nvp_edu.nets import ResNet


def _net(in_channels: int, out_channels: int) -> ResNet:
    return ResNet(in_channels, out_channels, mid_channels=8, num_blocks=1)


def image_coupling(kind: str, channels: int, invert: bool, cls=AffineCoupling, size: int = 4):
    """A coupling on (channels, size, size) images with a checkerboard or channel mask."""
    per_out = 2 if cls is AffineCoupling else 1
    if kind == "checkerboard":
        return cls(checkerboard_mask(size, size, invert), _net(channels, per_out * channels))
    half = channels // 2
    return cls(channel_mask(channels, invert), _net(half, per_out * half))



CASES = ([(AffineCoupling, "checkerboard", c, inv) for c in (1, 2, 3, 4, 6) for inv in (0, 1)]
         + [(AffineCoupling, "channel", c, inv) for c in (2, 4, 6) for inv in (0, 1)]
         + [(AdditiveCoupling, k, c, inv) for k, c in [("checkerboard", 3), ("channel", 4)]
            for inv in (0, 1)])


@pytest.mark.parametrize("cls,kind,channels,invert", CASES)
def test_image_coupling_against_autograd(cls, kind, channels, invert):
    layer = image_coupling(kind, channels, bool(invert), cls).eval()
    x = torch.randn(2, channels, 4, 4)
    y, ld = layer(x)
    torch.testing.assert_close(y, x)  # zero-initialized output layer: identity at init
    assert ld.abs().max() == 0
    if channels <= 2:  # the oracle agrees at init too (costly: one backward pass per entry)
        assert check_flow(layer, x).passed

    perturb(layer, 0.3)
    y, ld = layer(x)
    assert (y - x).abs().max() > 1e-2  # it really moved away from the identity
    if cls is AffineCoupling:
        assert ld.abs().max() > 1e-3
    report = check_flow(layer, x)
    assert report.passed, str(report)
    assert report.log_det.max_error < 1e-9
    assert (layer.inverse(y) - x).abs().max() <= 1e-6  # float32


@pytest.mark.parametrize("kind,channels", [("checkerboard", 1), ("checkerboard", 3), ("channel", 4)])
def test_image_coupling_after_training(kind, channels):
    layer = image_coupling(kind, channels, invert=False)
    x = torch.randn(16, channels, 4, 4) * torch.linspace(0.2, 2, 16).view(1, 1, 4, 4)
    train_a_few_steps(layer, x)
    _, ld = layer(x)
    assert ld.abs().max() > 1e-3
    report = check_flow(layer, x[:2])
    assert report.passed, str(report)
    y, _ = layer(x)
    assert (layer.inverse(y) - x).abs().max() <= 1e-6


@pytest.mark.parametrize("invert", [False, True])
@pytest.mark.parametrize("cls", [AffineCoupling, AdditiveCoupling])
def test_vector_coupling_identity_then_trained(cls, invert):
    layer = cls(alternating_vector_mask(5, invert), hidden=16)
    x = torch.randn(32, 5) * torch.tensor([0.3, 1, 2, 0.5, 1.5])
    y, ld = layer(x)
    torch.testing.assert_close(y, x)
    train_a_few_steps(layer, x)
    y, ld = layer(x)
    assert (y - x).abs().max() > 1e-3
    report = check_flow(layer, x[:4])
    assert report.passed, str(report)
    assert (layer.inverse(y) - x).abs().max() <= 1e-6


def test_affine_log_det_is_sum_of_s_over_changed_entries():
    layer = perturb(image_coupling("checkerboard", 2, invert=False), 0.3).eval()
    x = torch.randn(2, 2, 4, 4)
    raw_s, _ = layer.net(x * layer.mask).chunk(2, dim=1)
    s = layer.scale * torch.tanh(raw_s) * (1 - layer.mask)
    _, ld = layer(x)
    torch.testing.assert_close(ld, s.flatten(1).sum(1))
    y, _ = layer(x)
    kept = layer.mask.expand_as(x).bool()
    assert torch.equal(y[kept], x[kept])  # b = 1 passes through unchanged (Eq. 9)


def test_masked_form_equals_channel_split_form():
    """Eq. 9 with a channel mask broadcast over space (the masked form: the net sees b * x,
    all channels) equals the split form (the net sees only the kept channels) when the
    masked net's weights on the kept inputs / changed outputs are the split net's."""
    torch.manual_seed(1)
    c, half, hid = 4, 2, 8
    split = AffineCoupling(channel_mask(c),
                           nn.Sequential(nn.Conv2d(half, hid, 3, padding=1), nn.Tanh(),
                                         nn.Conv2d(hid, 2 * half, 3, padding=1)))
    masked_net = nn.Sequential(nn.Conv2d(c, hid, 3, padding=1), nn.Tanh(),
                               nn.Conv2d(hid, 2 * c, 3, padding=1))
    full_mask = channel_mask(c).expand(1, c, 5, 5).clone()  # (1, C, H, W): masked form
    masked = AffineCoupling(full_mask, masked_net)
    assert split.split and not masked.split
    kept, changed = split.kept, split.changed
    with torch.no_grad():
        perturb(split, 0.5)
        perturb(masked, 0.5)  # random weights everywhere first, then copy the shared ones
        masked_net[0].weight[:, kept] = split.net[0].weight
        masked_net[0].bias.copy_(split.net[0].bias)
        out_s, out_t = changed, c + changed  # output channels [raw_s (C) | t (C)]
        masked_net[2].weight[out_s] = split.net[2].weight[:half]
        masked_net[2].bias[out_s] = split.net[2].bias[:half]
        masked_net[2].weight[out_t] = split.net[2].weight[half:]
        masked_net[2].bias[out_t] = split.net[2].bias[half:]
        masked.scale.copy_(split.scale)  # one number per image coupling
    x = torch.randn(2, c, 5, 5)
    y_split, ld_split = split(x)
    y_masked, ld_masked = masked(x)
    assert (y_split - x).abs().max() > 1e-2
    torch.testing.assert_close(y_masked, y_split)
    torch.testing.assert_close(ld_masked, ld_split)
    assert check_flow(masked, x).passed


def test_squeeze_matches_pixel_unshuffle_and_inverts():
    x = torch.randn(2, 3, 6, 4)
    y, ld = Squeeze()(x)
    assert torch.equal(y, F.pixel_unshuffle(x, 2))
    assert y.shape == (2, 12, 3, 2)
    assert torch.equal(Squeeze().inverse(y), x)
    assert ld.shape == (2,) and ld.abs().max() == 0
    # Output channel 4c + 2i + j holds pixel (i, j) of each 2x2 block of input channel c
    assert torch.equal(y[:, 4 * 2 + 2 * 1 + 0], x[:, 2, 1::2, 0::2])
    report = check_flow(Squeeze(), torch.randn(2, 2, 4, 4))
    assert report.passed and report.log_det.max_error < 1e-12


@pytest.mark.parametrize("shape", [(1, 1, 5, 4), (1, 2, 4, 3), (2, 8, 8)])
def test_squeeze_rejects_odd_sizes(shape):
    with pytest.raises(ValueError, match=r"even H and W; got shape " + re_shape(shape)):
        Squeeze()(torch.randn(*shape))


def test_squeeze_inverse_rejects_channels_not_multiple_of_4():
    with pytest.raises(ValueError, match=r"multiple of 4; got shape \(1, 6, 2, 2\)"):
        Squeeze().inverse(torch.randn(1, 6, 2, 2))


@pytest.mark.parametrize("channels", [1, 3, 5])
def test_channel_mask_rejects_odd_channel_counts(channels):
    with pytest.raises(ValueError, match=rf"even number of channels >= 2; got {channels}"):
        channel_mask(channels)


def re_shape(shape) -> str:
    return r"\(" + r", ".join(str(s) for s in shape) + r"\)"


@pytest.mark.parametrize("mask,x_shape", [
    (checkerboard_mask(4, 4), (2, 1, 4, 6)),   # wrong width
    (checkerboard_mask(4, 4), (2, 16)),        # a vector for an image mask
    (channel_mask(4), (2, 6, 4, 4)),           # wrong channel count
    (alternating_vector_mask(4), (2, 3)),      # wrong vector size
])
def test_coupling_rejects_input_that_does_not_fit_its_mask(mask, x_shape):
    if mask.dim() == 2:
        layer = AffineCoupling(mask, hidden=8)
    elif mask.shape[1] > 1:
        layer = AffineCoupling(mask, _net(mask.shape[1] // 2, mask.shape[1]))
    else:
        layer = AffineCoupling(mask, _net(1, 2))
    pattern = (rf"input of shape {re_shape(x_shape)} does not fit the coupling's mask of "
               rf"shape {re_shape(tuple(mask.shape))}")
    with pytest.raises(ValueError, match=pattern):
        layer(torch.randn(*x_shape))
    with pytest.raises(ValueError, match=pattern):
        layer.inverse(torch.randn(*x_shape))


def test_image_coupling_without_net_is_refused():
    with pytest.raises(ValueError, match=r"got mask of shape \(1, 1, 4, 4\)"):
        AffineCoupling(checkerboard_mask(4, 4))


def test_masks_follow_the_paper():
    cb = checkerboard_mask(3, 4)
    assert cb.shape == (1, 1, 3, 4)
    i, j = torch.meshgrid(torch.arange(3), torch.arange(4), indexing="ij")
    assert torch.equal(cb[0, 0].bool(), (i + j) % 2 == 1)  # 1 where i + j is odd
    assert torch.equal(checkerboard_mask(3, 4, invert=True), 1 - cb)
    assert channel_mask(6).flatten().tolist() == [1, 1, 1, 0, 0, 0]
    assert channel_mask(6, invert=True).shape == (1, 6, 1, 1)
    assert top_half_mask(4, 3)[0, 0, :, 0].tolist() == [1, 1, 0, 0]
    with pytest.raises(ValueError, match="even height >= 2; got height=3"):
        top_half_mask(3, 4)


@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 4, 4)])
def test_batchnorm_flow_eval_against_autograd(shape):
    bn = BatchNormFlow(3)
    data = torch.randn(64, *shape[1:]) * 2.5 + 1.5
    for _ in range(30):  # running averages move away from (0, 1)
        bn(data[torch.randint(64, (16,))])
    assert (bn.running_var - 1).abs().min() > 0.5
    bn.eval()
    x = torch.randn(*shape)
    y, ld = bn(x)
    pixels = 1 if len(shape) == 2 else shape[2] * shape[3]
    torch.testing.assert_close(
        ld, (-0.5 * torch.log(bn.running_var + bn.eps).sum() * pixels).expand(shape[0]))
    report = check_flow(bn, x)
    assert report.passed, str(report)
    assert (bn.inverse(y) - x).abs().max() <= 1e-6


def test_batchnorm_flow_affine_against_autograd():
    bn = perturb(BatchNormFlow(2, affine=True), 0.5).eval()
    with torch.no_grad():
        bn.running_mean.copy_(torch.tensor([0.5, -1.0]))
        bn.running_var.copy_(torch.tensor([4.0, 0.25]))
    report = check_flow(bn, torch.randn(3, 2, 2, 2))
    assert report.passed, str(report)


def test_batchnorm_flow_lag_normalizes_with_the_updated_running_average():
    """Paper, appendix E: in training, the statistics are the running averages after
    taking in this batch; gradients reach the input only through the batch's share."""
    torch.manual_seed(0)
    bn = BatchNormFlow(2, momentum=0.25, lag=True).double()
    with torch.no_grad():
        bn.running_mean.copy_(torch.tensor([0.5, -1.0]))
        bn.running_var.copy_(torch.tensor([4.0, 0.25]))
    x = (3 * torch.randn(5, 2, 3, 3, dtype=torch.float64) + 1).requires_grad_()
    mu, var = x.detach().mean(dim=(0, 2, 3)), x.detach().var(dim=(0, 2, 3), unbiased=False)
    want_mean = 0.75 * torch.tensor([0.5, -1.0], dtype=torch.float64) + 0.25 * mu
    want_var = 0.75 * torch.tensor([4.0, 0.25], dtype=torch.float64) + 0.25 * var
    y, ld = bn(x)
    torch.testing.assert_close(y, (x - want_mean.view(1, 2, 1, 1)) / (want_var.view(1, 2, 1, 1) + bn.eps).sqrt())
    torch.testing.assert_close(ld, (-0.5 * 9 * torch.log(want_var + bn.eps).sum()).expand(5))
    torch.testing.assert_close(bn.running_mean, want_mean)  # updated once, as without lag

    # momentum 1: nothing of the past is used, so it is the plain layer, gradients included
    plain, lagged = BatchNormFlow(2).double(), BatchNormFlow(2, momentum=1.0, lag=True).double()
    out = [layer(x)[0].pow(3).sum() + layer(x)[1].sum() for layer in (plain, lagged)]
    grads = [torch.autograd.grad(o, x)[0] for o in out]
    torch.testing.assert_close(grads[0], grads[1])
    # momentum 0: the statistics are the (fixed) past, so image i does not move image j
    frozen = BatchNormFlow(2, momentum=0.0, lag=True).double()
    jac = torch.autograd.functional.jacobian(lambda t: frozen(t)[0], x.detach()[:3])
    jac = jac.reshape(3, 18, 3, 18)
    assert jac[0, :, 1].abs().max() == 0 and jac[2, :, 0].abs().max() == 0
    assert jac[0, :, 0].abs().max() > 0
    report = check_flow(bn.eval(), x.detach()[:2])   # eval mode: unchanged by lag
    assert report.passed, str(report)


def test_batchnorm_flow_rejects_wrong_channels():
    with pytest.raises(ValueError, match=r"needs input \(N, 3\) or \(N, 3, H, W\); got shape "
                                         r"\(2, 4, 2, 2\)"):
        BatchNormFlow(3)(torch.randn(2, 4, 2, 2))


def test_one_scale_stack_against_autograd():
    """Checkerboard couplings, squeeze, channel couplings, batch norm: the scale pattern."""
    c = 1
    layers = [image_coupling("checkerboard", c, i % 2 == 1) for i in range(2)]
    layers += [BatchNormFlow(c), Squeeze()]
    layers += [image_coupling("channel", 4 * c, i % 2 == 1, size=2) for i in range(2)]
    flow = Sequential(*layers)
    x = torch.randn(16, c, 4, 4)
    train_a_few_steps(flow, x, steps=3)
    perturb(flow, 0.1)
    report = check_flow(flow, x[:2])
    assert report.passed, str(report)
    z, _ = flow(x)
    assert z.shape == (16, 4, 2, 2)
    assert (flow.inverse(z) - x).abs().max() <= 1e-5
