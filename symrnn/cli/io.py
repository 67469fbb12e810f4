"""Argument checks the CLI runs before any work: paths, numbers, caps, memory.

Paths
    :class:`InputFile` (exists, a file, readable; ``''`` refused) and
    :class:`OutputFile` / :class:`OutputFolder` (``''`` and control characters
    refused, never an existing folder resp. file, the nearest existing folder
    writable, an allowed suffix where the writer needs one).  Missing parent
    folders are created by the write itself (:mod:`symrnn.render.files`), for
    every command alike.
Numbers
    :data:`POSITIVE_FINITE` (clip thresholds, input scales), :data:`SEED`
    (0 ≤ seed < 2³²), :data:`COUNT` (≥ 1).
Caps
    Every command that unrolls or allocates has an override flag and a
    documented default: :data:`MAX_T_NUMERIC` for ``verify``/``regimes``,
    :data:`MAX_T_SYMBOLIC` for ``derive``/``check`` (symbolic unrolling),
    :data:`MAX_SIZE` for hidden/input/output sizes, :data:`MAX_BATCH` and
    :data:`MAX_SEEDS`.  :func:`check_memory` refuses a run whose estimated
    peak memory exceeds ``MemAvailable`` (``/proc/meminfo``; 24 GiB when it
    cannot be read).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import click

from symrnn.errors import InputError, LimitError

__all__ = [
    "PLOT_FORMATS",
    "MAX_T_NUMERIC",
    "MAX_T_SYMBOLIC",
    "MAX_SIZE",
    "MAX_BATCH",
    "MAX_SEEDS",
    "InputFile",
    "OutputFile",
    "OutputFolder",
    "POSITIVE_FINITE",
    "SEED",
    "COUNT",
    "cap",
    "check_T",
    "check_sizes",
    "memory_available",
    "check_memory",
    "verify_bytes",
    "regimes_bytes",
    "MAX_GFLOP",
    "check_work",
    "verify_flops",
    "regimes_flops",
]

PLOT_FORMATS = ("eps", "jpeg", "jpg", "pdf", "pgf", "png", "ps", "raw", "rgba", "svg", "svgz",
                "tif", "tiff", "webp")
"""File suffixes matplotlib's savefig writes (checked by name, matplotlib not imported)."""

MAX_T_NUMERIC = 10_000
MAX_T_SYMBOLIC = 1_000
MAX_SIZE = 4096
MAX_BATCH = 4096
MAX_SEEDS = 1000
MAX_GFLOP = 300
"""Estimated work (10⁹ floating-point operations) above which verify/regimes refuse to start;
a few minutes on one core."""
SEED_LIMIT = 2**32
FALLBACK_MEMORY = 24 * 2**30


def _has_control(text: str) -> bool:
    return any(not c.isprintable() for c in text)


def _shown(value: str) -> str:
    return repr(value)


class InputFile(click.ParamType):
    """An existing, readable file; ``''``, folders and missing files refused."""

    name = "FILE"

    def __init__(self, what: str = "file") -> None:
        self.what = what

    def convert(self, value, param, ctx):
        text = os.fspath(value) if isinstance(value, os.PathLike) else str(value)
        what = self.what
        if text == "":
            self.fail(f"{what}: expected a path, got ''", param, ctx)
        if "\x00" in text:
            self.fail(f"{what} path {_shown(text)} contains a NUL character", param, ctx)
        path = Path(text)
        if not path.exists():
            self.fail(f"{what} not found: {_shown(text)}", param, ctx)
        if path.is_dir():
            self.fail(f"{what} {_shown(text)} is a folder, expected a file", param, ctx)
        if not path.is_file():
            self.fail(f"{what} {_shown(text)} is not a regular file", param, ctx)
        if not os.access(path, os.R_OK):
            self.fail(f"{what} {_shown(text)} is not readable (permission denied)", param, ctx)
        return text


def _check_destination(kind: str, text: str, param, ctx, fail) -> Path:
    if text == "":
        fail(f"expected a {kind} path, got ''", param, ctx)
    if _has_control(text):
        fail(f"{_shown(text)} contains a control character (newline, tab, ...); "
             f"choose a {kind} name without one", param, ctx)
    path = Path(text)
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if ancestor.exists() and not ancestor.is_dir():
        fail(f"cannot write {_shown(text)}: {_shown(str(ancestor))} is a file, not a folder",
             param, ctx)
    if ancestor.is_dir() and not os.access(ancestor, os.W_OK | os.X_OK):
        fail(f"cannot write {_shown(text)}: folder {_shown(str(ancestor))} is not writable",
             param, ctx)
    return path


class OutputFile(click.ParamType):
    """A file to write; parent folders are created.  ``suffixes``: the allowed extensions."""

    name = "FILE"

    def __init__(self, suffixes: tuple[str, ...] | None = None) -> None:
        self.suffixes = suffixes

    def convert(self, value, param, ctx):
        text = os.fspath(value) if isinstance(value, os.PathLike) else str(value)
        path = _check_destination("file", text, param, ctx, self.fail)
        if text.endswith(("/", os.sep)) or path.is_dir():
            self.fail(f"{_shown(text)} is a folder, expected a file name", param, ctx)
        if path.exists() and not path.is_file():
            self.fail(f"{_shown(text)} exists and is not a regular file (a device, a pipe); "
                      "it is not replaced", param, ctx)
        if self.suffixes is not None:
            suffix = path.suffix[1:].lower()
            if suffix not in self.suffixes:
                got = f"'.{suffix}'" if suffix else "no extension"
                self.fail(f"unsupported format {got} in {_shown(text)} (allowed: "
                          f"{', '.join('.' + s for s in self.suffixes)})", param, ctx)
        return text


class OutputFolder(click.ParamType):
    """A folder to write into; created when missing, never an existing file."""

    name = "FOLDER"

    def convert(self, value, param, ctx):
        text = os.fspath(value) if isinstance(value, os.PathLike) else str(value)
        path = _check_destination("folder", text, param, ctx, self.fail)
        if path.exists() and not path.is_dir():
            self.fail(f"{_shown(text)} is a file, expected a folder", param, ctx)
        if path.is_dir() and not os.access(path, os.W_OK | os.X_OK):
            self.fail(f"folder {_shown(text)} is not writable", param, ctx)
        return text


class _PositiveFinite(click.ParamType):
    name = "NUMBER"

    def convert(self, value, param, ctx):
        if isinstance(value, float):
            number = value
        else:
            try:
                number = float(str(value).strip())
            except ValueError:
                self.fail(f"expected a finite number > 0, got {str(value)!r}", param, ctx)
        if not (math.isfinite(number) and number > 0):
            self.fail(f"expected a finite number > 0, got {value}", param, ctx)
        return number


POSITIVE_FINITE = _PositiveFinite()
SEED = click.IntRange(0, SEED_LIMIT - 1)
COUNT = click.IntRange(min=1)


def cap(name: str, value: int, limit: int, flag: str) -> int:
    """``value`` when ≤ ``limit``, else a LimitError naming the override flag."""
    if value > limit:
        raise LimitError(f"{name} = {value} exceeds {flag} {limit}; pass {flag} {value} "
                         "to allow it")
    return value


def check_T(T: int, max_T: int, option: str = "--T") -> int:  # noqa: N802,N803
    """A sequence length: 1 ≤ T ≤ max_T."""
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise InputError(f"{option} {T}: T must be a positive integer (T >= 1)")
    return cap("T", T, max_T, "--max-T")


def check_sizes(spec, max_size: int) -> None:
    """Every concrete size of ``spec`` at most ``max_size``."""
    for field in ("hidden_size", "input_size", "output_size"):
        value = getattr(spec, field)
        if isinstance(value, int):
            cap(field, value, max_size, "--max-size")


def memory_available() -> int:
    """Bytes the kernel reports as MemAvailable; 24 GiB when that cannot be read."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return FALLBACK_MEMORY


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**28 else f"{n / 2**20:.0f} MiB"


def check_memory(estimate: float, what: str, available: int | None = None) -> None:
    """Refuse ``what`` when its estimated peak memory exceeds what is available."""
    available = memory_available() if available is None else available
    if estimate > available:
        raise LimitError(f"{what} needs about {_gib(estimate)} of memory, more than the "
                         f"{_gib(available)} available; lower the sizes, T, batch or seeds")


def _params(H: int, D: int, O: int) -> int:  # noqa: E741,N803
    return H * H + H * D + H * O + H + O


def verify_bytes(H: int, D: int, O: int, T: int, B: int) -> float:  # noqa: E741,N803
    """Peak bytes of ``verify``: autograd graph and caches ~30 copies of B·T·(H+D+O)
    float64 values, parameters and their copies ~20 × (H² + HD + HO)."""
    return 8.0 * (30 * B * T * (H + D + O) + 20 * _params(H, D, O))


def regimes_bytes(H: int, D: int, O: int, T: int, runs: int) -> float:  # noqa: E741,N803
    """Peak bytes of a regimes sweep: each run keeps ∂L/∂h (T·H) and the parameter
    gradients; one run at a time holds ~10 T·(H+D+O) arrays and ~6 H×H matrices."""
    per_run = T * H + _params(H, D, O) + 2 * T
    return 8.0 * (runs * per_run + 10 * T * (H + D + O) + 6 * H * H)


def check_work(flops: float, max_gflop: int, what: str) -> None:
    """Refuse ``what`` when its estimated work exceeds ``--max-gflop``."""
    gflop = flops / 1e9
    if gflop > max_gflop:
        need = math.ceil(gflop)
        raise LimitError(f"{what} needs about {need} GFLOP, above --max-gflop {max_gflop}; "
                         f"pass --max-gflop {need} to allow it")


def verify_flops(H: int, D: int, O: int, T: int, B: int) -> float:  # noqa: E741,N803
    """Work of ``verify``: ~100 forward/backward passes (autograd, finite differences) of
    2·B·T·(H² + H·D + H·O) each, and a spectral norm of W_hh (~20 H³)."""
    return 100 * 2.0 * B * T * (H * H + H * D + H * O) + 20.0 * H**3


def regimes_flops(H: int, T: int, runs: int) -> float:  # noqa: N803
    """Work of a regimes sweep: per run and step a Jacobian product and its 2-norm and the
    Lyapunov QR step, ~30 H³ (measured: 2 runs at H=256, T=200 take ~80 s on one core)."""
    return runs * T * 30.0 * H**3 + runs * 50.0 * H**3
