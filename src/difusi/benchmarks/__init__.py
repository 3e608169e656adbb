"""Benchmarks: commands that print and write measured figures (speed claims live here, not in tests).

`sampler` (difusi against the official algorithm; cached and threshold sampling against the exact
sampler and AR decoding), `speed_quality` (tokens/s against chrF++ for every sampler setting,
block-diffusion models and the AR twin), `serve_load` (the server under concurrent clients), and the
scripts run as `python -m difusi.benchmarks.NAME`: `gpu_llada8b` (the GPU path on the LLaDA-8B
architecture), `masked_logits` (the output head on masked positions only), `prepare_scale` (the data
pipeline on a full-size collection).
"""
