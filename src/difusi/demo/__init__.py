"""The offline end-to-end demo: a small-scale replica of the seed's experiment on a 2-core CPU.

offline Indonesian corpus -> project tokenizer -> `demo` base pretrained (causally, then with the
diffusion loss) on plain text and general instruction tasks -> learnable Cendol-shaped tasks
(difusi.synthetic.tasks) -> prepare (TF-IDF embedder, demo-sized counts) -> full fine-tuning, LoRA, LoRA+
and PiSSA at equal steps and tokens -> evaluation of the base and each run (test set, held-out
general text) -> comparison report with paired tests. `run_speed_quality` adds the AR twin and the
sampler sweep, `run_block_methods` the seed's methods on the block objective.

It is a replica in miniature (a 1.4M-parameter LLaDA, not LLaDA-8B), so its numbers show the
pipeline learning and compare methods at this scale only. Like the seed's experiment, which adapts
a downloaded LLaDA, the demo starts from a pretrained base: difusi ships the run of
configs/demo-pretrain.yaml (src/difusi/assets/, 16 CPU minutes to rebuild) and its AR twin's, and
`pretrain=True` (`difusi demo --pretrain`) trains them here instead. Every stage writes its own
directory under OUT and is skipped when that output already exists, so a rerun (or a run after an
interruption) only does what is missing. A training stage cut short starts afresh (the demo writes
no mid-run checkpoints: each stage takes minutes).

Modules: `config` (the settings and the configs they give each stage), `stages` (what a stage is,
and the ones several recipes share), `pipeline` (the demo itself), `speed_quality` (the AR twin and
the sampler sweep), `block_methods` (full, LoRA, LoRA+ and PiSSA converting the base to block diffusion).
"""

from difusi.demo.block_methods import run_block_methods
from difusi.demo.config import FULL_DEMO, METHODS, QUICK_DEMO, SHIPPED_BASES, DemoConfig
from difusi.demo.pipeline import run_demo
from difusi.demo.speed_quality import run_speed_quality

__all__ = [
    "FULL_DEMO",
    "METHODS",
    "QUICK_DEMO",
    "SHIPPED_BASES",
    "DemoConfig",
    "run_block_methods",
    "run_demo",
    "run_speed_quality",
]
