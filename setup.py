"""Packaging beyond pyproject.toml: the device kit.

The kit's source is the top-level `export/` folder (infer.py, requirements.txt, README.md).
It ships inside the wheel as the package data of `edgedistill.kit`, so that `edgedistill
export` works after a plain `pip install` (not only `pip install -e`).
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["edgedistill", "edgedistill.*"]) + ["edgedistill.kit"],
    package_dir={"edgedistill.kit": "export"},
    package_data={"edgedistill.kit": ["infer.py", "requirements.txt", "README.md", "*.py"]},
)
