"""bonesr-bench: super-resolution of bone micro-CT, scored on bone morphometry."""

__version__ = "0.1.0"
