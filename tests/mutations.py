"""Deliberate breakages of the protocol, each with the tests that must catch it: ``make mutations``.

Each mutation replaces one piece of source text in a copy of the working tree (the package, the
configs, the tests) and runs its tests against that copy. A mutation is *caught* when at least one
of its tests fails, *missed* when they all pass; the script exits 1 if any mutation is missed, or if
a mutation's text is no longer in its file (the list must follow the code, never go quiet).

    python tests/mutations.py              # every mutation
    python tests/mutations.py kl_sign ...  # some of them
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutation:
    name: str
    why: str  # what the breakage would do to a user's numbers
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


PROTOCOL = "tests/test_protocol.py"
CONTRACTS = "tests/test_trainer_contracts.py"

MUTATIONS = [
    Mutation("kl_sign", "the VGAE loss rewards a large KL instead of penalising it",
             "vgae_toolkit/models/graph.py", "else recon + self.kl_weight * kl",
             "else recon - self.kl_weight * kl", (PROTOCOL,)),
    Mutation("kl_formula_sign", "the closed-form KL is negated inside the sampling node",
             "vgae_toolkit/ops/sampling.py", "kl = 0.5 * ((mu * mu).sum()", "kl = -0.5 * ((mu * mu).sum()",
             (PROTOCOL,)),
    Mutation("kl_weight_ignored", "model.kl_weight is parsed and ignored (always 1/N)",
             "vgae_toolkit/models/graph.py",
             "self.kl_weight = 1.0 / num_nodes if kl_weight is None else float(kl_weight)",
             "self.kl_weight = 1.0 / num_nodes", (PROTOCOL,)),
    Mutation("full_graph_adjacency", "the encoder's Â holds the validation and test edges (a leak)",
             "vgae_toolkit/tasks/link.py", "normalized_adjacency(edge_index, data.num_nodes, weight)",
             "normalized_adjacency(data.edge_index, data.num_nodes, None)", (PROTOCOL,)),
    Mutation("message_passing_sees_held_out_edges", "a message-passing encoder's edge_index is the whole graph",
             "vgae_toolkit/tasks/link.py", "edge_index=edge_index, edge_weight=weight",
             "edge_index=data.edge_index, edge_weight=weight", (PROTOCOL,)),
    Mutation("sampler_knows_held_out_edges", "training negatives avoid the held-out edges (a leak)",
             "vgae_toolkit/tasks/link.py", "NegativeSampler(self.split.train_pos, data.num_nodes,",
             "NegativeSampler(torch.cat([self.split.train_pos, self.split.val_pos, self.split.test_pos], 1), "
             "data.num_nodes,", (PROTOCOL,)),
    Mutation("test_pairs_are_validation_pairs", "the test numbers are computed on the validation pairs",
             "vgae_toolkit/tasks/link.py", 'getattr(self.split, f"{split}_pos"), getattr(self.split, f"{split}_neg")',
             'self.split.val_pos, self.split.val_neg', (PROTOCOL,)),
    Mutation("best_weights_not_restored", "select=best reports the best epoch but tests the last weights",
             "vgae_toolkit/trainer.py", "model.load_state_dict(result.best_state)", "pass", (CONTRACTS,)),
    Mutation("eval_every_ignored", "validation runs every epoch whatever trainer.eval_every says",
             "vgae_toolkit/trainer.py", "epoch % self.eval_every == 0", "True", (CONTRACTS,)),
    Mutation("weight_decay_ignored", "trainer.weight_decay never reaches the optimiser",
             "vgae_toolkit/trainer.py", "weight_decay=self.weight_decay", "weight_decay=0.0", (CONTRACTS,)),
    Mutation("dropout_at_evaluation", "dropout stays on when the model is evaluated",
             "vgae_toolkit/models/gcn.py", "F.dropout(h, self.dropout, self.training)",
             "F.dropout(h, self.dropout, True)", (CONTRACTS,)),
    Mutation("normalize_features_ignored", "dataset.normalize_features=true feeds the raw features",
             "vgae_toolkit/tasks/link.py", "if x is not None and normalize_features:",
             "if x is not None and normalize_features and False:", (CONTRACTS,)),
    Mutation("maskgae_masks_nothing", "MaskGAE's encoder sees the masked edges it must reconstruct",
             "vgae_toolkit/models/maskgae.py", "z = self.encode(batch, visible_adjacency(visible, n)).mu",
             "z = self.encode(batch, visible_adjacency(batch.edge_index, n)).mu", ("tests/test_maskgae.py",)),
    Mutation("s2gae_masks_nothing", "S2GAE's encoder sees the masked edges it must reconstruct",
             "vgae_toolkit/models/s2gae.py", "hs = self.layer_codes(batch, visible_adjacency(visible, batch.num_nodes))",
             "hs = self.layer_codes(batch)", ("tests/test_s2gae.py",)),
    Mutation("s2gae_cross_layer_order", "S2GAE's decoder pairs layer l of i with layer k of j: the blocks meet "
             "the wrong weights", "vgae_toolkit/models/s2gae.py", "cross = src.unsqueeze(2) * dst.unsqueeze(1)",
             "cross = src.unsqueeze(1) * dst.unsqueeze(2)", ("tests/test_s2gae.py",)),
    Mutation("test_graph_sees_test_edges", "protocol=maskgae's test-time encoder also sees the test edges",
             "vgae_toolkit/tasks/link.py", "pos = torch.cat([self.batch.pos, val], dim=1)",
             "pos = torch.cat([self.batch.pos, val, self.split.test_pos], dim=1)", ("tests/test_protocols.py",)),
]


def copy_tree(dest: Path) -> None:
    """The tracked and untracked-but-not-ignored files of the checkout, as they are on disk now."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, listed):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def run_mutation(mutation: Mutation | None, base: Path, tests: tuple[str, ...]) -> tuple[str, str]:
    """Runs ``tests`` on a copy of ``base`` with ``mutation`` applied (``None``: unchanged)."""
    work = Path(tempfile.mkdtemp(prefix=f"mutation-{mutation.name if mutation else 'none'}-"))
    try:
        shutil.copytree(base, work, dirs_exist_ok=True)
        if mutation is not None:
            target = work / mutation.path
            text = target.read_text()
            if text.count(mutation.old) != 1:
                return "STALE", f"{mutation.path}: the text to replace occurs {text.count(mutation.old)} times"
            target.write_text(text.replace(mutation.old, mutation.new))
        # run from the copy: `python -m pytest` puts its working directory first on sys.path, so the
        # mutated package is imported, not the installed checkout (checked below)
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        where = subprocess.run([sys.executable, "-c", "import vgae_toolkit; print(vgae_toolkit.__file__)"],
                               cwd=work, env=env, capture_output=True, text=True).stdout.strip()
        if not where.startswith(str(work)):
            return "ERROR", f"the copy was not imported ({where})"
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
                              cwd=work, env=env, capture_output=True, text=True)
        failed = [line.split(" - ")[0].removeprefix("FAILED ") for line in proc.stdout.splitlines()
                  if line.startswith(("FAILED", "ERROR"))]
        if proc.returncode == 0:
            return "MISSED", "every test passed"
        return "CAUGHT", ", ".join(failed) or proc.stdout.strip().splitlines()[-1]
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"mutations to run (default: all of {[m.name for m in MUTATIONS]})")
    args = parser.parse_args(argv)
    unknown = set(args.names) - {m.name for m in MUTATIONS}
    if unknown:
        parser.error(f"unknown mutations {sorted(unknown)}")
    chosen = [m for m in MUTATIONS if not args.names or m.name in args.names]
    base = Path(tempfile.mkdtemp(prefix="mutation-base-"))
    bad = 0
    try:
        copy_tree(base)
        # unmutated, every test involved must pass: otherwise a failure would prove nothing
        verdict, detail = run_mutation(None, base, tuple(sorted({t for m in chosen for t in m.tests})))
        if verdict != "MISSED":
            print(f"the unmutated tree fails its own tests: {detail}")
            return 1
        for mutation in chosen:
            start = time.perf_counter()
            verdict, detail = run_mutation(mutation, base, mutation.tests)
            bad += verdict != "CAUGHT"
            print(f"{verdict:7s} {mutation.name} ({mutation.why}; {time.perf_counter() - start:.0f} s): {detail}",
                  flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"{len(chosen) - bad} of {len(chosen)} mutations caught")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
