"""Command line: ``python -m vgae_toolkit model=vgae dataset=cora`` (Hydra overrides)."""
from vgae_toolkit.process import enable_huge_pages

enable_huge_pages()  # before torch is first imported, when PyTorch reads the setting (vgae_toolkit/process.py)

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from vgae_toolkit.distributed import command_line  # noqa: E402
from vgae_toolkit.errors import ToolkitError  # noqa: E402
from vgae_toolkit.hydra_checks import fail  # noqa: E402
from vgae_toolkit.run import run  # noqa: E402


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    try:
        run(cfg)
    except ToolkitError as err:  # a named, expected failure: one line, no traceback
        fail(err)


if __name__ == "__main__":
    with command_line():  # under torchrun: one run folder (rank 0's), the process group closed at exit
        main()
