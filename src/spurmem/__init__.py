"""spurmem: find, measure and remove spurious memorisation in neural networks."""

__version__ = "0.1.0"
