"""An image classifier that trains against frozen teachers with the OR-loss."""
from typing import Callable, List, Optional, Tuple, Union

import torch
import torch.nn as nn
from mmpretrain.models.classifiers import ImageClassifier
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from .input_normalisation import InputRenormalisation
from .teacher_precision import autograd_ready, check_teacher_precision, frozen_teacher_context


def backbone_features(backbone: nn.Module, inputs: Optional[torch.Tensor],
                      frozen: Optional[torch.Tensor] = None) -> tuple:
    """``backbone``'s features of ``inputs``, or from ``frozen``, its ``frozen_features`` of
    them, when given (only the trained stages run)."""
    return backbone(inputs) if frozen is None else backbone.features_after_frozen(frozen)


@MODELS.register_module()
class KTClassifier(ImageClassifier):
    """mmpretrain's ``ImageClassifier`` plus the knowledge-transfer OR-loss.

    The backbone's last feature map goes through the neck and head as in
    ``ImageClassifier`` and, in training, also gives the student's spatial
    attention map. With teachers attached (see :meth:`add_teacher`, done by
    ``SequentialTeacherHook``), :meth:`loss` adds the OR-loss between the
    student's map and each teacher's map of the same images.

    Teachers are kept outside the module tree: they are not in
    ``parameters()`` (so not in the optimizer, nor synchronised by DDP), not
    in ``state_dict()`` (so not in the student's checkpoints), and
    ``train()`` never switches them out of eval mode. They run their backbone
    only, under ``torch.inference_mode()`` and autocast to
    ``teacher_precision``, on the student's batch re-normalised to the
    mean/std their own weights expect (a teacher with another backbone may
    expect another normalisation); their maps come back as float32.
    ``to()``/``cuda()`` move them with the student. A teacher whose frozen
    stem and stages equal the student's (the same pretrained weights, never
    trained: see ``FreezableTIMMBackbone.shares_frozen_features``) and that
    takes the student's normalisation starts from the student's frozen
    features instead of computing them again: the same maps, without the
    teacher's frozen pass (most of a frozen EfficientNet-Lite0's forward time).

    With ``channels_last`` the student's and its teachers' weights and every
    input batch are kept in the channels-last memory format (faster
    convolutions on tensor-core GPUs); the results are those of the default
    format up to floating-point rounding.

    Args:
        backbone (dict): The backbone config.
        neck (dict, optional): The neck config. Defaults to None.
        head (dict, optional): The head config. Defaults to None.
        attention (dict): The attention-map module config. Defaults to
            ``dict(type='SpatialAttention')``.
        or_loss (dict): The OR-loss config. Defaults to
            ``dict(type='OrthogonalLoss', loss_weight=0.5)``.
        pretrained (str, optional): Checkpoint to initialise from.
            Defaults to None.
        train_cfg (dict, optional): Batch augmentation settings, as in
            ``ImageClassifier``. Defaults to None.
        data_preprocessor (dict, optional): The data preprocessor config.
            Defaults to None (``ClsDataPreprocessor``).
        init_cfg (dict, optional): The initialisation config. Defaults to None.
        teacher_precision (str): What the teachers compute in: ``'fp32'``,
            ``'fp16'``, ``'bf16'`` (autocast), or ``'auto'``: bf16 on GPUs
            with native bf16 (Ampere and later), fp16 on older GPUs, fp32
            elsewhere (CPU). Independent of the student's own precision.
            Defaults to ``'auto'``.
        channels_last (bool | str): Keep weights and inputs of the student
            and its teachers in the channels-last memory format; ``'auto'``:
            when a GPU is present (CNN backbones convolve faster so on tensor
            cores; on the CPU the default format stays). Defaults to
            ``'auto'``.
    """

    def __init__(self,
                 backbone: dict,
                 neck: Optional[dict] = None,
                 head: Optional[dict] = None,
                 attention: dict = dict(type='SpatialAttention'),
                 or_loss: dict = dict(type='OrthogonalLoss', loss_weight=0.5),
                 pretrained: Optional[str] = None,
                 train_cfg: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None,
                 teacher_precision: str = 'auto',
                 channels_last: Union[bool, str] = 'auto') -> None:
        super().__init__(
            backbone=backbone,
            neck=neck,
            head=head,
            pretrained=pretrained,
            train_cfg=train_cfg,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg)
        self.attention = MODELS.build(attention)
        self.or_loss = MODELS.build(or_loss)
        self.teacher_precision = check_teacher_precision(teacher_precision)
        if channels_last not in (True, False, 'auto'):
            raise ValueError(f"channels_last must be True, False or 'auto', got {channels_last!r}")
        self.channels_last = (torch.cuda.is_available() if channels_last == 'auto'
                              else channels_last)
        # Plain lists, so that the teachers are not registered submodules.
        self._teachers: List[nn.Module] = []
        self._teacher_inputs: List[InputRenormalisation] = []
        self._teacher_shares_frozen: List[bool] = []
        if self.channels_last:
            # Checkpoint loading copies into the weights in place, which keeps their
            # memory format; so do moves between devices (and init_weights, below).
            self.to(memory_format=torch.channels_last)

    @property
    def teachers(self) -> Tuple[nn.Module, ...]:
        """The attached frozen teachers, in training order."""
        return tuple(self._teachers)

    @property
    def memory_format(self) -> torch.memory_format:
        """The memory format of the weights and inputs of the student and its teachers."""
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def add_teacher(self, teacher: nn.Module) -> None:
        """Freeze ``teacher`` and attach it.

        Args:
            teacher (nn.Module): A trained classifier with a ``backbone``
                and a ``data_preprocessor`` (usually an earlier stage's
                ``KTClassifier``).

        Raises:
            ValueError: The teacher expects another channel order.
        """
        renormalisation = InputRenormalisation.between(self, teacher)
        teacher.requires_grad_(False)
        teacher.eval()
        teacher.to(memory_format=self.memory_format)
        parameter = next(self.parameters(), None)
        if parameter is not None:
            teacher.to(parameter.device)
            renormalisation.to(parameter.device)
        self._teachers.append(teacher)
        self._teacher_inputs.append(renormalisation)
        shares = getattr(self.backbone, 'shares_frozen_features', None)
        self._teacher_shares_frozen.append(
            renormalisation.identity and shares is not None and shares(teacher.backbone))

    def train(self, mode: bool = True) -> 'KTClassifier':
        """Set the student's mode; teachers always stay in eval mode."""
        super().train(mode)
        for teacher in self._teachers:
            teacher.eval()
        return self

    def _apply(self, fn: Callable, *args, **kwargs) -> 'KTClassifier':
        """Apply ``fn`` (device/dtype moves) to the teachers too."""
        super()._apply(fn, *args, **kwargs)
        for module in (*self._teachers, *self._teacher_inputs):
            module._apply(fn, *args, **kwargs)
        return self

    def init_weights(self) -> None:
        """Initialise the weights as ``ImageClassifier`` does, in the default memory format.

        Random initialisers fill a tensor in memory order, so channels-last
        weights would draw other values; they are initialised contiguous and
        converted back, and ``channels_last`` changes rounding only.
        """
        if not self.channels_last:
            super().init_weights()
            return
        self.to(memory_format=torch.contiguous_format)
        super().init_weights()
        self.to(memory_format=torch.channels_last)

    def forward(self, inputs: torch.Tensor, data_samples: Optional[List[DataSample]] = None,
                mode: str = 'tensor') -> Union[dict, list, torch.Tensor, tuple]:
        """``ImageClassifier.forward``, with the batch in :attr:`memory_format`."""
        if isinstance(inputs, torch.Tensor) and inputs.dim() == 4:
            inputs = inputs.contiguous(memory_format=self.memory_format)
        return super().forward(inputs, data_samples, mode)

    def attention_map(self, inputs: torch.Tensor) -> torch.Tensor:
        """The student's normalised attention maps (B, H, W) for ``inputs``."""
        return self.attention(self.backbone(inputs)[-1])

    def logits_and_attention(self, inputs: Optional[torch.Tensor],
                             frozen: Optional[torch.Tensor] = None
                             ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Class scores (B, classes) and attention maps (B, H, W) from one backbone pass
        over ``inputs``, or over the trained stages only from ``frozen``, the backbone's
        ``frozen_features`` of them."""
        feats = backbone_features(self.backbone, inputs, frozen)
        logits = self.head(self.neck(feats) if self.with_neck else feats)
        return logits, self.attention(feats[-1])

    def teacher_attention_maps(self, inputs: torch.Tensor,
                               frozen: Optional[torch.Tensor] = None) -> List[torch.Tensor]:
        """Each teacher's normalised attention maps (float32) for ``inputs``, no grad.

        Args:
            inputs (Tensor): The student's preprocessed batch.
            frozen (Tensor, optional): The student's ``frozen_features`` of
                ``inputs``, which the teachers that share them start from.
                Defaults to None (every teacher runs its whole backbone).
        """
        with frozen_teacher_context(self.teacher_precision, inputs.device):
            maps = []
            for teacher, renormalise, shares in zip(self._teachers, self._teacher_inputs,
                                                    self._teacher_shares_frozen):
                feats = backbone_features(teacher.backbone, renormalise(inputs),
                                          frozen if shares else None)
                maps.append(self.attention(feats[-1]))
        return [autograd_ready(m) for m in maps]

    def loss(self, inputs: torch.Tensor, data_samples: List[DataSample]) -> dict:
        """Cross-entropy, plus the OR-loss when teachers are attached.

        Args:
            inputs (Tensor): Preprocessed images (B, 3, H, W).
            data_samples (List[DataSample]): The samples' annotations.

        Returns:
            dict[str, Tensor]: ``loss_ce`` (the head's loss), any other head
            outputs, and ``loss_or`` when there are teachers.
        """
        # The frozen features once, for the student and the teachers that share them.
        frozen = (self.backbone.frozen_features(inputs)
                  if any(self._teacher_shares_frozen) else None)
        # Teachers first: the student's activations are then still warm in the
        # caches when its backward pass starts.
        teacher_maps = self.teacher_attention_maps(inputs, frozen) if self._teachers else []
        feats, _, losses = self._head_losses(inputs, data_samples, frozen)
        if teacher_maps:
            losses['loss_or'] = self.or_loss(
                self.attention(feats[-1]), teacher_maps, ce_loss=losses['loss_ce'])
        return losses

    def _head_losses(self, inputs: torch.Tensor, data_samples: List[DataSample],
                     frozen: Optional[torch.Tensor] = None) -> Tuple[tuple, torch.Tensor, dict]:
        """The backbone's features (from ``frozen``, its frozen features, when given), the
        logits and the head's losses (``loss`` as ``loss_ce``)."""
        feats = backbone_features(self.backbone, inputs, frozen)
        logits = self.head(self.neck(feats) if self.with_neck else feats)
        losses = {'loss_ce' if name == 'loss' else name: value
                  for name, value in self.head._get_loss(logits, data_samples).items()}
        return feats, logits, losses


@MODELS.register_module()
class KTDistiller(KTClassifier):
    """One student trained to reproduce the ensemble of its (frozen) teachers.

    The teachers are attached as for :class:`KTClassifier` (by
    ``SequentialTeacherHook``) but run their full forward, in eval mode,
    inference mode and ``teacher_precision``: their logits give the ensemble's soft
    targets, their attention maps the union the student may be pulled
    towards. The loss is the head's cross-entropy (its ``loss_weight``)
    plus ``distill_loss`` (see
    :class:`~registry_plugins.distillation_loss.EnsembleDistillationLoss`);
    there is no OR-loss. Outside training it is a plain classifier: its
    checkpoint holds the student alone.

    Args:
        distill_loss (dict): The distillation loss config. Defaults to
            ``dict(type='EnsembleDistillationLoss')``.
        **kwargs: The arguments of :class:`KTClassifier` (``or_loss`` is
            ignored).
    """

    def __init__(self, distill_loss: dict = dict(type='EnsembleDistillationLoss'),
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.or_loss = None
        self.distill_loss = MODELS.build(distill_loss)

    def teacher_outputs(self, inputs: torch.Tensor
                        ) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        """Each teacher's logits and attention maps (float32) for ``inputs``, no grad."""
        with frozen_teacher_context(self.teacher_precision, inputs.device):
            outputs = [teacher.logits_and_attention(renormalise(inputs))
                       for teacher, renormalise in zip(self._teachers, self._teacher_inputs)]
        return ([autograd_ready(logits) for logits, _ in outputs],
                [autograd_ready(maps) for _, maps in outputs])

    def loss(self, inputs: torch.Tensor, data_samples: List[DataSample]) -> dict:
        """Cross-entropy plus the distillation terms.

        Args:
            inputs (Tensor): Preprocessed images (B, 3, H, W).
            data_samples (List[DataSample]): The samples' annotations.

        Returns:
            dict[str, Tensor]: ``loss_ce`` and ``loss_kd`` (and ``loss_at``
            when its weight is not zero).

        Raises:
            RuntimeError: No teacher is attached.
        """
        if not self._teachers:
            raise RuntimeError('KTDistiller trains against teachers: attach them with '
                               'SequentialTeacherHook')
        teacher_logits, teacher_maps = self.teacher_outputs(inputs)
        feats, logits, losses = self._head_losses(inputs, data_samples)
        losses.update(self.distill_loss(logits, teacher_logits, self.attention(feats[-1]),
                                        teacher_maps))
        return losses
