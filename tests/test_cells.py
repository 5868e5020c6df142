"""Hand-written cells: worked examples on paper, and agreement with torch's cells."""

import math

import pytest
import torch
from torch import nn

from rnnlab.cells import (
    CELLS,
    GRU,
    LSTM,
    SRN,
    ResidualSRN,
    cell_names,
    gru_step,
    initialise,
    lstm_step,
    make_cell,
    residual_srn_step,
    srn_step,
)
from rnnlab.errors import RnnlabError
from rnnlab.layers import Recurrent

TWINS = [  # (rnnlab cell, torch cell, keyword arguments for both)
    (SRN, nn.RNNCell, {}),
    (SRN, nn.RNNCell, {"nonlinearity": "relu"}),
    (LSTM, nn.LSTMCell, {}),
    (GRU, nn.GRUCell, {}),
]
TWIN_IDS = ["srn", "srn-relu", "lstm", "gru"]


def _sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def _seed_004_srn(cls=SRN) -> SRN:
    """The seed's SRN(2, 2): ``tanh(x W + h U + b)``, so torch's weight_ih is ``W^T``."""
    W = torch.tensor([[0.1, 0.2], [0.1, 0.2]])
    U = torch.tensor([[0.0, 0.1], [0.1, 0.0]])
    b = torch.tensor([[0.1, 0.1]])
    cell = cls(2, 2, init="zeros")
    cell.load_state_dict({"weight_ih": W.T, "weight_hh": U.T, "bias_ih": b[0],
                          "bias_hh": torch.zeros(2)})
    return cell


SEED_004_INPUT = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])


def test_seed_004_worked_example():
    # Step 1, x=[1,0], h=0: xW = [0.1, 0.2], + b = [0.2, 0.3].
    h1 = [math.tanh(0.2), math.tanh(0.3)]
    # Step 2, x=[0,2]: xW = [0.2, 0.4]; hU = [0.1 h1[1], 0.1 h1[0]]; + b.
    h2 = [math.tanh(0.2 + 0.1 * h1[1] + 0.1), math.tanh(0.4 + 0.1 * h1[0] + 0.1)]
    cell = _seed_004_srn()
    _, state = cell(SEED_004_INPUT[:, 0])
    assert state[0].tolist() == pytest.approx(h1, abs=1e-7)
    _, state = cell(SEED_004_INPUT[:, 1], state)
    assert state[0].tolist() == pytest.approx(h2, abs=1e-7)

    layer = Recurrent("srn", 2, 2, init="zeros")
    layer.cells[0].load_state_dict(cell.state_dict())
    outputs, h_n = layer(SEED_004_INPUT)
    assert outputs[0].tolist() == [pytest.approx(h1, abs=1e-7), pytest.approx(h2, abs=1e-7)]
    assert h_n.shape == (1, 1, 2)
    assert h_n[0, 0].tolist() == pytest.approx(h2, abs=1e-7)


def test_seed_004_worked_example_residual():
    h1 = [math.tanh(0.2), math.tanh(0.3)]  # h0 = 0, so step 1 is the plain SRN's
    h2 = [h1[0] + math.tanh(0.3 + 0.1 * h1[1]), h1[1] + math.tanh(0.5 + 0.1 * h1[0])]
    layer = Recurrent("residual-srn", 2, 2)
    layer.cells[0].load_state_dict(_seed_004_srn(ResidualSRN).state_dict())
    _, h_n = layer(SEED_004_INPUT)
    assert h_n[0, 0].tolist() == pytest.approx(h2, abs=1e-7)


def test_lstm_worked_example_checks_gate_order():
    # One unit; only the g row reads x; f and o get biases ln 3 and ln 4, so
    # i = 0.5, f = 0.75, o = 0.8 whatever the input. A swapped gate order fails.
    cell = LSTM(1, 1, init="zeros")
    with torch.no_grad():
        cell.weight_ih[2, 0] = 1.0
        cell.bias_ih[1] = math.log(3.0)
        cell.bias_ih[3] = math.log(4.0)
    c1 = 0.5 * math.tanh(1.0)
    h1 = 0.8 * math.tanh(c1)
    c2 = 0.75 * c1  # x = 0: g = 0, the cell state just decays by f
    h2 = 0.8 * math.tanh(c2)
    _, (h, c) = cell(torch.tensor([[1.0]]))
    assert (h.item(), c.item()) == pytest.approx((h1, c1), abs=1e-7)
    _, (h, c) = cell(torch.tensor([[0.0]]), (h, c))
    assert (h.item(), c.item()) == pytest.approx((h2, c2), abs=1e-7)


def test_gru_worked_example_reset_gates_hidden_projection():
    # r = 0.25 (bias ln 1/3), z = 0.75 (bias ln 3), n reads x with weight 1 and the
    # hidden projection's bias b_hn = 0.5, which r scales: n = tanh(1 + 0.25 * 0.5).
    cell = GRU(1, 1, init="zeros")
    with torch.no_grad():
        cell.weight_ih[2, 0] = 1.0
        cell.bias_ih[0] = math.log(1 / 3)
        cell.bias_ih[1] = math.log(3.0)
        cell.bias_hh[2] = 0.5
    assert _sigmoid(math.log(1 / 3)) == pytest.approx(0.25)
    h1 = 0.25 * math.tanh(1.125)
    _, h = cell(torch.tensor([[1.0]]))
    assert h.item() == pytest.approx(h1, abs=1e-7)
    h2 = 0.25 * math.tanh(0.25 * 0.5) + 0.75 * h1  # x = 0, W_hh = 0
    _, h = cell(torch.tensor([[0.0]]), h)
    assert h.item() == pytest.approx(h2, abs=1e-7)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(("ours_cls", "theirs_cls", "kw"), TWINS, ids=TWIN_IDS)
def test_cell_equals_torch_cell_both_ways(ours_cls, theirs_cls, kw, bias):
    torch.manual_seed(0)
    theirs = theirs_cls(5, 7, bias=bias, **kw)
    ours = ours_cls(5, 7, bias=bias, init="normal", init_std=1.0, **kw)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert all(a.shape == b.shape for a, b in zip(ours.state_dict().values(),
                                                  theirs.state_dict().values(), strict=True))
    x = torch.randn(4, 5)
    h = torch.randn(4, 7)
    state = (h, torch.randn(4, 7)) if ours_cls is LSTM else h

    ours.load_state_dict(theirs.state_dict())  # torch -> rnnlab
    y, new = ours(x, state)
    ref = theirs(x, state)
    ref_h = ref[0] if isinstance(ref, tuple) else ref
    torch.testing.assert_close(y, ref_h, atol=1e-6, rtol=0)
    if ours_cls is LSTM:
        torch.testing.assert_close(new[1], ref[1], atol=1e-6, rtol=0)

    # Gradients of the same loss reach the same parameters with the same values.
    (y.square().sum()).backward()
    (ref_h.square().sum()).backward()
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-5, msg=name)

    other = ours_cls(5, 7, bias=bias, **kw)
    theirs.load_state_dict(other.state_dict())  # rnnlab -> torch
    ref = theirs(x, state)
    torch.testing.assert_close(other(x, state)[0], ref[0] if isinstance(ref, tuple) else ref,
                               atol=1e-6, rtol=0)


@pytest.mark.parametrize(("ours_cls", "theirs_cls", "kw"), TWINS, ids=TWIN_IDS)
def test_cell_equals_torch_cell_float64(ours_cls, theirs_cls, kw):
    torch.manual_seed(1)
    theirs = theirs_cls(3, 4, **kw).double()
    ours = ours_cls(3, 4, **kw).double()
    ours.load_state_dict(theirs.state_dict())
    state = None
    ref_state = None
    for _ in range(5):  # a few steps, so errors would compound
        x = torch.randn(2, 3, dtype=torch.float64)
        y, state = ours(x, state)
        ref_state = theirs(x, ref_state)
        ref_h = ref_state[0] if isinstance(ref_state, tuple) else ref_state
        torch.testing.assert_close(y, ref_h, atol=1e-12, rtol=0)


def test_residual_srn_is_state_plus_rnn_cell():
    torch.manual_seed(0)
    theirs = nn.RNNCell(3, 4)
    ours = ResidualSRN(3, 4)
    ours.load_state_dict(theirs.state_dict())
    x, h = torch.randn(5, 3), torch.randn(5, 4)
    torch.testing.assert_close(ours(x, h)[0], h + theirs(x, h), atol=1e-6, rtol=0)


@pytest.mark.parametrize(("ours_cls", "theirs_cls"),
                         [(SRN, nn.RNNCell), (LSTM, nn.LSTMCell), (GRU, nn.GRUCell)])
def test_torch_init_draws_what_torch_draws(ours_cls, theirs_cls):
    torch.manual_seed(3)
    ours = ours_cls(4, 6)
    torch.manual_seed(3)
    theirs = theirs_cls(4, 6)
    for a, b in zip(ours.state_dict().values(), theirs.state_dict().values(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_zeros_init_gives_zeros(name):
    cell = make_cell(name, 3, 4, init="zeros")
    assert all(torch.count_nonzero(p) == 0 for p in cell.parameters())


@pytest.mark.parametrize("name", sorted(CELLS))
def test_orthogonal_init(name):
    torch.manual_seed(0)
    cell = make_cell(name, 5, 6, init="orthogonal")
    eye = torch.eye(6)
    for block in cell.weight_hh.detach().chunk(cell.gates):
        torch.testing.assert_close(block.T @ block, eye, atol=1e-5, rtol=0)
    bound = math.sqrt(6 / (5 + 6))  # xavier-uniform for a 6 x 5 block
    assert cell.weight_ih.abs().max() <= bound
    assert cell.weight_ih.std() > bound / 4  # drawn, not left at zero
    assert torch.count_nonzero(cell.bias_ih) == torch.count_nonzero(cell.bias_hh) == 0


def test_keras_init_sets_only_the_lstm_forget_bias():
    torch.manual_seed(0)
    lstm = make_cell("lstm", 3, 4, init="keras")
    bias = (lstm.bias_ih + lstm.bias_hh).detach()
    assert torch.equal(bias[4:8], torch.ones(4))  # gate order i, f, g, o
    assert torch.equal(bias[:4], torch.zeros(4)) and torch.equal(bias[8:], torch.zeros(8))
    torch.manual_seed(0)
    ortho = make_cell("lstm", 3, 4, init="orthogonal")
    assert torch.equal(lstm.weight_hh, ortho.weight_hh)
    gru = make_cell("gru", 3, 4, init="keras")
    assert torch.equal(gru.bias_ih, torch.zeros(12))


def test_normal_init_std_and_xavier_bounds():
    torch.manual_seed(0)
    cell = LSTM(64, 64, init="normal", init_std=0.001)
    weights = torch.cat([p.detach().flatten() for p in cell.parameters()])
    assert weights.std().item() == pytest.approx(0.001, rel=0.03)
    assert weights.mean().abs().item() < 1e-4
    cell = GRU(10, 20, init="xavier")
    assert cell.weight_ih.abs().max() <= math.sqrt(6 / 30)
    assert cell.weight_hh.abs().max() <= math.sqrt(6 / 40)
    assert cell.weight_hh.abs().max() > math.sqrt(6 / 40) / 2
    assert torch.count_nonzero(cell.bias_hh) == 0


def test_unknown_names_raise():
    with pytest.raises(RnnlabError, match="unknown cell 'x'; known cells: "
                                          "gru, lstm, residual-srn, srn"):
        make_cell("x", 2, 2)
    with pytest.raises(RnnlabError, match="known initialisers: keras, normal, orthogonal, "
                                          "torch, xavier, zeros"):
        SRN(2, 2, init="he")
    with pytest.raises(RnnlabError, match="init_std"):
        SRN(2, 2, init="normal", init_std=0.0)
    with pytest.raises(RnnlabError, match="nonlinearity"):
        SRN(2, 2, nonlinearity="sigmoid")
    with pytest.raises(RnnlabError, match="hidden_size"):
        LSTM(2, 0)
    cell = SRN(2, 2)
    with pytest.raises(RnnlabError, match=r"expected cell input of shape \(N, 2\), got \(4, 3\)"):
        cell(torch.randn(4, 3))
    with pytest.raises(RnnlabError):
        initialise(cell, "nope")


def test_registry_and_class_attributes():
    assert cell_names() == ["gru", "lstm", "residual-srn", "srn"]
    assert {n: (c.name, c.gates) for n, c in CELLS.items()} == {
        "srn": ("srn", 1), "residual-srn": ("residual-srn", 1),
        "lstm": ("lstm", 4), "gru": ("gru", 3)}
    cell = make_cell("gru", 3, 5, bias=False, init="zeros")
    assert isinstance(cell, GRU) and cell.bias_ih is None
    assert cell.weight_ih.shape == (15, 3) and cell.weight_hh.shape == (15, 5)


def test_initial_state_and_default_state():
    cell = LSTM(3, 4).double()
    h, c = cell.initial_state(2)
    assert h.shape == c.shape == (2, 4) and h.dtype == torch.float64
    assert not h.any() and h.data_ptr() != c.data_ptr()
    assert SRN(3, 4).initial_state(5, dtype=torch.float64).dtype == torch.float64
    x = torch.randn(2, 3, dtype=torch.float64)
    y0, _ = cell(x)
    y1, _ = cell(x, (h, c))
    assert torch.equal(y0, y1)


@pytest.mark.parametrize(("cls", "step"), [(SRN, srn_step), (ResidualSRN, residual_srn_step),
                                           (LSTM, lstm_step), (GRU, gru_step)])
def test_step_functions_run_a_stack_of_models(cls, step):
    # The engine's use: every weight gains a leading model dimension M.
    torch.manual_seed(0)
    cells = [cls(3, 4) for _ in range(3)]
    stacked = [torch.stack([getattr(c, p) for c in cells]).detach()
               for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    x = torch.randn(3, 2, 3)
    h = torch.randn(3, 2, 4)
    state = (h, torch.randn(3, 2, 4)) if cls is LSTM else h
    together = step(x, state, *stacked)
    for m, cell in enumerate(cells):
        alone = cell(x[m], (state[0][m], state[1][m]) if cls is LSTM else state[m])[1]
        if cls is LSTM:
            torch.testing.assert_close(together[0][m], alone[0], atol=1e-6, rtol=0)
            torch.testing.assert_close(together[1][m], alone[1], atol=1e-6, rtol=0)
        else:
            torch.testing.assert_close(together[m], alone, atol=1e-6, rtol=0)
