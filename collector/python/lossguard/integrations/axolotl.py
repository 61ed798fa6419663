"""An Axolotl plugin that attaches lossguard's Hugging Face callback to Axolotl's trainer:

    # in the Axolotl config (YAML)
    plugins:
      - lossguard.integrations.axolotl.LossguardPlugin

with the server in $LOSSGUARD_SERVER (and $LOSSGUARD_TOKEN if it has one). The run is named by
$LOSSGUARD_RUN, else the config's wandb_name, else the name of its output_dir.

Follows Axolotl's plugin interface (``axolotl.integrations.base.BasePlugin``: instantiated without
arguments by its PluginManager, ``add_callbacks_post_trainer(cfg, trainer)`` returns callbacks that
Axolotl adds to the trainer it built). The callback takes vocab_size from the model's config and
the reference loss from the model's forward passes, so Axolotl's gradient-accumulation bug (micro-
batch means summed without dividing) is found from the first steps. Tested with Axolotl 0.19's
PluginManager and a real Trainer; without Axolotl the plugin has the same method names.
"""

import os

from lossguard.integrations.hf import LossguardCallback

try:  # the base class when Axolotl is there
    from axolotl.integrations.base import BasePlugin as _PluginBase
except ImportError:  # pragma: no cover - depends on the machine
    _PluginBase = object


class LossguardPlugin(_PluginBase):
    def add_callbacks_pre_trainer(self, cfg, model):
        return []

    def add_callbacks_post_trainer(self, cfg, trainer):
        """One LossguardCallback for the trainer, configured from the environment and cfg."""
        run = os.environ.get("LOSSGUARD_RUN") or _get(cfg, "wandb_name") or os.path.basename(
            os.path.normpath(_get(cfg, "output_dir") or "axolotl-run"))
        return [LossguardCallback(os.environ.get("LOSSGUARD_SERVER"), run)]


def _get(cfg, name):
    # Axolotl's DictDefault answers None for a missing key; a plain dict or object works too.
    if isinstance(cfg, dict):
        return cfg.get(name)
    return getattr(cfg, name, None)
