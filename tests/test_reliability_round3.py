"""Bad inputs found by the third campaign (``tests/fuzz_campaign.py``): each is refused by name."""
import numpy as np
import pytest

from vgae_toolkit.data.graphs import load_edgelist
from vgae_toolkit.errors import ConfigError, DataError


# --- edge lists --------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "source,target\na,b,x\nc,d,y\n",  # every row one cell longer than the header
    "source,target\n1,2,3\n4,5,6\n",  # the same with numbers: the columns were shifted silently
])
def test_rows_longer_than_the_header_are_refused(tmp_path, text):
    (tmp_path / "e.csv").write_text(text)
    with pytest.raises(DataError, match=r"e\.csv.*line 2"):
        load_edgelist(tmp_path, path="e.csv")


def test_repeated_column_names_are_refused(tmp_path):
    (tmp_path / "e.csv").write_text("source,source,target\na,b,c\n")
    with pytest.raises(DataError, match=r"e\.csv, line 1: column name\(s\) \['source'\] appear more than once"):
        load_edgelist(tmp_path, path="e.csv")


def test_a_trailing_comma_on_every_line_is_harmless(tmp_path):
    (tmp_path / "e.csv").write_text("source,target,\na,b,\nb,c,\n")
    data = load_edgelist(tmp_path, path="e.csv")
    assert data.node_ids == ["a", "b", "c"] and data.edge_index.size(1) == 4


# --- predict -----------------------------------------------------------------------------------

TINY = ["trainer.epochs=2", "trainer.progress=false"]


@pytest.fixture(scope="module")
def sbm_run(tmp_path_factory):
    from helpers import compose_cfg
    from vgae_toolkit.run import run

    folder = tmp_path_factory.mktemp("sbm") / "run"
    run(compose_cfg("dataset=sbm", "dataset.loader.num_nodes=100", *TINY), folder)
    return folder


def copy_with_edit(run_dir, tmp_path, edit):
    """A copy of ``run_dir`` whose checkpoints went through ``edit(payload)``."""
    import shutil

    import torch

    target = tmp_path / "run"
    shutil.copytree(run_dir, target)
    for path in target.glob("*.pt"):
        payload = torch.load(path, weights_only=True)
        edit(payload)
        torch.save(payload, path)
    return target


def predict_error(argv, capsys) -> str:
    from vgae_toolkit.predict import main

    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    return err


@pytest.mark.parametrize("where", ["file", "below-file"])
def test_predict_out_that_cannot_be_a_folder_is_named(sbm_run, tmp_path, capsys, where):
    (tmp_path / "f").write_text("x")
    out = tmp_path / "f" if where == "file" else tmp_path / "f" / "sub"
    err = predict_error([sbm_run, "--out", out], capsys)
    assert f"DataError: --out {out}: cannot write the predictions there" in err


@pytest.mark.parametrize("key, value, match", [
    ("seed", "abc", r"stored config, seed: expected .*got 'abc'"),
    ("seed", None, r"stored config, .*seed"),
    ("model.hidden", "abc", r"stored config, model\.hidden: expected .*got 'abc'"),
    ("dataset.loader.num_nodes", -3, r"stored config, dataset\.loader\.num_nodes: expected"),
    ("split.val_frac", "abc", r"stored config, split\.val_frac: expected"),
])
def test_predict_checks_the_stored_values_by_key(sbm_run, tmp_path, key, value, match):
    import yaml

    from vgae_toolkit.predict import load_run

    def edit(payload):
        cfg = yaml.safe_load(payload["config"])
        node = cfg
        *parents, last = key.split(".")
        for part in parents:
            node = node[part]
        node[last] = value
        payload["config"] = yaml.safe_dump(cfg)

    with pytest.raises(ConfigError, match=match):
        load_run(copy_with_edit(sbm_run, tmp_path, edit))


def test_predict_weights_that_are_not_a_mapping_are_a_data_error(sbm_run, tmp_path):
    from vgae_toolkit.predict import load_run

    run_dir = copy_with_edit(sbm_run, tmp_path, lambda payload: payload.__setitem__("state_dict", [1, 2]))
    with pytest.raises(DataError, match="weights do not fit the model of its config"):
        load_run(run_dir)


# --- report ------------------------------------------------------------------------------------

def report_error(argv, capsys) -> str:
    from vgae_toolkit.report import main

    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    return err


def test_report_root_that_is_missing_or_a_file_is_named(tmp_path, capsys):
    assert "no such folder" in report_error([tmp_path / "nope"], capsys)
    (tmp_path / "f").write_text("x")
    assert "is a file, not a folder" in report_error([tmp_path / "f"], capsys)


@pytest.mark.parametrize("text, match", [
    ("row,dataset\nGAE,cora\n", r"no column\(s\) \['metric', 'mean'\]"),
    ("row,dataset,metric,mean,sd\nGAE,cora,auc,high,low\n", r"line 2: mean 'high' is not a number"),
    ("row,dataset,metric,mean,sd\nGAE,cora,auc,91,1\nGAE,cora,auc,92,1\n", r"lines \[2, 3\]: the same row"),
    ("", "cannot be read as a CSV table"),
])
def test_report_malformed_paper_file_is_named(sbm_run, tmp_path, capsys, text, match):
    (tmp_path / "paper.csv").write_text(text)
    err = report_error([sbm_run, "--paper", tmp_path / "paper.csv"], capsys)
    assert "DataError: --paper" in err
    assert __import__("re").search(match, err), err


def test_report_paper_directory_is_named(sbm_run, tmp_path, capsys):
    assert "DataError: --paper" in report_error([sbm_run, "--paper", tmp_path], capsys)


def test_report_out_that_cannot_be_written_is_named(sbm_run, tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    err = report_error([sbm_run, "--out", tmp_path / "f" / "table"], capsys)
    assert f"DataError: --out {tmp_path / 'f' / 'table'}: cannot write the report there" in err


# --- checkpoints -------------------------------------------------------------------------------

def test_a_stored_config_of_nested_aliases_is_refused_unread(sbm_run, tmp_path):
    """A few lines of nested YAML aliases expand into millions of nodes: the load never ended."""
    from vgae_toolkit.checkpoint import load_checkpoint

    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 5)]
    run_dir = copy_with_edit(sbm_run, tmp_path, lambda payload: payload.__setitem__("config", "\n".join(lines)))
    with pytest.raises(DataError, match=r"best\.pt: its stored config uses a YAML alias \(\*a0\)"):
        load_checkpoint(run_dir / "best.pt")


def test_an_oversized_stored_config_is_refused_unread(sbm_run, tmp_path):
    from vgae_toolkit.checkpoint import load_checkpoint

    run_dir = copy_with_edit(sbm_run, tmp_path, lambda payload: payload.__setitem__("config", "a: " + "x" * (2 << 20)))
    with pytest.raises(DataError, match="characters long"):
        load_checkpoint(run_dir / "best.pt")


def test_stored_builder_call_flags_are_refused(sbm_run, tmp_path):
    """``_args_`` / ``_partial_`` on an allowed builder change how it is called: never in a run's config."""
    import yaml

    from vgae_toolkit.predict import load_run

    def edit(payload):
        cfg = yaml.safe_load(payload["config"])
        cfg["model"]["_partial_"] = True
        payload["config"] = yaml.safe_dump(cfg)

    with pytest.raises(ConfigError, match=r"stored config key model\._partial_ is one of the builders' call flags"):
        load_run(copy_with_edit(sbm_run, tmp_path, edit))


def test_predict_refuses_non_finite_weights(sbm_run, tmp_path):
    from vgae_toolkit.predict import load_run

    def edit(payload):
        next(iter(payload["state_dict"].values())).fill_(float("nan"))

    with pytest.raises(DataError, match=r"weight \S+ holds \d+ non-finite value\(s\)"):
        load_run(copy_with_edit(sbm_run, tmp_path, edit))


# --- config ------------------------------------------------------------------------------------

def test_one_column_for_both_endpoints_is_named(tmp_path):
    (tmp_path / "e.csv").write_text("source,target\na,b\n")
    with pytest.raises(ConfigError, match=r"dataset\.loader\.source and dataset\.loader\.target both name column"):
        load_edgelist(tmp_path, path="e.csv", target="source")


@pytest.mark.parametrize("override, match", [
    ("+split.val_fraction=0.2", r"split\.val_fraction: unknown key .*split\.val_frac"),
    ("+dataset.normalise_features=true", r"dataset\.normalise_features: unknown key .*dataset\.normalize_features"),
    ("+paths.outputs=x", r"paths\.outputs: unknown key"),
])
def test_unknown_keys_of_closed_groups_are_named(override, match):
    from helpers import compose_cfg
    from vgae_toolkit.schema import validate

    with pytest.raises(ConfigError, match=match):
        validate(compose_cfg("dataset=sbm", override))


def test_a_num_classes_other_than_the_labels_is_named():
    from helpers import compose_cfg
    from vgae_toolkit.tasks.image import build_image_task

    with pytest.raises(ConfigError, match=r"model\.num_classes=5, but the labels of dataset=digits have 10 classes"):
        build_image_task(compose_cfg("model=vae", "dataset=digits", "model.num_classes=5"))
    build_image_task(compose_cfg("model=vae", "dataset=digits", "model.num_classes=10"))  # the right number is fine


def test_an_unknown_top_level_key_is_named():
    from helpers import compose_cfg
    from vgae_toolkit.schema import validate

    with pytest.raises(ConfigError, match=r"seeed: unknown top-level key .*\bseed\b"):
        validate(compose_cfg("dataset=sbm", "+seeed=1"))
    validate(compose_cfg("+experiment=table1", "table1_row=vgae"))  # keys set by experiments are known
