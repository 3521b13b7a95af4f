"""headway: multi-view process reward models for robot manipulation."""

import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"

_LEROBOT_REWARD_CONFIGS = "lerobot.configs.rewards"
_PLUGIN = "headway.reward.configuration_headway"


class _RegisterWithLerobot(importlib.abc.MetaPathFinder):
    """Registers headway as lerobot reward type `headway` once lerobot's reward configs are imported,
    so `import headway` costs nothing when lerobot is not used (importing lerobot takes seconds)."""

    def find_spec(self, name, path, target=None):
        if name != _LEROBOT_REWARD_CONFIGS:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_register(module):
            exec_module(module)
            sys.modules[name] = module
            importlib.import_module(_PLUGIN)

        spec.loader.exec_module = exec_then_register
        return spec


if _LEROBOT_REWARD_CONFIGS in sys.modules:
    importlib.import_module(_PLUGIN)
elif not any(isinstance(finder, _RegisterWithLerobot) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterWithLerobot())
