"""The bad command lines of benchmarks/torture.py: each must end in exit 2 and one line.

``RUN`` stands for a finished tiny run folder, ``DATA`` for a folder of DigitSum files
with one defect each, ``OUT`` for a fresh output folder, ``FILE`` for a file of bad
sequences. Kept apart from the driver so the list reads as a list.
"""

from __future__ import annotations

HUGE = "99999999999999999999"

MEMORY = [
    ["--cells", ""], ["--cells", "srn,srn"], ["--cells", "transformer"], ["--cells", ","],
    ["--lengths", ""], ["--lengths", "2"], ["--lengths", "0"], ["--lengths", "-5"],
    ["--lengths", "5,5"], ["--lengths", "five"], ["--lengths", "5.5"], ["--lengths", HUGE],
    ["--lengths", "5," + HUGE], ["--seeds", "0"], ["--seeds", "-1"], ["--seeds", "1000000000000"],
    ["--seeds", HUGE], ["--seeds", "x"], ["--threshold", "0"], ["--threshold", "1.5"],
    ["--threshold", "nan"], ["--threshold", "inf"], ["--threshold", "-0.1"],
    ["--protocol", "warp"], ["--engine", "warp"], ["--hidden", "0"], ["--hidden", "-3"],
    ["--hidden", HUGE], ["--hidden", "100000"], ["--embedding", "0"],
    ["--embedding", "1000000000"], ["--epochs", "0"], ["--epochs", "-1"],
    ["--batch-size", "0"], ["--lr", "0"], ["--lr", "-1"], ["--lr", "nan"], ["--lr", "inf"],
    ["--lr", "1e300"], ["--clip-norm", "inf"], ["--clip-norm", "nan"], ["--clip-norm", "-1"],
    ["--clip-norm", "1e300"], ["--eval-every", "0"], ["--init", "ones"],
    ["--optimizer", "rmsprop"],
    ["--task-param", "k_train=0"], ["--task-param", "k_dev=0"], ["--task-param", "k_test=-2"],
    ["--task-param", "k_train=10000000"], ["--task-param", "k_train=" + HUGE],
    ["--no-such-option"], ["--seeds"],
]

TRAIN = [
    ["nosuchtask"], ["digitsum", "--length", "0"], ["digitsum", "--length", "100000000"],
    ["digitsum", "--length", HUGE], ["digitsum", "--hidden", "0"],
    ["digitsum", "--hidden", "100000"], ["digitsum", "--hidden", HUGE],
    ["digitsum", "--layers", "100000"], ["digitsum", "--layers", HUGE],
    ["digitsum", "--embedding", "1000000000"], ["digitsum", "--embedding", HUGE],
    ["digitsum", "--task-param", "k_train=10000000"], ["digitsum", "--task-param", "k_train=0"],
    ["digitsum", "--task-param", "k_train=x"], ["digitsum", "--task-param", "nosuch=1"],
    ["digitsum", "--task-param", "novalue"], ["digitsum", "--task-param", f"k_test={HUGE}"],
    ["digitsum", "--lr", "0"], ["digitsum", "--lr", "nan"], ["digitsum", "--lr", "inf"],
    ["digitsum", "--lr", "1e300"], ["digitsum", "--clip-norm", "inf"],
    ["digitsum", "--clip-norm", "-1"], ["digitsum", "--epochs", "0"],
    ["digitsum", "--batch-size", "0"], ["digitsum", "--max-steps", "0"],
    ["digitsum", "--seed", "-1"], ["digitsum", "--seed", HUGE], ["digitsum", "--data-seed", HUGE],
    ["digitsum", "--cell", "transformer"], ["digitsum", "--init", "ones"],
    ["digitsum", "--optimizer", "rmsprop"], ["digitsum", "--threads", "0"],
    ["digitsum", "--protocol", "warp"], ["sine", "--data-dir", "DATA"],
    ["digitsum", "--data-dir", "DATA/missing"], ["digitsum", "--data-dir", "DATA/short_row"],
    ["digitsum", "--data-dir", "DATA/bad_label"], ["digitsum", "--data-dir", "DATA/not_utf8"],
    ["digitsum", "--data-dir", "DATA/bad_digit"], ["digitsum", "--data-dir", "DATA/no_tab"],
    ["digitsum", "--data-dir", "DATA/empty"], ["mnist-rows", "--length", "5"],
    ["digitsum", "--length", "5", "--task-param", "length=6", "--task-param", "length=7"],
]

EVALUATE = [
    ["RUN/missing"], ["RUN", "--checkpoint", "middle"], ["RUN", "--split", "holdout"],
    ["OUT"],
]

PREDICT = [
    ["RUN"], ["RUN", "--sequence", ""], ["RUN", "--sequence", "a b c"],
    ["RUN", "--sequence", f"3 {HUGE}999 0"], ["RUN", "--sequence", "3 -1 0"],
    ["RUN", "--sequence", "3 10 0"], ["RUN", "--sequence", "3 4.5 0"],
    ["RUN", "--file", "FILE"], ["RUN", "--file", "RUN/missing.txt"],
    ["RUN/missing", "--sequence", "3 4"],
]

DOCTOR = [
    ["SCRIPT", "--max-seconds", "inf"], ["SCRIPT", "--max-seconds", "nan"],
    ["SCRIPT", "--max-seconds", "-1"], ["SCRIPT", "--max-steps", "0"],
    ["RUN/missing.py"],
]


def command_lines() -> list[list[str]]:
    """Every bad command line, with its rnnlab subcommand first."""
    lines = [["memory", "--out", "OUT", *args] for args in MEMORY]
    lines += [["train", *args, "--out", "OUT", "--quiet"] for args in TRAIN]
    lines += [["evaluate", *args] for args in EVALUATE]
    lines += [["predict", *args] for args in PREDICT]
    lines += [["doctor", *args] for args in DOCTOR]
    return lines
