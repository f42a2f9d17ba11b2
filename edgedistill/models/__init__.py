"""Models: speech SSL teachers (any `transformers` HuBERT / wav2vec 2.0 / WavLM / data2vec-audio),
student shapes and presets, the text teacher, the joint KWS + SV model, named builders."""
