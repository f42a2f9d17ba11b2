"""Packaging beyond pyproject.toml: package data from two top-level folders.

- `export/` (infer.py, listen.py, requirements.txt, README.md), the device kit's source, ships
  as `edgedistill.kit`, so that `edgedistill export` works after a plain `pip install`;
- `configs/` (the YAML recipes) ships as `edgedistill.configs`, so that `edgedistill demo` and
  `edgedistill run NAME` find the shipped recipes without a checkout;
- `edgedistill/assets/embedded_teacher/PROVENANCE.json`, the reference build of the demo's
  teacher (`teacher: embedded`): its weights are not shipped but built once per machine from
  `configs/embedded_teacher.yaml` into the cache; a build says whether it matches the reference.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["edgedistill", "edgedistill.*"]) + ["edgedistill.kit", "edgedistill.configs"],
    package_dir={"edgedistill.kit": "export", "edgedistill.configs": "configs"},
    package_data={"edgedistill.kit": ["infer.py", "requirements.txt", "README.md", "*.py"],
                  "edgedistill.configs": ["*.yaml"], "edgedistill": ["assets/embedded_teacher/*"]},
)
