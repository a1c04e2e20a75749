"""Run by tests/training/test_processes.py under ``accelerate launch``: train, then save this rank's weights.

accelerate launch ... tests/training/ddp_job.py '<TrainConfig as JSON>'
"""

import json
import os
import sys

from safetensors.torch import save_file

from pixelprior.training import TrainConfig, Trainer

if __name__ == "__main__":
    trainer = Trainer(TrainConfig(**json.loads(sys.argv[1])))
    trainer.run()
    rank = trainer.accelerator.process_index
    weights = {k: v.contiguous() for k, v in trainer.prior.state_dict().items()}
    save_file(
        weights,
        os.path.join(trainer.config.output_dir, f"rank{rank}-of-{trainer.accelerator.num_processes}.safetensors"),
    )
