"""Training plumbing shared by the recipes: accelerator set-up and run folders, atomic
checkpoints, the optimiser schedule, evaluation of a PyTorch model, resumable run stages."""
