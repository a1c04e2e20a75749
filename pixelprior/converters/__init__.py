"""Checkpoints of other projects as pixelprior pipelines, exactly: one module per source format.

* :func:`convert_imagegpt` (:mod:`~pixelprior.converters.imagegpt`): OpenAI's Image GPT in transformers' format
  (``openai/imagegpt-small``, ``-medium``, ``-large`` or any ``ImageGPTForCausalImageModeling`` folder), with its
  colour clusters as the pipeline's palette;
* :func:`convert_pixelcnn_pp` (:mod:`~pixelprior.converters.pixelcnn_pp`): the state dicts of pclucas14/pixel-cnn-pp,
  the PyTorch port of PixelCNN++.

Both return a :class:`~pixelprior.PixelPriorPipeline` whose ``log_prob`` equals the source's log-likelihood (1e-9 nats
in float64, tested); ``pixelprior convert imagegpt|pixelcnn-pp SOURCE --output_dir DIR`` saves it as a pipeline folder
(safetensors only). Weight files are read with safetensors or ``torch.load(weights_only=True)``; nothing of theirs
runs. A state dict of another layout is a ``ValueError`` listing its missing and unexpected keys.

The converters live in the package (not in ``integrations/``, which holds non-code glue: launch configs, the model-card
template) so that the Python API and the ``pixelprior convert`` command work from an installed wheel.
"""

from .checkpoints import read_state_dict, write_pipeline
from .imagegpt import convert_imagegpt
from .pixelcnn_pp import convert_pixelcnn_pp

__all__ = ["convert_imagegpt", "convert_pixelcnn_pp", "read_state_dict", "write_pipeline"]
