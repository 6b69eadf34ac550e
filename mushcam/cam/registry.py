"""The registry of CAM methods: adding a method is one function and one entry here.

A :class:`Method` names its function (``MapRequest -> N x h x w`` raw map), its label for
people, what it costs and whether it needs gradients; the command line (:func:`method_help`),
the pages (:data:`METHODS`, :data:`METHOD_LABELS`), the cache key and the docs read it.
What each built-in method costs, in passes for one image with K channels at the layer:

=============  ===============================================================
gradcam        1 forward + backward through the head only
gradcampp      same
xgradcam       same
hirescam       same
layercam       same
eigencam       1 forward (no gradient), one SVD of the h*w x K activation
ablationcam    1 forward + ceil(K / batch_size) trunk passes on one image + the
               head on K ablated copies (see :mod:`mushcam.cam.ablation`)
scorecam       1 forward + K full forward passes, batch_size at a time
finercam       as gradcam
cam            1 forward (no gradient); needs a global-average-pool + linear head
eigengradcam   as gradcam, + one small SVD
gradcamelementwise  as gradcam
fullgrad       1 forward with autograd + 1 backward through the WHOLE network
kpcacam        1 forward (no gradient), one h*w x h*w kernel eigendecomposition
shapleycam     1 forward + 2 head-only backward passes (gradient, Hessian-vector)
fem            1 forward (no gradient)
refinecam      as gradcam (all requested layers from one capture)
smoothgradcampp  1 + 4 (forward + head-only backward) on noisy copies
sscam          1 forward + 35 K full forward passes
iscam          1 forward + 10 K full forward passes
legrad         1 forward + the block recomputed, and its and the head's backward (ViT)
dff            as gradcam, + one small NMF per image
=============  ===============================================================

The registry is the one process-wide table in the engine (a plug-in point, like a codec
table): :func:`register` adds an entry and :func:`registered` adds one for a block and
removes it afterwards, so that tests do not leak entries into one another.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, KeysView, Mapping, Sequence
from dataclasses import dataclass

import torch

from mushcam.cam.ablation import ablation_cam
from mushcam.cam.activation import eigen_cam, fem, kpca_cam
from mushcam.cam.core import MapRequest
from mushcam.cam.factorization import deep_feature_factorization
from mushcam.cam.fullgrad import full_grad
from mushcam.cam.gradient import grad_cam_map, grad_cam_pp, hires_cam, layer_cam, xgrad_cam
from mushcam.cam.gradient_more import (
    SMOOTH_SAMPLES,
    class_activation_map,
    eigen_grad_cam,
    grad_cam_elementwise,
    refine_cam,
    shapley_cam,
    smooth_grad_cam_pp,
)
from mushcam.cam.legrad import legrad
from mushcam.cam.score import score_cam
from mushcam.cam.score_variants import ISCAM_SAMPLES, SSCAM_SAMPLES, is_cam, sampled_passes, ss_cam
from mushcam.cam.targets import Score, finer_score
from mushcam.exceptions import MushcamError

DEFAULT_METHOD = "gradcam"
HEAD_BACKWARD = "1 forward + head-only backward"


class UnknownMethodError(MushcamError):
    """A CAM method name that MushCAM does not implement (the message lists the names)."""


@dataclass(frozen=True)
class Method:
    """One CAM method: ``function(request)`` gives the raw maps (N x h x w, ReLU'd) of one layer.

    ``name``: the identifier (CLI, cache key, column keys); ``label``: what people read;
    ``cost``: what it costs, in words; ``needs_gradient``: whether the capture pass must run
    the head-only backward; ``passes(K)``: about how many forward passes of the whole network
    one image costs with K channels at the layer (what the pages multiply by the measured
    forward time to say how long a map will take before they start it).
    """

    name: str
    label: str
    cost: str
    needs_gradient: bool
    function: Callable[[MapRequest], torch.Tensor]
    passes: Callable[[int], float] = lambda channels: 1.0
    target: Score | None = None  # the method's own target (Finer-CAM); None: the explained class's logit
    second_order: bool = False  # the capture also keeps the head's Hessian-vector product (ShapleyCAM)
    contrast: bool = True  # False: the method re-runs its own captures of the class's logit (no versus)
    layer_input: bool = False  # the capture also keeps what entered the layer (LeGrad recomputes the block)

    @property
    def can_contrast(self) -> bool:
        """Whether the method can explain ``y_A - y_B`` (a ``versus`` class): a gradient method of the class's logit."""
        return self.needs_gradient and self.target is None and self.contrast

    def estimated_passes(self, channels: int) -> float:
        """``passes(channels)``, at least 1."""
        return max(1.0, float(self.passes(int(channels))))


class Registry:
    """Methods by name, in registration order; reads see a consistent snapshot."""

    def __init__(self, methods: Sequence[Method] = ()) -> None:
        self._lock = threading.Lock()
        self._methods: dict[str, Method] = {method.name: method for method in methods}

    def names(self) -> tuple[str, ...]:
        """Every method's name, in order."""
        return tuple(self._methods)

    def get(self, name: str) -> Method:
        """The method called ``name``; UnknownMethodError (listing the names) otherwise."""
        method = self._methods.get(name)
        if method is None:
            raise UnknownMethodError(f"unknown CAM method {name!r}; choose one of: {', '.join(self._methods)}")
        return method

    def add(self, method: Method) -> None:
        """Add ``method``; a name already taken is refused (ValueError: a programming error)."""
        with self._lock:
            if method.name in self._methods:
                raise ValueError(f"a CAM method named {method.name!r} is already registered")
            self._methods = {**self._methods, method.name: method}

    def remove(self, name: str) -> None:
        """Remove the method called ``name`` (built-in ones too: the caller's choice)."""
        with self._lock:
            self._methods = {key: value for key, value in self._methods.items() if key != name}


ABLATION_TAIL = 1 / 16  # an ablated copy costs about 1/16 of a forward (the part after the layer; measured on
# ResNet-50 layer4 at 224 px: 2,048 copies took ~6 s where one forward takes ~32 ms)


def score_passes(channels: int) -> float:
    """Score-CAM: the capture plus one whole forward per channel."""
    return 1.0 + channels


def ablation_passes(channels: int) -> float:
    """Ablation-CAM: the capture plus the part after the layer on every ablated copy."""
    return 1.0 + channels * ABLATION_TAIL


BUILT_IN: tuple[Method, ...] = (
    Method("gradcam", "Grad-CAM", HEAD_BACKWARD, True, grad_cam_map),
    Method("gradcampp", "Grad-CAM++", HEAD_BACKWARD, True, grad_cam_pp),
    Method("xgradcam", "XGrad-CAM", HEAD_BACKWARD, True, xgrad_cam),
    Method("hirescam", "HiResCAM", HEAD_BACKWARD, True, hires_cam),
    Method("layercam", "LayerCAM", HEAD_BACKWARD, True, layer_cam),
    Method("eigencam", "Eigen-CAM", "1 forward, no gradient", False, eigen_cam),
    Method("ablationcam", "Ablation-CAM",
           "1 forward + 1 trunk pass per chunk of ablated channels + the head on every channel", False, ablation_cam,
           ablation_passes),
    Method("scorecam", "Score-CAM", "1 forward + 1 full forward per channel", False, score_cam, score_passes),
    Method("finercam", "Finer-CAM", HEAD_BACKWARD, True, grad_cam_map, target=finer_score()),
    Method("cam", "CAM", "1 forward, no gradient (needs a global-average-pool + linear head)", False,
           class_activation_map),
    Method("eigengradcam", "EigenGrad-CAM", f"{HEAD_BACKWARD}, one small SVD", True, eigen_grad_cam),
    Method("gradcamelementwise", "Grad-CAM (element-wise)", HEAD_BACKWARD, True, grad_cam_elementwise),
    Method("fullgrad", "FullGrad", "1 forward with autograd + 1 backward through the whole network (not head-only)",
           False, full_grad, lambda channels: 3.0),
    Method("kpcacam", "KPCA-CAM", "1 forward, no gradient, one small kernel eigendecomposition", False, kpca_cam),
    Method("shapleycam", "ShapleyCAM", "1 forward + 2 head-only backward passes (gradient, Hessian-vector product)",
           True, shapley_cam, second_order=True),
    Method("fem", "FEM", "1 forward, no gradient", False, fem),
    Method("refinecam", "RefineCAM", f"{HEAD_BACKWARD} (every requested layer from one capture)", True, refine_cam),
    Method("smoothgradcampp", "Smooth Grad-CAM++",
           f"1 + {SMOOTH_SAMPLES} x (forward + head-only backward), on noisy copies of the image", True,
           smooth_grad_cam_pp, lambda channels: 1.0 + SMOOTH_SAMPLES, contrast=False),
    Method("sscam", "SS-CAM", f"1 forward + {SSCAM_SAMPLES} full forwards per channel", False, ss_cam,
           sampled_passes(SSCAM_SAMPLES)),
    Method("iscam", "IS-CAM", f"1 forward + {ISCAM_SAMPLES} full forwards per channel", False, is_cam,
           sampled_passes(ISCAM_SAMPLES)),
    Method("legrad", "LeGrad", "1 forward + the block recomputed with autograd and its backward (ViT only)", False,
           legrad, layer_input=True),
    Method("dff", "Deep Feature Factorization", f"{HEAD_BACKWARD}, one small NMF per image", True,
           deep_feature_factorization),
)

REGISTRY = Registry(BUILT_IN)


def get_method(name: str) -> Method:
    """The registered method called ``name`` (UnknownMethodError listing the names otherwise)."""
    return REGISTRY.get(name)


def check_method(method: str) -> str:
    """``method`` if it names a registered method; otherwise UnknownMethodError listing the names."""
    REGISTRY.get(method)
    return method


def method_label(name: str) -> str:
    """The method's label for people ("Grad-CAM++")."""
    return REGISTRY.get(name).label


def method_names() -> tuple[str, ...]:
    """The registered methods' names now, in order."""
    return REGISTRY.names()


def register(method: Method) -> Method:
    """Add ``method`` to the registry (see :func:`registered` to add it for a block only)."""
    REGISTRY.add(method)
    return method


def unregister(name: str) -> None:
    """Remove the method called ``name`` from the registry."""
    REGISTRY.remove(name)


@contextlib.contextmanager
def registered(method: Method) -> Iterator[Method]:
    """``method`` is registered inside the block and removed afterwards, on every path."""
    register(method)
    try:
        yield method
    finally:
        unregister(method.name)


def contrast_labels() -> tuple[str, ...]:
    """The labels of the registered methods that can explain A over B (``versus``), in registry order."""
    return tuple(get_method(name).label for name in method_names() if get_method(name).can_contrast)


def method_help() -> str:
    """The text of a command's ``--method`` help: "CAM method: gradcam (default), gradcampp, ... or scorecam"."""
    names = [f"{name} (default)" if name == DEFAULT_METHOD else name for name in method_names()]
    listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
    return f"CAM method: {listed}"


class MethodTable(Mapping[str, Method]):
    """A read-only, live view ``name -> Method`` of the registry, in registration order."""

    def __getitem__(self, name: str) -> Method:
        try:
            return REGISTRY.get(name)
        except UnknownMethodError:
            raise KeyError(name) from None

    def __iter__(self) -> Iterator[str]:
        return iter(method_names())

    def __len__(self) -> int:
        return len(method_names())


class MethodNames(KeysView[str]):
    """A read-only, live view of the registered names; equal to the tuple of them.

    A keys view (not a plain Sequence) so that Streamlit's option widgets take it as a list.
    """

    def __init__(self) -> None:
        super().__init__(MethodTable())

    def __getitem__(self, index: int) -> str:
        return method_names()[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (tuple, list, MethodNames)):
            return method_names() == tuple(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment] - live contents: not hashable

    def __repr__(self) -> str:
        return repr(method_names())


class MethodField(Mapping[str, str]):
    """A read-only, live view ``name -> one field of its Method`` (label or cost)."""

    def __init__(self, field: str) -> None:
        self._field = field
        self._table = MethodTable()

    def __getitem__(self, name: str) -> str:
        return getattr(self._table[name], self._field)

    def __iter__(self) -> Iterator[str]:
        return iter(self._table)

    def __len__(self) -> int:
        return len(self._table)

    def __repr__(self) -> str:
        return repr(dict(self.items()))


METHODS: MethodNames = MethodNames()
METHOD_LABELS: Mapping[str, str] = MethodField("label")
COSTS: Mapping[str, str] = MethodField("cost")


@dataclass(frozen=True)
class Column:
    """One column of a comparison grid: a model and a CAM method, always both.

    ``key`` is the string the grid, the session and exported files have always used: the
    model's name alone for Grad-CAM (as before there were other methods), ``model/method``
    otherwise. :meth:`parse` reads such a key back.
    """

    model: str
    method: str = DEFAULT_METHOD

    @property
    def key(self) -> str:
        """"resnet50" for Grad-CAM, "resnet50/gradcampp" for another method."""
        return self.model if self.method == DEFAULT_METHOD else f"{self.model}/{self.method}"

    @classmethod
    def parse(cls, key: str) -> Column:
        """The column of a :attr:`key`; a key whose part after the last "/" names no method is a
        Grad-CAM column of a model whose name has a "/" in it."""
        model, _, method = key.rpartition("/")
        if model and method in method_names():
            return cls(model, method)
        return cls(key, DEFAULT_METHOD)
