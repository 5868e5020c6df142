"""Hostile checkpoints: flipped bytes, truncation, garbage, pickled code, forged or
missing entries, wrong shapes, non-finite weights. ``evaluate``, ``predict`` and
``train --resume`` must refuse each in one line (never passing on torch's advice to
load with ``weights_only=False``), run no code, or, where a flip hit bytes nothing
reads, give exactly the untouched checkpoint's answer."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import torch

from torture_classes.common import Tally, one_line, rnnlab


class _Code:
    """Pickles as a call to ``os.system``: loading it with weights_only=False runs it."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return (os.system, (f"touch {self.sentinel}",))


def _flip(seed: int):
    def make(path: Path, state: dict, sentinel: Path) -> None:
        data = bytearray(path.read_bytes())
        rng = random.Random(seed)
        for at in rng.sample(range(len(data)), 64):
            data[at] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(data))
    return make


def _resave(edit):
    """Edit the loaded dict and save it with a digest that matches the edit."""
    def make(path: Path, state: dict, sentinel: Path) -> None:
        from rnnlab.train.checkpoint import save_checkpoint

        edit(state)
        save_checkpoint(state, path)
    return make


def _raw(obj_of):
    def make(path: Path, state: dict, sentinel: Path) -> None:
        torch.save(obj_of(state, sentinel), path)
    return make


def _nan(state: dict) -> None:
    for tensor in state["model"].values():
        tensor.fill_(float("nan"))


def _grow(state: dict) -> None:
    key = next(iter(state["model"]))
    state["model"][key] = torch.zeros(3, 3, 3)


CASES = {
    **{f"64 flipped bytes #{i}": _flip(i) for i in range(6)},
    "truncated": lambda p, s, x: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "empty": lambda p, s, x: p.write_bytes(b""),
    "garbage": lambda p, s, x: p.write_bytes(os.urandom(4096)),
    "pickled os.system": _raw(lambda s, x: {**s, "model": _Code(x)}),
    "pickled os.system alone": _raw(lambda s, x: _Code(x)),
    "a tensor, not a dict": _raw(lambda s, x: torch.zeros(3)),
    "no format": _raw(lambda s, x: {k: v for k, v in s.items() if k != "format"}),
    "version 99": _raw(lambda s, x: {**s, "version": 99}),
    "forged digest": _raw(lambda s, x: {**s, "digest": "0" * 64}),
    "no digest at version 2": _raw(lambda s, x: {k: v for k, v in s.items() if k != "digest"}),
    "edited step, old digest": _raw(lambda s, x: {**s, "step": s["step"] + 1}),
    "no train_config": _resave(lambda s: s.pop("train_config")),
    "no meta": _resave(lambda s: s.pop("meta")),
    "no model": _resave(lambda s: s.pop("model")),
    "unknown model setting": _resave(lambda s: s["meta"]["model_config"].update(wings=2)),
    "unknown task parameter": _resave(lambda s: s["meta"]["task_params"].update(colour=1)),
    "unknown task": _resave(lambda s: s["meta"].update(task="astrology")),
    "weights of the wrong shape": _resave(_grow),
    "nan weights": _resave(_nan),
}


def _loads(path: Path) -> bool:
    from rnnlab.errors import RnnlabError
    from rnnlab.train import load_checkpoint

    try:
        load_checkpoint(path)
    except RnnlabError:
        return False
    return True


def run(tally: Tally, work: Path, run_dir: Path) -> None:
    reference = {
        "evaluate": rnnlab("evaluate", run_dir, "--checkpoint", "last").stdout,
        "predict": rnnlab("predict", run_dir, "--checkpoint", "last",
                          "--sequence", "3 4 0 0 0").stdout,
    }
    for number, (name, make) in enumerate(CASES.items()):
        folder = work / f"case{number}"
        shutil.copytree(run_dir, folder)
        (folder / "summary.json").unlink()  # so that train --resume is allowed to try
        sentinel = work / f"pwned{number}"
        for file in ("best.pt", "last.pt"):
            state = torch.load(folder / file, weights_only=True)
            make(folder / file, state, sentinel)
        commands = {
            "evaluate": ["evaluate", folder, "--checkpoint", "last"],
            "predict": ["predict", folder, "--checkpoint", "last", "--sequence", "3 4 0 0 0"],
            "train --resume": ["train", "digitsum", "--length", "5", "--hidden", "8",
                               "--embedding", "8", "--max-steps", "20", "--out", folder,
                               "--resume", "--quiet"],
        }
        intact = _loads(folder / "last.pt")
        for verb, args in commands.items():
            res = rnnlab(*args)
            refused = res.returncode == 2 and one_line(res.stderr) \
                and "weights_only" not in res.stderr
            # A flip in bytes nothing reads leaves the content (and its digest) intact.
            unharmed = intact and res.returncode == 0 and (
                verb not in reference
                or res.stdout.replace(str(folder), str(run_dir)) == reference[verb])
            ok = (refused or unharmed) and not sentinel.exists()
            tally.record(ok, f"{name} / {verb}: exit {res.returncode} "
                             f"{res.stderr.strip()[-200:]!r}")
