"""The trained stages of a kt sequence as one module: an image batch in, fused probabilities out.

The same :class:`EnsembleModule` runs eagerly (``kt predict`` on a work dir, the inference
benchmark) and is what ``kt export`` traces into an ONNX or TorchScript file, so the exported
graph and the eager ensemble compute the same thing by construction.
"""
import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.config import Config

from registry_plugins.input_normalisation import (InputRenormalisation, channel_order,
                                                  input_normalisation)

from ..errors import UserError
from ..scoring.ensemble_figures import FUSIONS, fuse
from ..stages.work_dir import StageData, TrainedStage, trained_stages
from .export_metadata import INTERPOLATIONS

# The normalisation of raw 0..255 input.
RAW_INPUT = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


def fused_probabilities(logits: Sequence[torch.Tensor], fusion: str) -> torch.Tensor:
    """Fuse the members' class scores into class probabilities.

    Args:
        logits (Sequence[Tensor]): Each member's logits (B, classes).
        fusion (str): ``'softmax'``: the mean of the members' softmaxes (what
            ``kt train`` scores); ``'logits'``: the softmax of the summed
            logits (the authors' fusion). See :func:`ktcli.scoring.ensemble_figures.fuse`.

    Returns:
        Tensor: Probabilities (B, classes).
    """
    scores = fuse(logits, fusion)
    return scores.softmax(dim=1) if fusion == 'logits' else scores


class EnsembleModule(nn.Module):
    """Several trained classifiers behind one forward pass.

    ``forward(images)`` returns the fused probabilities (B, classes) and,
    with ``with_attention``, each member's normalised attention map: one
    tensor (B, members, h, w) when ``stack_attention``, else one (B, h_k, w_k)
    per member, in member order.

    The input is normalised as the first member expects (or raw 0..255 values
    with ``include_preprocessing``); every member receives it re-normalised to
    its own mean/std, so members whose pretrained weights expect different
    normalisations share one input.

    Args:
        members (Sequence[nn.Module]): Classifiers with ``logits_and_attention``
            (kt's ``KTClassifier``) and a ``data_preprocessor``, all with the
            same classes and channel order.
        fusion (str): See :func:`fused_probabilities`. Defaults to ``'softmax'``.
        with_attention (bool): Also return the attention maps. Defaults to False.
        include_preprocessing (bool): Take 0..255 images (uint8 or float) and
            normalise them in the module. Defaults to False (input normalised
            as the first member expects).
        stack_attention (bool): Stack the maps into one tensor; only possible
            when all members' maps have the same size. Defaults to True.
    """

    def __init__(self,
                 members: Sequence[nn.Module],
                 fusion: str = 'softmax',
                 with_attention: bool = False,
                 include_preprocessing: bool = False,
                 stack_attention: bool = True) -> None:
        super().__init__()
        if not members:
            raise ValueError('an ensemble needs at least one member')
        if fusion not in FUSIONS:
            raise ValueError(f'unknown fusion {fusion!r}; choose one of {", ".join(FUSIONS)}')
        self.members = nn.ModuleList(members)
        self.fusion = fusion
        self.with_attention = with_attention
        self.include_preprocessing = include_preprocessing
        self.stack_attention = stack_attention
        source = RAW_INPUT if include_preprocessing else input_normalisation(members[0])
        self.member_inputs = nn.ModuleList(
            InputRenormalisation(source, input_normalisation(member)) for member in members)

    def output_names(self) -> List[str]:
        """The names of :meth:`forward`'s outputs, in order."""
        if not self.with_attention:
            return ['probabilities']
        if self.stack_attention:
            return ['probabilities', 'attention']
        return ['probabilities'] + [f'attention_{k}' for k in range(1, len(self.members) + 1)]

    def forward(self, images: torch.Tensor) -> Union[torch.Tensor, Tuple[torch.Tensor, ...]]:
        """Fused probabilities (and attention maps) of an image batch (B, 3, H, W)."""
        if self.include_preprocessing:
            images = images.float()
        logits, maps = [], []
        for member, member_input in zip(self.members, self.member_inputs):
            inputs = member_input(images)
            if self.with_attention:
                member_logits, attention = member.logits_and_attention(inputs)
                maps.append(attention)
            else:
                member_logits = member(inputs, mode='tensor')
            logits.append(member_logits)
        probabilities = fused_probabilities(logits, self.fusion)
        if not self.with_attention:
            return probabilities
        if self.stack_attention:
            return probabilities, torch.stack(maps, dim=1)
        return (probabilities, *maps)


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes the ensemble's input: the config's test pipeline and normalisation.

    The test pipeline must be ``LoadImageFromFile``, an optional ``Resize`` to a
    fixed size (``keep_ratio=False``), an optional ``CenterCrop`` and
    ``PackInputs``, which is what kt's configs use.
    """

    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    to_rgb: bool
    # (width, height) of the Resize and of the CenterCrop, None when absent.
    resize: Optional[Tuple[int, int]]
    crop: Optional[Tuple[int, int]]
    interpolation: str = 'bilinear'

    @property
    def input_size(self) -> Tuple[int, int]:
        """The (height, width) of the model input (the crop, else the resize)."""
        width, height = self.crop or self.resize
        return height, width

    @property
    def channel_order(self) -> str:
        """The channel order the network expects: RGB when the config converts to it."""
        return 'RGB' if self.to_rgb else 'BGR'

    def same_images(self, other: 'Preprocessing') -> bool:
        """Whether ``other`` makes the same pixels (it may normalise them differently)."""
        return (self.to_rgb, self.resize, self.crop, self.interpolation) == (
            other.to_rgb, other.resize, other.crop, other.interpolation)

    def to_dict(self) -> dict:
        """A JSON-ready description."""
        return dict(mean=list(self.mean), std=list(self.std), to_rgb=self.to_rgb,
                    channel_order=self.channel_order,
                    resize=list(self.resize) if self.resize else None,
                    crop=list(self.crop) if self.crop else None,
                    interpolation=self.interpolation, input_size=list(self.input_size))


def _size(value: Union[int, Sequence[int]]) -> Tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def preprocessing_of(cfg: Config, model: nn.Module) -> Preprocessing:
    """Read the test pipeline of ``cfg`` and the normalisation of ``model``.

    Args:
        cfg (Config): The stage's config.
        model (nn.Module): The model built from it (its data preprocessor
            holds the mean, std and channel conversion it was trained with).

    Returns:
        Preprocessing: The preprocessing.

    Raises:
        UserError: The test pipeline holds a transform that kt cannot reproduce.
    """
    resize = crop = None
    interpolation = 'bilinear'
    for transform in cfg.test_dataloader.dataset.pipeline:
        kind = transform['type']
        if kind == 'Resize' and transform.get('scale') and not transform.get('keep_ratio'):
            resize = _size(transform['scale'])
            interpolation = transform.get('interpolation', 'bilinear')
        elif kind == 'CenterCrop' and not transform.get('auto_pad'):
            crop = _size(transform['crop_size'])
        elif kind not in ('LoadImageFromFile', 'PackInputs'):
            raise UserError(f'the test pipeline of {cfg.filename} has {kind} {dict(transform)}, '
                            'which kt cannot reproduce outside mmpretrain; use Resize to a fixed '
                            'size and CenterCrop')
    if resize is None and crop is None:
        raise UserError(f'the test pipeline of {cfg.filename} sets no input size; add a Resize '
                        'to a fixed size or a CenterCrop')
    if interpolation not in INTERPOLATIONS:
        raise UserError(f'{cfg.filename}: interpolation {interpolation!r} is not one of '
                        f'{", ".join(INTERPOLATIONS)}')
    mean, std = input_normalisation(model)
    return Preprocessing(mean, std, channel_order(model) == 'RGB', resize, crop, interpolation)


def class_names_of(cfg: Config, num_classes: int) -> List[str]:
    """The class names of the config's test dataset.

    Taken from the dataset's ``metainfo`` in the config when it sets one, else
    from the dataset built from the config when its data is at hand (an
    ImageFolder tree names its classes by folder), else from the dataset
    class (mmpretrain's CUB, FGVC-Aircraft and Stanford Cars carry fixed
    names), else numbered ``class_0``, ``class_1``, ...

    Args:
        cfg (Config): The stage's config.
        num_classes (int): The number of classes the model predicts.

    Returns:
        list[str]: ``num_classes`` names.
    """
    dataset_cfg = cfg.test_dataloader.dataset
    names = (dataset_cfg.get('metainfo') or {}).get('classes')
    if not names:
        from mmengine.registry import init_default_scope
        from mmpretrain.registry import DATASETS
        init_default_scope(cfg.get('default_scope', 'mmpretrain'))
        # A data_root of None: the stages' data is not at hand.
        if dataset_cfg.get('data_root') is not None:
            with contextlib.suppress(OSError, ValueError, RuntimeError, AssertionError,
                                     KeyError, TypeError):
                names = DATASETS.build(dict(dataset_cfg, pipeline=[])).metainfo.get('classes')
        names = names or getattr(DATASETS.get(dataset_cfg['type']), 'METAINFO', {}).get(
            'classes')
    if not names or len(names) != num_classes:
        return [f'class_{k}' for k in range(num_classes)]
    return [str(name) for name in names]


@dataclass
class StageEnsemble:
    """An :class:`EnsembleModule` with what describes it.

    Attributes:
        module (EnsembleModule): The ensemble, in eval mode.
        preprocessing (Preprocessing): What its input must go through.
        class_names (list[str]): Its classes, in output order.
        indices (list[int]): The members' stage indices.
        digests (list[str]): The members' stage digests.
        attention_sizes (list[tuple[int, int]]): Each member's attention map
            (h, w) at the input size.
        normalisations (list[tuple]): Each member's own (mean, std); the
            module's input is normalised with the first.
        config (Config): The first member's config (its test split gives
            the images that check an export).
        device (torch.device): Where the module runs.
        stages (list[TrainedStage]): The work dir's stages the members were
            loaded from (their cached test outputs give the fp32 figures of
            an export's accuracy check); empty for members built otherwise.
        data (StageData): Where their data is found on this machine.
    """

    module: EnsembleModule
    preprocessing: Preprocessing
    class_names: List[str]
    indices: List[int]
    digests: List[str]
    attention_sizes: List[Tuple[int, int]]
    normalisations: List[Tuple[Tuple[float, ...], Tuple[float, ...]]]
    config: Config
    device: torch.device
    stages: List[TrainedStage] = field(default_factory=list)
    data: StageData = field(default_factory=StageData)


def assemble_ensemble(members: Sequence[nn.Module], configs: Sequence[Config],
                      indices: Sequence[int], digests: Sequence[str], fusion: str = 'softmax',
                      with_attention: bool = False, include_preprocessing: bool = False,
                      device: str = 'cpu',
                      stages: Sequence[TrainedStage] = ()) -> StageEnsemble:
    """Put built classifiers and their configs together into a :class:`StageEnsemble`.

    All members must make the same pixels of an image (test pipeline, channel
    order) and predict the same classes, since they see one input batch; their
    normalisations may differ (see :class:`EnsembleModule`).

    Args:
        members (Sequence[nn.Module]): The classifiers.
        configs (Sequence[Config]): Their configs, in the same order.
        indices (Sequence[int]): Their stage indices.
        digests (Sequence[str]): Their stage digests.
        fusion (str): See :func:`fused_probabilities`. Defaults to ``'softmax'``.
        with_attention (bool): Also output attention maps. Defaults to False.
        include_preprocessing (bool): Normalise 0..255 input in the module.
            Defaults to False.
        device (str): Where the module runs. Defaults to ``'cpu'``.
        stages (Sequence[TrainedStage]): The work dir's stages they were
            loaded from, if any. Defaults to ().

    Returns:
        StageEnsemble: The ensemble, in eval mode on ``device``.

    Raises:
        UserError: The members disagree on preprocessing or classes.
    """
    preprocessing = [preprocessing_of(cfg, model) for cfg, model in zip(configs, members)]
    num_classes = [model.head.num_classes for model in members]
    for k in range(1, len(members)):
        if not preprocessing[k].same_images(preprocessing[0]) or num_classes[k] != num_classes[0]:
            raise UserError(f'stages {indices[0]} and {indices[k]} differ in their test '
                            'pipeline, channel order or classes, so they cannot share one input; '
                            'pick stages trained on the same data with --models')
    target = torch.device(device)
    attention_sizes = _attention_sizes(members, preprocessing[0], target)
    module = EnsembleModule(members, fusion, with_attention, include_preprocessing,
                            stack_attention=len(set(attention_sizes)) == 1)
    return StageEnsemble(module.to(target).eval(), preprocessing[0],
                         class_names_of(configs[0], num_classes[0]), list(indices), list(digests),
                         attention_sizes, [(p.mean, p.std) for p in preprocessing], configs[0],
                         target, list(stages))


def _attention_sizes(members: Sequence[nn.Module], preprocessing: Preprocessing,
                     device: torch.device) -> List[Tuple[int, int]]:
    """Each member's attention map size at the input size (one probe image)."""
    probe = torch.zeros(1, 3, *preprocessing.input_size, device=device)
    sizes = []
    with torch.inference_mode():
        for member in members:
            member.to(device).eval()
            sizes.append(tuple(member.attention_map(probe).shape[-2:]))
    return sizes


def load_work_dir_ensemble(work_dir: Path, models: Optional[Sequence[int]] = None,
                           fusion: str = 'softmax', with_attention: bool = False,
                           include_preprocessing: bool = False,
                           device: str = 'cpu', data_root: Optional[Path] = None,
                           data_required: bool = False) -> StageEnsemble:
    """Load the finished stages of a work dir as one ensemble.

    Args:
        work_dir (Path): A work directory written by ``kt train``.
        models (Sequence[int] | str, optional): 1-based stage indices, or
            ``'distilled'`` for the newest distilled student alone. Defaults
            to None (every finished stage).
        fusion (str): See :func:`fused_probabilities`. Defaults to ``'softmax'``.
        with_attention (bool): Also output attention maps. Defaults to False.
        include_preprocessing (bool): Normalise 0..255 input in the module.
            Defaults to False.
        device (str): Where to run. Defaults to ``'cpu'``.
        data_root (Path, optional): ``--data-root``: the folder holding the
            stages' data. Defaults to None (a folder found to hold it).
        data_required (bool): Fail when their data is not found; else the
            ensemble's config reads no data (its ``data_root`` is None).
            Defaults to False.

    Returns:
        StageEnsemble: The ensemble.

    Raises:
        UserError: No such work dir or stages, stages that cannot share an
            input, ``data_root`` holding other data, or their data missing
            when it is required.
    """
    from mmengine.registry import init_default_scope

    from registry_plugins import load_trained_model

    from ..stages.config_files import read_stage_config

    stages = trained_stages(work_dir, models)
    configs = [read_stage_config(stage.config) for stage in stages]
    init_default_scope(configs[0].get('default_scope', 'mmpretrain'))
    members = [load_trained_model(cfg, stage.checkpoint, logger='silent')
               for cfg, stage in zip(configs, stages)]
    data = StageData(data_root)
    # The first member's config gives the images that check an export, and the class names.
    configs[0] = data.config(configs[0], data_required)
    ensemble = assemble_ensemble(members, configs, [s.index for s in stages],
                                 [s.digest for s in stages], fusion, with_attention,
                                 include_preprocessing, device, stages)
    ensemble.data = data
    return ensemble
