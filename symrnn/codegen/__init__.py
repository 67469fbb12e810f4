"""Code generation: BPTT from the derivation, as NumPy or torch modules, for any cell.

Pipeline (one module per stage)::

    derive(spec)  →  plan (the cell's step: products, stored values, its reverse pass)
                  →  lower (forward, backward, streamed TBPTT; hoisting, stacked products)
                  →  passes (cse, inplace, ...)  →  printer (numpy | torch table)
                  →  emit (header, constants, helpers)  →  text / file / module

Nothing in this package names a cell: the plan reads the cell's own equations and the
stacking table of its parameters (:attr:`symrnn.engine.cells.CellDef.stacks`).
:func:`generate` returns the module text; :func:`compile` writes it to a real file
under the cache folder (``$SYMRNN_CACHE`` or ``~/.cache/symrnn``, named by a hash of the
text) and imports it, so tracebacks show the source.  A generated module exposes
``SPEC``, ``PARAM_SHAPES``, ``PARAM_NAMES``, ``STATES`` (('h',) or ('h', 'c')),
``forward(params, x, y, h0=None[, c0=None]) -> (loss, cache)``,
``backward(params, cache, input_grad=False) -> grads`` and ``loss_and_grad`` (plus
``loss_and_grad_streamed`` under truncation, holding k2 + 1 steps); torch modules add
``BPTTFunction`` (a ``torch.autograd.Function``) and ``RNNLoss`` (an ``nn.Module``).
grads hold every parameter, ``'h_0'`` (and ``'c_0'``) (B, H), and ``'delta'`` (B, T, H)
with ``delta[:, t-1] = ∂L/∂h_t`` (``'delta_c'``: the part of ∂L/∂c_t from step t+1).
Parameters: per-gate (``layout = "notes"``) or torch's stacked weight_ih, weight_hh,
bias_ih, bias_hh (``layout = "torch"``, loadable from a torch.nn.RNN/LSTM/GRU state_dict).

``backend="numba"`` (the ``symrnn[numba]`` extra) is the NumPy module with its time loops
lifted into ``@numba.njit(cache=True)`` kernels (:mod:`symrnn.codegen.kernels`); a loop the
kernel table cannot spell stays NumPy code.  Numba compiles each kernel on its first call
for each argument signature and keeps the machine code on disk beside the module, in
``<cache folder>/__pycache__`` (or ``$NUMBA_CACHE_DIR``), so later processes load it.

Bidirectional, encoder_decoder and one_to_many specs get a *composed* module
(:mod:`symrnn.codegen.compose`): layer functions and head functions lowered as above,
wired by one fixed text; ``loss_and_grad(params, x, y, *initial_states, y0=None,
input_grad=False)``, initial states in ``STATE_ARGS`` order (h0, c0, h0_reverse, ...).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

from symrnn.codegen.compose import composed
from symrnn.codegen.emit import emit, emit_composed
from symrnn.codegen.lower import Options, check_supported, lower
from symrnn.codegen.passes import PASSES
from symrnn.codegen.printer import BACKENDS, backend, require
from symrnn.render.files import atomic_write_text
from symrnn.spec import Spec

__all__ = ["generate", "compile", "cache_dir", "Options", "BACKENDS", "DEFAULT_PASSES"]

DEFAULT_PASSES: tuple[str, ...] = tuple(PASSES)


def _version() -> str:
    from symrnn.version import __version__

    return __version__


def _command(spec: Spec, backend_name: str, options: Options) -> str:
    """The CLI line that regenerates this module (flags for every spec field)."""
    parts = ["symrnn codegen", f"--backend {backend_name}", f"--cell {spec.cell}",
             f"--activation {spec.activation}", f"--head {spec.head}", f"--loss {spec.loss}",
             f"--topology {spec.topology}", f"--hidden-size {spec.hidden_size}",
             f"--input-size {spec.input_size}", f"--output-size {spec.output_size}"]
    if not spec.bias:
        parts.append("--no-bias")
    if spec.layout != "notes":
        parts.append(f"--layout {spec.layout}")
    if spec.num_layers != 1:
        parts.append(f"--num-layers {spec.num_layers}")
    if spec.bidirectional:
        parts.append("--bidirectional")
    if spec.topology == "one_to_many":
        parts.append(f"--feed {spec.feed}")
    if options.tbptt is not None:
        parts.append(f"--tbptt {options.tbptt[0]},{options.tbptt[1]}")
    if options.clip is not None:
        parts.append(f"--clip {options.clip}")
    if options.clip_value is not None:
        parts.append(f"--clip-value {options.clip_value}")
    return " ".join(parts)


def generate(spec: Spec, backend: str = "numpy", tbptt: tuple[int, int] | None = None,
             clip: float | None = None, *, clip_value: float | None = None,
             passes: tuple[str, ...] = DEFAULT_PASSES, command: str | None = None,
             layered: bool = False) -> str:
    """The source text of the generated module for ``spec``; ``layered``: the composed
    form (layer functions and wiring) even where one fused loop would do (a plain stack,
    as :mod:`symrnn.nn` runs it)."""
    target = _backend(backend)
    unknown = [p for p in passes if p not in PASSES]
    if unknown:
        from symrnn.errors import SymrnnError

        raise SymrnnError(f"unknown pass {unknown[0]!r}: expected one of {', '.join(PASSES)}")
    options = Options(tuple(tbptt) if tbptt is not None else None, clip, clip_value)
    if layered or composed(spec):
        return _generate_composed(spec, target, options, passes, command)
    low = lower(spec, options)
    command = command or _command(spec, target.name, options)
    return emit(low, target, command=command, version=_version(), passes=tuple(passes))


def _generate_composed(spec: Spec, target, options: Options, passes, command) -> str:
    """The module of a bidirectional, encoder–decoder or one_to_many network."""
    from symrnn.errors import SpecError

    check_supported(spec)
    if options.tbptt is not None:
        raise SpecError(f"truncated BPTT is generated for one network only, not for "
                        f"topology {spec.topology!r}"
                        + (" with bidirectional" if spec.bidirectional else "")
                        + " (a reverse layer needs the whole sequence; a decoder's or a "
                        "fed-back window would cut the path the loss takes)")
    command = command or _command(spec, target.name, options)
    return emit_composed(spec, target, command=command, version=_version(),
                         passes=tuple(passes), clip=options.clip,
                         clip_value=options.clip_value)


def _backend(name: str):
    target = backend(name)
    require(target)
    return target


def cache_dir() -> Path:
    root = os.environ.get("SYMRNN_CACHE") or Path.home() / ".cache" / "symrnn"
    return Path(root) / "codegen"


def compile(spec: Spec, backend: str = "numpy", tbptt: tuple[int, int] | None = None,  # noqa: A001
            clip: float | None = None, *, clip_value: float | None = None,
            passes: tuple[str, ...] = DEFAULT_PASSES, layered: bool = False) -> ModuleType:
    """Generate, write to a real file and import; returns the loaded module."""
    source = generate(spec, backend, tbptt, clip, clip_value=clip_value, passes=passes,
                      layered=layered)
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    name = f"symrnn_gen_{backend}_{digest}"
    path = cache_dir() / f"{name}.py"
    try:
        current = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        current = None
    if current != source:
        atomic_write_text(path, source)  # a unique temporary name: safe across threads
    if name in sys.modules:
        return sys.modules[name]
    loader_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[name] = module
    loader_spec.loader.exec_module(module)
    return module
