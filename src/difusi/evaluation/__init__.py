"""Evaluation metrics, method-comparison reports and benchmarks."""
