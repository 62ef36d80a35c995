import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def one_thread():
    """Tiny tensors on a busy 2-core machine: a second OpenMP thread costs more than it
    gives (measured: test_train.py 63 s with 2 threads under load, 11 s with 1)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def perturb(module: torch.nn.Module, std: float = 0.2) -> torch.nn.Module:
    """Move every parameter away from its (identity) initialization, so checks bite."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(std * torch.randn_like(p))
    return module
