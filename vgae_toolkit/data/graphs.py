"""Graph datasets for link prediction, all returned as one undirected ``Data`` object.

Every loader returns ``Data(x, edge_index, num_nodes[, y, *_mask])`` with ``edge_index`` holding
both directions of each undirected edge, sorted, without self-loops or duplicates. Files
are only read, never written: the data folder may be shared and read-only.
"""
from __future__ import annotations

import csv
import hashlib
import logging
import pickle
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Data
from torch_geometric.utils import coalesce, remove_self_loops, to_undirected

from vgae_toolkit.errors import ConfigError, DataError

log = logging.getLogger(__name__)

PLANETOID_NAMES = {"cora": "Cora", "citeseer": "CiteSeer", "pubmed": "PubMed"}
PLANETOID_SUFFIXES = ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")


def clean_edges(edge_index: torch.Tensor, num_nodes: int) -> tuple[torch.Tensor, dict[str, int]]:
    """Symmetrise, drop self-loops and duplicates; returns the edges and what was dropped."""
    loops = int((edge_index[0] == edge_index[1]).sum())
    edge_index, _ = remove_self_loops(edge_index)
    directed = coalesce(edge_index, num_nodes=num_nodes)
    duplicates = edge_index.size(1) - directed.size(1)
    undirected = to_undirected(directed, num_nodes=num_nodes)
    return undirected, {"self_loops": loops, "duplicates": duplicates, "added_reverse": undirected.size(1) - directed.size(1)}


def load_planetoid(root: str | Path, *, name: str, download: bool = True) -> Data:
    """Cora, CiteSeer or PubMed (Yang et al. 2016 files) from ``root/Planetoid/<Name>/raw``.

    The raw files are parsed directly, so nothing is written next to them. When they are
    missing and ``download`` is set, PyG's ``Planetoid`` fetches them into ``root``.

    Args:
        root (str or Path): the data root (``paths.data_dir``).
        name (str): ``cora``, ``citeseer`` or ``pubmed`` (any case).
        download (bool): try to download missing files (needs network and a writable root).

    Returns:
        Data: ``x``, ``edge_index``, ``y`` and the public split's ``train_mask``, ``val_mask`` and
        ``test_mask`` (read for node classification of embeddings only; the link split ignores them).
    """
    from torch_geometric.io import read_planetoid_data

    key = name.lower()
    if key not in PLANETOID_NAMES:
        raise DataError(f"unknown Planetoid dataset {name!r}; expected one of {sorted(PLANETOID_NAMES)}")
    folder = PLANETOID_NAMES[key]
    raw = Path(root).expanduser() / "Planetoid" / folder / "raw"
    missing = [s for s in PLANETOID_SUFFIXES if not (raw / f"ind.{key}.{s}").is_file()]
    if missing and download:
        _download_planetoid(Path(root).expanduser(), folder, raw)
        missing = [s for s in PLANETOID_SUFFIXES if not (raw / f"ind.{key}.{s}").is_file()]
    if missing:
        raise DataError(
            f"dataset {key!r}: files ind.{key}.{{{','.join(missing)}}} not found in {raw}. "
            "Point the toolkit at the folder holding Planetoid/ with paths.data_dir=... "
            "or the VGAE_TOOLKIT_DATA environment variable (or allow a download on a networked machine)."
        )
    for suffix in PLANETOID_SUFFIXES:
        if suffix != "test.index":
            check_planetoid_pickle(raw / f"ind.{key}.{suffix}")
    try:
        data = read_planetoid_data(str(raw), key)
    except Exception as err:  # pickles of another layout raise many types; name the folder
        raise DataError(f"dataset {key!r}: could not parse the files in {raw}: {type(err).__name__}: {err}") from err
    edge_index, _ = clean_edges(data.edge_index, data.num_nodes)
    # the public split (Yang et al. 2016; Cora: 140 training, 500 validation, 1000 test nodes)
    return Data(x=data.x, edge_index=edge_index, y=data.y, num_nodes=data.num_nodes, train_mask=data.train_mask,
                val_mask=data.val_mask, test_mask=data.test_mask)


# What the Planetoid pickles may construct: numpy arrays, scipy CSR matrices, a dict of lists.
PLANETOID_GLOBALS = {
    ("numpy", "dtype"), ("numpy", "ndarray"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"), ("scipy.sparse.csr", "csr_matrix"),
    ("scipy.sparse._csr", "csr_matrix"), ("collections", "defaultdict"), ("__builtin__", "list"),
    ("builtins", "list"), ("copy_reg", "_reconstructor"), ("__builtin__", "object"),
}


class _PlanetoidUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in PLANETOID_GLOBALS:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a Planetoid file")
        if module == "__builtin__":
            module = "builtins"
        return super().find_class(module, name)


def check_planetoid_pickle(path: Path) -> None:
    """Check one Planetoid pickle before PyG reads it.

    Only plain arrays, CSR matrices and the adjacency dict may be constructed (a pickle can
    otherwise run code), and sparse matrices must be well formed (a damaged index array
    would make the sparse-to-dense conversion read out of bounds).
    """
    try:
        with open(path, "rb") as fh:
            obj = _PlanetoidUnpickler(fh, encoding="latin1").load()
        if hasattr(obj, "check_format"):
            obj.check_format(full_check=True)
        elif isinstance(obj, dict):
            for node, neighbours in obj.items():
                if not isinstance(node, (int, np.integer)) or not all(isinstance(v, (int, np.integer)) for v in neighbours):
                    raise ValueError("the adjacency dict must map integer node ids to lists of integers")
        elif not isinstance(obj, np.ndarray):
            raise ValueError(f"unexpected object of type {type(obj).__name__}")
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            OverflowError, MemoryError, UnicodeDecodeError, ImportError) as err:
        raise DataError(f"Planetoid file {path} is damaged or not a Planetoid file ({type(err).__name__}: {err}); "
                        "copy it again from the original dataset") from err


def _download_planetoid(root: Path, folder: str, raw: Path) -> None:
    from torch_geometric.datasets import Planetoid

    log.info("%s not found in %s: trying to download it", folder, raw)
    try:
        Planetoid(str(root / "Planetoid"), folder)
    except Exception as err:  # network and permission errors come in many types
        log.warning("download of %s failed: %s: %s", folder, type(err).__name__, err)


def load_karate(root: str | Path | None = None) -> Data:
    """Zachary's karate club (34 nodes, 78 edges), shipped inside PyG: no files needed."""
    from torch_geometric.datasets import KarateClub

    data = KarateClub()[0]
    edge_index, _ = clean_edges(data.edge_index, data.num_nodes)
    return Data(x=data.x, edge_index=edge_index, y=data.y, num_nodes=data.num_nodes)


def bernoulli_positions(total: int, p: float, generator: torch.Generator) -> torch.Tensor:
    """Sorted positions in ``[0, total)``, each kept independently with probability ``p``.

    Exact and O(total * p) rather than O(total): the gaps between kept positions are
    Geometric(p), so only the kept positions are ever drawn.
    """
    if total <= 0 or p <= 0.0:
        return torch.empty(0, dtype=torch.long)
    if p >= 1.0:
        return torch.arange(total)
    chunks, start = [], -1  # position of the last kept one
    while start < total:
        expected = (total - start) * p
        count = int(expected + 6 * expected ** 0.5 + 16)
        gaps = torch.empty(count, dtype=torch.float64).geometric_(p, generator=generator)
        positions = start + gaps.cumsum(0).long()
        chunks.append(positions)
        start = int(positions[-1])
    positions = torch.cat(chunks)
    return positions[positions < total]


def sbm_edges(sizes: torch.Tensor, p_in: float, p_out: float, generator: torch.Generator) -> torch.Tensor:
    """Undirected stochastic-block-model edges ``[2, 2E]`` (both directions), in O(N + E).

    Every pair {i, j} of the same block is an edge with probability ``p_in``, of different
    blocks with ``p_out``, independently: the distribution of an O(N^2) Bernoulli matrix,
    sampled by skipping over non-edges (:func:`bernoulli_positions`) block by block.
    """
    num_nodes = int(sizes.sum())
    offsets = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)])
    block = torch.repeat_interleave(torch.arange(sizes.numel()), sizes)
    # Within blocks: the s x s grids of all blocks laid end to end; keep row < column.
    areas = torch.cat([sizes.new_zeros(1), (sizes * sizes).cumsum(0)])
    pos = bernoulli_positions(int(areas[-1]), p_in, generator)
    b = torch.searchsorted(areas, pos, right=True) - 1
    local = pos - areas[b]
    row, col = offsets[b] + local // sizes[b], offsets[b] + local % sizes[b]
    keep = row < col
    inside = torch.stack([row[keep], col[keep]])
    # Between blocks: the N x N grid; keep row < column in different blocks.
    pos = bernoulli_positions(num_nodes * num_nodes, p_out, generator)
    row, col = pos // num_nodes, pos % num_nodes
    keep = (row < col) & (block[row] != block[col])
    between = torch.stack([row[keep], col[keep]])
    edges = torch.cat([inside, between], dim=1)
    return torch.cat([edges, edges.flip(0)], dim=1)


def make_sbm(
    root: str | Path | None = None,
    *,
    num_nodes: int = 1000,
    num_blocks: int = 20,
    p_in: float = 0.2,
    p_out: float = 0.0005,
    num_features: int = 64,
    feature_noise: float = 1.0,
    seed: int = 0,
) -> Data:
    """A seeded stochastic block model with community-correlated Gaussian features.

    ``num_blocks`` blocks of (nearly) equal size; pairs inside a block are linked with
    probability ``p_in``, across blocks with ``p_out``. Each block gets a random feature
    centroid; a node's features are its centroid plus ``feature_noise`` times standard normal
    noise, so features carry the block structure. Time and memory are O(N + E)
    (:func:`sbm_edges`), so graphs of millions of nodes take seconds.
    """
    if num_nodes < num_blocks or num_blocks < 1:
        raise DataError(f"sbm: need num_nodes >= num_blocks >= 1, got {num_nodes} nodes, {num_blocks} blocks")
    for key, p in (("p_in", p_in), ("p_out", p_out)):
        if not 0.0 <= p <= 1.0:
            raise DataError(f"sbm: {key} must be a probability in [0, 1], got {p}")
    gen = torch.Generator().manual_seed(seed)
    sizes = torch.full((num_blocks,), num_nodes // num_blocks, dtype=torch.long)
    sizes[: num_nodes % num_blocks] += 1
    edge_index = sbm_edges(sizes, p_in, p_out, gen)
    y = torch.repeat_interleave(torch.arange(num_blocks), sizes)
    centroids = torch.randn(num_blocks, num_features, generator=gen)
    x = centroids[y] + feature_noise * torch.randn(num_nodes, num_features, generator=gen)
    edge_index, _ = clean_edges(edge_index, num_nodes)
    return Data(x=x, edge_index=edge_index, y=y, num_nodes=num_nodes)


def load_edgelist(
    root: str | Path | None = None,
    *,
    path: str,
    source: str = "source",
    target: str = "target",
    sep: str | None = None,
    features: str | None = None,
    feature_id: str | None = None,
) -> Data:
    """A user's graph from an edge-list file (CSV/TSV) and optional node features.

    Node ids are strings, read as written apart from surrounding spaces: ``NA``, ``null`` or
    ``00`` are ids like any other (``00`` and ``0`` are two nodes). They are mapped to
    ``0..N-1`` in order of first appearance (nodes only in the feature file follow). An empty
    id is an error; self-loops and duplicate edges are dropped and reported; a directed list
    is symmetrised. ``data.source_sha256`` is the SHA-256 of the edge file's bytes followed
    by the feature file's, so that results can be traced back to the exact files.

    Args:
        root: the data root; a relative ``path`` is looked up there, then as given.
        path (str): the edge-list file.
        source, target (str): column names of the edge endpoints.
        sep (str, optional): column separator; ``None`` = tab for ``.tsv``, else comma.
        features (str, optional): node features, ``.npy`` (row ``i`` holds node id ``i``) or
            ``.csv`` with an id column; every value must be a finite number.
        feature_id (str, optional): the id column of a CSV feature file (default: first column).
    """
    import pandas as pd

    if source == target:  # one column for both endpoints: every edge would be a self-loop
        raise ConfigError(f"dataset.loader.source and dataset.loader.target both name column {source!r}; "
                          f"expected two different columns")
    file = _resolve(root, path, "dataset.loader.path")
    sep = sep or ("\t" if file.suffix.lower() in (".tsv", ".tab") else ",")
    frame = _read_table(file, "edge list", sep)
    for column, key in ((source, "source"), (target, "target")):
        if column not in frame.columns:
            raise DataError(
                f"edge list {file}: column {column!r} (dataset.loader.{key}) not found; columns are {list(frame.columns)}"
            )
    frame = frame[[source, target]]
    _refuse_empty(frame, "edge list", file, "every edge needs both endpoints")
    if frame.empty:
        raise DataError(f"edge list {file}: no edges")
    ids = pd.Index(pd.unique(frame.to_numpy().ravel()))
    x, files = None, [file]
    if features:
        files.append(_resolve(root, features, "dataset.loader.features"))
        ids, x = _read_features(files[1], ids, feature_id)
    src = torch.as_tensor(ids.get_indexer(frame[source]), dtype=torch.long)
    dst = torch.as_tensor(ids.get_indexer(frame[target]), dtype=torch.long)
    if (src < 0).any() or (dst < 0).any():
        raise DataError(f"edge list {file}: some node ids have no row in the feature file {files[-1]}")
    edge_index, dropped = clean_edges(torch.stack([src, dst]), len(ids))
    log.info("edge list %s: %d nodes, %d undirected edges; dropped %d self-loops and %d duplicates",
             file, len(ids), edge_index.size(1) // 2, dropped["self_loops"], dropped["duplicates"])
    return Data(x=x, edge_index=edge_index, num_nodes=len(ids), node_ids=list(map(str, ids)),
                source_sha256=file_sha256(*files))


def file_sha256(*files: Path) -> str:
    """Hex SHA-256 of the files' bytes, one after the other."""
    digest = hashlib.sha256()
    for file in files:
        with open(file, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _resolve(root: str | Path | None, path: str, key: str) -> Path:
    candidates = [Path(path).expanduser()]
    if root is not None and not Path(path).is_absolute():
        candidates.insert(0, Path(root).expanduser() / path)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise DataError(f"{key}: file {path!r} not found (looked in: {', '.join(str(c) for c in candidates)})")


def _read_table(file: Path, what: str, sep: str):
    """Every cell of a CSV/TSV file as a string without surrounding spaces, indexed by line number.

    No word means "missing" (``NA``, ``None``, ``null`` are ids in a graph), so an empty cell
    stays an empty string for the caller to refuse. Blank lines hold no data and are dropped,
    but still counted, so that the index is the line number an editor shows.
    """
    import pandas as pd

    try:
        # header=None: the first line is read as data and every line must have as many cells as it;
        # with a header, pandas would turn the first cells of longer rows into an index, silently
        # shifting every column by one.
        frame = pd.read_csv(file, sep=sep, dtype=str, keep_default_na=False, na_filter=False,
                            skip_blank_lines=False, skipinitialspace=True, header=None)
    except (ValueError, OSError, csv.Error, pd.errors.EmptyDataError) as err:  # parser and decoding errors
        raise DataError(f"{what} {file}: cannot be read as a table ({type(err).__name__}: {err})") from err
    frame = frame.apply(lambda column: column.str.strip())
    names = frame.iloc[0].tolist()
    repeated = sorted({name for name in names if name and names.count(name) > 1})
    if repeated:
        raise DataError(f"{what} {file}, line 1: column name(s) {repeated} appear more than once; "
                        f"every column needs its own name")
    frame = frame.iloc[1:]
    frame.columns = names
    frame.index = frame.index + 1  # the index counted lines from 0
    return frame[(frame != "").any(axis=1)]


def _refuse_empty(frame, what: str, file: Path, why: str) -> None:
    """A DataError naming the first line with an empty cell in ``frame``, if there is one."""
    empty = frame == ""
    rows = empty.any(axis=1)
    if rows.any():
        line = rows.idxmax()
        column = empty.columns[int(empty.loc[line].to_numpy().argmax())]
        raise DataError(f"{what} {file}, line {line}: the {column!r} cell is empty ({int(rows.sum())} line(s) "
                        f"with empty cells); {why}")


def _read_features(file: Path, ids, id_column: str | None):
    """The node ids (the edge list's, then any only in ``file``) and their float features."""
    if file.suffix.lower() == ".npy":
        return _npy_features(file, ids)
    return _csv_features(file, ids, id_column)


def _npy_features(file: Path, ids):
    import pandas as pd

    try:
        array = np.load(file, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise DataError(f"node features {file}: not a numeric .npy array ({err})") from err
    if not isinstance(array, np.ndarray) or array.ndim != 2:
        shape = getattr(array, "shape", "an archive, not one array")
        raise DataError(f"node features {file}: expected a 2-D array [nodes, features], got {shape}")
    # A .npy file has no id column: row i holds the features of node id i, written plainly
    # (an id such as 00 or +1 would otherwise share a row with 0 or 1).
    plain = [i for i in ids if not (i.isascii() and i.isdigit() and str(int(i)) == i)]
    if plain:
        raise DataError(
            f"node features {file}: a .npy feature file needs node ids written as 0..N-1, found ids "
            f"{plain[:5]}; use a CSV feature file with an id column for other ids"
        )
    largest = max(int(i) for i in ids)
    if largest >= array.shape[0]:
        raise DataError(f"node features {file}: {array.shape[0]} rows, but node ids reach {largest}")
    x = _finite_floats(file, array, lambda r, c: f"row {r}, column {c}")
    return pd.Index([str(i) for i in range(array.shape[0])]), x


def _csv_features(file: Path, ids, id_column: str | None):
    frame = _read_table(file, "node features", ",")
    id_column = id_column or frame.columns[0]
    if id_column not in frame.columns:
        raise DataError(f"node features {file}: id column {id_column!r} (dataset.loader.feature_id) not found; "
                        f"columns are {list(frame.columns)}")
    names = [c for c in frame.columns if c != id_column]
    if not names:
        raise DataError(f"node features {file}: no feature columns besides the id column {id_column!r}")
    _refuse_empty(frame[[id_column]], "node features", file, "every row needs a node id")
    repeated = frame[id_column].duplicated(keep=False)
    if repeated.any():
        node = frame[id_column][repeated].iloc[0]
        lines = frame.index[frame[id_column] == node].tolist()
        raise DataError(f"node features {file}: node id {node!r} has more than one row (lines {lines}); "
                        "keep one row per node")
    lines = frame.index.to_series(index=frame[id_column])
    values = frame.set_index(id_column)[names]
    ids = ids.append(values.index.difference(ids, sort=False))
    missing = ids.difference(values.index, sort=False)
    if len(missing):
        raise DataError(f"node features {file}: no row for nodes {missing[:5].tolist()} "
                        f"({len(missing)} node(s) of the edge list)")
    values = values.reindex(ids)

    def where(r: int, c: int) -> str:
        return f"line {lines[ids[r]]} (node {ids[r]!r}), column {names[c]!r}"

    return ids, _finite_floats(file, values.to_numpy(), where)


def _finite_floats(file: Path, array: np.ndarray, where) -> torch.Tensor:
    """``array`` as a float32 tensor, or a DataError naming the first cell that is not a finite real number.

    ``where(row, column)`` describes a cell's place in ``file``.
    """
    if array.shape[1] == 0:
        raise DataError(f"node features {file}: no feature columns (shape {array.shape})")
    if np.iscomplexobj(array):
        raise DataError(f"node features {file}: complex values ({array.dtype}); features must be real numbers")
    if array.dtype.kind not in "biufO":
        raise DataError(f"node features {file}: values of type {array.dtype}; features must be numbers")
    try:
        with np.errstate(over="ignore"):  # values beyond float32's range become inf, refused below
            x = array.astype(np.float32)
    except (ValueError, TypeError):
        r, c = next((r, c) for r, c in np.ndindex(*array.shape) if not _is_number(array[r, c]))
        raise DataError(f"node features {file}, {where(r, c)}: {array[r, c]!r} is not a number") from None
    bad = ~np.isfinite(x)
    if bad.any():
        r, c = (int(i) for i in np.argwhere(bad)[0])
        raise DataError(f"node features {file}, {where(r, c)}: {array[r, c]!r} is not a finite number "
                        f"({int(bad.sum())} such value(s)); replace them, e.g. with 0 or a column mean")
    return torch.from_numpy(x)


def _is_number(value) -> bool:
    try:
        float(value)
    except (ValueError, TypeError):
        return False
    return True
