"""Recipes: one config class and one function per workflow (distill, finetune, evaluate,
export, benchmark, and `run`, the whole pipeline), built from the package's components.
The CLI only parses arguments into these configs."""
