"""The classes of benchmarks/torture.py, one module each; ``common`` holds what they share."""
