"""`stylecast serve`: an HTTP inference server over the runtime (layer 1, torch-free).

It speaks the Open Inference Protocol (KServe v2) as Triton does, so a client written against
`stylecast serve` moves to Triton by changing its URL, plus a human endpoint and a web page.
"""
