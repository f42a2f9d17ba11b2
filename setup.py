"""Packaging beyond pyproject.toml: package data from two top-level folders.

- `export/` (infer.py, listen.py, requirements.txt, README.md), the device kit's source, ships
  as `edgedistill.kit`, so that `edgedistill export` works after a plain `pip install`;
- `configs/` (the YAML recipes) ships as `edgedistill.configs`, so that `edgedistill demo` and
  `edgedistill run NAME` find the shipped recipes without a checkout;
- `edgedistill/assets/embedded_teacher/` (the demo's teacher: weights, config, provenance) ships
  inside the package, so that `teacher: embedded` loads after a plain `pip install`.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["edgedistill", "edgedistill.*"]) + ["edgedistill.kit", "edgedistill.configs"],
    package_dir={"edgedistill.kit": "export", "edgedistill.configs": "configs"},
    package_data={"edgedistill.kit": ["infer.py", "requirements.txt", "README.md", "*.py"],
                  "edgedistill.configs": ["*.yaml"], "edgedistill": ["assets/embedded_teacher/*"]},
)
