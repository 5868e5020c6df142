"""The Recurrent layer: against torch.nn.RNN/LSTM/GRU, lengths, directions, backends."""

import copy
import math
import pickle

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnlab.errors import RnnlabError
from rnnlab.layers import Recurrent

TORCH = {"srn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
ALL_CELLS = ["srn", "residual-srn", "lstm", "gru"]
SHAPES = [(1, False), (2, True)]  # (num_layers, bidirectional)
SHAPE_IDS = ["1-layer", "2-layer-bi"]


def _h(state):
    return state[0] if isinstance(state, tuple) else state


def _close(a, b, atol=1e-5):
    if isinstance(a, tuple):
        for x, y in zip(a, b, strict=True):
            torch.testing.assert_close(x, y, atol=atol, rtol=0)
    else:
        torch.testing.assert_close(a, b, atol=atol, rtol=0)


def _lengths_batch(cell: str, layers: int, bi: bool, backend: str = "python"):
    torch.manual_seed(0)
    layer = Recurrent(cell, 3, 4, num_layers=layers, bidirectional=bi, backend=backend)
    x = torch.randn(4, 6, 3)
    lengths = torch.tensor([6, 2, 1, 4])
    return layer, x, lengths


@pytest.mark.parametrize(("layers", "bi"), SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("cell", sorted(TORCH))
def test_layer_equals_torch_module(cell, layers, bi):
    torch.manual_seed(0)
    theirs = TORCH[cell](3, 5, num_layers=layers, bidirectional=bi, batch_first=True)
    ours = Recurrent(cell, 3, 5, num_layers=layers, bidirectional=bi)
    ours.load_torch_state_dict(theirs.state_dict())
    assert list(ours.torch_state_dict()) == list(theirs.state_dict())
    x = torch.randn(4, 7, 3)
    out, state = ours(x)
    ref_out, ref_state = theirs(x)
    _close(out, ref_out)
    _close(state, ref_state)
    (out.square().sum() + _h(state).sum()).backward()
    (ref_out.square().sum() + _h(ref_state).sum()).backward()
    grads = {k: v.grad for k, v in theirs.named_parameters()}
    for index, pname, tname in ours._torch_names():
        torch.testing.assert_close(getattr(ours.cells[index], pname).grad, grads[tname],
                                   atol=1e-5, rtol=1e-5, msg=tname)


@pytest.mark.parametrize("cell", sorted(TORCH))
def test_seeded_layer_draws_what_torch_draws_and_to_torch(cell):
    torch.manual_seed(5)
    ours = Recurrent(cell, 3, 4, num_layers=2, bidirectional=True)
    torch.manual_seed(5)
    theirs = TORCH[cell](3, 4, num_layers=2, bidirectional=True, batch_first=True)
    for name, value in theirs.state_dict().items():
        assert torch.equal(ours.torch_state_dict()[name], value), name
    clone = ours.to_torch()
    assert isinstance(clone, TORCH[cell]) and clone.batch_first
    x = torch.randn(2, 5, 3)
    _close(ours(x)[0], clone(x)[0])


def test_hand_worked_bidirectional_with_lengths():
    # One unit, h' = tanh(x + 0.5 h), no bias. Sequence [1, 2, pad] with length 2.
    layer = Recurrent("srn", 1, 1, bidirectional=True, bias=False)
    with torch.no_grad():
        for cell in layer.cells:
            cell.weight_ih.fill_(1.0)
            cell.weight_hh.fill_(0.5)
    x = torch.tensor([[[1.0], [2.0], [9.0]]])
    out, h_n = layer(x, lengths=[2])
    f1 = math.tanh(1.0)
    f2 = math.tanh(2.0 + 0.5 * f1)
    b2 = math.tanh(2.0)  # the reverse direction starts at the last valid step, t = 1
    b1 = math.tanh(1.0 + 0.5 * b2)
    assert out[0].tolist() == [pytest.approx([f1, b1]), pytest.approx([f2, b2]), [0.0, 0.0]]
    assert h_n[:, 0, 0].tolist() == pytest.approx([f2, b1])


@pytest.mark.parametrize("cell", ALL_CELLS)
def test_stepwise_equals_whole_sequence(cell):
    torch.manual_seed(0)
    layer = Recurrent(cell, 3, 4, num_layers=2)
    x = torch.randn(2, 5, 3)
    whole_out, whole_state = layer(x)
    state, outs = None, []
    for t in range(5):
        out, state = layer(x[:, t:t + 1], state)
        outs.append(out)
    _close(torch.cat(outs, dim=1), whole_out, atol=1e-6)
    _close(state, whole_state, atol=1e-6)
    # and a plain loop over the first cell's forward gives layer 0 of the same thing
    single = Recurrent(cell, 3, 4)
    single.cells[0].load_state_dict(layer.cells[0].state_dict())
    s = None
    for t in range(5):
        _, s = layer.cells[0](x[:, t], s)
    _close(_h(s), _h(single(x)[1])[0], atol=1e-6)


@pytest.mark.parametrize(("layers", "bi"), [(1, False), (1, True), (2, True)],
                         ids=["1-layer", "1-layer-bi", "2-layer-bi"])
@pytest.mark.parametrize("cell", ALL_CELLS)
def test_lengths_equal_running_each_sequence_alone(cell, layers, bi):
    layer, x, lengths = _lengths_batch(cell, layers, bi)
    out, state = layer(x, lengths=lengths)
    for n, length in enumerate(lengths.tolist()):
        alone_out, alone_state = layer(x[n:n + 1, :length])
        _close(out[n:n + 1, :length], alone_out, atol=1e-6)
        assert not out[n, length:].any()  # zero past the end
        if isinstance(state, tuple):
            _close((state[0][:, n:n + 1], state[1][:, n:n + 1]), alone_state, atol=1e-6)
        else:
            _close(state[:, n:n + 1], alone_state, atol=1e-6)


@pytest.mark.parametrize("cell", sorted(TORCH))
def test_lengths_equal_torch_packed_sequences(cell):
    layer, x, lengths = _lengths_batch(cell, 2, True)
    theirs = layer.to_torch()
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    ref_out, ref_state = theirs(packed)
    ref_out, _ = pad_packed_sequence(ref_out, batch_first=True, total_length=6)
    out, state = layer(x, lengths=lengths.tolist())  # a list works as well as a tensor
    _close(out, ref_out)
    _close(state, ref_state)


@pytest.mark.parametrize("use_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("cell", sorted(TORCH))
def test_native_backend_equals_python_backend(cell, use_lengths):
    layer, x, lengths = _lengths_batch(cell, 2, True)
    native = Recurrent(cell, 3, 4, num_layers=2, bidirectional=True, backend="native")
    native.load_state_dict(layer.state_dict())
    assert not list(native.parameters())[0].grad
    torch.manual_seed(1)
    h0 = torch.randn(4, 4, 4)
    state0 = (h0, torch.randn(4, 4, 4)) if cell == "lstm" else h0
    kw = {"lengths": lengths} if use_lengths else {}
    results = []
    for module in (layer, native):
        out, state = module(x, state0, **kw)
        (out.square().sum() + _h(state).square().sum()).backward()
        results.append((out, state, [p.grad for p in module.parameters()]))
    (out_p, state_p, grads_p), (out_n, state_n, grads_n) = results
    _close(out_n, out_p)
    _close(state_n, state_p)
    assert len(grads_n) == len(grads_p) == 16
    for gp, gn in zip(grads_p, grads_n, strict=True):
        torch.testing.assert_close(gn, gp, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", ["python", "native"])
def test_batch_first_false(backend):
    torch.manual_seed(0)
    first = Recurrent("gru", 3, 4, bidirectional=True, backend=backend)
    second = Recurrent("gru", 3, 4, bidirectional=True, batch_first=False, backend=backend)
    second.load_state_dict(first.state_dict())
    x = torch.randn(2, 5, 3)
    lengths = torch.tensor([5, 3])
    out1, h1 = first(x, lengths=lengths)
    out2, h2 = second(x.transpose(0, 1).contiguous(), lengths=lengths)
    assert out2.shape == (5, 2, 8)
    _close(out2.transpose(0, 1), out1, atol=1e-6)
    _close(h2, h1, atol=1e-6)


def test_float64_is_tight():
    torch.manual_seed(0)
    theirs = nn.LSTM(3, 4, num_layers=2, batch_first=True).double()
    ours = Recurrent("lstm", 3, 4, num_layers=2).double()
    ours.load_torch_state_dict(theirs.state_dict())
    x = torch.randn(2, 9, 3, dtype=torch.float64)
    _close(ours(x)[0], theirs(x)[0], atol=1e-12)


def test_bias_false_and_relu_round_trip():
    torch.manual_seed(0)
    theirs = nn.RNN(3, 4, bias=False, nonlinearity="relu", batch_first=True)
    ours = Recurrent("srn", 3, 4, bias=False, nonlinearity="relu")
    ours.load_torch_state_dict(theirs.state_dict())
    x = torch.randn(2, 5, 3)
    _close(ours(x)[0], theirs(x)[0])
    clone = ours.to_torch()
    assert clone.nonlinearity == "relu" and clone.bias is False


def test_errors_are_one_clear_sentence():
    layer = Recurrent("lstm", 32, 4)
    with pytest.raises(RnnlabError, match=r"expected input of shape \(N, L, 32\) with "
                                          r"batch_first=True, got \(8, 20\)"):
        layer(torch.randn(8, 20))
    with pytest.raises(RnnlabError, match=r"\(L, N, 32\) with batch_first=False, got \(8, 20, 3\)"):
        Recurrent("srn", 32, 4, batch_first=False)(torch.randn(8, 20, 3))
    x = torch.randn(2, 5, 32)
    with pytest.raises(RnnlabError, match=r"lengths must lie in 1\.\.5"):
        layer(x, lengths=[6, 2])
    with pytest.raises(RnnlabError, match=r"lengths must lie in 1\.\.5"):
        layer(x, lengths=[0, 2])
    with pytest.raises(RnnlabError, match="one per sequence"):
        layer(x, lengths=[5])
    with pytest.raises(RnnlabError, match=r"initial state of shape \(1, 2, 4\)"):
        layer(x, (torch.zeros(1, 3, 4), torch.zeros(1, 3, 4)))
    with pytest.raises(RnnlabError, match="pair"):
        layer(x, torch.zeros(1, 2, 4))
    with pytest.raises(RnnlabError, match="floating-point"):
        layer(torch.zeros(2, 5, 32, dtype=torch.int64))
    with pytest.raises(RnnlabError, match="residual-srn.*no torch.nn twin"):
        Recurrent("residual-srn", 3, 4, backend="native")
    with pytest.raises(RnnlabError, match="unknown backend"):
        Recurrent("srn", 3, 4, backend="cuda")
    with pytest.raises(RnnlabError, match="unknown cell 'rnn'"):
        Recurrent("rnn", 3, 4)
    with pytest.raises(RnnlabError, match="missing"):
        layer.load_torch_state_dict(nn.LSTM(32, 4, num_layers=2).state_dict())


def test_output_shapes_and_parameter_names():
    layer = Recurrent("lstm", 3, 4, num_layers=3, bidirectional=True)
    out, (h, c) = layer(torch.randn(2, 5, 3))
    assert out.shape == (2, 5, 8) and h.shape == c.shape == (6, 2, 4)
    assert layer.output_size == 8
    assert "cells.5.bias_hh" in layer.state_dict()
    assert "weight_hh_l2_reverse" in layer.torch_state_dict()
    assert "'lstm', 3, 4, num_layers=3, bidirectional=True" in repr(layer)


def test_native_layer_survives_deepcopy_and_pickle():
    torch.manual_seed(0)
    layer = Recurrent("gru", 3, 4, backend="native")
    x = torch.randn(2, 5, 3)
    expected, _ = layer(x, lengths=[5, 5])  # full lengths take the unmasked path
    for clone in (copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))):
        assert torch.equal(clone(x)[0], expected)
    assert list(layer.state_dict()) == ["cells.0.weight_ih", "cells.0.weight_hh",
                                        "cells.0.bias_ih", "cells.0.bias_hh"]
