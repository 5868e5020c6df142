"""``rnnlab evaluate`` and ``rnnlab predict``: a saved run, rebuilt by
:func:`rnnlab.runs.load_run`, scored again or asked for predictions."""

from __future__ import annotations

import json
from pathlib import Path

import click

from rnnlab.errors import RnnlabError, ensure
from rnnlab.runs import load_run


@click.command("evaluate")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--checkpoint", "which", type=click.Choice(["best", "last"]), default="best",
              show_default=True, help="Which checkpoint to score.")
@click.option("--split", "split_names", multiple=True,
              type=click.Choice(["train", "dev", "test"]),
              show_default="dev and test", help="Splits to score (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the scores as JSON.")
def evaluate(run_dir: Path, which: str, split_names: tuple[str, ...], as_json: bool) -> None:
    """Re-score a saved run: rebuild its task and model from the checkpoint, evaluate."""
    run = load_run(run_dir, which)
    task, model, trainer, ckpt = run.task, run.model, run.trainer(), run.checkpoint
    splits = task.splits(run.data_seed)
    scores = {name: trainer.evaluate(model, splits[name])
              for name in (split_names or ("dev", "test"))}
    report = {"run": str(run_dir), "checkpoint": which, "step": ckpt["step"],
              "metric": ckpt.get("metric", task.metric), "scores": scores}
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    metric = report["metric"]
    click.echo(f"{run_dir} ({which} checkpoint, step {ckpt['step']})")
    for name, values in scores.items():
        click.echo(f"  {name:<5} {metric} {values[metric]:.4f}  loss {values['loss']:.4f}")


def _parse_sequence(text: str, where: str) -> list[int]:
    fields = text.replace(",", " ").split()
    ensure(len(fields) > 0, f"{where}: empty sequence")
    try:
        return [int(f) for f in fields]
    except ValueError:
        raise RnnlabError(f"{where}: expected whole numbers separated by spaces, "
                          f"got {text.strip()[:60]!r}") from None


@click.command("predict")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--sequence", "sequences", multiple=True, metavar="'3 4 0 0 ...'",
              help="A token sequence, tokens separated by spaces (repeatable).")
@click.option("--file", "file", type=click.Path(dir_okay=False, path_type=Path),
              help="One sequence per line (anything after a tab, e.g. a label, is ignored).")
@click.option("--checkpoint", "which", type=click.Choice(["best", "last"]), default="best",
              show_default=True, help="Which checkpoint predicts.")
@click.option("--json", "as_json", is_flag=True, help="Print predictions as JSON.")
def predict(run_dir: Path, sequences: tuple[str, ...], file: Path | None, which: str,
            as_json: bool) -> None:
    """Predict with a saved run: for DigitSum, the sum of the first two digits."""
    import torch

    rows: list[list[int]] = [_parse_sequence(s, f"--sequence {i + 1}")
                             for i, s in enumerate(sequences)]
    if file is not None:
        ensure(file.is_file(), f"no such file: {file}")
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise RnnlabError(f"{file} is not a UTF-8 text file of sequences "
                              f"({err.reason} at byte {err.start})") from None
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                rows.append(_parse_sequence(line.split("\t")[0], f"{file} line {number}"))
    ensure(len(rows) > 0, "give sequences with --sequence '3 4 0 0' or --file FILE")
    run = load_run(run_dir, which)
    task, model, trainer = run.task, run.model, run.trainer()
    ensure(task.input == "tokens",
          f"predict reads token sequences, but task {task.name!r} takes real-valued features; "
          "use Trainer.predict from Python")
    vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    for number, row in enumerate(rows, 1):
        for token in row:
            ensure(token >= 0 and (vocab is None or token < vocab),
                  f"sequence {number}: token {token} is outside this model's vocabulary "
                  f"(0 to {'any' if vocab is None else vocab - 1})")
    lengths = [len(r) for r in rows]
    inputs = torch.zeros(len(rows), max(lengths), dtype=torch.int64)
    for i, r in enumerate(rows):
        inputs[i, : len(r)] = torch.as_tensor(r)
    same = len(set(lengths)) == 1
    outputs = trainer.predict(model, inputs, None if same else torch.as_tensor(lengths))
    if task.head in ("regress", "regress-last"):
        predictions = outputs.tolist()
    else:
        predictions = outputs.argmax(-1).tolist()
    if task.head in ("tag", "regress"):  # one prediction per step: none past a row's end
        predictions = [p[:n] for p, n in zip(predictions, lengths, strict=True)]
    if as_json:
        click.echo(json.dumps([{"sequence": r, "prediction": p}
                               for r, p in zip(rows, predictions, strict=True)], indent=2))
        return
    for r, p in zip(rows, predictions, strict=True):
        shown = " ".join(map(str, p)) if isinstance(p, list) else str(p)
        click.echo(f"{' '.join(map(str, r))}\t{shown}")
