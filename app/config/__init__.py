from app.config.loader import ConfigError, load_config
from app.config.schema import TierConfig, TierserveConfig

__all__ = ["ConfigError", "TierConfig", "TierserveConfig", "load_config"]
