"""A finished run as an object, and its export to standard formats.

A run folder (written by ``rnnlab train``, ``rnnlab memory`` or a recipe) holds
checkpoints whose ``meta`` records the task, its parameters, the data seed and the
model configuration. :func:`load_run` rebuilds all of it; :func:`export_run`
writes the weights as safetensors with a ``config.json`` and a model card, so the
model can be used without rnnlab's checkpoint format (the Hugging Face habit).

Example::

    import rnnlab
    run = rnnlab.load_run("runs/lstm20")
    scores = run.trainer().evaluate(run.model, run.task.splits(seed=run.data_seed)["test"])
    rnnlab.export_run("runs/lstm20", "exported/lstm20")
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rnnlab.errors import RnnlabError, ensure
from rnnlab.io import atomic_write_bytes, atomic_write_json, atomic_write_text, ensure_dir

FORMATS = ("safetensors",)


@dataclass
class Run:
    """Everything a run folder records, rebuilt: its task, model and configurations."""

    path: Path
    task_name: str
    task_params: dict[str, Any]
    data_seed: int
    model_config: Any  # None for a generic-path memory run (its model is rebuilt from code)
    train_config: Any
    task: Any
    model: Any
    checkpoint: dict[str, Any] = field(repr=False)
    summary: dict[str, Any] = field(default_factory=dict, repr=False)

    def trainer(self) -> Any:
        """A quiet :class:`~rnnlab.train.Trainer` with the run's training configuration."""
        from rnnlab.train import Trainer

        return Trainer(dataclasses.replace(self.train_config, progress="off"))

    def scores(self) -> dict[str, Any]:
        """The scores the run recorded: best dev score and, when it was scored, test."""
        found: dict[str, Any] = {}
        best = self.checkpoint.get("best_score")
        if isinstance(best, (int, float)) and math.isfinite(best):
            found["best_dev_score"] = float(best)
            found["best_step"] = self.checkpoint.get("best_step")
        for key, value in self.summary.items():
            if key.startswith(("test_", "best_dev_")) and isinstance(value, (int, float)):
                found[key] = value
        return found


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RnnlabError(f"cannot read {path}: {err}") from err
    return data if isinstance(data, dict) else {}


def _known_fields(cls: type, values: Any, label: str, where: Path) -> dict[str, Any]:
    ensure(isinstance(values, dict), f"{where}: the checkpoint's {label} settings are not a "
           "mapping")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    ensure(not unknown, f"{where}: unknown {label} setting(s) {', '.join(unknown)} in the "
           f"checkpoint (written by another rnnlab?); known: {', '.join(sorted(names))}")
    return values


def load_run(path: str | os.PathLike, which: str = "best") -> Run:
    """Rebuild the run in folder ``path`` from its ``best.pt`` (or ``last.pt``).

    Raises :class:`~rnnlab.errors.RnnlabError` with one sentence when the folder is not
    a run folder or its checkpoint does not describe a model rnnlab can rebuild.
    """
    import torch

    from rnnlab.models import ModelConfig, build_model
    from rnnlab.tasks import get_task
    from rnnlab.train import TrainConfig, find_checkpoint, load_checkpoint
    from rnnlab.train.checkpoint import require

    ensure(which in ("best", "last"), f"which must be 'best' or 'last', not {which!r}")
    run_dir = Path(path)
    found = find_checkpoint(run_dir, prefer=f"{which}.pt")
    ckpt = load_checkpoint(found)
    meta = ckpt.get("meta") or {}
    ensure(isinstance(meta, dict) and "task" in meta
           and ("model_config" in meta or "generic_model" in meta),
           f"{run_dir}: the checkpoint does not record its task and model; was it written "
           "by rnnlab train, rnnlab memory or a recipe?")
    require(ckpt, found, "model", "train_config", "step")
    train_config = TrainConfig.from_dict(
        _known_fields(TrainConfig, ckpt["train_config"], "training", run_dir))
    task_params = dict(meta.get("task_params") or {})
    model_config = None
    if "generic_model" in meta:  # a memory run of the generic path: a user's model maybe
        from rnnlab.experiments.generic_runs import rebuild

        task, model = rebuild(meta, run_dir)
    else:
        model_config = ModelConfig(**_known_fields(ModelConfig, meta["model_config"], "model",
                                                   run_dir))
        try:
            task = get_task(meta["task"], **task_params)
        except TypeError as err:  # parameters from another version of the task
            raise RnnlabError(f"{found}: its task parameters do not fit task "
                              f"{meta['task']!r} ({err})") from None
        model = build_model(model_config)
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, KeyError) as err:
        raise RnnlabError(f"{run_dir}: the checkpoint's parameters do not fit its model "
                          f"({str(err).splitlines()[0]})") from err
    ensure(all(bool(torch.isfinite(p).all()) for p in model.parameters()),
           f"{found}: the checkpoint's parameters are not all finite (nan or inf): the run "
           "diverged, so there is no model to use")
    model.eval()
    return Run(path=run_dir, task_name=meta["task"], task_params=task_params,
               data_seed=int(meta.get("data_seed", meta.get("seed", 0))),
               model_config=model_config, train_config=train_config, task=task, model=model,
               checkpoint=ckpt, summary=_read_json(run_dir / "summary.json"))


def _reproduce(run: Run) -> str:
    """Python that retrains the run from scratch with the public API."""
    return "\n".join([
        "import dataclasses",
        "",
        "from rnnlab.models import ModelConfig",
        "from rnnlab.tasks import get_task",
        "from rnnlab.train import TrainConfig, Trainer, seeded_model",
        "",
        f"task = get_task({run.task_name!r}, **{run.task_params!r})",
        f"splits = task.splits(seed={run.data_seed})",
        f"model_config = ModelConfig(**{dataclasses.asdict(run.model_config)!r})",
        f"train_config = TrainConfig(**{run.train_config.asdict()!r})",
        "model = seeded_model(model_config, train_config.seed)",
        f"meta = {{'task': {run.task_name!r}, 'task_params': {run.task_params!r},",
        f"        'data_seed': {run.data_seed}, 'model_config': dataclasses.asdict(model_config)}}",
        "result = Trainer(train_config).fit(model, splits['train'], splits['dev'],",
        "                                   test=splits['test'], out_dir='runs/reproduced',",
        "                                   meta=meta)",
    ])


def _model_card(run: Run, n_params: int, source: Path) -> str:
    mc = run.model_config
    scores = run.scores()
    score_lines = [f"| {key} | {value:.4g} |" if isinstance(value, float) else
                   f"| {key} | {value} |" for key, value in scores.items()] or [
        "| (none recorded) | |"]
    params = ", ".join(f"{k}={v}" for k, v in run.task_params.items()) or "defaults"
    return "\n".join([
        f"# {run.task_name} — {mc.cell} (hidden {mc.hidden_size}), exported by rnnlab",
        "",
        f"Trained by rnnlab on the task `{run.task_name}` ({params}), data seed "
        f"{run.data_seed}, training seed {run.train_config.seed}. Exported from `{source}`.",
        "",
        "## Model",
        f"- cell: `{mc.cell}`, hidden size {mc.hidden_size}, layers {mc.num_layers}, "
        f"bidirectional {mc.bidirectional}",
        f"- input: {mc.input}; head: {mc.head} with {mc.num_outputs} outputs",
        f"- parameters: {n_params:,}",
        "- weights: `model.safetensors` (parameter names as `torch.nn` cells use them); "
        "configuration: `config.json`",
        "",
        "## Scores recorded by the run",
        "| score | value |",
        "| --- | ---: |",
        *score_lines,
        "",
        "## Load it",
        "```python",
        "import json",
        "from safetensors.torch import load_file",
        "from rnnlab.models import ModelConfig, build_model",
        "",
        "config = json.load(open('config.json'))",
        "model = build_model(ModelConfig(**config['model_config']))",
        "model.load_state_dict(load_file('model.safetensors'))",
        "```",
        "",
        "## Reproduce it",
        "```python",
        _reproduce(run),
        "```",
        "",
    ])


def export_run(path: str | os.PathLike, out: str | os.PathLike, fmt: str = "safetensors",
               which: str = "best") -> list[Path]:
    """Write the run's weights (``model.safetensors``), ``config.json`` and ``README.md``
    (a model card: what it was trained on, its scores, how to reproduce it) into ``out``."""
    ensure(fmt in FORMATS, f"unknown export format {fmt!r}; known formats: {', '.join(FORMATS)}")
    try:
        from safetensors.torch import save as save_safetensors
    except ImportError as err:  # a declared dependency; only a broken install lacks it
        raise RnnlabError("exporting needs the safetensors package: "
                          "pip install safetensors") from err
    run = load_run(path, which)
    ensure(run.model_config is not None,
           f"{path}: export writes models of built-in cells (a ModelConfig); this run's model "
           "is rebuilt from its own Python file, so use rnnlab.load_run(path).model instead")
    out_dir = ensure_dir(out)
    tensors = {name: t.detach().contiguous() for name, t in run.model.state_dict().items()}
    n_params = sum(p.numel() for p in run.model.parameters())
    written = [
        atomic_write_bytes(out_dir / "model.safetensors", save_safetensors(
            tensors, metadata={"format": "pt", "producer": "rnnlab"})),
        atomic_write_json(out_dir / "config.json", {
            "task": run.task_name, "task_params": run.task_params, "data_seed": run.data_seed,
            "model_config": dataclasses.asdict(run.model_config),
            "train_config": run.train_config.asdict(), "scores": run.scores(),
            "parameters": n_params, "source": str(run.path)}),
        atomic_write_text(out_dir / "README.md", _model_card(run, n_params, run.path)),
    ]
    return written
