"""Checkpoints carry a checksum; damaged ones are refused; the previous good one is kept.

Issue 13, fault E: a checkpoint with a byte flipped in the middle loaded silently with
wrong weights, and a truncated one failed with a bare ``OSError: Invalid argument``.
"""
import os
import random
import warnings

import pytest
import torch

from nvp_edu import checkpoint as C
from nvp_edu.checkpoint import (CheckpointCorruptError, CheckpointUnverifiedError,
                                capture_rng_state, load_checkpoint,
                                previous_checkpoint, restore_rng_state, save_checkpoint,
                                state_checksum)


def _state(step, seed=0):
    g = torch.Generator().manual_seed(seed)
    model = torch.nn.Linear(64, 64)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(2, 64, generator=g)).sum().backward()
    opt.step()
    return {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
            "rng_per_rank": [capture_rng_state({"aug": torch.Generator().manual_seed(7)})],
            "config": {"dataset": "digits", "lr": 1e-3, "flags": (True, None)}}


def _same(a, b):
    return state_checksum(a) == state_checksum(b)


def test_round_trip_with_checksum_and_plain_torch_load_still_reads_it(tmp_path):
    path = tmp_path / "checkpoint.pt"
    state = _state(5)
    save_checkpoint(path, state)
    loaded = load_checkpoint(path)
    assert _same(loaded, state) and C.CHECKSUM_KEY not in loaded and loaded["step"] == 5
    raw = torch.load(path, weights_only=True)  # the trainer's tests read it like this
    assert raw["step"] == 5 and raw[C.CHECKSUM_KEY]["algorithm"] == C.CHECKSUM_ALGORITHM
    assert os.listdir(tmp_path) == ["checkpoint.pt"]  # no temp files, no .prev yet
    restore_rng_state(loaded["rng_per_rank"][0], {"aug": torch.Generator()})


def test_checksum_sees_values_dtypes_and_structure():
    base = {"w": torch.zeros(3), "step": 1, "t": (1, 2)}
    variants = [{"w": torch.zeros(3, dtype=torch.float64), "step": 1, "t": (1, 2)},
                {"w": torch.zeros(1, 3), "step": 1, "t": (1, 2)},
                {"w": torch.tensor([0.0, 0.0, 1e-30]), "step": 1, "t": (1, 2)},
                {"w": torch.zeros(3), "step": 2, "t": (1, 2)},
                {"w": torch.zeros(3), "step": 1, "t": [1, 2]},
                {"w": torch.zeros(3), "step": 1.0, "t": (1, 2)},
                {"step": 1, "w": torch.zeros(3), "t": (1, 2)}]
    sums = {state_checksum(v) for v in variants} | {state_checksum(base)}
    assert len(sums) == len(variants) + 1
    assert state_checksum(base) == state_checksum({**base, C.CHECKSUM_KEY: "ignored"})


def test_a_byte_flipped_in_the_middle_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, _state(5))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointCorruptError) as e:
        load_checkpoint(path)
    msg = str(e.value)
    assert str(path) in msg and "damaged" in msg and "NOT loaded" in msg
    assert e.value.path == path and e.value.previous is None
    assert "no intact previous checkpoint" in msg


def test_no_single_flipped_byte_loads_different_contents(tmp_path):
    """Anywhere in the file: a flipped byte is refused, or the contents are unchanged.

    (Checked once for every byte and two bit masks: 4025 refused, 1945 harmless, none
    loaded different contents. Harmless flips hit bytes torch.load ignores.)
    """
    good = tmp_path / "good.pt"
    state = {"step": 3, "w": torch.randn(300), "name": "run", "rng": random.getstate()[1][:8]}
    save_checkpoint(good, state)
    data = good.read_bytes()
    bad = tmp_path / "bad.pt"
    refused = 0
    for pos in range(0, len(data), max(1, len(data) // 1000)):
        flipped = bytearray(data)
        flipped[pos] ^= 0x55
        bad.write_bytes(bytes(flipped))
        try:
            loaded = load_checkpoint(bad)
        except CheckpointCorruptError as err:
            assert str(bad) in str(err)
            refused += 1
            continue
        assert _same(loaded, state), f"byte {pos} flipped: loaded different contents"
    assert refused > 300


@pytest.mark.parametrize("keep", [0, 1, 100, 0.5, -1])
def test_a_truncated_checkpoint_is_refused(tmp_path, keep):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, _state(5))
    data = path.read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else (keep % len(data))
    path.write_bytes(data[:n])
    with pytest.raises(CheckpointCorruptError, match="torch.load could not read it") as e:
        load_checkpoint(path)
    assert str(path) in str(e.value)


def test_checkpoints_without_checksum_are_refused_unless_allowed(tmp_path):
    """Refused by default: a flipped byte in the checksum's own key looks just like this."""
    path = tmp_path / "old.pt"
    torch.save({"step": 2, "w": torch.ones(2)}, path)
    with pytest.raises(CheckpointUnverifiedError, match="cannot be verified.*no checksum.*"
                       r"allow_unverified=True") as e:
        load_checkpoint(path)
    assert isinstance(e.value, CheckpointCorruptError) and str(path) in str(e.value)
    with pytest.warns(UserWarning, match="no checksum.*WITHOUT verifying"):
        state = load_checkpoint(path, allow_unverified=True)
    assert state["step"] == 2
    save_checkpoint(path, state)  # re-saving adds the checksum
    assert load_checkpoint(path)["step"] == 2


def test_a_damaged_checksum_key_is_not_mistaken_for_an_old_checkpoint(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"step": 1, "w": torch.ones(3)})
    data = path.read_bytes()
    key = C.CHECKSUM_KEY.encode()
    assert data.count(key) == 1
    path.write_bytes(data.replace(key, key[:-1] + b"X"))
    with pytest.raises(CheckpointUnverifiedError):
        load_checkpoint(path)


def test_previous_checkpoint_is_kept_and_reported(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, _state(1))
    assert previous_checkpoint(path) is None
    save_checkpoint(path, _state(2, seed=1))
    save_checkpoint(path, _state(3, seed=2))
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.pt", "checkpoint.pt.prev"]
    assert previous_checkpoint(path) == tmp_path / "checkpoint.pt.prev"
    assert load_checkpoint(path)["step"] == 3
    assert load_checkpoint(previous_checkpoint(path))["step"] == 2
    # the current one gets damaged: the error points at the previous good one
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointCorruptError) as e:
        load_checkpoint(path)
    assert e.value.previous == tmp_path / "checkpoint.pt.prev" and e.value.previous_step == 2
    assert f"previous good checkpoint is {tmp_path / 'checkpoint.pt.prev'} (step 2)" in str(e.value)
    with pytest.warns(UserWarning, match="Loaded .*checkpoint.pt.prev instead"):
        assert load_checkpoint(path, fallback_to_previous=True)["step"] == 2
    # saving over a damaged checkpoint does not rotate it over the good .prev
    with pytest.warns(UserWarning, match="is damaged: it is not kept"):
        save_checkpoint(path, _state(4, seed=3))
    assert load_checkpoint(path)["step"] == 4
    assert load_checkpoint(previous_checkpoint(path))["step"] == 2


def test_damaged_previous_is_not_offered(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, _state(1))
    save_checkpoint(path, _state(2))
    for p in (path, previous_checkpoint(path)):
        p.write_bytes(p.read_bytes()[:100])
    with pytest.raises(CheckpointCorruptError, match="no intact previous checkpoint") as e:
        load_checkpoint(path, fallback_to_previous=True)
    assert e.value.previous is None


def test_rotation_verifies_an_old_file_written_by_another_process(tmp_path):
    """Not in this process's cache of verified files: the old one is read and checked."""
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, _state(1))
    C._VERIFIED.clear()
    save_checkpoint(path, _state(2))
    assert load_checkpoint(previous_checkpoint(path))["step"] == 1
    C._VERIFIED.clear()
    torch.save({"step": 0}, path)  # without checksum: not kept over an intact .prev
    with pytest.warns(UserWarning, match="has no checksum: it is not kept"):
        save_checkpoint(path, _state(3))
    assert load_checkpoint(previous_checkpoint(path))["step"] == 1
    previous_checkpoint(path).unlink()
    C._VERIFIED.clear()
    torch.save({"step": 0}, path)  # ... but better than nothing when there is no .prev
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        save_checkpoint(path, _state(4))
    with pytest.warns(UserWarning, match="WITHOUT verifying"):
        assert load_checkpoint(previous_checkpoint(path), allow_unverified=True)["step"] == 0


def test_a_failed_save_changes_nothing(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, _state(1))
    save_checkpoint(path, _state(2))
    before = {n: (tmp_path / n).read_bytes() for n in os.listdir(tmp_path)}
    with pytest.raises(Exception):
        save_checkpoint(path, {"step": 3, "bad": lambda: 0})  # cannot be pickled
    # the bytes on disk differ from those written (simulated): refused before any rename
    monkeypatch.setattr(C, "file_sha256", lambda p: "0" * 64)
    with pytest.raises(CheckpointCorruptError, match="bytes read back differ"):
        save_checkpoint(path, _state(3))
    assert {n: (tmp_path / n).read_bytes() for n in os.listdir(tmp_path)} == before


def test_leftover_temp_files_of_a_killed_save_are_removed(tmp_path):
    path = tmp_path / "checkpoint.pt"
    leftover = tmp_path / ".checkpoint.pt.0badc0de.part"
    leftover.write_bytes(b"half a checkpoint")
    os.utime(leftover, (0, 0))  # from an earlier run
    keep = tmp_path / ".checkpoint.pt.notours.part"  # not a name atomic_open makes
    keep.write_bytes(b"x")
    os.utime(keep, (0, 0))
    save_checkpoint(path, _state(1))
    assert sorted(os.listdir(tmp_path)) == [".checkpoint.pt.notours.part", "checkpoint.pt"]
