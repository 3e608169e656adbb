"""Masked diffusion: forward process and losses, samplers, likelihood."""
