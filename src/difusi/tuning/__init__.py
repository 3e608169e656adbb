"""Parameter-efficient fine-tuning (LoRA, LoRA+, PiSSA) and pretraining with the diffusion loss."""
