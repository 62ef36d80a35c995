"""The model as the official code builds it (tensorflow/models, research/real_nvp):
factor-out layout, s/t network size, batch norm on the changed entries, the L2 term's
parameters, and sampling that leaves the model untouched."""
import pytest
import torch

from conftest import perturb
from nvp_edu.checks import check_flow
from nvp_edu.coupling import AffineCoupling
from nvp_edu.flows import BatchNormFlow
from nvp_edu.masks import channel_mask, checkerboard_mask
from nvp_edu.models import RealNVP
from nvp_edu.nets import WNConv2d
from nvp_edu.training.objective import l2_parameters, l2_penalty
from nvp_edu.squeeze import factor_out_order


def _official_coupling_params(channels: int, dim: int, blocks: int, checkerboard: bool) -> int:
    """Trainable variables of one official coupling (masked_conv_aff_coupling or
    conv_ch_aff_coupling with resnet(), skip=True, use_batch_norm=True), counted from its
    layer definitions: batch norms have a shift only, convolutions that a batch norm
    follows have no magnitude, 3x3 convs in, 1x1 skips and output."""
    c = channels if checkerboard else channels // 2  # the half the network sees
    net_in = 2 * c + (1 if checkerboard else 0)       # [relu(h), relu(-h)] (+ the mask)
    n = c                                             # bn_in: beta
    n += 9 * net_in * dim + dim                       # h_in: weights, bias
    n += dim * dim + 2 * dim                          # skip_in: weights, bias, magnitude
    per_block = (dim + 9 * dim * dim + dim            # bn_in, h_0 (no bias), bn_0
                 + 9 * dim * dim + 2 * dim            # out: weights, bias, magnitude
                 + dim * dim + 2 * dim)               # skip_k
    n += blocks * per_block
    n += dim                                          # bn_pre_out
    n += dim * 2 * c + 2 * (2 * c)                    # out: weights, bias, magnitude
    return n + 1                                      # the coupling's rescaling scale


def test_paper_preset_has_the_official_parameter_count():
    # CIFAR-10: n_scale=2, base_dim=64, 8 residual blocks. Scale 0: 3 checkerboard (3
    # channels, 64 features), 3 channel-wise (12 channels, 128); scale 1: 4 checkerboard
    # (6 channels, 128).
    official = (3 * _official_coupling_params(3, 64, 8, True)
                + 3 * _official_coupling_params(12, 128, 8, False)
                + 4 * _official_coupling_params(6, 128, 8, True))
    ours = sum(p.numel() for p in RealNVP(3, 32, 2, 64, 8).parameters())
    assert ours == official == 19_609_545
    # the best-known PyTorch port counts 19,631,640: within 0.2%
    assert abs(ours - 19_631_640) / 19_631_640 < 0.01


@pytest.mark.parametrize("channels", [1, 3])
def test_factor_out_sends_one_checkerboard_colour_of_every_channel(channels):
    """Official layout: the factored half holds sub-pixels (0,1) and (1,0) of each 2x2
    block for every channel; (0,0) and (1,1) go on to the next scale."""
    model = RealNVP(channels, 8, 2, mid_channels=4, num_blocks=1)
    shapes = model.latent_shapes()
    ones_in_first = [torch.ones(1, *shapes[0]), torch.zeros(1, *shapes[1])]
    where = model.merge_latents(ones_in_first)[0]  # 1 where z_1 lands in the image
    i, j = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
    odd = ((i + j) % 2 == 1).float()
    for c in range(channels):
        torch.testing.assert_close(where[c], odd)
    # and the channel order within the factored half: (0,1) of every colour, then (1,0)
    tagged = torch.arange(channels * 64, dtype=torch.float32).view(1, channels, 8, 8)
    z1 = model.split_latents(tagged)[0][0]
    for c in range(channels):
        torch.testing.assert_close(z1[c], tagged[0, c, 0::2, 1::2])
        torch.testing.assert_close(z1[channels + c], tagged[0, c, 1::2, 0::2])


def test_factor_out_order_is_a_permutation_matching_the_official_table():
    for c in (1, 2, 3, 6):
        order = factor_out_order(c)
        assert sorted(order) == list(range(4 * c))
    # RGB: (0,0) of R, G, B; (1,1) of R, G, B; (0,1) ...; (1,0) ...
    assert factor_out_order(3) == [0, 4, 8, 3, 7, 11, 1, 5, 9, 2, 6, 10]


@pytest.mark.parametrize("mask", [checkerboard_mask(4, 4), channel_mask(4)],
                         ids=["checkerboard", "channel"])
def test_masked_batchnorm_flow_normalizes_only_changed_entries(mask):
    torch.manual_seed(0)
    bn = BatchNormFlow(4, mask=mask)
    x = 3 + 2 * torch.randn(64, 4, 4, 4, dtype=torch.float64)
    y, log_det = bn.double()(x)
    kept = mask.expand_as(x).bool()
    torch.testing.assert_close(y[kept], x[kept])  # kept entries pass through
    changed = y.masked_fill(kept, float("nan"))
    for c in range(4):
        vals = changed[:, c][~torch.isnan(changed[:, c])]
        if len(vals):
            assert abs(vals.mean()) < 1e-9 and abs(vals.var(unbiased=False) - 1) < 1e-3
    # exact flow in eval mode: inverse and log-det against autograd in float64
    with torch.no_grad():
        bn.running_mean.copy_(torch.tensor([0.5, -1.0, 2.0, 0.1]))
        bn.running_var.copy_(torch.tensor([0.3, 2.0, 5.0, 1.5]))
    report = check_flow(bn.eval(), torch.randn(3, 4, 4, 4))
    assert report.passed, str(report)


def test_model_with_masked_batchnorm_passes_the_oracle_after_training():
    model = RealNVP(2, 4, 2, mid_channels=4, num_blocks=1)
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    for _ in range(3):
        loss = -model.log_prob(torch.randn(16, 2, 4, 4)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    report = check_flow(model.eval(), torch.randn(2, 2, 4, 4))
    assert report.passed, str(report)


def test_sample_never_changes_the_model():
    model = perturb(RealNVP(1, 8, 2, mid_channels=4, num_blocks=1), 0.3).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.sample(8)
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"sample() changed {k}"
    model.eval()
    model.sample(8)
    assert not model.training


def test_l2_term_covers_magnitudes_and_checkerboard_scales_only():
    model = RealNVP(1, 8, 2, mid_channels=4, num_blocks=1)
    params = l2_parameters(model)
    wn = [m for m in model.modules() if isinstance(m, WNConv2d) and m.magnitude is not None]
    checker = [m for m in model.modules()
               if isinstance(m, AffineCoupling) and not m.split]
    assert len(params) == len(wn) + len(checker) and len(checker) == 7  # 3 + 4 checkerboard
    ids = {id(p) for p in params}
    channel_scales = [m.scale for m in model.modules() if isinstance(m, AffineCoupling) and m.split]
    assert len(channel_scales) == 3 and not any(id(s) in ids for s in channel_scales)
    expected = sum(float(p.detach().double().pow(2).sum()) for p in params)
    assert abs(l2_penalty(model).item() - expected) < 1e-5 * expected
