"""Training and validation curves of a run, and the PNG writer shared by every figure."""
from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def save_figure(fig: Figure, path: str | Path, dpi: int = 120) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def plot_history(history: list[dict[str, float]], path: str | Path, *, title: str = "",
                 x_key: str = "epoch", x_label: str = "epoch") -> Path:
    """Training loss (left) and every validation metric (right) against ``x_key``."""
    fig = Figure(figsize=(10, 3.8))
    ax_loss, ax_val = fig.subplots(1, 2)
    xs = [h[x_key] for h in history]
    loss_keys = [k for k in history[0] if k.startswith("train_")] if history else []
    for key in loss_keys:
        ax_loss.plot(xs, [h.get(key, float("nan")) for h in history], label=key.removeprefix("train_"))
    ax_loss.set(xlabel=x_label, ylabel="training objective", title="training")
    if loss_keys:  # closed-form fits (SC, DW) have no training curve
        ax_loss.legend()
    val_keys = sorted({k for h in history for k in h if k.startswith("val_")})
    for key in val_keys:
        points = [(h[x_key], h[key]) for h in history if key in h]
        ax_val.plot(*zip(*points), label=key.removeprefix("val_"))
    ax_val.set(xlabel=x_label, title="validation")
    if val_keys:
        ax_val.legend()
    fig.suptitle(title)
    return save_figure(fig, path)
