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
        "eigengradcam": pgc.EigenGradCAM, "kpcacam": pgc.KPCA_CAM,
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


# ---------------------------------------------------------------- the methods added for issue 20 item 3


PGC_CLASSES = {
    "gradcampp": "GradCAMPlusPlus", "eigengradcam": "EigenGradCAM", "gradcamelementwise": "GradCAMElementWise",
    "kpcacam": "KPCA_CAM", "shapleycam": "ShapleyCAM", "fem": "FEM", "fullgrad": "FullGrad",
}


def pgc_scaled(method: str, model: nn.Module, layers: list[nn.Module], batch: torch.Tensor,
               classes: list[int]) -> np.ndarray:
    """pytorch-grad-cam's own ``__call__`` (N x H x W, min-max scaled at the input size), hooks released."""
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    targets = [ClassifierOutputTarget(int(c)) for c in classes]
    if method == "refinecam":
        from pytorch_grad_cam.refine_cam import RefineCAM

        extractor = RefineCAM(model, layers)
        try:
            return extractor(input_tensor=batch, targets=targets)
        finally:
            for base in extractor.base_cam_per_layer:
                base.activations_and_grads.release()
            model.zero_grad(set_to_none=True)
    extractor = getattr(pgc, PGC_CLASSES[method])(model=model, target_layers=layers)
    try:
        return extractor(input_tensor=batch, targets=targets)
    finally:
        extractor.activations_and_grads.release()
        model.zero_grad(set_to_none=True)


def pgc_scaling(maps: torch.Tensor, size: tuple[int, int], times: int = 2) -> np.ndarray:
    """Our raw maps put through pytorch-grad-cam's own scaling: ``scale_cam_image`` to (H, W), then again
    (its ``compute_cam_per_layer`` and ``aggregate_multi_layers`` each scale once)."""
    from pytorch_grad_cam.utils.image import scale_cam_image

    out = scale_cam_image(maps.detach().numpy(), (size[1], size[0]))
    for _ in range(times - 1):
        out = scale_cam_image(out)
    return out


def torchcam_maps(method: str, model: nn.Module, layer_name: str, batch: torch.Tensor, classes: list[int],
                  seed: int = 0) -> torch.Tensor:
    """torchcam 0.5's raw map (``normalized=False``, N x h x w) for CAM, SmoothGradCAMpp, SSCAM, ISCAM or LeGrad;
    the global RNG seeded with ``seed`` just before the extractor draws its noise."""
    from torchcam import methods as tc

    if method == "legrad":
        extractor = tc.LeGrad(model, layer_name)
    else:
        kind = {"cam": tc.CAM, "smoothgradcampp": tc.SmoothGradCAMpp, "sscam": tc.SSCAM, "iscam": tc.ISCAM}[method]
        extractor = kind(model, target_layer=layer_name, input_shape=tuple(batch.shape[1:]))
    try:
        if method in ("smoothgradcampp", "legrad"):
            scores = model(batch)
        else:
            with torch.no_grad():
                scores = model(batch)
        torch.manual_seed(seed)
        maps = extractor([int(c) for c in classes], scores, normalized=False)
    finally:
        extractor.remove_hooks()
        model.zero_grad(set_to_none=True)
    return maps[0].detach()


class TinyCNN(nn.Module):
    """A small CNN with non-trivial batch-norm statistics (so FullGrad's biases are not 0).

    ``features.2`` (ReLU, 16 x 16 at 32 px) and ``features.5`` (Hardswish: signed, 8 x 8, 16 channels)
    are the target layers; the head is global-average-pool + Linear (CAM applies) or, with ``mlp``,
    Linear-Hardswish-Linear (a head with curvature: ShapleyCAM's Hessian term is not 0). The last
    linear layer is scaled by ``head_scale`` (gradients far above the peers' eps terms).
    """

    def __init__(self, mlp: bool = False, classes: int = 5, seed: int = 0, head_scale: float = 1.0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.Hardswish())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = (nn.Sequential(nn.Linear(16, 12), nn.Hardswish(), nn.Linear(12, classes)) if mlp
                     else nn.Linear(16, classes))
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.running_mean.normal_(0, 0.2)
                    module.running_var.uniform_(0.5, 1.5)
                    module.weight.normal_(1, 0.2)
                    module.bias.normal_(0, 0.2)
            last = [m for m in self.modules() if isinstance(m, nn.Linear)][-1]
            last.weight.mul_(head_scale)
            last.bias.mul_(head_scale)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.head(self.pool(self.features(x)).flatten(1))


def tiny_vit(seed: int = 0) -> nn.Module:
    """torchvision's VisionTransformer at 32 px (4 x 4 patches of 8, 2 blocks, 2 heads), a random head
    (torchvision starts it at zero, which would make every class score constant)."""
    import torchvision

    torch.manual_seed(seed)
    model = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                                                 hidden_dim=16, mlp_dim=32, num_classes=5)
    with torch.no_grad():
        model.heads.head.weight.normal_(0, 1.0)
    return model.eval()
