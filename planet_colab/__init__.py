"""planet_colab: PlaNet (RSSM world model + CEM planner) that survives Colab disconnects."""

from planet_colab.config import Config, get_config

__all__ = ["Config", "get_config"]
__version__ = "0.1.0"
