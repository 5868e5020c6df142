"""``rnnlab train | evaluate | predict | cells | tasks``: one model, from the command line.

``train`` is generic over the registered tasks: ``--length`` sets the task's ``length``
field, ``--data-dir`` its ``data_dir`` field (tasks that read files: the MNIST ones,
and DigitSum from the seed's ``train/dev/test.txt``),
``--task-param KEY=VALUE`` any other field. A ``--protocol`` supplies every
hyper-parameter at once; options given explicitly beside it win (click's parameter
source tells which ones the user typed). The run folder gets ``metrics.csv``,
``last.pt``, ``best.pt`` and ``summary.json``, each written atomically.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
import typing
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from rnnlab.cells.init import init_names
from rnnlab.cli.config import config_option, write_resolved
from rnnlab.cli.values import parse_value
from rnnlab.errors import RnnlabError, ensure
from rnnlab.protocols import get_protocol, protocol_names
from rnnlab.train.loggers import LOGGERS

# CLI option -> (where it goes, field name)
_MODEL_OPTIONS = {"cell": "cell", "hidden": "hidden_size", "layers": "num_layers",
                  "init": "init", "embedding": "embedding_dim"}
_TRAIN_OPTIONS = {"epochs": "epochs", "max_steps": "max_steps", "batch_size": "batch_size",
                  "lr": "lr", "optimizer": "optimizer", "clip_norm": "clip_norm",
                  "eval_every": "eval_every", "shuffle": "shuffle"}
# Seeds reach numpy's and torch's generators (some as 3 * seed + k); a negative or
# huge one would end in a traceback there.
SEED = click.IntRange(0, 2**32 - 1)
# Parameters are float32: a learning rate or clip beyond this cannot even be applied.
FLOAT32_MAX = 3.4028234663852886e38
_GIVEN = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT, ParameterSource.PROMPT,
          ParameterSource.DEFAULT_MAP)


def _cell_names() -> list[str]:
    from rnnlab.cells import cell_names

    return cell_names()


def _given(ctx: click.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) in _GIVEN


# ---------------------------------------------------------------------- task parameters
def task_fields(task_cls: type) -> dict[str, Any]:
    """The task's parameters: ``{name: type}`` of its init dataclass fields."""
    hints = typing.get_type_hints(task_cls)
    return {f.name: hints.get(f.name, str) for f in dataclasses.fields(task_cls) if f.init}


def task_config(task: Any) -> dict[str, Any]:
    """The task's parameter values (what rebuilds it), as plain values."""
    return {name: getattr(task, name) for name in task_fields(type(task))}


def _tasks_with_data_dir() -> list[str]:
    from rnnlab.tasks import task_class, task_names

    names = []
    for name in task_names():
        try:
            if "data_dir" in task_fields(task_class(name)):
                names.append(name)
        except ImportError:  # a broken optional task must not hide the others
            continue
    return names


def task_params_from_options(task_cls: type, length: int | None,
                             pairs: tuple[str, ...],
                             data_dir: Path | None = None) -> dict[str, Any]:
    """``--length``, ``--data-dir`` and ``--task-param KEY=VALUE`` as typed task parameters."""
    fields = task_fields(task_cls)
    params: dict[str, Any] = {}
    if length is not None:
        ensure("length" in fields, f"task {task_cls.name!r} has no length; its parameters: "
              + (", ".join(fields) or "none"))
        params["length"] = length
    if data_dir is not None:
        if "data_dir" not in fields:
            readers = _tasks_with_data_dir()
            raise RnnlabError(
                f"--data-dir: task {task_cls.name!r} reads no data directory (it generates its "
                "data); --data-dir is for " + (", ".join(readers) or "tasks that read files"))
        ensure(not any(p.partition("=")[0].strip().replace("-", "_") == "data_dir"
                      for p in pairs),
              "give the data directory once: --data-dir or --task-param data_dir=..., not both")
        params["data_dir"] = str(data_dir)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        ensure(bool(sep) and bool(key), f"--task-param expects KEY=VALUE, got {pair!r}")
        ensure(key not in params, f"--task-param {key} is given more than once (or also as "
              f"--{key.replace('_', '-')}); give each task parameter once")
        ensure(key in fields, f"task {task_cls.name!r} has no parameter {key!r}; its "
              "parameters: " + (", ".join(fields) or "none"))
        params[key] = parse_value(value, fields[key], key, "--task-param")
    return params


# ---------------------------------------------------------------------- train
@config_option
@click.command("train")
@click.argument("task_name", metavar="TASK")
@click.option("--length", type=click.IntRange(min=1),
              help="Sequence length (the task's `length` parameter).")
@click.option("--task-param", "task_param", multiple=True, metavar="KEY=VALUE",
              help="Any other task parameter, e.g. k_test=20 (repeatable).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              show_default="the task's: $RNNLAB_DATA_DIR, else ~/.cache/rnnlab/mnist",
              help="Folder of the task's data files (its data_dir): MNIST's IDX files, "
                   "DigitSum's *.txt.")
@click.option("--protocol", default="default", show_default=True,
              type=click.Choice(protocol_names()),
              help="Named hyper-parameters; 'nndl' is seed 004. Options given here win.")
@click.option("--cell", type=click.Choice(_cell_names()), show_default="srn",
              help="Recurrent cell.")
@click.option("--hidden", type=click.IntRange(min=1), help="Hidden units.")
@click.option("--embedding", type=click.IntRange(min=1), help="Token embedding size.")
@click.option("--layers", type=click.IntRange(min=1), help="Stacked recurrent layers.")
@click.option("--init", type=click.Choice(init_names()), help="Cell initialiser.")
@click.option("--epochs", type=click.IntRange(min=1), help="Passes over the training split.")
@click.option("--max-steps", type=click.IntRange(min=1), help="Stop after this many steps.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Examples per step.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True, max=FLOAT32_MAX),
              help="Learning rate.")
@click.option("--optimizer", type=click.Choice(["adam", "sgd"]), help="Optimiser.")
@click.option("--clip-norm", type=click.FloatRange(min=0, max=FLOAT32_MAX),
              help="Clip the global gradient norm to this value (0: no clipping).")
@click.option("--eval-every", type=click.IntRange(min=1), help="Evaluate on dev every N steps.")
@click.option("--shuffle/--no-shuffle", default=None, help="Shuffle the training split.")
@click.option("--seed", type=SEED, default=0, show_default=True,
              help="Seeds the model, the data order and (unless --data-seed) the data.")
@click.option("--data-seed", type=SEED, show_default="the --seed",
              help="Seed of the generated data.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="torch threads (tiny models are fastest on one).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              show_default="runs/TASK-CELL-L<length>-s<seed>", help="Run folder.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last.pt.")
@click.option("--json", "as_json", is_flag=True, help="Print summary.json to stdout.")
@click.option("--quiet", is_flag=True, help="No progress bar and no report.")
@click.option("--logger", "logger_name", type=click.Choice(LOGGERS), default="csv",
              show_default=True,
              help="Where metrics go besides metrics.csv: tensorboard writes OUT/tensorboard.")
@click.pass_context
def train(ctx: click.Context, task_name: str, length: int | None, task_param: tuple[str, ...],
          data_dir: Path | None, protocol: str, seed: int, data_seed: int | None, threads: int,
          out: Path | None, resume: bool, as_json: bool, quiet: bool, logger_name: str,
          **options: Any) -> None:
    """Train one model on TASK; write metrics.csv, best.pt, last.pt and summary.json.

    Options left out take the --protocol's values: 'default' is a careful single run
    (hidden and embedding 32, Keras-style init, Adam 5e-3, batch 32, shuffled, clip 1,
    100 epochs; for DigitSum 1,000/500/2,000 examples); 'nndl' is seed 004 (zero-initialised
    SRN, Adam 1e-3, batch 8, no shuffling, 500 epochs, 300/100/100 examples).

    From Python, get_task(TASK) and TrainConfig() are not a protocol: they take the
    task's and the trainer's own defaults (DigitSum 300/100/100 examples, Adam 1e-3, no
    clipping). The same data and settings as this command:
    get_protocol('default').task_overrides(...), .train and .model_for(cell).

    \b
    Example:
      rnnlab train digitsum --length 20 --cell residual-srn --protocol nndl --out runs/x
    """
    from rnnlab.io import FolderLock, clean_temporaries
    from rnnlab.tasks import task_class
    from rnnlab.train import TrainConfig, Trainer, load_checkpoint, seeded_model
    from rnnlab.train.checkpoint import LAST, require
    from rnnlab.train.loggers import LineLogger, make_logger

    task_cls = task_class(task_name)
    chosen = get_protocol(protocol)
    given_model = {field: options[opt] for opt, field in _MODEL_OPTIONS.items()
                   if _given(ctx, opt)}
    given_train = {field: options[opt] for opt, field in _TRAIN_OPTIONS.items()
                   if _given(ctx, opt)}
    if given_train.get("clip_norm") == 0:
        given_train["clip_norm"] = None  # 0 turns off the protocol's clipping
    given_task = task_params_from_options(task_cls, length, task_param, data_dir)
    data_seed = seed if data_seed is None else data_seed

    task_params = {**chosen.task_overrides(task_cls), **given_task}
    cell = given_model.get("cell", chosen.model.get("cell", "srn"))
    model_overrides = {"cell": "srn", **chosen.model_for(cell), **given_model}
    train_values = {**chosen.train, **given_train}
    out = out or Path("runs") / _run_name(task_name, model_overrides["cell"],
                                          task_params.get("length"), seed)
    # Held until the command ends: a second `train` into this folder is refused, and
    # temporary files a killed run left are ours to remove.
    ctx.with_resource(FolderLock(out))
    clean_temporaries(out)
    previous = None
    if resume and (out / LAST).is_file():
        previous = load_checkpoint(out / LAST)
        require(previous, out / LAST, "meta", "train_config", "model")
        require(previous["meta"], out / LAST, "task_params", "model_config")
        ensure(all(bool(t.isfinite().all()) for t in previous["model"].values()
                  if t.is_floating_point()),
              f"cannot resume {out}: the parameters in its {LAST} are not all finite (nan or "
              "inf), so the run diverged; start afresh in another --out")
        task_params, model_overrides, train_values, data_seed, seed = _resume_settings(
            previous, task_name, given_task, given_model, given_train, ctx, seed, data_seed)
        if not _given(ctx, "protocol"):
            protocol = previous["meta"].get("protocol", protocol)
    elif not resume:
        ensure(not (out / LAST).exists() and not (out / "summary.json").exists(),
              f"{out} already holds a run; pass --resume to continue it, or choose another --out")
    else:  # --resume without a last.pt: start afresh, unless that overwrites a finished run
        ensure(not (out / "summary.json").exists(),
              f"cannot resume {out}: it holds a run but no {LAST} to continue from; "
              "choose another --out")

    try:
        task = task_cls(**task_params)
    except TypeError as err:  # a parameter from a checkpoint the task does not know
        raise RnnlabError(f"{out}: task {task_name!r} does not take these parameters "
                          f"({err})") from None
    model_config = model_config_of(task, model_overrides, out)
    progress = "off" if (quiet or as_json) else "auto"
    train_config = TrainConfig(**{**train_values, "seed": seed, "threads": threads,
                                  "progress": progress})
    if previous is not None:
        ensure(model_config_of(None, previous["meta"]["model_config"], out) == model_config,
              f"cannot resume {out}: the model options differ from the ones it was trained with")
    _check_size(task, model_config, train_config)

    splits = task.splits(data_seed)
    chance = task.chance
    baseline = task.memoryless_baseline(splits)
    model = seeded_model(model_config, seed)
    meta = {"task": task_name, "task_params": task_config(task),
            "model_config": dataclasses.asdict(model_config), "protocol": protocol,
            "seed": seed, "data_seed": data_seed}
    if not quiet and not as_json:
        click.echo(f"training {model_config.cell} on {task_name} "
                   f"{_describe(task_config(task))} (protocol {protocol}) -> {out}", err=True)
    from rnnlab.io import atomic_write_json

    write_resolved(ctx, out)
    callbacks = [c for c in (make_logger(logger_name, out),) if c is not None]
    if progress == "auto" and not sys.stderr.isatty():
        callbacks.append(LineLogger(sys.stderr))  # logs and pipes get a line per evaluation
    result = Trainer(train_config, callbacks=callbacks).fit(
        model, splits["train"], splits["dev"], splits["test"], out_dir=out, resume=resume,
        meta=meta)
    summary = _summary(task, task_name, protocol, seed, data_seed, model_config, train_config,
                       result, chance, baseline, splits, out)
    atomic_write_json(out / "summary.json", summary)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    elif not quiet:
        metric = result.metric
        click.echo(
            f"test {metric} {summary[f'test_{metric}']:.4f}  (best dev {metric} "
            f"{_fmt(result.best_dev_metric)} at step {result.best_step}; chance {chance:.4f}, "
            f"memoryless {baseline:.4f})\n{result.steps} steps, {result.epochs} epochs, "
            f"{result.seconds:.1f} s; files in {out}")


def model_config_of(task: Any, fields: dict[str, Any], where: Path):
    """The model config of ``fields`` (shaped for ``task`` when given); a key this
    rnnlab does not know, e.g. from a checkpoint of another version, is one line."""
    from rnnlab.models import ModelConfig, model_config_for

    try:
        return ModelConfig(**fields) if task is None else model_config_for(task.spec, **fields)
    except TypeError as err:
        known = {f.name for f in dataclasses.fields(ModelConfig)}
        unknown = sorted(set(fields) - known)
        raise RnnlabError(f"{where}: unknown model setting(s) {', '.join(unknown) or err}; "
                          f"known: {', '.join(sorted(known))}") from None


def _check_size(task: Any, model_config: Any, train_config: Any) -> None:
    """Refuse a run that cannot fit in memory, warn on one that takes hours, before
    the data or the model is allocated."""
    from rnnlab import budget

    examples = budget.task_examples(task)
    length = int(getattr(task, "length", None) or 1)
    features = int(getattr(task, "input_size", None) or 1)
    batch = min(max(train_config.batch_size, train_config.eval_batch_size), max(examples, 1))
    need = budget.run_bytes(model_config, examples, length, batch, features)
    budget.check_fits(f"this run ({budget.count(budget.parameters(model_config))} parameters, "
                      f"{budget.count(examples)} examples of length {budget.count(length)})", need,
                      "choose a smaller model, a shorter length or fewer examples")
    work = budget.training_work(model_config, examples, length, train_config.epochs)
    if train_config.max_steps is not None:
        work = min(work, 3.0 * budget.parameters(model_config) * batch * length
                   * train_config.max_steps)
    budget.warn_if_long("this run", work, "interrupt with Ctrl-C and continue it later "
                        "with --resume")


def _run_name(task: str, cell: str, length: int | None, seed: int) -> str:
    return "-".join([task, cell] + ([f"L{length}"] if length is not None else []) + [f"s{seed}"])


def _describe(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items() if v is not None)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _resume_settings(previous: dict[str, Any], task_name: str, given_task: dict[str, Any],
                     given_model: dict[str, Any], given_train: dict[str, Any],
                     ctx: click.Context, seed: int, data_seed: int):
    """The settings of the run being resumed; options typed now must agree with them
    (only how long it trains may change, which the trainer checks)."""
    meta = previous.get("meta", {})
    ensure(meta.get("task") == task_name,
          f"cannot resume: the run was trained on task {meta.get('task')!r}, not {task_name!r}")
    task_params = {**meta["task_params"], **given_task}
    model_overrides = {k: v for k, v in meta["model_config"].items()}
    model_overrides.update(given_model)
    saved_train = dict(previous["train_config"])
    train_values = {k: v for k, v in saved_train.items()
                    if k not in ("seed", "threads", "progress")}
    train_values.update(given_train)
    if not _given(ctx, "seed"):
        seed = int(meta.get("seed", saved_train["seed"]))
    if not _given(ctx, "data_seed"):
        data_seed = int(meta.get("data_seed", seed))
    ensure(task_params == meta["task_params"] and data_seed == meta.get("data_seed", data_seed),
          "cannot resume: the task options differ from the ones the run was trained with")
    return task_params, model_overrides, train_values, data_seed, seed


def _summary(task: Any, task_name: str, protocol: str, seed: int, data_seed: int,
             model_config: Any, train_config: Any, result: Any, chance: float,
             baseline: float, splits: dict[str, Any], out: Path) -> dict[str, Any]:
    import torch

    import rnnlab

    metric = result.metric
    test = result.test or {}
    return {
        "task": task_name,
        "task_params": task_config(task),
        "protocol": protocol,
        "seed": seed,
        "data_seed": data_seed,
        "metric": metric,
        f"best_dev_{metric}": result.best_dev_metric,
        "best_step": result.best_step,
        f"test_{metric}": test.get(metric),
        "test_loss": test.get("loss"),
        "chance": chance,
        "chance_note": " ".join((getattr(type(task).chance, "__doc__", "") or "").split()),
        "memoryless_baseline": baseline,
        "steps": result.steps,
        "epochs": result.epochs,
        "seconds": result.seconds,
        "stopped_early": result.stopped_early,
        "resumed_from_step": result.resumed_from_step,
        "examples": {name: len(split) for name, split in splits.items()},
        "model_config": dataclasses.asdict(model_config),
        "train_config": train_config.asdict(),
        "files": {"metrics": "metrics.csv", "best": "best.pt", "last": "last.pt"},
        "versions": {"rnnlab": rnnlab.__version__, "torch": torch.__version__,
                     "python": sys.version.split()[0]},
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
