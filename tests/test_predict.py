import numpy as np
import pytest
import torch

from helpers import compose_cfg
from vgae_toolkit.checkpoint import load_checkpoint
from vgae_toolkit.predict import load_run, main
from vgae_toolkit.run import run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    cfg = compose_cfg("dataset=sbm", "dataset.loader.num_nodes=200", "trainer.epochs=10", "trainer.progress=false",
                      "trainer.select=best")
    run(cfg, out)
    return out


def test_reloaded_model_reproduces_the_run(run_dir):
    task, model, ckpt = load_run(run_dir)
    assert ckpt["metrics"]["model"] == "vgae"
    # the rebuilt split and weights give back the recorded test numbers exactly
    assert task.evaluate(model, "test")["test_ap"] == pytest.approx(ckpt["metrics"]["test_ap"], abs=1e-12)
    last = load_checkpoint(run_dir / "last.pt")
    assert last["metrics"]["selected_epoch"] == ckpt["metrics"]["selected_epoch"]


def test_cli_exports_embeddings_and_scores_pairs(run_dir, tmp_path, capsys):
    (tmp_path / "pairs.csv").write_text("source,target\n0,1\n5,199\n")
    main([str(run_dir), "--pairs", str(tmp_path / "pairs.csv"), "--out", str(tmp_path / "p")])
    emb = np.load(tmp_path / "p" / "embeddings.npy")
    assert emb.shape == (200, 16)
    lines = (tmp_path / "p" / "scores.csv").read_text().splitlines()
    assert lines[0] == "source,target,probability" and len(lines) == 3
    z = torch.as_tensor(emb)
    expected = torch.sigmoid((z[0] * z[1]).sum()).item()
    assert float(lines[1].split(",")[2]) == pytest.approx(expected, abs=1e-5)


def test_cli_unknown_node_is_a_clear_error(run_dir, tmp_path, capsys):
    (tmp_path / "pairs.csv").write_text("0,1000\n")
    with pytest.raises(SystemExit) as exit_info:
        main([str(run_dir), "--pairs", str(tmp_path / "pairs.csv"), "--out", str(tmp_path / "p")])
    assert exit_info.value.code == 2 and "unknown node ids ['1000']" in capsys.readouterr().err
