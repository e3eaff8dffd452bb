"""Per-chip memory and step time of the worked TPU examples (gin/tpu/*.gin), for Gecko-1b.

Parses each gin file as ``gecko-train`` would, builds the Gecko-1b dual encoder
abstractly (nothing is allocated) and prints :mod:`gecko_jax.memory_plan`'s lines, which
the comments of the gin files quote (a test checks that they agree):

    python bench/tpu_memory_plan.py [gin/tpu/v4_64.gin ...] [--output NAME]

The chip generation is the file name's first part (``v4_64.gin``: ``v4``). The figures
also go to ``bench/results/tpu_memory_plan.json`` (``--output``).
"""

from __future__ import annotations

import argparse
import glob
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C
import _provenance

# The required macros of the run files; the plan reads none of them.
PLACEHOLDER_BINDINGS = [
    "MODEL_DIR = '/tmp/plan'",
    "TRAIN_STEPS = 100000",
    "MIXTURE_OR_TASK_NAME = 'plan'",
    "T5X_CHECKPOINT = '/tmp/t5x/checkpoint_1000000'",
    "T5_VOCABULARY = '/tmp/sentencepiece.model'",
]


def gecko_1b_model():  # type: ignore[no-untyped-def]
    """Gecko-1b as runs/finetune.gin + models/gecko_1b.gin build it (no weights read)."""
    import gin

    from gecko_jax import gin_models

    model = gin_models.gecko_1b_abstract().model
    gin.clear_config()
    return model


def chip_of(path: str):  # type: ignore[no-untyped-def]
    """The ChipSpec named by a worked example's file name."""
    from gecko_jax.memory_plan import TPU_CHIPS

    name = os.path.basename(path).split("_")[0]
    if name not in TPU_CHIPS:
        raise ValueError(f"{path}: the file name must start with one of {sorted(TPU_CHIPS)}_")
    return TPU_CHIPS[name]


def plan_file(path: str, model=None):  # type: ignore[no-untyped-def]
    """The MemoryPlan of one worked example."""
    import gin

    import gecko_jax.train  # noqa: F401  (registers the configurables)
    from gecko_jax import gin_utils, memory_plan

    gin.clear_config()
    try:
        gin_utils.parse_gin([path], PLACEHOLDER_BINDINGS)
        return memory_plan.plan_from_gin(model or gecko_1b_model())
    finally:
        gin.clear_config()


def main() -> None:
    C.use_repo()
    from gecko_jax import gin_utils, memory_plan

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = sorted(glob.glob(os.path.join(gin_utils.GIN_DIR, "tpu", "*.gin")))
    parser.add_argument("gin_files", nargs="*", default=default)
    parser.add_argument("--output", default="tpu_memory_plan", help="bench/results/<NAME>.json")
    args = parser.parse_args()
    model = gecko_1b_model()
    plans = []
    for path in args.gin_files:
        plan, chip = plan_file(path, model), chip_of(path)
        plans.append(
            {
                "gin_file": os.path.relpath(path, gin_utils.GIN_DIR),
                "chip": chip.name,
                "hbm_gib": chip.hbm_gib,
                "mesh_shape": list(plan.mesh_shape),
                "chips": plan.chips,
                "param_count": plan.param_count,
                "per_chip_gib": {
                    "params": plan.params_bytes / memory_plan.GIB,
                    "optimizer": plan.optimizer_bytes / memory_plan.GIB,
                    "gradients": plan.gradient_bytes / memory_plan.GIB,
                    "activations": plan.activation_bytes / memory_plan.GIB,
                    "total": plan.total_bytes / memory_plan.GIB,
                },
                "tokens_per_step": plan.tokens_per_step,
                "step_s": plan.step_seconds(chip),
                "mfu": memory_plan.MFU,
            }
        )
        print(
            f"{os.path.relpath(path, gin_utils.GIN_DIR)}: mesh (replica, data, model) "
            f"{plan.mesh_shape}, {plan.chips} chips, {plan.param_count:,} parameters"
        )
        print(f"# {plan.per_chip_line(chip)}")
        print(f"# {plan.per_step_line(chip)}")
    path = C.write_results(args.output, {**_provenance.record(), "plans": plans})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
