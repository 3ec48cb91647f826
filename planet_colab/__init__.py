"""planet_colab: PlaNet (RSSM world model + CEM planner) that survives Colab disconnects."""

from __future__ import annotations

__all__ = ["Config", "get_config"]
__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """Config and get_config on first use: `python -m planet_colab` reaches its Ctrl-C handler sooner."""
    if name in __all__:
        from planet_colab import config

        return getattr(config, name)
    raise AttributeError(f"module 'planet_colab' has no attribute {name!r}")
