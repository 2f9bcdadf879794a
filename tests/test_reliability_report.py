"""``report`` on copied runs, look-alike datasets, config sweeps and malformed or hostile metrics files."""
import copy
import json
import shutil

import pytest

from helpers import compose_cfg
from vgae_toolkit.report import collect, main, summarize
from vgae_toolkit.run import run

SHA_A = "3fa2c1" + "0" * 58
SHA_B = "9b0e44" + "1" * 58


def config(seed=0, **changes):
    """A resolved run config like the ones ``run`` records, with dotted-key ``changes``."""
    cfg = {"seed": seed, "skip_finished": True, "paths": {"data_dir": "data", "output_dir": "outputs"},
           "dataset": {"name": "cora", "kind": "graph", "features": True, "loader": {"name": "Cora"}},
           "split": {"val_frac": 0.05, "test_frac": 0.1, "seed": seed},
           "model": {"name": "gae", "kind": "graph", "hidden": 32, "latent": 16},
           "trainer": {"epochs": 200, "lr": 0.01, "progress": True, "device": "auto"}}
    for key, value in changes.items():
        *parents, last = key.split("__")
        node = cfg
        for part in parents:
            node = node[part]
        node[last] = value
    return cfg


def write_run(root, name, *, seed=0, auc=0.9, cfg=None, **metrics):
    run_dir = root / name
    run_dir.mkdir(parents=True)
    record = {"status": "complete", "model": "gae", "dataset": "cora", "features": True, "seed": seed,
              "test_auc": auc, "test_ap": auc, "wall_seconds": 1.0,
              "config": config(seed) if cfg is None else cfg, **metrics}
    (run_dir / "metrics.json").write_text(json.dumps(record))
    return run_dir


def cells(runs):
    summary = summarize(runs)
    return {(r.row, r.dataset): r.n for r in summary[summary["metric"] == "auc"].itertuples()}


def test_a_copied_run_folder_is_one_seed(tmp_path, capsys):
    shutil.copytree(write_run(tmp_path, "s0", seed=0, auc=0.90), tmp_path / "s0_copy")
    write_run(tmp_path, "s1", seed=1, auc=0.94)
    runs = collect(tmp_path)
    assert len(runs) == 2 and cells(runs) == {("GAE", "cora"): 2}
    main([str(tmp_path)])
    assert "Dropped 1 duplicate run" in capsys.readouterr().out


def test_different_files_with_one_dataset_name_are_different_cells(tmp_path):
    for i, sha in enumerate([SHA_A, SHA_A, SHA_B]):
        cfg = config(i, dataset__name="edgelist", dataset__loader={"path": f"g{sha[:1]}.csv"})
        write_run(tmp_path, f"r{i}", seed=i, dataset="edgelist", data_sha256=sha, cfg=cfg)
    assert cells(collect(tmp_path)) == {("GAE", "edgelist[3fa2c1]"): 2, ("GAE", "edgelist[9b0e44]"): 1}


def test_one_file_under_two_paths_is_one_cell(tmp_path):
    for i in range(2):
        cfg = config(i, dataset__name="edgelist", dataset__loader={"path": f"copy{i}/g.csv"})
        write_run(tmp_path, f"r{i}", seed=i, dataset="edgelist", data_sha256=SHA_A, cfg=cfg)
    assert cells(collect(tmp_path)) == {("GAE", "edgelist"): 2}


def test_a_config_sweep_gives_one_row_per_config(tmp_path):
    for hidden in (8, 64):
        for seed in (0, 1):
            write_run(tmp_path, f"h{hidden}_s{seed}", seed=seed, cfg=config(seed, model__hidden=hidden))
    write_run(tmp_path, "vgae", model="vgae", cfg=config(0, model__name="vgae"))
    assert cells(collect(tmp_path)) == {("GAE [model.hidden=8]", "cora"): 2, ("GAE [model.hidden=64]", "cora"): 2,
                                        ("VGAE", "cora"): 1}


def test_runs_differing_only_by_seed_and_output_keys_are_one_cell(tmp_path):
    for seed in range(3):
        cfg = config(seed, paths={"data_dir": f"d{seed}", "output_dir": f"o{seed}"}, skip_finished=bool(seed % 2),
                     trainer__progress=bool(seed % 2), trainer__device=["cpu", "cuda"][seed % 2])
        write_run(tmp_path, f"s{seed}", seed=seed, cfg=cfg)
    for seed in range(3):  # a split fixed across seeds: still one config
        write_run(tmp_path, f"fixed{seed}", seed=seed, dataset="citeseer", cfg=config(seed, split__seed=0))
    assert cells(collect(tmp_path)) == {("GAE", "cora"): 3, ("GAE", "citeseer"): 3}


@pytest.mark.parametrize("bad, reason", [
    ([1, 2], "not a JSON object"),
    ({"status": "complete", "dataset": "cora", "seed": 0, "test_auc": 0.9}, "model"),
    ({"status": "complete", "model": "gae", "dataset": "cora", "seed": 0, "test_auc": "high"}, "test_auc"),
    ({"status": "complete", "model": "gae", "dataset": "cora", "seed": 0, "test_auc": 0.9, "config": [1]}, "config"),
    ({"status": "complete", "model": "gae", "dataset": "cora", "seed": "zero", "test_auc": 0.9}, "seed"),
])
def test_a_malformed_metrics_file_is_skipped_and_listed(tmp_path, capsys, bad, reason):
    write_run(tmp_path, "good", seed=0)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "metrics.json").write_text(json.dumps(bad))
    main([str(tmp_path), "--out", str(tmp_path / "report" / "results")])
    out = capsys.readouterr().out
    assert "GAE" in out and "Skipped 1 metrics.json" in out
    listed = next(line for line in out.splitlines() if str(tmp_path / "bad" / "metrics.json") in line)
    assert reason in listed
    assert str(tmp_path / "bad" / "metrics.json") in (tmp_path / "report" / "results.md").read_text()


def test_unreadable_metrics_files_are_skipped_and_listed(tmp_path, capsys):
    write_run(tmp_path, "good", seed=0)
    for name, content in [("deep", b"[" * 100_000), ("binary", b"\xff\xfe\x00garbage")]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_bytes(content)
    main([str(tmp_path)])
    out = capsys.readouterr().out
    assert "Skipped 2 metrics.json" in out and "deep/metrics.json" in out and "binary/metrics.json" in out


def test_stored_targets_are_never_built(tmp_path, capsys):
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    hostile = config(0, model__encoder={"_target_": "builtins.open", "_args_": [str(victim), "w"]})
    write_run(tmp_path, "evil", cfg=hostile)
    main([str(tmp_path)])
    assert victim.read_text() == "keep me" and "GAE" in capsys.readouterr().out


def test_real_table1_runs_of_several_seeds_share_a_cell(tmp_path):
    tiny = ["+experiment=table1", "dataset=sbm", "dataset.loader.num_nodes=100", "autoencoder.epochs=2"]
    for row, seed in [("gae", 0), ("gae", 1), ("gae_star", 0)]:
        run(compose_cfg(*tiny, f"table1_row={row}", f"seed={seed}"), tmp_path / f"{row}_sbm_s{seed}")
    shutil.copytree(tmp_path / "gae_sbm_s0", tmp_path / "copy" / "gae_sbm_s0")
    assert cells(collect(tmp_path)) == {("GAE", "sbm"): 2, ("GAE*", "sbm"): 1}
    changed = json.loads((tmp_path / "gae_sbm_s1" / "metrics.json").read_text())
    changed["config"] = copy.deepcopy(changed["config"])
    changed["config"]["model"]["hidden"] = 8
    (tmp_path / "gae_sbm_s1" / "metrics.json").write_text(json.dumps(changed))
    assert cells(collect(tmp_path)) == {("GAE [model.hidden=32]", "sbm"): 1, ("GAE [model.hidden=8]", "sbm"): 1,
                                        ("GAE*", "sbm"): 1}
