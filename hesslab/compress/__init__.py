"""Hessian-based compression of a trained network: Optimal Brain Surgeon pruning and GPTQ quantization.

layer_hessian       H = 2XᵀX/N, the quadratic model of one linear layer's reconstruction error
obs_prune_layer     Optimal Brain Surgeon on each row (Hassibi & Stork 1993; OBC's greedy order)
global_obs_prune    OBS over the whole network on M-FAC's inverse Fisher (``hl.inverse.woodbury_fisher``)
magnitude_prune     the baseline: zero the smallest |w|
gptq                GPTQ (Frantar et al., ICLR 2023): columns in order, error feedback through Cholesky(H⁻¹)
obq_quantize        the same recursion with the full inverse (Optimal Brain Quantization's update)
round_to_nearest    the baseline: each weight to the nearest point of its row's (group's) grid
"""

from ._gptq import gptq, obq_quantize, quantization_grid, quantize, reconstruction_error, round_to_nearest
from ._obs import PruneResult, global_obs_prune, layer_hessian, magnitude_prune, obs_prune_layer

__all__ = ["layer_hessian", "obs_prune_layer", "global_obs_prune", "magnitude_prune", "PruneResult", "gptq",
           "obq_quantize", "round_to_nearest", "quantization_grid", "quantize", "reconstruction_error"]
