"""One-off studies behind the product's choices (which int8 graph, which student, which recipe). Each study
is one module with its own results under ``benchmarks/results/studies/``; it may import the product, never
another study."""
