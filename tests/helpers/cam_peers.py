"""The peers' raw (unnormalised) maps, for the cross-checks of mushcam.methods.

pytorch-grad-cam's ``__call__`` min-max normalises and resizes the map; its raw map is
``np.maximum(get_cam_image(...), 0)`` on its own activations and gradients (that is what
``compute_cam_per_layer`` does before ``scale_cam_image``). These helpers run its own hook
machinery (``activations_and_grads``), its own backward (over the whole network, as it
does) and its own ``get_cam_image`` / ``get_cam_weights``, and stop there.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def grad_cam_lib_raw(method: str, model: nn.Module, layer: nn.Module, batch: torch.Tensor, classes: list[int],
                     signed: bool = False, **kwargs) -> np.ndarray:
    """pytorch-grad-cam 1.5.7's raw map (N x h x w) for ``method`` (a mushcam method name).

    ``signed``: skip the final ReLU (Eigen-CAM's projection, compared up to its sign).
    """
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    classes_by_name = {
        "gradcam": pgc.GradCAM, "gradcampp": pgc.GradCAMPlusPlus, "xgradcam": pgc.XGradCAM,
        "hirescam": pgc.HiResCAM, "layercam": pgc.LayerCAM, "eigencam": pgc.EigenCAM,
        "ablationcam": pgc.AblationCAM, "scorecam": pgc.ScoreCAM,
    }
    extractor = classes_by_name[method](model=model, target_layers=[layer], **kwargs)
    try:
        targets = [ClassifierOutputTarget(int(c)) for c in classes]
        outputs = extractor.activations_and_grads(batch)
        gradients = None
        if extractor.uses_gradients:
            model.zero_grad()
            sum(t(o) for t, o in zip(targets, outputs, strict=True)).backward()
            gradients = extractor.activations_and_grads.gradients[0].cpu().numpy()
        activations = extractor.activations_and_grads.activations[0].cpu().numpy()
        raw = extractor.get_cam_image(batch, layer, targets, activations, gradients, False)
    finally:
        extractor.activations_and_grads.release()
        model.zero_grad(set_to_none=True)
    return raw if signed else np.maximum(raw, 0)


def torchcam_raw(
    method: str, model: nn.Module, layer_name: str, batch: torch.Tensor, classes: list[int]
) -> torch.Tensor:
    """torchcam 0.5's raw map (N x h x w, ``normalized=False``) for a gradient method."""
    from torchcam import methods as tc

    classes_by_name = {
        "gradcam": tc.GradCAM,
        "gradcampp": tc.GradCAMpp,
        "xgradcam": tc.XGradCAM,
        "layercam": tc.LayerCAM,
    }
    extractor = classes_by_name[method](model, target_layer=layer_name, input_shape=tuple(batch.shape[1:]))
    try:
        scores = model(batch)
        maps = extractor([int(c) for c in classes], scores, normalized=False)
    finally:
        extractor.remove_hooks()
        model.zero_grad(set_to_none=True)
    return maps[0].detach()
