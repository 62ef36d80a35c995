"""The pretrained models in data/pretrained/: each file is what its card says (checksum,
architecture, the held-out figure it reached), and a missing or damaged file is an error
that names the file and the fix."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from nvp_edu import pretrained
from nvp_edu.checks import check_flow, check_inverse
from nvp_edu.pretrained import PretrainedFileError

NAMES = pretrained.available()
CARD_KEYS = {"name", "file", "model", "dataset", "levels", "weights", "command", "seed",
             "steps", "batch_size", "hardware", "torch", "train_seconds", "date", "figures",
             "history", "bytes", "sha256"}


def test_the_course_ships_its_models():
    assert NAMES == ["digits", "photos"]


@pytest.mark.parametrize("name", NAMES)
def test_card_is_complete_and_the_file_small(name):
    info = pretrained.card(name)
    assert CARD_KEYS <= set(info), f"card lacks {CARD_KEYS - set(info)}"
    assert info["command"].startswith(("python -m nvp_edu.train", "OMP_NUM_THREADS=1 python -m nvp_edu.train"))
    path = pretrained.verified_weights_path(name)
    assert path.stat().st_size == info["bytes"] < 4_000_000
    history = info["history"]
    assert len(history["step"]) == len(history["train_bpd"]) > 0
    assert history["eval_step"][-1] == info["steps"]


@pytest.mark.parametrize("name", NAMES)
def test_the_stored_weights_reach_the_cards_figure(name, one_thread):
    """Recomputes the card's check figure (fixed noise, the first test images): the file
    is the model that was measured, and float16 storage did not change it."""
    from nvp_edu.train import Config, load_data, mean_bpd

    info = pretrained.card(name)
    model = pretrained.load(name)
    assert not model.training and next(model.parameters()).dtype == torch.float32
    _, test, levels, _ = load_data(Config(dataset=info["dataset"]))
    images = test[:info["figures"]["check_images"]]
    bpd = mean_bpd(model, images, levels, torch.Generator().manual_seed(0))
    assert bpd == pytest.approx(info["figures"]["check_bpd"], abs=2e-3)
    # and float16 storage cost (almost) nothing against the float32 weights of the run
    assert info["figures"]["test_bpd"] == pytest.approx(info["figures"]["test_bpd_run"], abs=0.01)


def test_a_pretrained_model_is_still_an_exact_flow(one_thread):
    """Trained weights, float16 storage: inverse and log-det still exact (float64 oracle).
    The digits model only: the photos model's 3072 x 3072 Jacobian is too slow for a unit
    test, so it gets the inverse check alone."""
    assert check_flow(pretrained.load("digits"), torch.randn(2, 1, 8, 8)).passed
    assert check_inverse(pretrained.load("photos"), torch.randn(2, 3, 32, 32)).passed


def copy_of(name, tmp_path):
    for suffix in (".json", ".pt"):
        shutil.copy(pretrained.pretrained_dir() / f"{name}{suffix}", tmp_path)
    return tmp_path


def test_damaged_file_is_detected_before_loading(tmp_path):
    root = copy_of("digits", tmp_path)
    data = bytearray((root / "digits.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (root / "digits.pt").write_bytes(bytes(data))
    with pytest.raises(PretrainedFileError, match=r"are damaged: .*digits\.pt has SHA-256 .*"
                                                  r"git checkout -- data/pretrained/digits\.pt"):
        pretrained.load("digits", root=root)
    (root / "digits.pt").write_bytes(bytes(data[:1000]))  # truncated
    with pytest.raises(PretrainedFileError, match="damaged"):
        pretrained.load("digits", root=root)


def test_missing_file_and_unknown_name(tmp_path, monkeypatch):
    root = copy_of("digits", tmp_path)
    (root / "digits.pt").unlink()
    with pytest.raises(PretrainedFileError, match=r"are missing: expected .*digits\.pt .*"
                                                  r"or retrain it: .*python -m nvp_edu\.train"):
        pretrained.load("digits", root=root)
    with pytest.raises(ValueError, match=r"no pretrained model 'cifar' .*available: digits"):
        pretrained.load("cifar", root=root)
    (root / "digits.json").write_text("{not json")
    with pytest.raises(PretrainedFileError, match="card .* is damaged"):
        pretrained.card("digits", root=root)
    monkeypatch.setenv(pretrained.ENV_DIR, str(root))
    assert pretrained.pretrained_dir() == root


def test_compact_state_keeps_running_statistics_in_float32():
    state = {"w": torch.ones(2), "bn.running_var": torch.full((2,), 1e-5), "n": torch.tensor(3)}
    compact = pretrained.compact_state(state)
    assert compact["w"].dtype == torch.float16 and compact["bn.running_var"].dtype == torch.float32
    assert compact["n"].dtype == torch.int64
    assert json.dumps(sorted(compact)) == json.dumps(sorted(state))
