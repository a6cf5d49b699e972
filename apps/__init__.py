"""lorakit's applications, grouped:

- ``apps/cli/``: the ``lorakit`` command line (``main``: train/eval/methods/selfcheck; one
  module per further verb: transcribe, predict, demo, bench, reproduce, squeeze, compare);
- ``apps/web/``: the Gradio demo hub (``hub``), its four tabs (``clip``, ``cod``, ``asr``,
  ``ood``), what they share (``common``) and the pre-made runs (``prebuilt``);
- ``apps/compare/``: ``lorakit compare`` (plan and runs, pipelines, statistics, report);
- ``pipelines`` (the one pipeline registry), ``run_kind`` (which pipeline a run folder is
  from, without torch) and ``continual`` (the task-sequence pipeline: it drives CLIP and
  Whisper domains, so it sits here, above both).

The flat module names of lorakit 0.1 (``lorakit.apps.app_clip``, ``lorakit.apps.cli_asr``,
``lorakit.apps.compare_stats``, ...) still import, for one release, as aliases of their
new modules (a ``DeprecationWarning`` names the new one).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

# old flat module -> its module now (lorakit 0.1 names; remove after one release)
MOVED = {
    "cli_asr": "cli.asr", "cli_bench": "cli.bench", "bench_core": "cli.bench_core",
    "cli_compare": "cli.compare", "cli_demo": "cli.demo", "cli_help": "cli.help",
    "cli_predict": "cli.predict", "cli_reproduce": "cli.reproduce", "cli_squeeze": "cli.squeeze",
    "recipe_cli": "cli.recipe", "recipes": "cli.recipes", "selfcheck": "cli.selfcheck",
    "app_common": "web.common", "app_hub": "web.hub", "app_asr": "web.asr",
    "app_clip": "web.clip", "app_cod": "web.cod", "app_ood": "web.ood",
    "prebuilt": "web.prebuilt", "compare_pipelines": "compare.pipelines",
    "compare_report": "compare.report", "compare_stats": "compare.stats",
    "compare_probe": "lorakit.data.runtime.compare_probe",
}


def new_name(old: str) -> str:
    """The full module name that the flat module ``lorakit.apps.<old>`` moved to."""
    target = MOVED[old]
    return target if target.startswith("lorakit.") else f"{__name__}.{target}"


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports ``lorakit.apps.<old>`` as the very module object it moved to."""

    def find_spec(self, fullname, path=None, target=None):
        prefix = __name__ + "."
        if fullname.startswith(prefix) and fullname[len(prefix):] in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        new = new_name(spec.name[len(__name__) + 1:])
        warnings.warn(f"{spec.name} moved to {new}", DeprecationWarning, stacklevel=3)
        module = importlib.import_module(new)
        spec.loader_state = module.__spec__  # the import system overwrites __spec__: restore it
        return module

    def exec_module(self, module):
        module.__spec__ = module.__spec__.loader_state


if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
    sys.meta_path.append(_MovedModules())
