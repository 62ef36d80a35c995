"""Turn a finished run of ``python -m nvp_edu.train`` into a pretrained model of
``data/pretrained/`` (weights + card, see ``nvp_edu/pretrained.py``).

    python scripts/make_pretrained.py runs/pretrain_photos --name photos \\
        --command "OMP_NUM_THREADS=1 python -m nvp_edu.train --dataset photos ..." \\
        --hardware "AMD EPYC, 1 thread"

It takes the weights that the run evaluated (the selected model with a validation split,
else the EMA of the weights if the run kept one, else the weights), stores them compactly
(``nvp_edu.pretrained.compact_state``), re-evaluates the *stored* weights on the whole
test split with fixed noise, and writes the card: architecture, command, seed, steps,
hardware, training time, figures, the training curve and the weights' SHA-256. Both files
are written atomically. ``--check-images`` test images are also scored with a fixed noise
seed into ``check_bpd``, which ``tests/test_pretrained.py`` recomputes in CI.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import io
import json
import platform
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nvp_edu import pretrained  # noqa: E402
from nvp_edu.checkpoint import atomic_open, load_checkpoint  # noqa: E402
from nvp_edu.train import PRESETS, Config, load_data, mean_bpd, read_metrics  # noqa: E402


def evaluated_state(ckpt: dict) -> tuple[dict[str, torch.Tensor], str]:
    """The state_dict the run reported its figure for, and which one it is."""
    if "best" in ckpt:
        return ckpt["best"]["state"], f"selected on validation (step {ckpt['best']['step']})"
    if "ema" in ckpt:
        state = {k.removeprefix("module."): v for k, v in ckpt["ema"].items()
                 if k != "n_averaged"}
        return state, f"EMA of the weights (decay {ckpt['config']['ema']})"
    return ckpt["model"], "the weights at the last step"


def score(model: torch.nn.Module, images: torch.Tensor, levels: int, seed: int) -> float:
    """Mean bits/dim with dequantization noise from ``seed``, in batches of 128."""
    return mean_bpd(model, images, levels, torch.Generator().manual_seed(seed))


def history(run: Path) -> dict[str, list]:
    records = read_metrics(run)
    train = [r for r in records if r["kind"] == "train"]
    evals = [r for r in records if r["kind"] == "eval"]
    key = "val_bpd" if evals and "val_bpd" in evals[0] else "test_bpd"
    return {"step": [r["step"] for r in train], "train_bpd": [round(r["bpd"], 4) for r in train],
            "eval_step": [r["step"] for r in evals], "eval_bpd": [round(r[key], 4) for r in evals],
            "eval_split": "validation" if key == "val_bpd" else "test"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="a finished run folder (checkpoint.pt, summary.json)")
    p.add_argument("--name", required=True, help="the model's name in data/pretrained/")
    p.add_argument("--command", required=True, help="the exact command that made the run")
    p.add_argument("--hardware", required=True, help="the machine that ran it, in words")
    p.add_argument("--check-images", type=int, default=256)
    p.add_argument("--out", type=Path, default=pretrained.pretrained_dir())
    args = p.parse_args(argv)

    ckpt = load_checkpoint(args.run / "checkpoint.pt")
    summary = json.loads((args.run / "summary.json").read_text())
    cfg = Config(**{k: v for k, v in ckpt["config"].items() if k in Config.__dataclass_fields__})
    state, which = evaluated_state(ckpt)
    compact = pretrained.compact_state(state)
    _, test, levels, _ = load_data(cfg)
    preset = PRESETS[cfg.preset]  # the run's architecture (the trainer builds its preset)
    model_args = {"class": "RealNVP", "in_channels": test.shape[1], "image_size": test.shape[2],
                  "num_scales": preset["num_scales"], "mid_channels": preset["mid_channels"],
                  "num_blocks": preset["num_blocks"]}
    info = {"name": args.name, "file": f"{args.name}.pt", "model": model_args,
            "dataset": cfg.dataset, "levels": levels, "weights": which,
            "storage": "parameters float16, batch-norm running statistics float32",
            "command": args.command, "seed": cfg.seed, "steps": summary["steps"],
            "epochs": round(summary["epochs"], 2), "batch_size": summary["batch_per_process"],
            "hardware": args.hardware, "torch": torch.__version__,
            "python": platform.python_version(), "train_seconds": round(summary["wall_s"]),
            "date": datetime.date.today().isoformat()}
    model = pretrained.build(info)
    pretrained.load_compact_state(model, compact)
    model.eval()
    info["figures"] = {
        "test_bpd_run": round(summary["test_bpd"], 4),
        "test_bpd": round(score(model, test, levels, seed=12345), 4),
        "test_images": len(test),
        "check_images": args.check_images,
        "check_bpd": round(score(model, test[:args.check_images], levels, seed=0), 4),
    }
    info["history"] = history(args.run)
    buffer = io.BytesIO()
    torch.save(compact, buffer)
    data = buffer.getvalue()
    info["bytes"] = len(data)
    info["sha256"] = hashlib.sha256(data).hexdigest()
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_open(args.out / info["file"]) as f:
        f.write(data)
    with atomic_open(args.out / f"{args.name}.json") as f:
        f.write((json.dumps(info, indent=1) + "\n").encode())
    print(json.dumps({k: info[k] for k in ("name", "bytes", "weights", "figures")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
