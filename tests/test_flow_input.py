"""Flows refuse input they would mangle silently, with one clear line (issue 13, item 5).

Each test reproduces a fault: integer pixels went through the models with log-dets in the
thousands (or NaN), float64 input failed deep inside a layer, one NaN batch poisoned the
batch-norm running averages for good, empty batches and ``sample(0)`` gave messages about
something else, and ``sample`` took a temperature of 0 or NaN.
"""
import math

import numpy as np
import pytest
import torch

from nvp_edu.flows import AdditiveCoupling, AffineCoupling, BatchNormFlow
from nvp_edu.masks import alternating_vector_mask
from nvp_edu.models import RealNVP, RealNVP2D
from nvp_edu.prior import standard_normal_sample


pytestmark = pytest.mark.usefixtures("one_thread")


def image_model() -> RealNVP:
    return RealNVP(in_channels=1, image_size=8, num_scales=2, mid_channels=4, num_blocks=1)


def vector_model() -> RealNVP2D:
    return RealNVP2D(num_couplings=2, hidden=8)


def flows_and_inputs():
    """(name, flow, a good float32 input) for every kind of flow the issue names."""
    mask = alternating_vector_mask(2)
    return [("RealNVP", image_model(), torch.randn(4, 1, 8, 8)),
            ("RealNVP2D", vector_model(), torch.randn(4, 2)),
            ("AffineCoupling", AffineCoupling(mask, hidden=8), torch.randn(4, 2)),
            ("AdditiveCoupling", AdditiveCoupling(mask, hidden=8), torch.randn(4, 2)),
            ("BatchNormFlow", BatchNormFlow(2), torch.randn(4, 2))]


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64])
def test_integer_input_is_refused_with_what_to_do(dtype):
    for name, flow, x in flows_and_inputs():
        pixels = (x.abs() * 50).to(dtype)
        with pytest.raises(TypeError, match=rf"^{name} needs floating-point input; got a "
                                            rf"{dtype} tensor: dequantize .*nvp_edu.preprocess"):
            flow(pixels)
        if hasattr(flow, "log_prob"):
            with pytest.raises(TypeError, match="needs floating-point input"):
                flow.log_prob(pixels)


def test_float64_input_to_a_float32_model_names_both_dtypes_and_the_fix():
    for name, model, x in flows_and_inputs()[:4]:  # the flows with parameters
        with pytest.raises(TypeError, match=rf"^{name}'s parameters are torch.float32 but its "
                                            r"input is torch.float64: .*x\.float\(\).*"
                                            r"model\.double\(\)"):
            model(x.double())
        model.double()  # the fix the message gives works, sampling included
        z, log_det = model(x.double())
        assert z.dtype == torch.float64 and torch.isfinite(log_det).all()
    for model in (image_model().double(), vector_model().double()):
        assert model.sample(2).dtype == torch.float64
    with pytest.raises(TypeError, match=r"torch.float64 but its input is torch.float32: .*"
                                        r"x\.double\(\).*model\.float\(\)"):
        image_model().double()(torch.randn(2, 1, 8, 8))


def test_autocast_may_mix_dtypes():
    model = image_model()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        _, log_det = model(torch.randn(2, 1, 8, 8).bfloat16())
    assert torch.isfinite(log_det).all()


def running_stats(model):
    return [t.clone() for m in model.modules() if isinstance(m, BatchNormFlow)
            for t in (m.running_mean, m.running_var)]


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_one_bad_batch_leaves_the_batch_norm_running_averages_alone(bad):
    bn = BatchNormFlow(3)
    bn(torch.randn(16, 3))
    before = running_stats(bn)
    x = torch.randn(16, 3)
    x[5, 1] = bad  # one entry of one channel
    bn(x)
    assert all(torch.equal(a, b) for a, b in zip(before, running_stats(bn)))
    good = torch.randn(16, 3)
    bn(good)  # the next good batch updates as usual: running += 0.1 (batch - running)
    torch.testing.assert_close(bn.running_mean, 0.9 * before[0] + 0.1 * good.mean(0))
    assert bn.eval()(torch.randn(4, 3))[0].isfinite().all()


def test_a_nan_image_batch_leaves_every_batch_norm_flow_of_the_model_alone():
    model = image_model().train()
    model(torch.randn(8, 1, 8, 8))
    before = running_stats(model)
    x = torch.randn(8, 1, 8, 8)
    x[3, 0, 2, 5] = math.nan
    model(x)
    after = running_stats(model)
    assert len(before) == 2 * 10  # every coupling of both scales has its batch-norm flow
    assert all(torch.equal(a, b) for a, b in zip(before, after))


def test_empty_batches_are_refused_clearly():
    for name, flow, x in flows_and_inputs():
        for mode in ("train", "eval"):
            getattr(flow, mode)()
            with pytest.raises(ValueError, match=rf"^{name} got an empty batch \(shape "
                                                 rf"\(0, .*\)\): pass at least one sample"):
                flow(x[:0])
            with pytest.raises(ValueError, match="empty batch"):
                flow.inverse(x[:0])


@pytest.mark.parametrize("n", [0, -3, 2.5, True, "4"])
def test_sample_needs_a_positive_whole_number(n):
    for model in (image_model(), vector_model()):
        with pytest.raises(ValueError, match=rf"sample\(n\) needs a whole number n >= 1 of "
                                             rf"samples; got {n!r}"):
            model.sample(n)


@pytest.mark.parametrize("temperature", [0, 0.0, -1.0, math.nan, math.inf, "hot"])
def test_sample_needs_a_finite_positive_temperature(temperature):
    for model in (image_model(), vector_model()):
        with pytest.raises(ValueError, match=r"temperature must be a finite number > 0 .*got"):
            model.sample(3, temperature=temperature)
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        standard_normal_sample((2, 2), temperature)


def test_good_sample_calls_still_work():
    g = torch.Generator().manual_seed(0)
    assert vector_model().sample(np.int64(3), temperature=0.5, generator=g).shape == (3, 2)
    assert image_model().sample(torch.tensor(2), temperature=1).shape == (2, 1, 8, 8)
