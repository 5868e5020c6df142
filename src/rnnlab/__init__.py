"""rnnlab: a laboratory for recurrent neural networks."""

from rnnlab.errors import RnnlabError
from rnnlab.seeding import seed_everything

__version__ = "0.1.0"

__all__ = ["RnnlabError", "seed_everything", "__version__"]
