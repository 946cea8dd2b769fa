"""`stylecast bench`: every format and precision of every model, timed against PyTorch eager fp32.

Importing this package imports neither torch nor onnx: the CLI registers ``bench`` from it.
"""
