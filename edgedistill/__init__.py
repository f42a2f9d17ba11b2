"""edgedistill: distil self-supervised speech models into small students for edge CPUs.

The public API is listed in `__all__`. Names are imported lazily, so `import edgedistill`
(and the device-side `edgedistill.runtime`) does not import torch.
"""

from importlib import import_module

__version__ = "0.1.0"

_API = {
    "load_audio": "edgedistill.audio",
    "AudioError": "edgedistill.audio",
    "CorpusConfig": "edgedistill.data.corpus",
    "build_corpus": "edgedistill.data.corpus",
    "read_manifest": "edgedistill.data.manifest",
    "ManifestError": "edgedistill.data.manifest",
    "load_teacher": "edgedistill.models.teacher",
    "TeacherNotFoundError": "edgedistill.models.hub",
    "StudentConfig": "edgedistill.models.student",
    "build_student": "edgedistill.models.student",
    "DistillConfig": "edgedistill.recipes.distill_config",
    "DistillHeads": "edgedistill.distill.heads",
    "load_text_teacher": "edgedistill.models.text_teacher",
    "distill": "edgedistill.recipes.distill",
    "FinetuneConfig": "edgedistill.recipes.finetune_config",
    "finetune": "edgedistill.recipes.finetune",
    "RunConfig": "edgedistill.recipes.run_config",
    "run": "edgedistill.recipes.run",
    "plan": "edgedistill.recipes.plan",
    "export": "edgedistill.recipes.export",
    "EdgeModel": "edgedistill.runtime.model",
    "Detector": "edgedistill.runtime.streaming",
    "load_config": "edgedistill.config",
    "ConfigError": "edgedistill.config",
}
__all__ = sorted(_API) + ["__version__"]


def __getattr__(name):
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'edgedistill' has no attribute '{name}'")


def __dir__():
    return __all__
