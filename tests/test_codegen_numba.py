"""The compiled (Numba) backend: the NumPy module with its time loops as ``@njit`` kernels.

Gradients must equal the NumPy backend's (1e-12 in float64, 1e-5 in float32) for every
cell and both losses; the text is ruff-clean and stable; loops the kernel table cannot
spell stay NumPy code; the machine code is cached on disk across processes.  Numba
compiles each kernel on its first call (seconds for an LSTM), so modules are shared per
test module and the specs are small.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("numba", reason="the compiled backend needs the extra: "
                                    "pip install 'symrnn[numba]'")

import symrnn.codegen  # noqa: E402
from symrnn.codegen import compile as compile_module  # noqa: E402
from symrnn.codegen import generate, ir, printer  # noqa: E402
from symrnn.codegen.kernels import lift  # noqa: E402
from symrnn.codegen.lower import Options, lower  # noqa: E402
from symrnn.codegen.passes import PASSES, Context, run_passes  # noqa: E402
from symrnn.errors import SpecError  # noqa: E402
from symrnn.spec import Spec  # noqa: E402

CELLS = ("elman", "lstm", "gru")
LOSSES = {  # both losses, and both topologies between them
    "mse": dict(loss="mse", head="identity", topology="many_to_many"),
    "cross_entropy": dict(loss="cross_entropy", head="softmax", topology="many_to_one"),
}
TOL = {"float64": 1e-12, "float32": 1e-5}


def small(cell: str, loss: str = "mse", **extra) -> Spec:
    return Spec(cell=cell, hidden_size=5, input_size=3, output_size=4, **LOSSES[loss], **extra)


@pytest.fixture(scope="module")
def cache_folder(tmp_path_factory):
    return tmp_path_factory.mktemp("numba-cache")


@pytest.fixture(scope="module")
def modules(cache_folder):
    """(spec, options) → (numpy module, numba module), compiled once for this file."""
    made: dict = {}

    def get(spec: Spec, **options):
        key = (spec, tuple(sorted(options.items())))
        if key not in made:
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("SYMRNN_CACHE", str(cache_folder))
                made[key] = (compile_module(spec, "numpy", **options),
                             compile_module(spec, "numba", **options))
        return made[key]

    return get


def data(spec: Spec, shapes: dict, dtype: str, B: int = 3, T: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    params = {n: (0.4 * rng.standard_normal(s)).astype(dtype) for n, s in shapes.items()}
    x = rng.standard_normal((B, T, spec.input_size)).astype(dtype)
    if spec.loss == "cross_entropy":
        y = rng.integers(0, spec.output_size, (B,) if spec.topology == "many_to_one"
                         else (B, T))
    else:
        y = rng.standard_normal((B, T, spec.output_size)).astype(dtype)
    states = [(0.5 * rng.standard_normal((B, spec.hidden_size))).astype(dtype)
              for _ in range(2 if spec.cell == "lstm" else 1)]
    return params, x, y, states


def assert_same(reference: dict, got: dict, tol: float, dtype: str) -> None:
    assert set(got) == set(reference)
    for name, value in reference.items():
        value, other = np.asarray(value), np.asarray(got[name])
        assert other.dtype == np.dtype(dtype), name
        scale = max(1.0, float(np.max(np.abs(value))))
        err = float(np.max(np.abs(value - other))) / scale
        assert err <= tol, f"dL/d{name}: numba differs from numpy by {err:.3g} (tol {tol})"


@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize("cell", CELLS)
def test_gradients_equal_numpy_float64(modules, cell, loss):
    spec = small(cell, loss)
    numpy_module, numba_module = modules(spec)
    params, x, y, states = data(spec, numpy_module.PARAM_SHAPES, "float64")
    loss_np, grads_np = numpy_module.loss_and_grad(params, x, y, *states)
    loss_nb, grads_nb = numba_module.loss_and_grad(params, x, y, *states)
    assert abs(loss_nb - loss_np) <= 1e-12 * max(1.0, abs(loss_np))
    assert_same(grads_np, grads_nb, TOL["float64"], "float64")
    dx_np = numpy_module.backward(params, numpy_module.forward(params, x, y, *states)[1], True)
    dx_nb = numba_module.backward(params, numba_module.forward(params, x, y, *states)[1], True)
    assert np.max(np.abs(dx_np["x"] - dx_nb["x"])) <= TOL["float64"]


@pytest.mark.parametrize("cell", CELLS)
def test_gradients_equal_numpy_float32(modules, cell):
    spec = small(cell)
    numpy_module, numba_module = modules(spec)
    params, x, y, states = data(spec, numpy_module.PARAM_SHAPES, "float32", seed=1)
    _, grads_np = numpy_module.loss_and_grad(params, x, y, *states)
    _, grads_nb = numba_module.loss_and_grad(params, x, y, *states)
    assert_same(grads_np, grads_nb, TOL["float32"], "float32")


def test_every_time_loop_is_compiled_for_the_plain_cells():
    for cell in CELLS:
        source = generate(small(cell), "numba")
        assert source.count("@numba.njit(cache=True)\ndef _forward_loop0(") == 1, cell
        assert source.count("@numba.njit(cache=True)\ndef _backward_loop0(") == 1, cell
        functions = {chunk.split("(")[0]: chunk for chunk in source.split("\ndef ")}
        for name in ("forward", "backward"):
            assert "    for t in range(" not in functions[name], (cell, name)
            assert f"_{name}_loop0(" in functions[name], (cell, name)


def test_truncation_clipping_and_streaming_equal_numpy(modules):
    spec = small("lstm")
    options = {"tbptt": (2, 3), "clip": 0.5, "clip_value": 0.2}
    numpy_module, numba_module = modules(spec, **options)
    params, x, y, states = data(spec, numpy_module.PARAM_SHAPES, "float64", T=7, seed=2)
    assert_same(numpy_module.loss_and_grad(params, x, y, *states)[1],
                numba_module.loss_and_grad(params, x, y, *states)[1], 1e-12, "float64")
    for deltas in (False, True):
        loss_np, grads_np = numpy_module.loss_and_grad_streamed(params, x, y, *states,
                                                                deltas=deltas)
        loss_nb, grads_nb = numba_module.loss_and_grad_streamed(params, x, y, *states,
                                                                deltas=deltas)
        assert abs(loss_np - loss_nb) <= 1e-12 * max(1.0, abs(loss_np))
        assert_same(grads_np, grads_nb, 1e-12, "float64")


@pytest.mark.parametrize("extra", [dict(num_layers=2), dict(bidirectional=True)],
                         ids=["stacked", "bidirectional"])
def test_stacked_and_composed_equal_numpy(modules, extra):
    spec = small("elman", **extra)
    numpy_module, numba_module = modules(spec)
    params, x, y, states = data(spec, numpy_module.PARAM_SHAPES, "float64", seed=3)
    states = [None] * len(getattr(numpy_module, "STATE_ARGS", ()))
    assert_same(numpy_module.loss_and_grad(params, x, y, *states)[1],
                numba_module.loss_and_grad(params, x, y, *states)[1], 1e-12, "float64")


def _lowered(spec: Spec, options: Options | None = None):
    low = lower(spec, options)
    pr = printer.Printer(printer.NUMBA)
    ctx = Context(low.buffers, pr, frozenset(low.layout.module_params()))
    return low, [run_passes(f, tuple(PASSES), ctx) for f in (low.forward, low.backward,
                                                             low.streamed) if f is not None]


def test_a_loop_with_an_operation_the_table_lacks_stays_numpy_code():
    _, (forward, _) = _lowered(small("elman"))
    table = printer.NUMBA.kernels.table
    assert len(lift(forward, table).kernels) == 1
    without_tanh = {k: v for k, v in table.items() if k != "tanh_"}  # tanh in place
    lifted = lift(forward, without_tanh)
    assert lifted.kernels == ()
    assert any(isinstance(s, ir.For) for s in lifted.host.body)


def test_a_name_bound_on_some_paths_only_keeps_its_loop_in_python():
    # loss_and_grad_streamed binds delta under `if deltas:`; its backward window reads it
    _, (_, _, streamed) = _lowered(small("elman"), Options((2, 3)))
    lifted = lift(streamed, printer.NUMBA.kernels.table)
    assert len(lifted.kernels) == 1  # the forward window only
    (outer,) = [s for s in lifted.host.body if isinstance(s, ir.For)]
    inner = [s for s in outer.body if isinstance(s, ir.For)]
    assert [s.var for s in inner] == ["t"] and "delta" in str(inner[0])


def test_a_wrong_kernel_spelling_is_caught(modules, monkeypatch, cache_folder):
    """Mutation: spell the forward's tanh as sin in the kernels only; gradients differ."""
    spec = small("elman")
    numpy_module, _ = modules(spec)
    table = dict(printer.NUMBA.kernels.table)
    table["tanh_"] = ("np.sin({0}, {0})",) + table["tanh_"][1:]
    broken = replace(printer.NUMBA, kernels=replace(printer.NUMBA.kernels, table=table))
    monkeypatch.setitem(printer.BACKENDS, "numba", broken)
    monkeypatch.setenv("SYMRNN_CACHE", str(cache_folder))
    module = compile_module(spec, "numba")
    params, x, y, states = data(spec, numpy_module.PARAM_SHAPES, "float64")
    with pytest.raises(AssertionError, match="numba differs from numpy"):
        assert_same(numpy_module.loss_and_grad(params, x, y, *states)[1],
                    module.loss_and_grad(params, x, y, *states)[1], 1e-12, "float64")


@pytest.mark.parametrize("missing", ["numba", "scipy"])  # numba's np.dot needs scipy
def test_missing_numba_names_the_extra(monkeypatch, missing):
    monkeypatch.setitem(sys.modules, missing, None)  # import raises ImportError
    for make in (generate, compile_module):
        with pytest.raises(SpecError, match=rf"needs {missing}.*pip install 'symrnn\[numba\]'"):
            make(small("elman"), "numba")


def test_text_is_stable_and_ruff_clean(tmp_path):
    specs = [(small("elman"), {}), (small("lstm", "cross_entropy"), {}),
             (small("gru"), {"tbptt": (2, 3), "clip": 1.0, "clip_value": 0.5}),
             (small("lstm", bidirectional=True), {})]
    for i, (spec, options) in enumerate(specs):
        text = generate(spec, "numba", **options)
        assert text == generate(spec, "numba", **options)
        (tmp_path / f"gen_numba_{i}.py").write_text(text)
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        pytest.skip("ruff not installed")
    result = subprocess.run(
        [ruff, "check", "--no-cache", "--isolated", "--line-length", "100",
         "--select", "E,F,W,I,B,UP", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


_LOAD_AGAIN = """
import numpy as np, symrnn.codegen as cg
from symrnn.spec import Spec
m = cg.compile(Spec(cell="elman", hidden_size=5, input_size=3, output_size=4), "numba")
p = {n: np.full(s, 0.1) for n, s in m.PARAM_SHAPES.items()}
m.loss_and_grad(p, np.ones((2, 3, 3)), np.ones((2, 3, 4)))
print(sum(sum(k.stats.cache_hits.values()) for k in (m._forward_loop0, m._backward_loop0)))
print(sum(sum(k.stats.cache_misses.values()) for k in (m._forward_loop0, m._backward_loop0)))
"""


def test_machine_code_is_cached_on_disk_across_processes(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMRNN_CACHE", str(tmp_path))
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    runs = [subprocess.run([sys.executable, "-c", _LOAD_AGAIN], capture_output=True,
                           text=True, timeout=300) for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr
    first, second = ([int(v) for v in r.stdout.split()] for r in runs)
    assert first == [0, 2] and second == [2, 0], (first, second)
    assert list((symrnn.codegen.cache_dir() / "__pycache__").glob("*.nbi"))


def test_parameters_of_another_dtype_are_a_clear_error(modules):
    spec = small("elman")
    _, numba_module = modules(spec)
    params, x, y, states = data(spec, numba_module.PARAM_SHAPES, "float32")
    params["W_hh"] = params["W_hh"].astype("float64")
    with pytest.raises(ValueError, match=r"params\['W_hh'\]: expected float32 like x"):
        numba_module.loss_and_grad(params, x, y, *states)
