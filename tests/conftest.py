import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def perturb(module: torch.nn.Module, std: float = 0.2) -> torch.nn.Module:
    """Move every parameter away from its (identity) initialization, so checks bite."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(std * torch.randn_like(p))
    return module
