"""Fine-tuning open raters on the reasoning dataset: reasoning-enhanced SFT (paper section 3.2),
the labels-only ablation, and TRACT (CoT-RAFT, two stages), with LoRA through TRL and PEFT.

Heavy imports (torch, transformers, TRL) happen inside the modules that need them, so importing
this package (the CLI, the app) stays cheap.
"""

from judgeeye.training.config import MODES, TrainingConfig, cli_command

__all__ = ["MODES", "TrainingConfig", "cli_command"]
