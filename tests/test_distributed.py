"""The Ray backend: a local Ray instance (loopback, 2 CPUs) gives the local results."""

from __future__ import annotations

import os
import sys

import pytest

from rnnlab.experiments import MemoryConfig, run_memory
from rnnlab.experiments.distributed import group_specs, ray_runner, train_group
from rnnlab.io import read_csv

# Ray turns 127.0.0.1 into the machine's outward address unless told that this node is
# not part of a cluster (read when ray is imported); this test's Ray speaks over loopback.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
if os.environ.get("CI", "").lower() == "true":
    import ray  # noqa: F401  (CI installs the ray extra: this test must run there)
else:
    ray = pytest.importorskip("ray")

SMALL = MemoryConfig(cells=("srn", "gru"), lengths=(5, 8), seeds=2, hidden_size=8,
                     embedding_dim=4, epochs=2, k_train=1, k_dev=1, k_test=1)


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False, _node_ip_address="127.0.0.1")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    addresses = {node["NodeManagerAddress"] for node in ray.nodes()}
    assert addresses == {"127.0.0.1"}, addresses  # loopback only
    yield
    ray.shutdown()


def _rows(out):
    return sorted((r["config_hash"], r["test_score"], r["best_dev_score"], r["steps"])
                  for r in read_csv(out / "results.csv"))


def _files(out):
    runs = out / "runs"
    return {str(p.relative_to(runs)): p.read_bytes() for p in runs.rglob("*.csv")}


def test_ray_backend_gives_the_local_results(local_ray, tmp_path):
    local = run_memory(SMALL, tmp_path / "local", progress=False)
    remote = run_memory(SMALL, tmp_path / "ray", progress=False, runner=ray_runner("fast"))
    assert remote.trained == local.trained == 8
    assert _rows(tmp_path / "ray") == _rows(tmp_path / "local")
    assert _files(tmp_path / "ray") == _files(tmp_path / "local")  # metrics.csv bit for bit
    assert remote.summary["cells"] == local.summary["cells"]


def dying_once(markers):
    """A Ray task whose first attempt for each group kills its worker process."""

    def die_once(engine, specs, cpus):
        marker = os.path.join(markers, f"{specs[0].run_id}.died")
        if not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)
        return train_group(engine, specs, cpus)

    return die_once


def test_a_killed_worker_is_retried_and_no_row_is_doubled(local_ray, tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    config = MemoryConfig(cells=("srn",), lengths=(5, 8), seeds=2, hidden_size=8,
                          embedding_dim=4, epochs=1, k_train=1, k_dev=1, k_test=1)
    outcome = run_memory(config, tmp_path / "out", progress=False,
                         runner=ray_runner("fast", task=dying_once(str(markers))))
    rows = read_csv(tmp_path / "out" / "results.csv")
    assert len(list(markers.iterdir())) == len(group_specs(config.specs())) == 2
    assert len(rows) == 4 and len({r["config_hash"] for r in rows}) == 4
    assert outcome.summary["runs"]["complete"]


def test_without_ray_the_backend_says_how_to_install_it(monkeypatch):
    import builtins

    from rnnlab.errors import RnnlabError
    from rnnlab.experiments import distributed

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray":
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(RnnlabError, match=r'pip install "rnnlab\[ray\]"'):
        distributed._ray()


TINY_CLI = ["--cells", "srn,gru", "--lengths", "5,8", "--seeds", "2", "--hidden", "8",
            "--embedding", "4", "--epochs", "2", "--task-param", "k_train=1",
            "--task-param", "k_dev=1", "--task-param", "k_test=1", "--quiet"]


def test_the_saved_config_fed_back_with_ray_gives_the_local_runs(local_ray, tmp_path):
    from rnnlab.cli import main

    assert main(["memory", *TINY_CLI, "--out", str(tmp_path / "local")]) == 0
    resolved = tmp_path / "local" / "config.toml"
    assert main(["memory", "--config", str(resolved), "--backend", "ray",
                 "--out", str(tmp_path / "ray")]) == 0
    assert _rows(tmp_path / "ray") == _rows(tmp_path / "local")
    assert 'backend = "ray"' in (tmp_path / "ray" / "config.toml").read_text()


def test_ray_options_without_the_ray_backend_are_one_line(tmp_path, capsys):
    from rnnlab.cli import main

    code = main(["memory", *TINY_CLI, "--address", "auto", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2 and "for --backend ray" in err and len(err.strip().splitlines()) == 1


def test_ctrl_c_keeps_what_finished_and_says_how_to_go_on(tmp_path, capsys, monkeypatch):
    from rnnlab.cli import main
    from rnnlab.experiments import runners

    real = runners.get_runner

    def interrupted_after_one(engine):
        def run(specs, runs_dir):
            yield next(iter(real(engine)(specs[:1], runs_dir)))
            raise KeyboardInterrupt

        return run

    monkeypatch.setattr(runners, "get_runner", interrupted_after_one)
    code = main(["memory", *TINY_CLI, "--out", str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert code == 130 and "rerun the same command to go on" in err
    assert len(read_csv(tmp_path / "m" / "results.csv")) == 1
    monkeypatch.setattr(runners, "get_runner", real)
    assert main(["memory", *TINY_CLI, "--out", str(tmp_path / "m")]) == 0
    assert len(read_csv(tmp_path / "m" / "results.csv")) == 8
