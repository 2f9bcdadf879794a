"""A campaign of bad and unusual inputs through the real command lines (not collected by pytest).

Every case runs ``python -m vgae_toolkit``, ``python -m vgae_toolkit.predict`` or
``python -m vgae_toolkit.report`` as a subprocess in a temporary folder of its own, with a time
limit, and is classified:

- ``OK``: a clean exit 0 with sensible results, or a named one-line error (``error: XError: ...``,
  or a configuration error from the command line's parser) and no traceback;
- ``RAW``: a Python traceback was printed;
- ``HANG``: the time limit was reached;
- ``SILENT``: bad data accepted without a word (fewer nodes, edges or images than the file holds);
- ``EXEC``: a side effect of a config stored in a checkpoint (a marker file appeared).

Usage::

    python tests/fuzz_campaign.py [--out report.md] [--jobs 2] [--timeout 120] [--only SUBSTRING]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
TINY = ["trainer.epochs=2", "trainer.progress=false"]
SBM = ["dataset=sbm", "dataset.loader.num_nodes=100", *TINY]
IMG = ["model=vae", "dataset.iw_samples=10", *TINY]
MAIN = [PY, "-m", "vgae_toolkit"]
PREDICT = [PY, "-m", "vgae_toolkit.predict"]
REPORT = [PY, "-m", "vgae_toolkit.report"]


@dataclass
class Case:
    """One input: ``setup(tmp)`` writes its files and returns the command line."""

    name: str
    kind: str
    setup: Callable[[Path], list[str]]
    # (tmp, rc, output) -> None when fine, else the reason it is SILENT
    check: Callable[[Path, int, str], str | None] | None = None
    marker: str | None = None  # a file whose existence means a stored config ran code
    runner: Callable | None = None  # custom run (e.g. signals): (tmp, argv, env, timeout) -> (rc, output, hung)


@dataclass
class Result:
    case: Case
    verdict: str
    rc: int | None
    seconds: float
    detail: str = ""
    extra: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- helpers

def ring(n: int = 20, prefix: str = "n") -> list[tuple[str, str]]:
    """A graph of n nodes and 2n undirected edges (i~i+1, i~i+2): enough for the default split."""
    return [(f"{prefix}{i}", f"{prefix}{(i + k) % n}") for i in range(n) for k in (1, 2)]


def write_edges(path: Path, edges, header="source,target", sep=",", encoding="utf-8", newline="\n") -> Path:
    lines = ([header] if header is not None else []) + [sep.join(e) for e in edges]
    path.write_bytes((newline.join(lines) + newline).encode(encoding))
    return path


def edgelist(path: str, *extra: str) -> list[str]:
    return [*MAIN, "dataset=edgelist", f"dataset.loader.path={path}", *TINY, *extra]


def metrics_of(tmp: Path) -> dict | None:
    found = sorted((tmp / "out").rglob("metrics.json"))
    if not found:
        return None
    try:
        return json.loads(found[-1].read_text())
    except (OSError, ValueError):
        return None


def expect_graph(nodes: int, edges: int):
    """A successful run must report exactly this graph (else it dropped data silently)."""

    def check(tmp: Path, rc: int, out: str) -> str | None:
        if rc != 0:
            return None
        m = metrics_of(tmp)
        if m is None:
            return "exit 0 but no metrics.json"
        if (m.get("num_nodes"), m.get("num_edges")) != (nodes, edges):
            return f"graph {m.get('num_nodes')} nodes/{m.get('num_edges')} edges, file holds {nodes}/{edges}"
        return None

    return check


def expect_images(n: int):
    def check(tmp: Path, rc: int, out: str) -> str | None:
        if rc != 0:
            return None
        m = metrics_of(tmp)
        if m is None:
            return "exit 0 but no metrics.json"
        total = sum(v for v in (m.get("split_sizes") or {}).values() if isinstance(v, int))
        if total != n:
            return f"{total} images used, file holds {n}"
        return None

    return check


def expect_failure(tmp: Path, rc: int, out: str) -> str | None:
    """Input that cannot be right: accepting it is silent acceptance of bad data."""
    return "accepted without an error" if rc == 0 else None


def expect_files(*names: str):
    def check(tmp: Path, rc: int, out: str) -> str | None:
        if rc != 0:
            return None
        missing = [n for n in names if not list(tmp.rglob(n))]
        return f"exit 0 but {missing} not written" if missing else None

    return check


# ----------------------------------------------------------------------------- edge lists

def edge_cases() -> list[Case]:
    cases = []

    def add(name, setup, check=None):
        cases.append(Case(f"edges/{name}", "edgelist", setup, check))

    base = ring()

    def simple(name, content: bytes | str, check=None, suffix=".csv", extra=()):
        def setup(tmp, content=content):
            p = tmp / f"g{suffix}"
            p.write_bytes(content if isinstance(content, bytes) else content.encode())
            return edgelist(str(p), *extra)
        add(name, setup, check)

    text = "source,target\n" + "\n".join(",".join(e) for e in base) + "\n"
    simple("plain", text, expect_graph(20, 40))
    simple("utf8-bom", "\ufeff" + text, expect_graph(20, 40))
    simple("utf16", text.encode("utf-16"), expect_graph(20, 40))
    simple("latin1-ids", ("source,target\n" + "\n".join(f"{a}\xe9,{b}\xe9" for a, b in base) + "\n").encode("latin-1"),
           expect_graph(20, 40))
    simple("crlf", text.replace("\n", "\r\n"), expect_graph(20, 40))
    simple("cr-only", text.replace("\n", "\r"), expect_graph(20, 40))
    simple("quoted-ids", "source,target\n" + "\n".join(f'"{a}","{b}"' for a, b in base) + "\n", expect_graph(20, 40))
    simple("ids-with-commas", "source,target\n" + "\n".join(f'"{a},x","{b},x"' for a, b in base) + "\n",
           expect_graph(20, 40))
    simple("unbalanced-quote", "source,target\n" + "\n".join(",".join(e) for e in base) + '\n"n1,n5\n',
           expect_graph(20, 40))
    simple("semicolon-no-sep", text.replace(",", ";"))
    simple("semicolon-sep", text.replace(",", ";"), expect_graph(20, 40), extra=("dataset.loader.sep=';'",))
    simple("tab-in-csv", text.replace(",", "\t"))
    simple("tsv", text.replace(",", "\t"), expect_graph(20, 40), suffix=".tsv")
    simple("tsv-with-commas", text, suffix=".tsv")
    simple("mixed-separators", "source,target\n" + "\n".join(
        (";" if i % 3 == 0 else ",").join(e) for i, e in enumerate(base)) + "\n", expect_failure)
    simple("space-separated", text.replace(",", " "), extra=("dataset.loader.sep=' '",), check=expect_graph(20, 40))
    simple("multichar-sep", text.replace(",", "::"), extra=("dataset.loader.sep='::'",), check=expect_graph(20, 40))
    simple("regex-sep", text, extra=("dataset.loader.sep='[,;]'",), check=expect_graph(20, 40))
    simple("huge-int-ids", "source,target\n" + "\n".join(f"{10**30 + i},{10**30 + j}" for i, j in
                                                       [(int(a[1:]), int(b[1:])) for a, b in base]) + "\n",
           expect_graph(20, 40))
    simple("negative-ids", "source,target\n" + "\n".join(f"-{a[1:]},-{b[1:]}" for a, b in base) + "\n",
           expect_graph(20, 40))
    simple("float-ids", "source,target\n" + "\n".join(f"{a[1:]}.0,{b[1:]}.0" for a, b in base) + "\n",
           expect_graph(20, 40))
    simple("unicode-ids", "source,target\n" + "\n".join(f"\u00fc\u4e2d{a}\U0001F600,\u00fc\u4e2d{b}\U0001F600"
                                                       for a, b in base) + "\n", expect_graph(20, 40))
    simple("zero-width-ids", "source,target\n" + "\n".join(f"{a}\u200b,{b}" for a, b in base) + "\n")
    rename = {"n1": "NA", "n2": "null", "n3": "nan", "n4": "None"}
    simple("nan-null-ids", "source,target\n" + "\n".join(f"{rename.get(a, a)},{rename.get(b, b)}"
                                                        for a, b in base) + "\n", expect_graph(20, 40))
    simple("one-edge", "source,target\na,b\n")
    simple("all-self-loops", "source,target\n" + "\n".join(f"{a},{a}" for a, _ in base) + "\n")
    simple("only-duplicates", "source,target\n" + "a,b\n" * 50)
    simple("both-directions", "source,target\n" + "\n".join(f"{a},{b}\n{b},{a}" for a, b in base) + "\n",
           expect_graph(20, 40))
    simple("header-only", "source,target\n")
    simple("empty-file", "")
    simple("blank-lines-only", "\n\n\n")
    simple("binary-garbage", bytes(range(256)) * 40)
    simple("gzip-bytes", b"\x1f\x8b\x08\x00" + os.urandom(500))
    simple("nul-bytes", text.replace("n1,", "n1\x00,"))
    simple("missing-target-column", "source,dst\n" + "\n".join(",".join(e) for e in base) + "\n")
    simple("no-header", "\n".join(",".join(e) for e in base) + "\n")
    simple("one-column", "source\n" + "\n".join(a for a, _ in base) + "\n")
    simple("extra-columns", "source,target,weight\n" + "\n".join(f"{a},{b},1.5" for a, b in base) + "\n",
           expect_graph(20, 40))
    simple("ragged-extra-fields", "source,target\n" + "\n".join(f"{a},{b},x" for a, b in base) + "\n",
           expect_failure)
    simple("some-rows-extra-field", "source,target\n" + "\n".join(
        f"{a},{b},x" if i == 5 else f"{a},{b}" for i, (a, b) in enumerate(base)) + "\n", expect_failure)
    simple("missing-cells", "source,target\n" + "\n".join(f"{a}," if i == 3 else f"{a},{b}"
                                                         for i, (a, b) in enumerate(base)) + "\n")
    simple("short-row", "source,target\n" + "\n".join(a if i == 3 else f"{a},{b}"
                                                     for i, (a, b) in enumerate(base)) + "\n")
    simple("very-long-line", "source,target\n" + "\n".join(",".join(e) for e in base) + "\n" + "x" * 2_000_000 + ",y\n",
           expect_graph(22, 41))
    simple("very-long-id", "source,target\n" + "\n".join(",".join(e) for e in base) + "\n" + "z" * 100_000 + ",n0\n",
           expect_graph(21, 41))
    simple("duplicate-header-names", "source,source\n" + "\n".join(",".join(e) for e in base) + "\n")
    simple("header-spaces", " source , target \n" + "\n".join(",".join(e) for e in base) + "\n", expect_graph(20, 40))
    simple("header-case", "Source,Target\n" + "\n".join(",".join(e) for e in base) + "\n")
    simple("comment-lines", "source,target\n# a comment\n" + "\n".join(",".join(e) for e in base) + "\n",
           expect_graph(21, 41))
    simple("whitespace-ids", "source,target\n" + "\n".join(f"  {a}  ,\t{b} " for a, b in base) + "\n",
           expect_graph(20, 40))
    simple("trailing-comma", "source,target,\n" + "\n".join(f"{a},{b}," for a, b in base) + "\n",
           expect_graph(20, 40))
    simple("numeric-and-string-same", "source,target\n" + "\n".join(",".join(e) for e in ring(20, "")) + "\n1,01\n",
           expect_graph(21, 41))
    simple("two-components", "source,target\n" + "\n".join(",".join(e) for e in ring(20, "a") + ring(20, "b")) + "\n",
           expect_graph(40, 80))
    simple("complete-graph", "source,target\n" + "\n".join(f"{i},{j}" for i in range(12) for j in range(i + 1, 12))
           + "\n")
    simple("star-graph", "source,target\n" + "\n".join(f"hub,{i}" for i in range(60)) + "\n", expect_graph(61, 60))

    def directory(tmp):
        (tmp / "g.csv").mkdir()
        return edgelist(str(tmp / "g.csv"))
    add("directory-not-file", directory)

    def missing(tmp):
        return edgelist(str(tmp / "nope.csv"))
    add("missing-file", missing)

    def unreadable(tmp):
        p = write_edges(tmp / "g.csv", base)
        p.chmod(0)
        return edgelist(str(p))
    add("unreadable-file", unreadable)

    def fifo(tmp):
        p = tmp / "g.csv"
        os.mkfifo(p)
        return edgelist(str(p))
    add("fifo-not-file", fifo)

    def dev_null(tmp):
        return edgelist("/dev/null")
    add("dev-null", dev_null)

    def relative(tmp):
        write_edges(tmp / "g.csv", base)
        return edgelist("g.csv")
    add("relative-path", relative, expect_graph(20, 40))

    def path_with_spaces(tmp):
        d = tmp / "my data"
        d.mkdir()
        write_edges(d / "g h.csv", base)
        return edgelist(f"'{d / 'g h.csv'}'")
    add("path-with-spaces", path_with_spaces, expect_graph(20, 40))

    def path_with_equals(tmp):
        d = tmp / "a=b"
        d.mkdir()
        write_edges(d / "g.csv", base)
        return edgelist(f"'{d / 'g.csv'}'")
    add("path-with-equals", path_with_equals, expect_graph(20, 40))

    def symlink_loop(tmp):
        (tmp / "g.csv").symlink_to(tmp / "g.csv")
        return edgelist(str(tmp / "g.csv"))
    add("symlink-loop", symlink_loop)

    def source_equals_target(tmp):
        p = write_edges(tmp / "g.csv", base)
        return edgelist(str(p), "dataset.loader.target=source")
    add("source-equals-target-col", source_equals_target)

    def sep_empty(tmp):
        p = write_edges(tmp / "g.csv", base)
        return edgelist(str(p), "dataset.loader.sep=''")
    add("sep-empty-string", sep_empty)

    def sep_number(tmp):
        p = write_edges(tmp / "g.csv", base)
        return edgelist(str(p), "dataset.loader.sep=5")
    add("sep-number", sep_number)

    def sep_list(tmp):
        p = write_edges(tmp / "g.csv", base)
        return edgelist(str(p), "dataset.loader.sep=[',']")
    add("sep-list", sep_list)

    def col_list(tmp):
        p = write_edges(tmp / "g.csv", base)
        return edgelist(str(p), "dataset.loader.source=[a,b]")
    add("source-col-list", col_list)

    def col_null(tmp):
        p = write_edges(tmp / "g.csv", base)
        return edgelist(str(p), "dataset.loader.source=null")
    add("source-col-null", col_null)

    def col_int(tmp):
        p = write_edges(tmp / "g.csv", base, header="0,1")
        return edgelist(str(p), "dataset.loader.source=0", "dataset.loader.target=1")
    add("int-column-names", col_int, expect_graph(20, 40))

    def path_null(tmp):
        return edgelist("null")
    add("path-null", path_null)

    def path_list(tmp):
        return edgelist("[a.csv,b.csv]")
    add("path-list", path_list)

    def no_path(tmp):
        return [*MAIN, "dataset=edgelist", *TINY]
    add("path-missing", no_path)

    def big(tmp):
        rng = np.random.default_rng(0)
        e = rng.integers(0, 3000, size=(30000, 2))
        p = tmp / "g.csv"
        p.write_text("source,target\n" + "\n".join(f"{a},{b}" for a, b in e) + "\n")
        return edgelist(str(p))
    add("30k-random-edges", big)
    return cases


# ----------------------------------------------------------------------------- features

def feature_cases() -> list[Case]:
    cases = []
    base = ring(20, "")  # ids 0..19 so that .npy rows line up

    def add(name, make, check=None, ids_prefix=""):
        def setup(tmp):
            edges = ring(20, ids_prefix) if ids_prefix else base
            g = write_edges(tmp / "g.csv", edges)
            f = make(tmp)
            return edgelist(str(g), f"dataset.loader.features={f}")
        cases.append(Case(f"features/{name}", "features", setup, check))

    def npy(array, name="x.npy", **kw):
        def make(tmp):
            np.save(tmp / name, array, **kw)
            return tmp / name
        return make

    def csv(text, name="x.csv"):
        def make(tmp):
            (tmp / name).write_text(text)
            return tmp / name
        return make

    add("npy-ok", npy(np.ones((20, 3))), expect_graph(20, 40))
    add("npy-1d", npy(np.ones(20)))
    add("npy-3d", npy(np.ones((20, 3, 2))))
    add("npy-too-few-rows", npy(np.ones((10, 3))))
    add("npy-more-rows", npy(np.ones((25, 3))), expect_graph(25, 40))
    add("npy-zero-cols", npy(np.ones((20, 0))))
    add("npy-object", npy(np.array([[1, "a"]] * 20, dtype=object), allow_pickle=True))
    add("npy-strings", npy(np.array([["1", "2"]] * 20)))
    add("npy-bool", npy(np.ones((20, 3), dtype=bool)), expect_graph(20, 40))
    add("npy-float16", npy(np.ones((20, 3), dtype=np.float16)), expect_graph(20, 40))
    add("npy-int64-huge", npy(np.full((20, 3), 2**62, dtype=np.int64)))
    add("npy-nan", npy(np.full((20, 3), np.nan)))
    add("npy-complex", npy(np.ones((20, 3), dtype=complex)))
    add("npy-structured", npy(np.zeros(20, dtype=[("a", "f4"), ("b", "f4")])))
    add("npy-datetime", npy(np.zeros((20, 3), dtype="datetime64[s]")))
    add("npy-fortran", npy(np.asfortranarray(np.ones((20, 3)))), expect_graph(20, 40))

    def pickle_file(tmp):
        import pickle
        (tmp / "x.npy").write_bytes(pickle.dumps({"a": 1}))
        return tmp / "x.npy"
    add("npy-is-pickle", pickle_file)

    def npz_file(tmp):
        np.savez(tmp / "x.npz", x=np.ones((20, 3)))
        return tmp / "x.npz"
    add("npz-instead", npz_file)

    def npy_truncated(tmp):
        np.save(tmp / "x.npy", np.ones((20, 3)))
        data = (tmp / "x.npy").read_bytes()
        (tmp / "x.npy").write_bytes(data[: len(data) // 2])
        return tmp / "x.npy"
    add("npy-truncated", npy_truncated)

    def npy_dir(tmp):
        (tmp / "x.npy").mkdir()
        return tmp / "x.npy"
    add("npy-directory", npy_dir)

    rows = "\n".join(f"{i},{i * 0.5},{-i}" for i in range(20))
    add("csv-ok", csv("id,a,b\n" + rows + "\n"), expect_graph(20, 40))
    add("csv-extra-nodes", csv("id,a,b\n" + rows + "\n99,1,1\n"), expect_graph(21, 40))
    add("csv-missing-nodes", csv("id,a,b\n" + "\n".join(rows.split("\n")[:15]) + "\n"))
    add("csv-bools", csv("id,a\n" + "\n".join(f"{i},{'True' if i % 2 else 'False'}" for i in range(20)) + "\n"))
    add("csv-strings", csv("id,a\n" + "\n".join(f"{i},abc" for i in range(20)) + "\n"))
    add("csv-exponents", csv("id,a,b\n" + "\n".join(f"{i},1e-3,2.5E+2" for i in range(20)) + "\n"),
        expect_graph(20, 40))
    add("csv-overflow", csv("id,a\n" + "\n".join(f"{i},1e400" for i in range(20)) + "\n"))
    add("csv-inf", csv("id,a\n" + "\n".join(f"{i},inf" for i in range(20)) + "\n"))
    add("csv-hex", csv("id,a\n" + "\n".join(f"{i},0x1F" for i in range(20)) + "\n"))
    add("csv-comma-decimal", csv("id,a\n" + "\n".join(f'{i},"1,5"' for i in range(20)) + "\n"))
    add("csv-empty-value", csv("id,a\n" + "\n".join(f"{i}," for i in range(20)) + "\n"))
    add("csv-header-only", csv("id,a,b\n"))
    add("csv-empty-file", csv(""))
    add("csv-only-id", csv("id\n" + "\n".join(str(i) for i in range(20)) + "\n"))
    add("csv-duplicate-ids", csv("id,a\n" + "\n".join(f"{i},1" for i in range(20)) + "\n3,2\n"))
    add("csv-ragged", csv("id,a,b\n" + "\n".join(f"{i},1" if i == 4 else f"{i},1,2" for i in range(20)) + "\n"))
    add("csv-binary", lambda tmp: (tmp / "x.csv").write_bytes(os.urandom(3000)) and tmp / "x.csv")
    add("csv-string-ids", csv("id,a\n" + "\n".join(f"n{i},{i}" for i in range(20)) + "\n"), expect_graph(20, 40),
        ids_prefix="n")
    add("csv-padded-ids", csv("id,a\n" + "\n".join(f"0{i},{i}" for i in range(20)) + "\n"))
    add("npy-string-ids", npy(np.ones((20, 3))), ids_prefix="n")
    add("tsv-features", lambda tmp: (tmp / "x.tsv").write_text(
        "id\ta\n" + "\n".join(f"{i}\t{i}" for i in range(20)) + "\n") and tmp / "x.tsv", expect_graph(20, 40))

    def feature_id_missing(tmp):
        g = write_edges(tmp / "g.csv", base)
        (tmp / "x.csv").write_text("id,a\n" + "\n".join(f"{i},{i}" for i in range(20)) + "\n")
        return edgelist(str(g), f"dataset.loader.features={tmp / 'x.csv'}", "dataset.loader.feature_id=node")
    cases.append(Case("features/feature-id-missing", "features", feature_id_missing))

    def features_false(tmp):
        g = write_edges(tmp / "g.csv", base)
        np.save(tmp / "x.npy", np.ones((20, 3)))
        return edgelist(str(g), f"dataset.loader.features={tmp / 'x.npy'}", "dataset.features=false")
    cases.append(Case("features/features-false-with-file", "features", features_false, expect_graph(20, 40)))

    def normalize_zero_rows(tmp):
        g = write_edges(tmp / "g.csv", base)
        np.save(tmp / "x.npy", np.zeros((20, 3)))
        return edgelist(str(g), f"dataset.loader.features={tmp / 'x.npy'}", "dataset.normalize_features=true")
    cases.append(Case("features/normalize-zero-rows", "features", normalize_zero_rows, expect_graph(20, 40)))
    return cases


# ----------------------------------------------------------------------------- image arrays

def image_cases() -> list[Case]:
    cases = []
    rng = np.random.default_rng(0)
    good = rng.random((60, 8, 8)).astype(np.float32)

    def add(name, make, check=None, extra=()):
        def setup(tmp):
            args = make(tmp)
            return [*MAIN, *IMG, "dataset=array", *args, *extra]
        cases.append(Case(f"images/{name}", "images", setup, check))

    def npy(array, labels=None, **kw):
        def make(tmp):
            np.save(tmp / "x.npy", array, **kw)
            args = [f"dataset.loader.path={tmp / 'x.npy'}"]
            if labels is not None:
                np.save(tmp / "y.npy", labels, allow_pickle=True)
                args.append(f"dataset.loader.labels={tmp / 'y.npy'}")
            return args
        return make

    def npz(labels_key=None, **arrays):
        def make(tmp):
            np.savez(tmp / "x.npz", **arrays)
            args = [f"dataset.loader.path={tmp / 'x.npz'}"]
            if labels_key:
                args.append(f"dataset.loader.labels={labels_key}")
            return args
        return make

    add("ok", npy(good), expect_images(60))
    add("1d", npy(good.ravel()))
    add("2d", npy(good.reshape(60, 64)))
    add("4d-rgb", npy(rng.random((60, 8, 8, 3))))
    add("4d-channel-first", npy(rng.random((60, 1, 8, 8))))
    add("empty", npy(np.zeros((0, 8, 8))))
    add("one-image", npy(good[:1]))
    add("two-images", npy(good[:2]))
    add("1x1-images", npy(good[:, :1, :1]), expect_images(60))
    add("int64-huge", npy(np.full((60, 8, 8), 2**60, dtype=np.int64)))
    add("int-0-255", npy((good * 255).astype(np.uint8)), expect_images(60))
    add("int-0-1", npy((good > 0.5).astype(np.int64)), expect_images(60))
    add("negative-floats", npy(good - 0.5))
    add("float16", npy(good.astype(np.float16)), expect_images(60))
    add("float64", npy(good.astype(np.float64)), expect_images(60))
    add("bools", npy(good > 0.5), expect_images(60))
    add("nan", npy(np.where(good > 0.9, np.nan, good)))
    add("inf", npy(np.where(good > 0.9, np.inf, good)))
    add("complex", npy(good.astype(complex)))
    add("strings", npy(np.full((60, 8, 8), "a")))
    add("object", npy(np.array(good, dtype=object), allow_pickle=True))
    add("constant-zero", npy(np.zeros((60, 8, 8))), expect_images(60))
    add("labels-ok", npy(good, labels=np.arange(60) % 3), expect_images(60))
    add("labels-short", npy(good, labels=np.arange(50) % 3))
    add("labels-long", npy(good, labels=np.arange(70) % 3))
    add("labels-float", npy(good, labels=(np.arange(60) % 3) + 0.5))
    add("labels-negative", npy(good, labels=-(np.arange(60) % 3)))
    add("labels-strings", npy(good, labels=np.array(["a", "b", "c"] * 20)))
    add("labels-2d", npy(good, labels=np.zeros((60, 2), dtype=int)))
    add("labels-huge", npy(good, labels=np.full(60, 10**12)))
    add("labels-object", npy(good, labels=np.array([1, "a"] * 30, dtype=object)))
    add("labels-bool", npy(good, labels=np.arange(60) % 2 == 0), expect_images(60))
    add("npz-x", npz(x=good), expect_images(60))
    add("npz-images-labels", npz(labels_key="labels", images=good, labels=np.arange(60) % 3), expect_images(60))
    add("npz-wrong-key", npz(data=good))
    add("npz-both-keys", npz(x=good, images=good[:10]))
    add("npz-missing-label-key", npz(labels_key="y", x=good))
    add("npz-empty", npz())

    def pickle_npy(tmp):
        import pickle
        (tmp / "x.npy").write_bytes(pickle.dumps(good))
        return [f"dataset.loader.path={tmp / 'x.npy'}"]
    add("pickle-as-npy", pickle_npy)

    def text_file(tmp):
        (tmp / "x.npy").write_text("hello")
        return [f"dataset.loader.path={tmp / 'x.npy'}"]
    add("text-as-npy", text_file)

    def csv_file(tmp):
        (tmp / "x.csv").write_text("1,2\n3,4\n")
        return [f"dataset.loader.path={tmp / 'x.csv'}"]
    add("csv-suffix", csv_file)

    def directory(tmp):
        (tmp / "x.npy").mkdir()
        return [f"dataset.loader.path={tmp / 'x.npy'}"]
    add("directory", directory)

    def missing(tmp):
        return [f"dataset.loader.path={tmp / 'nope.npy'}"]
    add("missing", missing)

    def relative(tmp):
        np.save(tmp / "x.npy", good)
        return ["dataset.loader.path=x.npy"]
    add("relative-path", relative, expect_images(60))

    add("test-fraction-1", npy(good), extra=("dataset.loader.test_fraction=1.0",))
    add("test-fraction-0", npy(good), extra=("dataset.loader.test_fraction=0",))
    add("test-fraction-neg", npy(good), extra=("dataset.loader.test_fraction=-0.2",))
    add("cvae-no-labels", npy(good), extra=("model=cvae",))
    add("cvae-labels", npy(good, labels=np.arange(60) % 3), expect_images(60), extra=("model=cvae",))
    add("gaussian-decoder", npy(good), expect_images(60), extra=("model.decoder=gaussian",))
    add("val-size-too-big", npy(good), extra=("dataset.val_size=1000",))
    add("batch-bigger-than-data", npy(good), expect_images(60), extra=("dataset.batch_size=1000",))
    return cases


# ----------------------------------------------------------------------------- config values

CONFIG_OVERRIDES = {
    "graph": [
        "model.hidden=-1", "model.hidden=0", "model.hidden=abc", "model.hidden=[1,2]", "model.latent=null",
        "model.latent=1e12", "model.dropout=1.5", "model.dropout=-0.1", "model.dropout=nan", "model.recon=foo",
        "model.neg_ratio=-1", "model.neg_ratio=1e9", "model.kl_weight=-1", "model.kl_weight=abc",
        "model.kl_weight=inf", "model.bias=maybe", "model.dense_max_nodes=-5", "model.variational=null",
        "model.dense_self_loops=2", "model.unknown=1", "+model.unknown=1", "model=nonexistent",
        "model.name='with space'", "model._target_=os.getcwd", "model.recon=sampled model.neg_ratio=0",
        "dataset.features=yes", "dataset.features=null", "dataset.normalize_features=3",
        "dataset.loader.num_nodes=0", "dataset.loader.num_nodes=-5", "dataset.loader.num_nodes=2",
        "dataset.loader.num_nodes=1e15", "dataset.loader.num_nodes=abc", "dataset.loader.num_blocks=0",
        "dataset.loader.num_blocks=1000", "dataset.loader.p_in=2", "dataset.loader.p_out=nan",
        "dataset.loader.p_in=0 dataset.loader.p_out=0", "dataset.loader.num_features=0",
        "dataset.loader.num_features=-1", "dataset.loader.feature_noise=-1", "dataset.loader.seed=-1",
        "dataset.loader.seed=abc", "+dataset.loader.extra=1", "dataset.name=null", "dataset.kind=image",
        "dataset=nonexistent", "split.val_frac=0.5 split.test_frac=0.6", "split.val_frac=-0.1", "split.val_frac=1",
        "split.val_frac=abc", "split.seed=null", "split.seed=abc", "split.val_frac=0 split.test_frac=0",
        "split.val_frac=nan", "+split.extra=1", "trainer.epochs=0", "trainer.epochs=-1", "trainer.epochs=abc",
        "trainer.epochs=2.5", "trainer.lr=0", "trainer.lr=-1", "trainer.lr=nan", "trainer.lr=inf",
        "trainer.lr=1e30", "trainer.optimizer=foo", "trainer.weight_decay=-1", "trainer.select=foo",
        "trainer.select=best trainer.monitor=val_apx", "trainer.select=best trainer.monitor=val_elbo",
        "trainer.select=best trainer.monitor=test_auc", "trainer.monitor=null", "trainer.eval_every=0",
        "trainer.eval_every=-1", "trainer.eval_every=1000", "trainer.progress=maybe", "trainer.device=cuda",
        "trainer.device=cuda:5", "trainer.device=tpu", "trainer.device=null", "trainer.device=''",
        "trainer.resume=maybe", "+trainer.extra=1", "seed=-1", "seed=abc", "seed=1e30", "seed=null",
        "seed=99999999999999999999", "seed=[1,2]", "skip_finished=abc", "paths.output_dir=null",
        "paths.data_dir=null", "paths.download=maybe", "+foo=1", "foo=1", "model=vae",
        "trainer=closed_form", "model=spectral", "model=deepwalk model.walk_length=-1", "dataset=cora "
        "paths.data_dir=/nonexistent paths.download=false", "trainer.epochs='2 3'",
        "model.recon=auto model.dense_max_nodes=0",
    ],
    "image": [
        "model.latent_dim=0", "model.latent_dim=-3", "model.hidden=[]", "model.hidden=[-1]", "model.hidden=5",
        "model.hidden=[a]", "model.activation=foo", "model.decoder=foo", "model.num_samples=0",
        "model.kl_warmup_epochs=-1", "model.free_bits=-1", "model.init_std=-1", "model.min_logvar=nan",
        "model.num_classes=5", "model.num_classes=auto", "model.num_classes=-1", "dataset.binarize=foo",
        "dataset.binarize=dynamic", "dataset.batch_size=0", "dataset.batch_size=-1", "dataset.batch_size=1e9",
        "dataset.val_size=1.5", "dataset.val_size=-1", "dataset.val_size=100000", "dataset.val_size=0",
        "dataset.iw_samples=-1", "dataset.iw_samples=abc", "dataset.track_test=maybe",
        "dataset.loader.test_fraction=1.0", "dataset.loader.test_fraction=0", "dataset.val_seed=abc",
        "model=vgae", "model=cvae", "trainer.select=best trainer.monitor=val_ap",
        "trainer.select=best trainer.monitor=val_elbox", "+experiment=vae_paper", "+experiment=nonexistent",
        "dataset=mnist paths.data_dir=/nonexistent", "trainer.optimizer=adagrad trainer.lr=-1",
    ],
}


def config_cases() -> list[Case]:
    cases = []
    for kind, overrides in CONFIG_OVERRIDES.items():
        for override in overrides:
            parts = override.split(" ") if "'" not in override else [override]
            if kind == "graph":
                argv = [*MAIN, *SBM, *parts]
            else:
                argv = [*MAIN, *IMG, "dataset=digits", *parts]
            cases.append(Case(f"config/{kind}/{override}", "config", lambda tmp, argv=argv: argv))
    return cases


# ----------------------------------------------------------------------------- predict

FIXTURES: dict[str, Path] = {}


def make_fixtures(root: Path, env: dict) -> None:
    """Trains the runs that the predict cases start from (copied into every case's folder)."""
    edges = write_edges(root / "edges.csv", ring(20, "v"))
    jobs = {
        "graph": [*MAIN, *SBM, f"hydra.run.dir={root / 'graph'}"],
        "edgelist": [*edgelist(str(edges)), f"hydra.run.dir={root / 'edgelist'}"],
        "image": [*MAIN, *IMG, "dataset=digits", f"hydra.run.dir={root / 'image'}"],
    }
    for name, argv in jobs.items():
        proc = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise SystemExit(f"fixture {name} failed:\n{proc.stdout}\n{proc.stderr}")
        FIXTURES[name] = root / name


def copy_run(tmp: Path, which: str = "graph") -> Path:
    target = tmp / "run"
    shutil.copytree(FIXTURES[which], target)
    return target


def edit_checkpoint(path: Path, edit) -> None:
    import torch
    payload = torch.load(path, weights_only=True)
    edit(payload)
    torch.save(payload, path)


def edit_config(path: Path, edit) -> None:
    import yaml

    def apply(payload):
        cfg = yaml.safe_load(payload["config"])
        edit(cfg)
        payload["config"] = yaml.safe_dump(cfg)
    edit_checkpoint(path, apply)


def predict_cases() -> list[Case]:
    cases = []

    def add(name, setup, check=None, marker=None):
        cases.append(Case(f"predict/{name}", "predict", setup, check, marker))

    add("ok-graph", lambda tmp: [*PREDICT, str(copy_run(tmp))], expect_files("embeddings.npy"))
    add("ok-image", lambda tmp: [*PREDICT, str(copy_run(tmp, "image"))], expect_files("samples.npy"))
    add("missing-run-dir", lambda tmp: [*PREDICT, str(tmp / "nope")])
    add("run-dir-is-file", lambda tmp: [*PREDICT, str((tmp / "f").write_text("x") and tmp / "f")])
    add("no-args", lambda tmp: [*PREDICT])
    add("bad-which", lambda tmp: [*PREDICT, str(copy_run(tmp)), "--which", "middle"])

    def no_ckpt(tmp):
        run = copy_run(tmp)
        for p in run.glob("*.pt"):
            p.unlink()
        return [*PREDICT, str(run)]
    add("no-checkpoints", no_ckpt)

    def only_best(tmp):
        run = copy_run(tmp)
        (run / "last.pt").unlink()
        return [*PREDICT, str(run), "--which", "last"]
    add("which-last-only-best", only_best)

    def truncated(tmp):
        run = copy_run(tmp)
        for p in run.glob("*.pt"):
            p.write_bytes(p.read_bytes()[:500])
        return [*PREDICT, str(run)]
    add("truncated-checkpoint", truncated)

    def empty_ckpt(tmp):
        run = copy_run(tmp)
        for p in run.glob("*.pt"):
            p.write_bytes(b"")
        return [*PREDICT, str(run)]
    add("empty-checkpoint", empty_ckpt)

    def ckpt_dir(tmp):
        run = copy_run(tmp)
        for p in run.glob("*.pt"):
            p.unlink()
            p.mkdir()
        return [*PREDICT, str(run)]
    add("checkpoint-is-directory", ckpt_dir)

    def other_format(tmp):
        import torch
        run = copy_run(tmp)
        for p in run.glob("*.pt"):
            torch.save({"model": torch.zeros(3)}, p)
        return [*PREDICT, str(run)]
    add("checkpoint-other-format", other_format)

    def plain_tensor(tmp):
        import torch
        run = copy_run(tmp)
        for p in run.glob("*.pt"):
            torch.save(torch.zeros(3), p)
        return [*PREDICT, str(run)]
    add("checkpoint-plain-tensor", plain_tensor)

    def pickle_exec(tmp):
        run = copy_run(tmp)
        import pickle

        class Boom:
            def __reduce__(self):
                return (os.system, (f"touch {tmp / 'EXECUTED'}",))
        for p in run.glob("*.pt"):
            p.write_bytes(pickle.dumps(Boom()))
        return [*PREDICT, str(run)]
    add("checkpoint-pickle-exec", pickle_exec, marker="EXECUTED")

    def target_edit(key_path, value, name):
        def setup(tmp):
            run = copy_run(tmp)

            def edit(cfg):
                node = cfg
                for k in key_path[:-1]:
                    node = node.setdefault(k, {})
                node[key_path[-1]] = value(tmp) if callable(value) else value
            for p in run.glob("*.pt"):
                edit_config(p, edit)
            return [*PREDICT, str(run)]
        add(name, setup, marker="EXECUTED")

    target_edit(["model", "_target_"], "os.system", "stored-model-target-os-system")
    target_edit(["dataset", "loader"], lambda tmp: {"_target_": "os.system", "_args_": [f"touch {tmp}/EXECUTED"]},
                "stored-loader-os-system")
    target_edit(["trainer"], lambda tmp: {"_target_": "subprocess.run", "args": ["touch", f"{tmp}/EXECUTED"]},
                "stored-trainer-subprocess")
    target_edit(["model", "extra"], lambda tmp: [{"_target_": "os.system", "command": f"touch {tmp}/EXECUTED"}],
                "stored-target-in-list")
    target_edit(["_target_"], "os.system", "stored-top-level-target")
    target_edit(["model", "_target_"], 5, "stored-target-not-string")
    target_edit(["model", "_target_"], "vgae_toolkit.models.graph.GraphAutoEncoder ", "stored-target-trailing-space")
    target_edit(["dataset", "loader", "path"], "${oc.env:HOME}", "stored-interpolation-env")
    target_edit(["seed"], "${now:%Y}", "stored-interpolation-now")
    target_edit(["dataset", "loader", "_target_"], "vgae_toolkit.data.images.load_array",
                "stored-loader-other-builder")
    target_edit(["model", "_partial_"], True, "stored-partial-flag")
    target_edit(["model", "_args_"], lambda tmp: [f"touch {tmp}/EXECUTED"], "stored-args-on-builder")
    target_edit(["model", "_convert_"], "all", "stored-convert-flag")
    target_edit(["hydra"], lambda tmp: {"callbacks": {"x": {"_target_": "os.system",
                                                             "command": f"touch {tmp}/EXECUTED"}}},
                "stored-hydra-callback")
    target_edit(["seed"], "abc", "stored-seed-string")
    target_edit(["seed"], None, "stored-seed-null")
    target_edit(["dataset", "kind"], "image", "stored-kind-mismatch")
    target_edit(["dataset", "kind"], "table", "stored-kind-unknown")
    target_edit(["model", "hidden"], 64, "stored-wrong-width")
    target_edit(["model", "hidden"], "abc", "stored-width-string")
    target_edit(["dataset", "loader", "num_nodes"], 10**12, "stored-huge-num-nodes")
    target_edit(["dataset", "loader", "num_nodes"], -3, "stored-negative-num-nodes")
    target_edit(["split", "val_frac"], "abc", "stored-split-string")
    target_edit(["trainer", "device"], "cuda", "stored-device-cuda")
    target_edit(["model", "recon"], "foo", "stored-recon-unknown")

    def yaml_tag(tmp):
        run = copy_run(tmp)

        def edit(payload):
            payload["config"] = f"!!python/object/apply:os.system ['touch {tmp}/EXECUTED']"
        for p in run.glob("*.pt"):
            edit_checkpoint(p, edit)
        return [*PREDICT, str(run)]
    add("stored-yaml-python-tag", yaml_tag, marker="EXECUTED")

    def yaml_bomb(tmp):
        run = copy_run(tmp)
        lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
        for i in range(1, 9):
            lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")

        def edit(payload):
            payload["config"] = "\n".join(lines) + "\n"
        for p in run.glob("*.pt"):
            edit_checkpoint(p, edit)
        return [*PREDICT, str(run)]
    add("stored-yaml-alias-bomb", yaml_bomb)

    def config_not_yaml(tmp):
        run = copy_run(tmp)
        for p in run.glob("*.pt"):
            edit_checkpoint(p, lambda payload: payload.__setitem__("config", "{{{"))
        return [*PREDICT, str(run)]
    add("stored-config-garbage", config_not_yaml)

    def config_list(tmp):
        run = copy_run(tmp)
        for p in run.glob("*.pt"):
            edit_checkpoint(p, lambda payload: payload.__setitem__("config", "- a\n- b\n"))
        return [*PREDICT, str(run)]
    add("stored-config-list", config_list)

    def state_dict_wrong(tmp):
        import torch
        run = copy_run(tmp)
        for p in run.glob("*.pt"):
            edit_checkpoint(p, lambda payload: payload.__setitem__("state_dict", {"w": torch.zeros(2)}))
        return [*PREDICT, str(run)]
    add("state-dict-wrong", state_dict_wrong)

    def state_dict_not_dict(tmp):
        run = copy_run(tmp)
        for p in run.glob("*.pt"):
            edit_checkpoint(p, lambda payload: payload.__setitem__("state_dict", [1, 2]))
        return [*PREDICT, str(run)]
    add("state-dict-list", state_dict_not_dict)

    def state_dict_nan(tmp):
        run = copy_run(tmp)

        def edit(payload):
            for v in payload["state_dict"].values():
                v.fill_(float("nan"))
        for p in run.glob("*.pt"):
            edit_checkpoint(p, edit)
        return [*PREDICT, str(run)]
    add("state-dict-nan", state_dict_nan)

    def metrics_not_dict(tmp):
        run = copy_run(tmp, "edgelist")
        for p in run.glob("*.pt"):
            edit_checkpoint(p, lambda payload: payload.__setitem__("metrics", [1]))
        return [*PREDICT, str(run)]
    add("metrics-not-dict", metrics_not_dict, expect_files("embeddings.npy"))

    def pairs(content: str | bytes, name="pairs.csv", which="edgelist", extra=()):
        def setup(tmp):
            run = copy_run(tmp, which)
            p = tmp / name
            p.write_bytes(content if isinstance(content, bytes) else content.encode())
            return [*PREDICT, str(run), "--pairs", str(p), *extra]
        return setup

    add("pairs-ok", pairs("v0,v1\nv2,v7\n"), expect_files("scores.csv"))
    add("pairs-header", pairs("source,target\nv0,v1\n"), expect_files("scores.csv"))
    add("pairs-unknown-ids", pairs("v0,zzz\n"))
    add("pairs-empty", pairs(""))
    add("pairs-header-only", pairs("source,target\n"))
    add("pairs-one-column", pairs("v0\nv1\n"))
    add("pairs-extra-columns", pairs("v0,v1,0.5\n"), expect_files("scores.csv"))
    add("pairs-binary", pairs(os.urandom(2000)))
    add("pairs-latin1", pairs("v0\xe9,v1\n".encode("latin-1")))
    add("pairs-bom", pairs("\ufeffv0,v1\n"), expect_files("scores.csv"))
    add("pairs-tsv", pairs("v0\tv1\n", name="pairs.tsv"), expect_files("scores.csv"))
    add("pairs-huge", pairs("".join(f"v{i % 20},v{(i * 7) % 20}\n" for i in range(200_000))),
        expect_files("scores.csv"))
    add("pairs-on-image-run", pairs("0,1\n", which="image"))
    add("pairs-sbm-int-ids", pairs("0,1\n5,99\n", which="graph"), expect_files("scores.csv"))
    add("pairs-sbm-out-of-range", pairs("0,100\n", which="graph"))
    add("pairs-sbm-negative", pairs("-1,0\n", which="graph"))
    add("pairs-missing-file", lambda tmp: [*PREDICT, str(copy_run(tmp, "edgelist")), "--pairs", str(tmp / "no.csv")])
    add("pairs-directory", lambda tmp: [*PREDICT, str(copy_run(tmp, "edgelist")), "--pairs", str(tmp)])
    add("pairs-self-pair", pairs("v0,v0\n"), expect_files("scores.csv"))

    def out_is_file(tmp):
        run = copy_run(tmp)
        (tmp / "f").write_text("x")
        return [*PREDICT, str(run), "--out", str(tmp / "f")]
    add("out-is-file", out_is_file)

    def out_below_file(tmp):
        run = copy_run(tmp)
        (tmp / "f").write_text("x")
        return [*PREDICT, str(run), "--out", str(tmp / "f" / "sub")]
    add("out-below-file", out_below_file)

    def out_readonly(tmp):
        run = copy_run(tmp)
        ro = tmp / "ro"
        ro.mkdir()
        ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
        return [*PREDICT, str(run), "--out", str(ro / "sub")]
    add("out-read-only", out_readonly)

    def out_proc(tmp):
        return [*PREDICT, str(copy_run(tmp)), "--out", "/proc/nope"]
    add("out-in-proc", out_proc)

    def data_dir_missing(tmp):
        run = copy_run(tmp, "edgelist")
        (FIXTURES["edgelist"].parent / "edges.csv")  # the run names an absolute path: a moved file is missing
        cfg_edit = lambda cfg: cfg["dataset"]["loader"].__setitem__("path", str(tmp / "moved.csv"))  # noqa: E731
        for p in run.glob("*.pt"):
            edit_config(p, cfg_edit)
        return [*PREDICT, str(run)]
    add("graph-file-gone", data_dir_missing)

    def graph_changed(tmp):
        run = copy_run(tmp, "edgelist")
        new = write_edges(tmp / "e.csv", ring(30, "v"))
        for p in run.glob("*.pt"):
            edit_config(p, lambda cfg: cfg["dataset"]["loader"].__setitem__("path", str(new)))
        return [*PREDICT, str(run)]

    def changed_check(tmp, rc, out):
        if rc == 0 and "changed" not in out:
            return "predicted on a different graph without a warning"
        return None
    add("graph-file-changed", graph_changed, changed_check)

    add("data-dir-is-file", lambda tmp: [*PREDICT, str(copy_run(tmp, "image")), "--data-dir",
                                         str((tmp / "f").write_text("x") and tmp / "f")], expect_files("samples.npy"))
    return cases


# ----------------------------------------------------------------------------- report

def report_cases() -> list[Case]:
    cases = []

    def add(name, setup, check=None):
        cases.append(Case(f"report/{name}", "report", setup, check))

    def tree(files: dict):
        def make(tmp):
            root = tmp / "runs"
            root.mkdir()
            for rel, content in files.items():
                p = root / rel
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(content if isinstance(content, bytes) else content.encode())
            return root
        return make

    def metrics(**kw):
        base = {"status": "complete", "model": "gae", "dataset": "cora", "features": True, "seed": 0,
                "test_auc": 0.9, "test_ap": 0.9, "wall_seconds": 1.0, "config": {"model": {"name": "gae"}}}
        base.update(kw)
        return json.dumps(base)

    add("empty-folder", lambda tmp: [*REPORT, str(tree({})(tmp))])
    add("missing-folder", lambda tmp: [*REPORT, str(tmp / "nope")])
    add("file-not-folder", lambda tmp: [*REPORT, str((tmp / "f").write_text("x") and tmp / "f")])
    add("garbage-json", lambda tmp: [*REPORT, str(tree({"a/metrics.json": "{{{", "b/metrics.json": b"\xff\xfe"})(tmp))])
    add("json-list", lambda tmp: [*REPORT, str(tree({"a/metrics.json": "[1,2]"})(tmp))])
    add("json-wrong-types", lambda tmp: [*REPORT, str(tree({"a/metrics.json": metrics(test_auc="high", seed=[1],
                                                                                      model=5)})(tmp))])
    add("json-nan", lambda tmp: [*REPORT, str(tree({"a/metrics.json": metrics(test_auc=float("nan"))})(tmp))])
    add("json-huge-number", lambda tmp: [*REPORT, str(tree({"a/metrics.json": metrics().replace("0.9", "1e999")})(
        tmp))])
    add("json-deep-nesting", lambda tmp: [*REPORT, str(tree({"a/metrics.json": "[" * 100000 + "]" * 100000})(tmp))])
    add("nested-runs", lambda tmp: [*REPORT, str(tree({"a/metrics.json": metrics(),
                                                       "a/b/metrics.json": metrics(seed=1),
                                                       "a/b/c/metrics.json": metrics(seed=2)})(tmp))])
    add("metrics-is-dir", lambda tmp: [*REPORT, str(tree({"a/metrics.json/x": "1"})(tmp))])
    add("config-not-string", lambda tmp: [*REPORT, str(tree({"a/metrics.json": metrics(config=[1, 2])})(tmp))])
    add("config-bad-yaml", lambda tmp: [*REPORT, str(tree({"a/metrics.json": metrics(config="{{{: [")})(tmp))])
    add("config-interpolation", lambda tmp: [*REPORT, str(tree({"a/metrics.json": metrics(
        config={"model": {"name": "${oc.env:HOME}"}})})(tmp))])
    add("image-run-metrics", lambda tmp: [*REPORT, str(tree({"a/metrics.json": metrics(
        model="vae", dataset="digits", test_auc=None, test_ap=None, test_elbo=-50.0)})(tmp))])

    def paper(content):
        def setup(tmp):
            root = tree({"a/metrics.json": metrics()})(tmp)
            (tmp / "paper.csv").write_bytes(content if isinstance(content, bytes) else content.encode())
            return [*REPORT, str(root), "--paper", str(tmp / "paper.csv")]
        return setup

    add("paper-ok", paper("row,dataset,metric,mean,sd\nGAE,cora,auc,91.0,0.02\n"))
    add("paper-missing-columns", paper("row,dataset\nGAE,cora\n"))
    add("paper-non-numeric", paper("row,dataset,metric,mean,sd\nGAE,cora,auc,high,low\n"))
    add("paper-empty", paper(""))
    add("paper-binary", paper(os.urandom(1000)))
    add("paper-missing-file", lambda tmp: [*REPORT, str(tree({"a/metrics.json": metrics()})(tmp)), "--paper",
                                           str(tmp / "nope.csv")])
    add("paper-directory", lambda tmp: [*REPORT, str(tree({"a/metrics.json": metrics()})(tmp)), "--paper", str(tmp)])
    add("paper-duplicate-rows", paper("row,dataset,metric,mean,sd\nGAE,cora,auc,91,1\nGAE,cora,auc,92,1\n"))
    add("paper-unknown-metric", paper("row,dataset,metric,mean,sd\nGAE,cora,f1,91,1\n"))

    def out_ro(tmp):
        root = tree({"a/metrics.json": metrics()})(tmp)
        ro = tmp / "ro"
        ro.mkdir()
        ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
        return [*REPORT, str(root), "--out", str(ro / "table")]
    add("out-read-only", out_ro)

    def out_dir(tmp):
        root = tree({"a/metrics.json": metrics()})(tmp)
        (tmp / "table.md").mkdir()
        return [*REPORT, str(root), "--out", str(tmp / "table")]
    add("out-md-is-directory", out_dir)

    def out_below_file(tmp):
        root = tree({"a/metrics.json": metrics()})(tmp)
        (tmp / "f").write_text("x")
        return [*REPORT, str(root), "--out", str(tmp / "f" / "table")]
    add("out-below-file", out_below_file)

    add("real-run", lambda tmp: [*REPORT, str(FIXTURES["graph"])])
    add("real-image-run", lambda tmp: [*REPORT, str(FIXTURES["image"])])
    return cases


# ----------------------------------------------------------------------------- paths and signals

def path_cases() -> list[Case]:
    cases = []

    def add(name, setup, check=None, runner=None):
        cases.append(Case(f"paths/{name}", "paths", setup, check, runner=runner))

    def output_is_file(tmp):
        (tmp / "outfile").write_text("x")
        return [*MAIN, *SBM, f"paths.output_dir={tmp / 'outfile'}"]
    add("output-dir-is-file", output_is_file)

    def output_read_only(tmp):
        ro = tmp / "ro"
        ro.mkdir()
        ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
        return [*MAIN, *SBM, f"paths.output_dir={ro}"]
    add("output-dir-read-only", output_read_only)

    def run_dir_is_file(tmp):
        (tmp / "rd").write_text("x")
        return [*MAIN, *SBM, f"hydra.run.dir={tmp / 'rd'}"]
    add("run-dir-is-file", run_dir_is_file)

    def data_dir_missing(tmp):
        write_edges(tmp / "g.csv", ring())
        return [*edgelist("g2.csv"), f"paths.data_dir={tmp / 'nope'}"]
    add("data-dir-missing", data_dir_missing)

    def data_dir_file(tmp):
        (tmp / "df").write_text("x")
        return [*MAIN, *IMG, "dataset=mnist", f"paths.data_dir={tmp / 'df'}", "paths.download=false"]
    add("data-dir-is-file", data_dir_file)

    def cora_offline(tmp):
        return [*MAIN, "dataset=cora", *TINY, f"paths.data_dir={tmp / 'empty'}", "paths.download=true"]
    add("cora-download-offline", cora_offline)

    def planetoid_garbage(tmp):
        raw = tmp / "d" / "Planetoid" / "Cora" / "raw"
        raw.mkdir(parents=True)
        for suffix in ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index"):
            (raw / f"ind.cora.{suffix}").write_bytes(os.urandom(200))
        return [*MAIN, "dataset=cora", *TINY, f"paths.data_dir={tmp / 'd'}", "paths.download=false"]
    add("planetoid-garbage-files", planetoid_garbage)

    def mnist_garbage(tmp):
        raw = tmp / "d" / "MNIST" / "raw"
        raw.mkdir(parents=True)
        for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                     "t10k-labels-idx1-ubyte"):
            (raw / name).write_bytes(b"\x00\x00\x08\x03" + os.urandom(100))
        return [*MAIN, *IMG, "dataset=mnist", f"paths.data_dir={tmp / 'd'}", "paths.download=false"]
    add("mnist-garbage-files", mnist_garbage)

    def same_dir_other_config(tmp):
        first = subprocess.run([*MAIN, *SBM, f"hydra.run.dir={tmp / 'rd'}"], cwd=tmp, env=ENV, capture_output=True)
        assert first.returncode == 0, first.stderr
        return [*MAIN, *SBM, "trainer.lr=0.02", f"hydra.run.dir={tmp / 'rd'}"]
    add("same-dir-other-config", same_dir_other_config)

    def interrupted(sig, delay):
        def runner(tmp, argv, env, timeout):
            proc = subprocess.Popen(argv, cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True)
            time.sleep(delay)
            proc.send_signal(sig)
            try:
                out, _ = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                return None, proc.communicate()[0], True
            first_rc = proc.returncode
            again = subprocess.run(argv, cwd=tmp, env=env, capture_output=True, text=True, timeout=timeout)
            out += f"\n--- first exit {first_rc}; resumed run ---\n" + again.stdout + again.stderr
            return again.returncode, out, False
        return runner

    def long_run(tmp):
        return [*MAIN, "dataset=sbm", "dataset.loader.num_nodes=2000", "trainer.epochs=400",
                "trainer.progress=false", f"hydra.run.dir={tmp / 'rd'}"]

    def resumed(tmp, rc, out):
        if rc != 0:
            return None
        m = metrics_of_dir(tmp / "rd")
        if not m or m.get("status") != "complete" or m.get("selected_epoch") != 400:
            return f"resumed run did not complete: {m and m.get('status')}, epoch {m and m.get('selected_epoch')}"
        return None

    add("sigterm-then-resume", long_run, resumed, runner=interrupted(signal.SIGTERM, 9))
    add("sigint-then-resume", long_run, resumed, runner=interrupted(signal.SIGINT, 9))
    add("sigterm-at-start-then-run", long_run, resumed, runner=interrupted(signal.SIGTERM, 0.5))
    return cases


def metrics_of_dir(folder: Path) -> dict | None:
    try:
        return json.loads((folder / "metrics.json").read_text())
    except (OSError, ValueError):
        return None


# ----------------------------------------------------------------------------- running

ENV: dict = {}


def classify(case: Case, tmp: Path, rc, out: str, hung: bool) -> tuple[str, str]:
    if case.marker and (tmp / case.marker).exists():
        return "EXEC", f"{case.marker} was created"
    if hung:
        return "HANG", "time limit reached"
    if "Traceback (most recent call last)" in out:
        last = [line for line in out.strip().splitlines() if line.strip()]
        return "RAW", (last[-1] if last else "")[:200]
    if case.check:
        reason = case.check(tmp, rc, out)
        if reason:
            return "SILENT", reason
    lines = [line for line in out.splitlines() if line.startswith("error: ")]
    if rc == 0:
        return "OK", "exit 0"
    if lines:
        return "OK", lines[-1][:200]
    tail = [line for line in out.strip().splitlines() if line.strip()]
    return "OK", f"exit {rc}: " + (tail[-2] if len(tail) > 1 and "HYDRA_FULL_ERROR" in tail[-1]
                                   else (tail[-1] if tail else ""))[:200]


def run_case(case: Case, timeout: float) -> Result:
    tmp = Path(tempfile.mkdtemp(prefix="fuzz-"))
    env = dict(ENV, VGAE_TOOLKIT_OUTPUT=str(tmp / "out"))
    start = time.monotonic()
    try:
        try:
            argv = case.setup(tmp)
        except Exception as err:  # noqa: BLE001 - a broken case is reported, not fatal
            return Result(case, "SETUP", None, 0.0, f"{type(err).__name__}: {err}")
        if case.runner:
            rc, out, hung = case.runner(tmp, argv, env, timeout)
        else:
            try:
                proc = subprocess.run(argv, cwd=tmp, env=env, capture_output=True, text=True, timeout=timeout,
                                      errors="replace", stdin=subprocess.DEVNULL)
                rc, out, hung = proc.returncode, proc.stdout + proc.stderr, False
            except subprocess.TimeoutExpired as err:
                rc, hung = None, True
                out = err.stdout or ""
                out = out.decode(errors="replace") if isinstance(out, bytes) else out
        verdict, detail = classify(case, tmp, rc, out, hung)
        return Result(case, verdict, rc, time.monotonic() - start, detail, {"output": out[-4000:]})
    finally:
        for p in tmp.rglob("*"):  # read-only folders made by a case
            try:
                if p.is_dir() and not p.is_symlink():
                    p.chmod(0o755)
                elif p.is_file() and not p.is_symlink():
                    p.chmod(0o644)
            except OSError:
                pass
        shutil.rmtree(tmp, ignore_errors=True)


def all_cases() -> list[Case]:
    return [*edge_cases(), *feature_cases(), *image_cases(), *config_cases(), *predict_cases(), *report_cases(),
            *path_cases()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the table to this markdown file")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=120)
    parser.add_argument("--only", default="",
                        help="run the cases whose name holds one of these comma-separated substrings")
    parser.add_argument("--verbose", action="store_true", help="print the output of every non-OK case")
    parser.add_argument("--rerun", type=Path, help="run only the cases not OK in this earlier --out table")
    args = parser.parse_args(argv)

    ENV.update(os.environ)
    ENV.setdefault("MPLBACKEND", "Agg")
    ENV.setdefault("OMP_NUM_THREADS", "1")
    ENV["PYTHONPATH"] = str(REPO) + os.pathsep + ENV.get("PYTHONPATH", "")
    ENV.pop("HYDRA_FULL_ERROR", None)
    cases = [c for c in all_cases() if any(part in c.name for part in args.only.split(","))]
    if args.rerun:
        earlier = {cells[1].strip("` ") for cells in (line.split(" | ") for line in args.rerun.read_text().splitlines())
                   if len(cells) > 3 and cells[2].strip() not in ("OK", "verdict")}
        cases = [c for c in cases if c.name in earlier]
    fixtures = Path(tempfile.mkdtemp(prefix="fuzz-fixtures-"))
    try:
        if any(c.kind in ("predict", "report") for c in cases):
            make_fixtures(fixtures, dict(ENV, VGAE_TOOLKIT_OUTPUT=str(fixtures / "out")))
        with ThreadPoolExecutor(args.jobs) as pool:
            def one(case: Case) -> Result:
                result = run_case(case, args.timeout)
                print(f"[{result.verdict}] {case.name} ({result.seconds:.0f} s)", file=sys.stderr, flush=True)
                return result
            results = list(pool.map(one, cases))
    finally:
        shutil.rmtree(fixtures, ignore_errors=True)

    counts: dict[str, int] = {}
    for r in results:
        counts[r.verdict] = counts.get(r.verdict, 0) + 1
    raw_pct = 100.0 * counts.get("RAW", 0) / max(len(results), 1)
    lines = ["| # | case | verdict | exit | s | detail |", "|---|---|---|---|---|---|"]
    for i, r in enumerate(results, 1):
        detail = r.detail.replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {i} | `{r.case.name}` | {r.verdict} | {r.rc} | {r.seconds:.1f} | {detail} |")
    totals = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    summary = f"**{len(results)} cases: {totals}; RAW {raw_pct:.1f}%**"
    text = "\n".join(["# Bad-input campaign", "", summary, "", *lines, ""])
    print(text)
    if args.verbose:
        for r in results:
            if r.verdict != "OK":
                print(f"\n===== {r.case.name} [{r.verdict}]\n{r.extra.get('output', '')}")
    if args.out:
        args.out.write_text(text)
    bad = sum(counts.get(k, 0) for k in ("HANG", "SILENT", "EXEC"))
    return 1 if bad or raw_pct >= 5 else 0


if __name__ == "__main__":
    sys.exit(main())
