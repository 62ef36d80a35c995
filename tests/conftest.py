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


def train_a_few_steps(flow: torch.nn.Module, x: torch.Tensor, steps: int = 5) -> torch.nn.Module:
    """Maximum-likelihood steps in training mode, then eval mode: moves every parameter,
    weight-norm gain and batch-norm statistic (and initializes ActNorm on the first)."""
    from nvp_edu.prior import standard_normal_log_prob
    opt = torch.optim.Adam(flow.parameters(), lr=1e-2)
    flow.train()
    for _ in range(steps):
        z, ld = flow(x)
        loss = -(standard_normal_log_prob(z) + ld).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return flow.eval()


def one_error_line(capsys) -> str:
    """The CLI's one ``error: ...`` line on stderr (and no traceback), from ``capsys``."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def steps_logged(out) -> list[int]:
    """The steps of the train records in ``out/metrics.jsonl``, in order."""
    from nvp_edu.train import read_metrics
    return [r["step"] for r in read_metrics(out) if r["kind"] == "train"]
