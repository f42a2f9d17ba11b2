"""Data: manifests and dataset layouts (Speech Commands, VoxCeleb, folders, `+silence=`), the
embedded corpus, PyTorch datasets and samplers, SV trials and continuous test streams."""
