"""The published ResNets as specs, with the parameter counts their authors published."""

from __future__ import annotations

import dataclasses

from .spec import ResNetSpec


@dataclasses.dataclass(frozen=True)
class ZooEntry:
    spec: ResNetSpec
    input_shape: tuple[int, int, int]
    num_classes: int
    published_params: int
    source: str


_TORCHVISION = "torchvision.models (IMAGENET1K_V1 weights' num_params)"
_CIFAR = "He et al. 2015, Table 6 (exact counts as in akamaster/pytorch_resnet_cifar10, option A)"


def _imagenet(depths: tuple[int, ...], block: str, published: int) -> ZooEntry:
    spec = ResNetSpec(stem="imagenet", stage_depths=depths, block=block, base_filters=64, shortcut="B")
    return ZooEntry(spec, (224, 224, 3), 1000, published, _TORCHVISION)


def _cifar(n: int, published: int) -> ZooEntry:
    spec = ResNetSpec(stem="cifar", stage_depths=(n, n, n), block="basic", base_filters=16, shortcut="A")
    return ZooEntry(spec, (32, 32, 3), 10, published, _CIFAR)


ZOO: dict[str, ZooEntry] = {
    "resnet18": _imagenet((2, 2, 2, 2), "basic", 11_689_512),
    "resnet34": _imagenet((3, 4, 6, 3), "basic", 21_797_672),
    "resnet50": _imagenet((3, 4, 6, 3), "bottleneck", 25_557_032),
    "resnet101": _imagenet((3, 4, 23, 3), "bottleneck", 44_549_160),
    "resnet152": _imagenet((3, 8, 36, 3), "bottleneck", 60_192_808),
    "cifar_resnet20": _cifar(3, 269_722),
    "cifar_resnet32": _cifar(5, 464_154),
    "cifar_resnet44": _cifar(7, 658_586),
    "cifar_resnet56": _cifar(9, 853_018),
    "cifar_resnet110": _cifar(18, 1_727_962),
    "cifar_resnet1202": _cifar(200, 19_421_274),
}


def zoo_entry(name: str) -> ZooEntry:
    """The spec, input shape, class count and published parameter count of a named ResNet."""
    try:
        return ZOO[name]
    except KeyError:
        raise ValueError(f"unknown zoo model {name!r}; known: {', '.join(ZOO)}") from None


def zoo_spec(name: str) -> ResNetSpec:
    """The spec of a named ResNet (`resnet18` ... `resnet152`, `cifar_resnet20` ... `1202`)."""
    return zoo_entry(name).spec
