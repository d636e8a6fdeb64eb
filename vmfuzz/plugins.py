"""Plugins: modules imported before fuzzing to register extra operations, bugs or checks.

A plugin is a module name (``mypkg.vmfuzz_ops``) or a path to a ``.py`` file.  Whatever it
registers (``vmfuzz.kernel.ops.operation``, ``vmfuzz.kernel.bugs.register`` ...) exists only in
the processes that imported it, so every process that fuzzes or replays (a soak's workers, the
report drawing a finding's timeline) loads the same plugins first.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
from pathlib import Path


class PluginError(Exception):
    """A plugin could not be imported: ``str(e)`` is one line for the user."""


def load_plugins(plugins: tuple[str, ...] | list[str]) -> None:
    """Import each plugin: a module name, or a path to a ``.py`` file (registers ops, bugs ...).

    A file is imported as module ``vmfuzz_plugin_<stem>``, once per process.  Raises
    :class:`PluginError` naming the plugin and what went wrong.
    """
    for name in plugins:
        if name.endswith(".py") or os.sep in name:
            path = Path(name)
            modname = "vmfuzz_plugin_" + re.sub(r"\W", "_", path.stem)
            if modname in sys.modules:
                continue
            if not path.is_file():
                raise PluginError(f"plugin {name}: no such file")
            spec = importlib.util.spec_from_file_location(modname, path)
            if spec is None or spec.loader is None:
                raise PluginError(f"plugin {name}: cannot be imported")
            mod = importlib.util.module_from_spec(spec)
            sys.modules[modname] = mod
            try:
                spec.loader.exec_module(mod)
            except Exception as e:
                del sys.modules[modname]
                raise PluginError(f"plugin {name}: {type(e).__name__}: {e}") from None
        else:
            try:
                importlib.import_module(name)
            except Exception as e:
                raise PluginError(f"plugin {name}: {type(e).__name__}: {e}") from None
