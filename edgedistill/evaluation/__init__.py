"""Scoring and timing exported files on the training machine, torch-free (numpy + onnxruntime):

- `scores`: keyword accuracy, speaker-verification EER / minDCF and streaming misses at fixed
  false alarms per hour, of an ONNX file on labelled clips;
- `latency`: milliseconds per call at a fixed thread count, files timed side by side.

Not part of the device kit: `edgedistill.runtime` is what ships.
"""
