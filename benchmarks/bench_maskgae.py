"""The ``maskgae`` section of ``benchmarks/bench.py``: our MaskGAE against a loop written as its authors'
link-prediction script (PyG ``GCNConv`` encoder with batch norm, ``negative_sampling`` every step, an MLP
edge decoder and a degree decoder, gradient clipping, scikit-learn AUC/AP).

Both sides start from the same initial weights, draw their masks with the same path-masking function
(:func:`vgae_toolkit.ops.masking.mask_paths`, so the walks cost the same on both sides; the authors' code
walks with an optional compiled extension) and train in alternating blocks of epochs (bench.py's ``BLOCK``).
"""
from __future__ import annotations

import copy
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

WARMUP = 3


class _RefEncoder(nn.Module):
    """dropout -> GCNConv -> BatchNorm -> ELU, as the authors' ``GNNEncoder`` with one layer and ``--bn``."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float) -> None:
        super().__init__()
        from torch_geometric.nn import GCNConv

        self.conv, self.bn, self.dropout = GCNConv(in_channels, out_channels), nn.BatchNorm1d(out_channels), dropout

    def forward(self, x, edge_index):
        x = F.dropout(x, self.dropout, self.training)
        return F.elu(self.bn(self.conv(x, edge_index)))


class _RefEdgeDecoder(nn.Module):
    """The authors' ``EdgeDecoder``: ``z[edge[0]] * z[edge[1]]`` through the MLP's layers (autograd), here
    with the layers (and so the initial weights) of ours."""

    def __init__(self, mlp: nn.Sequential) -> None:
        super().__init__()
        self.mlp = mlp

    def forward(self, z, edge):
        return self.mlp(z[edge[0]] * z[edge[1]]).squeeze(-1)


class ReferenceMaskGAE:
    """One epoch as the authors' ``train_step``: mask, encode the visible edges, ``negative_sampling``
    as many non-edges as masked edges, BCE on both, ``alpha`` x MSE of the masked degrees, clip, step."""

    def __init__(self, ours, x, train_edge_index, num_nodes: int, settings: dict) -> None:
        self.encoder = _RefEncoder(x.size(1), settings["latent"], settings["dropout"])
        conv = ours.encoder.convs[0]
        with torch.no_grad():  # the same initial weights as ours (GCNConv keeps W transposed)
            self.encoder.conv.lin.weight.copy_(conv.weight.t())
            self.encoder.conv.bias.copy_(conv.bias)
        self.decoder = _RefEdgeDecoder(copy.deepcopy(ours.decoder.mlp))
        self.degree = copy.deepcopy(ours.degree_decoder)
        params = [*self.encoder.parameters(), *self.decoder.parameters(), *self.degree.parameters()]
        self.params = params
        self.opt = torch.optim.Adam(params, lr=0.01, weight_decay=5e-5)
        self.x, self.edge_index, self.num_nodes, self.settings = x, train_edge_index, num_nodes, settings

    def modules(self):
        return (self.encoder, self.decoder, self.degree)

    def train_epoch(self) -> float:
        from torch_geometric.utils import add_self_loops, degree, negative_sampling

        from vgae_toolkit.ops.masking import mask_paths

        start = time.perf_counter()
        for module in self.modules():
            module.train()
        s = self.settings
        visible, masked = mask_paths(self.edge_index, s["mask_ratio"], self.num_nodes, s["walk_length"], 1,
                                     s["walk_start"])
        aug, _ = add_self_loops(self.edge_index)
        neg = negative_sampling(aug, num_nodes=self.num_nodes, num_neg_samples=masked.size(1))
        self.opt.zero_grad()
        z = self.encoder(self.x, visible)
        pos_out, neg_out = self.decoder(z, masked), self.decoder(z, neg)
        loss = F.binary_cross_entropy(pos_out.sigmoid(), torch.ones_like(pos_out)) + \
            F.binary_cross_entropy(neg_out.sigmoid(), torch.zeros_like(neg_out))
        deg = degree(masked[1].flatten(), self.num_nodes).float()
        loss = loss + s["degree_weight"] * F.mse_loss(self.degree(z), deg)
        loss.backward()
        nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        float(loss.detach())
        return time.perf_counter() - start

    @torch.no_grad()
    def test(self, pos, neg) -> tuple[float, float]:
        from sklearn.metrics import average_precision_score, roc_auc_score

        for module in self.modules():
            module.eval()
        z = self.encoder(self.x, self.edge_index)
        scores = torch.cat([self.decoder(z, pos), self.decoder(z, neg)]).sigmoid().numpy()
        labels = [1] * pos.size(1) + [0] * neg.size(1)
        return roc_auc_score(labels, scores), average_precision_score(labels, scores)


def bench_maskgae(data_root: str, datasets: list[str], epochs: int, seeds: list[int], timed_epochs,
                  block: int) -> list[dict]:
    """MaskGAE (path masking, the preset's settings; PubMed with its code's dropout 0.2), ours against
    :class:`ReferenceMaskGAE`, epochs in alternating blocks (``timed_epochs(interleave, block)`` of
    bench.py) on the seed's split; validation AUC/AP of both after ``epochs`` epochs (the last epoch, no
    selection), times as medians over the epochs of all seeds."""
    from vgae_toolkit.api import compose
    from vgae_toolkit.builders import build_model
    from vgae_toolkit.data.graphs import load_planetoid
    from vgae_toolkit.tasks.link import LinkPredictionTask
    from vgae_toolkit.trainer import Trainer

    rows = []
    for name in datasets:
        data = load_planetoid(data_root, name=name, download=False)
        cfg = compose("model=maskgae", *(["model.dropout=0.2"] if name == "pubmed" else [])).model
        settings = {k: cfg[k] for k in ("latent", "dropout", "mask_ratio", "walk_length", "walk_start",
                                        "degree_weight")}
        times: dict[str, list[float]] = {"ours": [], "ref": []}
        tests: dict[str, list[float]] = {"ours_auc": [], "ours_ap": [], "ref_auc": [], "ref_ap": []}
        for seed in seeds:
            task = LinkPredictionTask(data, split_seed=seed, sampler_seed=seed)
            torch.manual_seed(seed)
            ours = build_model(cfg, task)
            ref = ReferenceMaskGAE(ours, data.x, task.split.train_edge_index, data.num_nodes, settings)
            callback, ours_s, ref_s, flush = timed_epochs(ref.train_epoch, block)
            Trainer(epochs=epochs, lr=0.01, weight_decay=5e-5, grad_clip=1.0, progress=False,
                    callbacks=[callback]).fit(ours, task.train_batches(ours))
            flush()
            for key, seconds in (("ours", ours_s), ("ref", ref_s)):
                times[key] += seconds[WARMUP:] if len(seconds) > 2 * WARMUP else seconds
            val = task.evaluate(ours, "val")
            ref_auc, ref_ap = ref.test(task.split.val_pos, task.split.val_neg)
            tests["ours_auc"].append(val["val_auc"])
            tests["ours_ap"].append(val["val_ap"])
            tests["ref_auc"].append(float(ref_auc))
            tests["ref_ap"].append(float(ref_ap))
        rows.append({"dataset": name, "model": "MaskGAE (path)", "epochs": epochs, "seeds": list(seeds),
                     **{f"{k}_train_ms": 1000 * statistics.median(times[k]) for k in ("ours", "ref")},
                     **{f"{side}_val_{m}": statistics.mean(tests[f"{side}_{m}"]) for side in ("ours", "ref")
                        for m in ("auc", "ap")},
                     "per_seed_val": tests})
    return rows


def render_maskgae(rows: list[dict], paired_difference) -> list[str]:
    seeds = rows[0].get("seeds", [0]) if rows else [0]
    lines = ["## MaskGAE (a loop written as its authors' link-prediction script)", "",
             f"Seeds {seeds[0]}-{seeds[-1]}: times are medians over the epochs of all seeds, validation AUC/AP means "
             "over the seeds after the same epochs from the same initial weights.", "",
             "| dataset | model | epochs | train ms ours | train ms ref | speed-up | val AUC ours / ref "
             "| val AP ours / ref | AUC ours - ref |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['model']} | {r['epochs']} | {r['ours_train_ms']:.2f} | {r['ref_train_ms']:.2f} "
            f"| {r['ref_train_ms'] / r['ours_train_ms']:.1f}x | {100 * r['ours_val_auc']:.2f} / "
            f"{100 * r['ref_val_auc']:.2f} | {100 * r['ours_val_ap']:.2f} / {100 * r['ref_val_ap']:.2f} "
            f"| {paired_difference(r.get('per_seed_val'), 'auc')} |")
    lines += ["", "Both sides: one GCN layer (128, batch norm, ELU, the preset's input dropout), the Hadamard-MLP "
              "edge decoder and the degree decoder, path masking, Adam 0.01 with weight decay 5e-5, gradients "
              "clipped at norm 1. Ours: `model=maskgae` through `LinkPredictionTask` and `Trainer` (Â of the visible "
              "graph as one cached sparse product, sparse features kept sparse under dropout, negatives from "
              "the task's sampler, the edge decoder as one chunked kernel, `vgae_toolkit.ops.hadamard`). Reference: "
              "`GCNConv` message passing on the visible edges, dropout on the dense features, `negative_sampling` "
              "each epoch, the edge decoder's layers through autograd; the same masking function on both sides.", ""]
    return lines
