"""GRU and tanh RNN layers for the CPU computing nn.GRU's / nn.RNN's function in few ops.

On a CPU, torch runs nn.LSTM as one fused oneDNN kernel but nn.GRU as a per-step loop of
ATen cells (about a dozen small ops a step, each recorded by autograd and replayed in
backward), so a GRU training step costs ~1.6x an LSTM step although its arithmetic is 0.75x.
Here each layer is one ``torch.autograd.Function`` that records nothing per step:

- forward: all steps' input projections in two matmuls, then 5 ops a step (the h @ W_hh^T
  addmm, sigmoid, addcmul, tanh, lerp) writing into preallocated buffers;
- backward: every gate's gradient is dh_t times a coefficient known from the forward pass;
  the coefficients are computed a few steps at a time (so that they are still in cache when
  the loop reads them), the loop is 3 ops a step (one broadcast multiply gives all gate
  gradients, one addcmul and one addmm give dh_{t-1}), and every weight, bias and input
  gradient is one matmul or one sum over all steps after the loop.

Eager PyTorch costs a few microseconds per op (and per view) whatever its size, so the
per-step op count, not the arithmetic, bounds the speed of these Python loops at small
hidden sizes. The same loops in C++ (fused_rnn.cpp, built once per machine by
rnnsweep.cells.native) take one GEMM and one vectorised pass over the gates a step, forward
and backward; the layers run them for float32 where the library loads, the Python loops
otherwise (`native_loop=False`, or a cell's `kernel: python`). Figures:
`python -m benchmarks.kernels_gru` (benchmarks/results/kernels_gru.json).

Gates follow torch (r, z, n) with nn.GRU's weights and biases:
    r = sigmoid(W_ir x + b_ir + W_hr h + b_hr),  z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn)),  h' = n + z * (h - n)
Layers work time-major (a step is one contiguous slice) and dropout between layers is
torch.dropout on that time-major tensor, as in ATen's own multi-layer loop, so the same
random state draws the same masks as nn.GRU.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from rnnsweep.cells import native

# Names the reports give each kernel (rnnsweep.measure.graph_backend reads them).
KERNEL_NAME = "rnnsweep fused GRU (CPU, C++ loop)"
PY_KERNEL_NAME = "rnnsweep fused GRU (CPU, Python loop)"
RNN_KERNEL_NAME = "rnnsweep fused tanh RNN (CPU, C++ loop)"
PY_RNN_KERNEL_NAME = "rnnsweep fused tanh RNN (CPU, Python loop)"
# Bytes the backward's coefficient pass may touch per chunk of steps: under an L2 cache, so
# the loop finds them there (one pass over all steps at once spilled to L3: ~5% slower
# steps at T=60).
_CHUNK_BYTES = 3 << 19


def _gru_inputs(x: torch.Tensor, w_ih: torch.Tensor, b_ih: torch.Tensor, b_hh: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The loop's buffers with every step's input side filled in: s (T, B, 3H) holds
    [r and z pre-activations | W_hn h + b_hn] (b_hn so far; each step's addmm adds
    h @ W_hh^T to all three blocks at once), n (T, B, H) the n block's input side
    W_in x + b_in (outside the reset gate), out (T, B, H) empty for h_t."""
    steps, batch, inp = x.shape
    hidden = b_hh.shape[0] // 3
    h2, h3 = 2 * hidden, 3 * hidden
    x2 = x.reshape(steps * batch, inp)
    s = x.new_empty(steps, batch, h3)
    s2 = s.view(steps * batch, h3)
    torch.addmm(b_ih[:h2] + b_hh[:h2], x2, w_ih[:h2].t(), out=s2[:, :h2])
    s2[:, h2:] = b_hh[h2:]
    n = torch.addmm(b_ih[h2:], x2, w_ih[h2:].t()).view(steps, batch, hidden)
    return s, n, x.new_empty(steps, batch, hidden)


def _gru_weight_grads(ctx: Any, d: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
    """Every input, weight and bias gradient from d (T, B, 4H), the gradients at each step's
    [W_hn h + b_hn | r | z | W_in x + b_in] pre-activations: one matmul or sum each.
    d[..., :3H] is the gradient at W_hh h + b_hh (rows permuted to n, r, z) and d[..., H:]
    the one at W_ih x + b_ih, both plain strided matrices."""
    x, w_ih, w_hh, s, n, out = ctx.saved_tensors
    steps, batch, hidden = out.shape
    h3 = 3 * hidden
    d2 = d.view(steps * batch, 4 * hidden)
    d_hh, d_ih = d2[:, :h3], d2[:, hidden:]
    need = ctx.needs_input_grad
    grad_x = (d_ih @ w_ih).view_as(x) if need[0] else None
    # (x^T d)^T rather than d^T x: several times faster for a narrow x (gemm's shapes).
    grad_w_ih = (x.reshape(steps * batch, -1).t() @ d_ih).t().contiguous() \
        if need[1] else None
    grad_w_hh = None
    if need[2]:
        g = d_hh[batch:].t() @ out[:-1].reshape(-1, hidden)  # s_0 has no W_hh term
        grad_w_hh = torch.cat([g[hidden:], g[:hidden]])
    sums = d2.sum(0)  # both biases' gradients from one pass
    grad_b_ih = sums[hidden:] if need[3] else None
    grad_b_hh = torch.cat([sums[hidden:h3], sums[:hidden]]) if need[4] else None
    return grad_x, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh


def _w_hh_permuted(w_hh: torch.Tensor) -> torch.Tensor:
    """W_hh's rows as (n, r, z), the order of d's first three blocks."""
    h2 = 2 * w_hh.shape[1]
    return torch.cat([w_hh[h2:], w_hh[:h2]])


class FusedGRULayer(torch.autograd.Function):
    """One unidirectional GRU layer from a zero state: x (T, B, I) -> outputs (T, B, H);
    its step loops in Python (any float dtype)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor,
                b_ih: torch.Tensor, b_hh: torch.Tensor) -> torch.Tensor:
        s, n, out = _gru_inputs(x, w_ih, b_ih, b_hh)
        steps, batch, hidden = out.shape
        h2 = 2 * hidden
        w_hh_t = w_hh.t()
        # Views made up front: slicing inside the loop costs more than the small ops.
        s_steps, rz_steps = s.unbind(0), s[..., :h2].unbind(0)
        r_steps, z_steps, gh_steps = (s[..., :hidden].unbind(0), s[..., hidden:h2].unbind(0),
                                      s[..., h2:].unbind(0))
        n_steps, out_steps = n.unbind(0), out.unbind(0)
        sigmoid, addmm, addcmul, tanh, lerp = (torch.sigmoid, torch.addmm, torch.addcmul,
                                               torch.tanh, torch.lerp)
        h = x.new_zeros(batch, hidden)
        for t in range(steps):
            if t:  # h_0 = 0: no matmul at t = 0
                s_t = s_steps[t]
                addmm(s_t, h, w_hh_t, out=s_t)
            rz_t, n_t = rz_steps[t], n_steps[t]
            sigmoid(rz_t, out=rz_t)  # r and z replace their pre-activations in s
            addcmul(n_t, r_steps[t], gh_steps[t], out=n_t)
            tanh(n_t, out=n_t)
            h = lerp(n_t, h, z_steps[t], out=out_steps[t])  # n + z * (h - n)
        ctx.save_for_backward(x, w_ih, w_hh, s, n, out)
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, w_ih, w_hh, s, n, out = ctx.saved_tensors
        steps, batch, hidden = out.shape
        h2, h3 = 2 * hidden, 3 * hidden
        r, z, gh_n = s[..., :hidden], s[..., hidden:h2], s[..., h2:]
        # d[t] = dh_t * coef[t], blocks (g, r, z, i): g = W_hn h + b_hn, i = W_in x + b_in.
        #   c_i = (1-z)(1-n^2), c_g = c_i r, c_r = c_g gh_n (1-r), c_z = (h_t-n)(1-z)
        # (h_t - n = z (h_{t-1} - n), so c_z = z(1-z)(h_{t-1} - n) needs no shifted copy).
        d = out.new_empty(steps, batch, 4, hidden)
        one = n.new_ones(())

        def coefficients(a: int, b: int) -> None:
            z_, r_, n_ = z[a:b], r[a:b], n[a:b]
            c_i = torch.addcmul(one, n_, n_, value=-1, out=d[a:b, :, 3])
            c_i.addcmul_(c_i, z_, value=-1)
            c_g = torch.mul(c_i, r_, out=d[a:b, :, 0])
            c_r = torch.mul(c_g, gh_n[a:b], out=d[a:b, :, 1])
            c_r.addcmul_(c_r, r_, value=-1)
            c_z = torch.sub(out[a:b], n_, out=d[a:b, :, 2])
            c_z.addcmul_(c_z, z_, value=-1)

        chunk = max(1, _CHUNK_BYTES // (9 * batch * hidden * out.element_size()))
        w_hh_perm = _w_hh_permuted(w_hh)
        dh = torch.empty_like(out)  # the full gradient at each step's output
        dh[-1] = grad_out[-1]
        dh_steps, dh_col, g_steps = dh.unbind(0), dh.unsqueeze(2).unbind(0), grad_out.unbind(0)
        d_steps = d.unbind(0)
        d_hh_steps = d.view(steps, batch, 4 * hidden)[..., :h3].unbind(0)
        z_steps = z.unbind(0)
        mul, addcmul, addmm = torch.mul, torch.addcmul, torch.addmm
        for t in range(steps - 1, -1, -1):
            if t == steps - 1 or (t + 1) % chunk == 0:  # entering a chunk: its coefficients
                coefficients(t + 1 - ((t + 1) % chunk or chunk), t + 1)
            d_t = d_steps[t]
            mul(d_t, dh_col[t], out=d_t)
            if t:
                dh_prev = dh_steps[t - 1]
                addcmul(g_steps[t - 1], dh_steps[t], z_steps[t], out=dh_prev)
                addmm(dh_prev, d_hh_steps[t], w_hh_perm, out=dh_prev)
        return _gru_weight_grads(ctx, d)


class NativeGRULayer(torch.autograd.Function):
    """FusedGRULayer with its step loops in C++ (rnnsweep.cells.native; float32): one GEMM
    and one vectorised pass over the gates a step, forward and backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor,
                b_ih: torch.Tensor, b_hh: torch.Tensor) -> torch.Tensor:
        s, n, out = _gru_inputs(x, w_ih, b_ih, b_hh)
        native.ops().gru_forward(s, n, out, w_hh.t())
        ctx.save_for_backward(x, w_ih, w_hh, s, n, out)
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        _, _, w_hh, s, n, out = ctx.saved_tensors
        steps, batch, hidden = out.shape
        d = out.new_empty(steps, batch, 4 * hidden)
        native.ops().gru_backward(s, n, out, grad_out.contiguous(), d, _w_hh_permuted(w_hh))
        return _gru_weight_grads(ctx, d)


def _rnn_inputs(x: torch.Tensor, w_ih: torch.Tensor, b_ih: torch.Tensor,
                b_hh: torch.Tensor) -> torch.Tensor:
    """Every step's input side W_ih x + b_ih + b_hh (T, B, H), the buffer that becomes h_t."""
    steps, batch, inp = x.shape
    out = torch.addmm(b_ih + b_hh, x.reshape(steps * batch, inp), w_ih.t())
    return out.view(steps, batch, -1)


def _rnn_weight_grads(ctx: Any, d: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
    """Every input, weight and bias gradient from d (T, B, H), the gradients at each step's
    pre-activation."""
    x, w_ih, w_hh, out = ctx.saved_tensors
    steps, batch, hidden = out.shape
    d2 = d.view(steps * batch, hidden)
    need = ctx.needs_input_grad
    grad_x = (d2 @ w_ih).view_as(x) if need[0] else None
    grad_w_ih = (x.reshape(steps * batch, -1).t() @ d2).t().contiguous() \
        if need[1] else None
    grad_w_hh = d2[batch:].t() @ out[:-1].reshape(-1, hidden) if need[2] else None
    grad_b = d2.sum(0)
    # Two tensors: autograd may keep a returned gradient as .grad, and the biases' must
    # not share storage.
    return (grad_x, grad_w_ih, grad_w_hh, grad_b if need[3] else None,
            grad_b.clone() if need[4] else None)


class FusedRNNTanhLayer(torch.autograd.Function):
    """One unidirectional tanh RNN layer from a zero state: x (T, B, I) -> outputs (T, B, H).
    2 ops a step forward (addmm, tanh), 2 backward (multiply by 1 - h^2, addmm); its step
    loops in Python (any float dtype)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor,
                b_ih: torch.Tensor, b_hh: torch.Tensor) -> torch.Tensor:
        out = _rnn_inputs(x, w_ih, b_ih, b_hh)
        w_hh_t = w_hh.t()
        addmm, tanh = torch.addmm, torch.tanh
        h = None
        for out_t in out.unbind(0):  # h_0 = 0: no matmul at t = 0
            if h is not None:
                addmm(out_t, h, w_hh_t, out=out_t)
            h = tanh(out_t, out=out_t)
        ctx.save_for_backward(x, w_ih, w_hh, out)
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        _, _, w_hh, out = ctx.saved_tensors
        steps = out.shape[0]
        d = torch.addcmul(out.new_ones(()), out, out, value=-1)  # tanh' = 1 - h^2, then d
        dh = torch.empty_like(out)
        dh[-1] = grad_out[-1]
        d_steps, dh_steps, g_steps = d.unbind(0), dh.unbind(0), grad_out.unbind(0)
        mul, addmm = torch.mul, torch.addmm
        for t in range(steps - 1, -1, -1):
            d_t = d_steps[t]
            mul(d_t, dh_steps[t], out=d_t)
            if t:
                addmm(g_steps[t - 1], d_t, w_hh, out=dh_steps[t - 1])
        return _rnn_weight_grads(ctx, d)


class NativeRNNTanhLayer(torch.autograd.Function):
    """FusedRNNTanhLayer with its step loops in C++ (rnnsweep.cells.native; float32)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor,
                b_ih: torch.Tensor, b_hh: torch.Tensor) -> torch.Tensor:
        out = _rnn_inputs(x, w_ih, b_ih, b_hh)
        native.ops().rnn_tanh_forward(out, w_hh.t())
        ctx.save_for_backward(x, w_ih, w_hh, out)
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        _, _, w_hh, out = ctx.saved_tensors
        d = torch.empty_like(out)
        native.ops().rnn_tanh_backward(out, grad_out.contiguous(), d, w_hh)
        return _rnn_weight_grads(ctx, d)


# Each cell's layer with its Python loop and with its C++ loop.
_LAYERS = {"gru": (FusedGRULayer, NativeGRULayer),
           "rnn_tanh": (FusedRNNTanhLayer, NativeRNNTanhLayer)}
KERNEL_NAMES = {FusedGRULayer: PY_KERNEL_NAME, NativeGRULayer: KERNEL_NAME,
                FusedRNNTanhLayer: PY_RNN_KERNEL_NAME, NativeRNNTanhLayer: RNN_KERNEL_NAME}


def layer_for(cell: str, dtype: torch.dtype, native_loop: bool = True
              ) -> type[torch.autograd.Function]:
    """The layer that runs `cell` ("gru" or "rnn_tanh"): the C++ loop for float32 when
    `native_loop` and the library loads (rnnsweep.cells.native), else the Python loop."""
    python_loop, cpp_loop = _LAYERS[cell]
    if native_loop and dtype == torch.float32 and native.ops() is not None:
        return cpp_loop
    return python_loop


def forward_layers(cell: str, x: torch.Tensor, weights: Sequence[Sequence[torch.Tensor]],
                   dropout: float, training: bool, native_loop: bool = True
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """nn.GRU's or nn.RNN(nonlinearity="tanh")'s forward (batch_first) from a zero initial
    state, for `cell` "gru" or "rnn_tanh".

    `x` is (batch, steps, input); `weights` holds (w_ih, w_hh, b_ih, b_hh) per layer in
    nn.GRU's / nn.RNN's layout. Dropout with probability `dropout` applies to every layer's
    outputs but the last's, in training only. `native_loop`: the C++ step loops where they
    load (see layer_for), else the Python ones. Returns outputs (batch, steps, hidden), a
    transposed view of time-major storage (values as nn.GRU's; call .contiguous() before
    .view), and h_n (layers, batch, hidden).
    """
    if x.dim() != 3 or x.shape[1] == 0:
        raise ValueError(f"x must be (batch, steps >= 1, input); got {tuple(x.shape)}")
    layer = layer_for(cell, x.dtype, native_loop)
    layer_in = x.transpose(0, 1).contiguous()
    last_steps = []
    for i, params in enumerate(weights):
        if i and dropout and training:
            layer_in = torch.dropout(layer_in, dropout, True)
        layer_in = layer.apply(layer_in, *params)
        last_steps.append(layer_in[-1])
    return layer_in.transpose(0, 1), torch.stack(last_steps)
