"""Distillation components: layer-wise losses, prediction heads, CIF text heads and the
distillation model that joins them (the loop is `edgedistill.recipes.distill`)."""
