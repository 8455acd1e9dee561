"""ple: Progressively Label Enhancement (PLE) for language-model alignment."""

from ple.config import PLEConfig
from ple.errors import UserError

__all__ = ["PLEConfig", "UserError"]
__version__ = "0.1.0"
