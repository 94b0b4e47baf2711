"""Where a benchmark figure came from: code, packages, machine, command and time.

A number in BENCHMARKS.md is only worth citing if anyone can tell what produced it. Every
benchmark output therefore carries :func:`provenance`: the git commit (and whether the working
tree had uncommitted changes to tracked files, and which), the versions of the packages that move
results (torch, botorch, gpytorch, numpy, scipy, mlflow, optuna, autolab), the machine (CPU model,
logical CPUs, the CPUs this process may use, the thread settings of OpenMP/MKL/OpenBLAS and torch,
the BLAS numpy links), the exact command line and the UTC time.

Benchmark scripts write their figures with :func:`write_result` as one JSON file per benchmark
under ``benchmarks/results/``; ``scripts/benchmarks_md.py`` renders BENCHMARKS.md from those files
only, so no table is ever typed by hand. A result file is::

    {"schema": 1, "name": "ask-timing", "title": "...", "description": "...",
     "command": "python benchmarks/ask_timing.py ...",
     "tables": [{"title": "...", "columns": ["n", "ask s"], "rows": [[20, 0.68], ...],
                 "notes": "..."}],
     "notes": ["free text shown under the tables"],
     "data": {...anything else, not rendered...},
     "provenance": {...}}

Nothing here imports torch or other heavy packages: versions come from package metadata, and
torch's thread count is read only if the caller already imported torch.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

#: Packages whose versions can move benchmark figures.
PACKAGES: tuple[str, ...] = ("autolab", "torch", "botorch", "gpytorch", "numpy", "scipy",
                             "mlflow", "optuna", "ray")
#: Thread-count environment variables that change BLAS/torch numerics or speed.
THREAD_VARS: tuple[str, ...] = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                "NUMEXPR_NUM_THREADS")
#: Version of the result-file layout.
SCHEMA = 1
#: Where benchmark scripts put their result files (relative to the repository root).
RESULTS_DIR = Path("benchmarks") / "results"


def _git(args: Sequence[str], cwd: Path) -> str | None:
    """Output of a git command without its trailing newline, or None (no git, no repo)."""
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                             timeout=20, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.rstrip("\n")


def repo_root(start: Path | None = None) -> Path:
    """The repository root above ``start`` (default: this package), or the package's parent."""
    here = (start or Path(__file__)).resolve()
    top = _git(["rev-parse", "--show-toplevel"], here if here.is_dir() else here.parent)
    return Path(top) if top else Path(__file__).resolve().parents[2]


def git_info(root: Path | None = None) -> dict[str, Any]:
    """Commit, branch, dirty flag and the modified tracked paths (at most 50)."""
    root = root or repo_root()
    commit = _git(["rev-parse", "HEAD"], root)
    status = _git(["status", "--porcelain", "--untracked-files=no"], root)
    dirty_paths = [line[3:] for line in (status or "").splitlines() if line.strip()]
    return {"commit": commit, "short": commit[:10] if commit else None,
            "branch": _git(["rev-parse", "--abbrev-ref", "HEAD"], root),
            "dirty": bool(dirty_paths) if status is not None else None,
            "dirty_paths": dirty_paths[:50], "dirty_count": len(dirty_paths)}


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str | None]:
    """Installed versions (None when not installed)."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def cpu_model() -> str:
    """The CPU model name (from /proc/cpuinfo where there is one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _blas() -> str | None:
    try:
        import numpy as np  # noqa: PLC0415 (numpy's config is only needed here)

        cfg = np.show_config(mode="dicts")
        deps = cfg.get("Build Dependencies", {}) if isinstance(cfg, dict) else {}
        blas = deps.get("blas", {})
        return f"{blas.get('name')} {blas.get('version')}".strip() if blas else None
    except Exception:  # older numpy has another API; the field is informative
        return None


def machine_info() -> dict[str, Any]:
    """CPU model, CPU counts, thread settings, BLAS, OS, load average, host name."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover (not Linux)
        usable = os.cpu_count() or 0
    torch = sys.modules.get("torch")
    try:
        load: list[float] | None = [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover
        load = None
    return {"cpu_model": cpu_model(), "logical_cpus": os.cpu_count(), "usable_cpus": usable,
            "threads_env": {v: os.environ.get(v) for v in THREAD_VARS},
            "torch_threads": int(torch.get_num_threads()) if torch is not None else None,
            "blas": _blas(), "platform": platform.platform(),
            "python": platform.python_version(), "hostname": platform.node(),
            "load_average": load}


def command_line(argv: Sequence[str] | None = None) -> str:
    """The exact command: the interpreter and its arguments, shell-quoted."""
    args = list(sys.argv if argv is None else argv)
    return shlex.join([sys.executable, *args])


def utc_now() -> str:
    """Current UTC time, ISO 8601 to the second."""
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def provenance(command: str | None = None, root: Path | None = None) -> dict[str, Any]:
    """Everything that says where a figure came from (JSON-compatible).

    Args:
        command: The command that produced it (default: this process's command line).
        root: Repository root (default: found from this package).
    """
    return {"git": git_info(root), "packages": package_versions(), "machine": machine_info(),
            "command": command or command_line(), "utc": utc_now()}


def machine_label(prov: Mapping[str, Any]) -> str:
    """One line naming a machine, for table captions."""
    m = prov.get("machine", {})
    return (f"{m.get('cpu_model', '?')}, {m.get('usable_cpus', '?')} usable of "
            f"{m.get('logical_cpus', '?')} logical CPUs, torch threads "
            f"{m.get('torch_threads') or '-'}, load {m.get('load_average') or '-'}")


def commit_label(prov: Mapping[str, Any]) -> str:
    """``abc1234567`` or ``abc1234567 + uncommitted changes (N files)``."""
    g = prov.get("git", {})
    short = g.get("short") or "unknown commit"
    return f"{short} + uncommitted changes ({g.get('dirty_count')} files)" if g.get("dirty") \
        else str(short)


@dataclass(frozen=True)
class Table:
    """One table of a result file.

    Attributes:
        title: Caption (rendered as a heading).
        columns: Column names.
        rows: Rows of cells (numbers or text), as rendered.
        notes: Text shown under the table.
    """

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    notes: str = ""


@dataclass(frozen=True)
class Result:
    """A benchmark's recorded output (see the module docstring for the file layout).

    Attributes:
        name: File stem and identifier, e.g. ``ask-timing``.
        title: Section title in BENCHMARKS.md.
        description: What is measured and how success is judged.
        tables: Tables to render.
        notes: Paragraphs shown after the tables.
        data: Anything else worth keeping (not rendered).
        command: The command (default: this process's).
    """

    name: str
    title: str
    description: str = ""
    tables: tuple[Table, ...] = ()
    notes: tuple[str, ...] = ()
    data: Mapping[str, Any] = field(default_factory=dict)
    command: str | None = None

    def to_dict(self, prov: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The JSON document, with provenance (taken now unless given)."""
        d = asdict(self)
        d["tables"] = [asdict(t) for t in self.tables]
        d["notes"] = list(self.notes)
        d["data"] = dict(self.data)
        p = dict(prov) if prov is not None else provenance(self.command)
        d["command"] = self.command or p["command"]
        return {"schema": SCHEMA, **d, "provenance": p}


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` so readers see the old file or the whole new one, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


def write_result(result: Result, results_dir: str | Path | None = None,
                 prov: Mapping[str, Any] | None = None) -> Path:
    """Write a result file ``<results_dir>/<name>.json`` atomically; returns its path.

    Args:
        result: What to record.
        results_dir: Folder (default: ``benchmarks/results`` of the repository).
        prov: Provenance (default: taken now).
    """
    folder = Path(results_dir) if results_dir is not None else repo_root() / RESULTS_DIR
    path = folder / f"{result.name}.json"
    atomic_write_text(path, json.dumps(result.to_dict(prov), indent=1, default=_json_default)
                      + "\n")
    return path


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")
