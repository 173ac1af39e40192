"""The fused CPU GRU (rnnsweep.cells.fast_gru) computes nn.GRU's function: outputs, h_n and
every gradient, over random sizes; dropout draws nn.GRU's masks; anything it does not handle
falls back to nn.GRU's own path; the cell's state_dict stays nn.GRU's. The same for the
fused tanh RNN against nn.RNN."""

from __future__ import annotations

import os
import random
import shutil

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnsweep.cells import GRU, RNN, build_cell, cell_keys, fast_gru, native
from rnnsweep.model import init_description

# The step loops each test compares with torch: C++ for float32 (kernel auto), Python for
# float32 (kernel python) and for float64 (kernel auto: the C++ loops are float32 only).
LOOPS = [(torch.float32, "auto", 1e-5), (torch.float32, "python", 1e-5),
         (torch.float64, "auto", 1e-10)]


@pytest.fixture(scope="module", autouse=True)
def _native_loops_built():
    """The C++ loops must load wherever a compiler is (CI: always); elsewhere the auto cases
    run the Python loops and say so in their kernel name."""
    if native.ops() is None and (os.environ.get("CI") or shutil.which("c++")):
        pytest.fail(f"rnnsweep's C++ loops did not load: {native.status()}")


def _expected_kernel(cell: type, dtype: torch.dtype, kernel: str) -> str:
    native_loop = kernel == "auto" and dtype == torch.float32 and native.ops() is not None
    if cell is GRU:
        return fast_gru.KERNEL_NAME if native_loop else fast_gru.PY_KERNEL_NAME
    return fast_gru.RNN_KERNEL_NAME if native_loop else fast_gru.PY_RNN_KERNEL_NAME


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny ops: a second OpenMP thread only adds synchronisation (50x slower on a busy
    # 2-core machine).
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def _pair(inp: int, hidden: int, layers: int, dropout: float = 0.0,
          dtype: torch.dtype = torch.float32, cell: type = GRU, kernel: str = "auto"
          ) -> tuple[nn.RNNBase, nn.RNNBase]:
    fast = cell(inp, hidden, layers, dropout, kernel=kernel).to(dtype)
    torch_cell = nn.GRU if cell is GRU else nn.RNN
    ref = torch_cell(inp, hidden, layers, batch_first=True, dropout=fast.dropout).to(dtype)
    ref.load_state_dict(fast.state_dict())
    return fast, ref


def _run(module: nn.Module, x: torch.Tensor, g_out: torch.Tensor, g_h: torch.Tensor
         ) -> list[torch.Tensor]:
    """Outputs, h_n, and the gradients at x and every parameter of a random linear loss."""
    x = x.detach().requires_grad_()
    out, h_n = module(x)
    grads = torch.autograd.grad((out * g_out).sum() + (h_n * g_h).sum(),
                                [x, *module.parameters()])
    return [out, h_n, *grads]


def _assert_close(a: torch.Tensor, b: torch.Tensor, tol: float, what: str = "") -> None:
    """|a - b| <= tol on the tensor's scale (max(1, max |b|)): float32 sums over batch and
    steps in another order differ by a few ulps of their largest terms, not of each entry."""
    assert a.shape == b.shape, what
    err, scale = (a - b).abs().max().item(), max(1.0, b.abs().max().item())
    assert err <= tol * scale, f"{what}: max |difference| {err:.3g} > {tol:g} x {scale:.3g}"


def _cases(n: int, seed: int) -> list[tuple[int, int, int, int, int]]:
    rng = random.Random(seed)
    return [(rng.randint(1, 9), rng.randint(1, 70), rng.randint(1, 3), rng.randint(1, 40),
             rng.randint(1, 17)) for _ in range(n)]


@pytest.mark.parametrize(("dtype", "kernel", "tol"), LOOPS)
def test_outputs_state_and_every_gradient_match_nn_gru(dtype, kernel, tol):
    torch.manual_seed(0)
    for inp, hidden, layers, steps, batch in _cases(20, seed=1):
        fast, ref = _pair(inp, hidden, layers, dtype=dtype, kernel=kernel)
        x = torch.randn(batch, steps, inp, dtype=dtype)
        assert fast.kernel_name(x) == _expected_kernel(GRU, dtype, kernel)
        g_out = torch.randn(batch, steps, hidden, dtype=dtype)
        g_h = torch.randn(layers, batch, hidden, dtype=dtype)
        got, want = _run(fast, x, g_out, g_h), _run(ref, x, g_out, g_h)
        names = ["output", "h_n", "grad x", *(f"grad {n}" for n, _ in ref.named_parameters())]
        for name, a, b in zip(names, got, want, strict=True):
            _assert_close(a, b, tol, f"{name} {(inp, hidden, layers, steps, batch)}")


@pytest.mark.parametrize("chunk_bytes", [1, 3 * 9 * 5 * 7 * 8])
def test_backward_in_chunks_of_steps_matches(monkeypatch, chunk_bytes):
    # Chunks of 1 and 3 steps for (batch 5, hidden 7, float64): every chunk boundary.
    monkeypatch.setattr(fast_gru, "_CHUNK_BYTES", chunk_bytes)
    torch.manual_seed(1)
    for steps in (1, 2, 3, 4, 7, 9):
        fast, ref = _pair(3, 7, 2, dtype=torch.float64)
        x = torch.randn(5, steps, 3, dtype=torch.float64)
        g_out = torch.randn(5, steps, 7, dtype=torch.float64)
        g_h = torch.randn(2, 5, 7, dtype=torch.float64)
        for a, b in zip(_run(fast, x, g_out, g_h), _run(ref, x, g_out, g_h), strict=True):
            torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("kernel", ["auto", "python"])
def test_dropout_draws_nn_grus_masks_between_layers_only(kernel):
    fast, ref = _pair(4, 6, 3, dropout=0.5, kernel=kernel)
    x = torch.randn(8, 11, 4)
    g_out, g_h = torch.randn(8, 11, 6), torch.randn(3, 8, 6)
    torch.manual_seed(7)
    got = _run(fast.train(), x, g_out, g_h)
    torch.manual_seed(7)
    want = _run(ref.train(), x, g_out, g_h)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    # Dropout acts between layers: a one-layer GRU (dropout 0) is deterministic in training,
    # and in eval mode the stacked one is too and equals nn.GRU.
    one = GRU(4, 6, 1, dropout=0.5).train()
    assert torch.equal(one(x)[0], one(x)[0])
    fast.eval()
    ref.eval()
    assert torch.equal(fast(x)[0], fast(x)[0])
    torch.testing.assert_close(fast(x)[0], ref(x)[0], atol=1e-5, rtol=1e-5)
    # and the masked training run differs from eval (masks were applied).
    assert not torch.allclose(got[0], fast(x)[0])


def test_state_dict_round_trips_through_a_plain_nn_gru():
    torch.manual_seed(2)
    fast = GRU(3, 5, 2, dropout=0.1, update_bias=1.0)
    x = torch.randn(4, 9, 3)
    plain = nn.GRU(3, 5, 2, batch_first=True)
    assert list(plain.state_dict()) == list(fast.state_dict())
    plain.load_state_dict(fast.state_dict())
    back = GRU(3, 5, 2, dropout=0.1)
    back.load_state_dict(plain.state_dict())
    fast.eval()
    back.eval()
    plain.eval()
    torch.testing.assert_close(fast(x)[0], plain(x)[0], atol=1e-6, rtol=1e-6)
    assert torch.equal(fast(x)[0], back(x)[0])
    assert isinstance(fast, nn.GRU) and isinstance(fast, nn.RNNBase)


def test_kernel_torch_runs_nn_grus_own_path_with_the_same_result():
    torch.manual_seed(3)
    auto, torch_path = GRU(2, 8, 2), GRU(2, 8, 2, kernel="torch")
    torch_path.load_state_dict(auto.state_dict())
    x = torch.randn(6, 12, 2)
    assert torch_path.kernel_name(x) == "torch nn.GRU"

    def graph(out: torch.Tensor) -> set[str]:
        seen, todo = set(), [out.grad_fn]
        while todo:
            fn = todo.pop()
            if fn is not None and fn.name() not in seen:
                seen.add(fn.name())
                todo.extend(f for f, _ in fn.next_functions)
        return seen

    out_auto, out_torch = auto(x)[0], torch_path(x)[0]
    assert any("GRULayer" in n for n in graph(out_auto))  # Native- or FusedGRULayer
    assert not any("GRULayer" in n for n in graph(out_torch))
    torch.testing.assert_close(out_auto, out_torch, atol=1e-5, rtol=1e-5)


def test_a_bad_kernel_is_refused_naming_the_key_and_the_allowed_values():
    with pytest.raises(ValueError,
                       match=r"kernel='fast' is invalid: allowed: auto, python, torch"):
        GRU(2, 4, kernel="fast")


def test_packed_batches_and_an_initial_state_fall_back_to_nn_gru():
    torch.manual_seed(4)
    fast, ref = _pair(3, 5, 2)
    x, lengths = torch.randn(4, 7, 3), torch.tensor([7, 3, 5, 1])
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    assert fast.kernel_name(packed) == "torch nn.GRU"
    got, h_got = fast(packed)
    want, h_want = ref(packed)
    torch.testing.assert_close(pad_packed_sequence(got, batch_first=True)[0],
                               pad_packed_sequence(want, batch_first=True)[0])
    torch.testing.assert_close(h_got, h_want)
    h0 = torch.randn(2, 4, 5)
    assert fast.kernel_name(x, h0) == "torch nn.GRU"
    torch.testing.assert_close(fast(x, h0)[0], ref(x, h0)[0])
    # A wrong input size gets nn.GRU's own error.
    with pytest.raises(RuntimeError, match="input_size"):
        fast(torch.randn(4, 7, 2))


def test_the_kernel_key_is_a_cell_key_but_not_part_of_the_init_description():
    cell = {"name": "gru", "_target_": "rnnsweep.cells.GRU", "update_bias": 1.0,
            "kernel": "torch"}
    built = build_cell(cell, 2, 4)
    assert isinstance(built, GRU) and built.kernel == "torch"
    assert cell_keys(cell) == {"update_bias": 1.0}
    assert init_description(cell) == init_description({**cell, "kernel": "auto"})
    assert "kernel" not in init_description(cell)


@pytest.mark.parametrize(("dtype", "kernel", "tol"), LOOPS)
def test_fused_tanh_rnn_matches_nn_rnn(dtype, kernel, tol):
    torch.manual_seed(5)
    for inp, hidden, layers, steps, batch in _cases(20, seed=2):
        fast, ref = _pair(inp, hidden, layers, dtype=dtype, cell=RNN, kernel=kernel)
        x = torch.randn(batch, steps, inp, dtype=dtype)
        assert fast.kernel_name(x) == _expected_kernel(RNN, dtype, kernel)
        g_out = torch.randn(batch, steps, hidden, dtype=dtype)
        g_h = torch.randn(layers, batch, hidden, dtype=dtype)
        for a, b in zip(_run(fast, x, g_out, g_h), _run(ref, x, g_out, g_h), strict=True):
            _assert_close(a, b, tol, str((inp, hidden, layers, steps, batch)))
    # The two bias gradients must not share storage (both are the same sum).
    fast.zero_grad(set_to_none=True)
    fast(x)[0].sum().backward()
    assert fast.bias_ih_l0.grad.data_ptr() != fast.bias_hh_l0.grad.data_ptr()


@pytest.mark.parametrize("kernel", ["auto", "python"])
def test_fused_tanh_rnn_dropout_fallbacks_and_kernel_key(kernel):
    fast, ref = _pair(3, 5, 2, dropout=0.3, cell=RNN, kernel=kernel)
    x = torch.randn(4, 7, 3)
    torch.manual_seed(9)
    got = fast.train()(x)
    torch.manual_seed(9)
    want = ref.train()(x)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b)
    h0 = torch.randn(2, 4, 5)
    assert fast.kernel_name(x, h0) == "torch nn.RNN"
    assert RNN(3, 5, kernel="torch").kernel_name(x) == "torch nn.RNN"
    with pytest.raises(ValueError,
                       match=r"kernel='cuda' is invalid: allowed: auto, python, torch"):
        RNN(3, 5, kernel="cuda")


def test_without_the_native_library_the_python_loops_run_and_say_so(monkeypatch):
    monkeypatch.setattr(native, "ops", lambda: None)
    torch.manual_seed(6)
    fast, ref = _pair(3, 5, 2)
    x = torch.randn(4, 7, 3)
    assert fast.kernel_name(x) == fast_gru.PY_KERNEL_NAME
    assert type(fast(x)[0].grad_fn.next_functions[0][0]).__name__ == "FusedGRULayerBackward"
    torch.testing.assert_close(fast(x)[0], ref(x)[0], atol=1e-5, rtol=1e-5)


def test_a_failing_compiler_raises_its_message_and_builds_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv("RNNSWEEP_NATIVE_DIR", str(tmp_path))
    monkeypatch.setenv("CXX", "false")
    with pytest.raises(RuntimeError, match="false failed"):
        native.build()
    assert not list(tmp_path.glob("*.so"))
    # The command line reports it and leaves setup alone (the Python loops run instead).
    assert native.main([]) == 0


def test_the_cached_library_is_keyed_by_source_compiler_and_torch(monkeypatch, tmp_path):
    monkeypatch.setenv("RNNSWEEP_NATIVE_DIR", str(tmp_path))
    path = native.library_path("c++")
    assert path.parent == tmp_path and path.name.startswith("rnnsweep_native-")
    assert native.library_path("clang++") != path
    monkeypatch.setattr(torch, "__version__", "0.0.0")
    assert native.library_path("c++") != path
