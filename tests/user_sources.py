"""Source files a user would write, as text the tests put in a temporary folder."""

# A user's RecurrentCell subclass: a leaky tanh unit (half the old state kept each step).
LEAKY_CELL = """
import torch
from rnnlab.cells.base import RecurrentCell


class LeakyCell(RecurrentCell):
    name = "leaky"
    gates = 1

    def update(self, gi, state):
        return 0.5 * state + 0.5 * torch.tanh(gi + state @ self.weight_hh.T + self.bias_hh)
"""
