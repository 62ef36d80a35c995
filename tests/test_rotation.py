"""Rotation (a fixed mixing of the plane) and RealNVP2D with rotations: exact flows."""
import math

import pytest
import torch
from conftest import perturb

from nvp_edu.checks import check_flow
from nvp_edu.models import RealNVP2D
from nvp_edu.rotation import Rotation


@pytest.mark.parametrize("degrees", [45.0, 137.5, -30.0])
def test_rotation_is_an_exact_flow_with_zero_log_det(degrees):
    rot = Rotation(degrees)
    x = torch.randn(16, 2, dtype=torch.float64)
    report = check_flow(rot, x)  # inverse and log-det against autograd, float64
    assert report.passed, str(report)
    y, log_det = rot.double()(x)
    assert torch.equal(log_det, torch.zeros(16, dtype=torch.float64))
    # the point (1, 0) goes to (cos a, sin a): a rotation by `degrees`, counter-clockwise
    e1 = rot(torch.tensor([[1.0, 0.0]], dtype=torch.float64))[0]
    a = math.radians(degrees)
    torch.testing.assert_close(e1, torch.tensor([[math.cos(a), math.sin(a)]], dtype=torch.float64))
    torch.testing.assert_close(y.norm(dim=1), x.norm(dim=1))  # lengths kept


def test_rotation_has_no_parameters_and_no_state():
    rot = Rotation(45.0)
    assert list(rot.parameters()) == [] and rot.state_dict() == {}


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_rotation_refuses_a_non_finite_angle(bad):
    with pytest.raises(ValueError, match="finite angle"):
        Rotation(bad)


def test_rotation_refuses_points_not_in_the_plane():
    with pytest.raises(ValueError, match=r"shape \(N, 2\); got shape \(4, 3\)"):
        Rotation(45.0)(torch.randn(4, 3))


def test_realnvp2d_with_rotations_is_an_exact_flow():
    model = perturb(RealNVP2D(num_couplings=6, hidden=16, mlp_depth=3, rotation=45.0), 0.3)
    kinds = [type(layer).__name__ for layer in model.flow]
    assert kinds == ["AffineCoupling", "AffineCoupling", "Rotation",
                     "AffineCoupling", "AffineCoupling", "Rotation",
                     "AffineCoupling", "AffineCoupling"]
    linears = [m for m in model.flow[0].net.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 4  # mlp_depth=3 hidden layers, then the output layer
    report = check_flow(model, torch.randn(8, 2))
    assert report.passed, str(report)


def test_realnvp2d_defaults_unchanged_by_the_new_options():
    torch.manual_seed(0)
    plain = RealNVP2D(num_couplings=4, hidden=8)
    torch.manual_seed(0)
    explicit = RealNVP2D(num_couplings=4, hidden=8, mlp_depth=2, rotation=0.0)
    assert [type(m).__name__ for m in plain.flow] == ["AffineCoupling"] * 4
    for (k1, v1), (k2, v2) in zip(plain.state_dict().items(), explicit.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)


def test_rotation_needs_the_plane():
    with pytest.raises(ValueError, match="needs dim=2; got dim=3"):
        RealNVP2D(dim=3, rotation=45.0)
