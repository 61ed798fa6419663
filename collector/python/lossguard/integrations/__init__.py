"""Integrations of the lossguard collector with training frameworks (``lossguard.integrations.hf``:
the Hugging Face Trainer, and TRL and Axolotl, which run on it)."""
