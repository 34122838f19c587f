"""Every figure of ``kt report``, gathered from a work dir: a JSON-ready dict and its PNGs.

Test outputs come from each stage's cache (:mod:`ktcli.scoring.test_outputs`; computed
and cached once where missing); only the gallery's maps and Grad-CAMs need a forward pass.
"""
import datetime
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

from .. import __version__
from ..scoring.ensemble_figures import ensemble_rows, error_structure, fuse
from .calibration import calibration, reliability_diagram
from .per_class import CONFUSION_IMAGE_CLASSES, confusion_image, per_class_figures
from .run_facts import ablations, backbone_name, exports, run_settings, stage_records
from .training_curves import curves_image, stage_scalars, val_loop_curve

# What the progress display is told: (what, how many steps) starts a task; advance() steps it.
StartTask = Callable[[str, int], Callable[[], None]]


@dataclass
class Report:
    """The figures (JSON-ready) and the images (PNG bytes by name) of one work dir."""

    figures: dict
    images: Dict[str, bytes] = field(default_factory=dict)
    strips: List[bytes] = field(default_factory=list)


def gather_report(work_dir: Path, gallery_size: int = 12, device: Optional[str] = None,
                  start_task: StartTask = lambda what, total: (lambda: None),
                  data_root: Optional[Path] = None) -> Report:
    """Gather what ``kt report`` shows about ``work_dir``.

    Args:
        work_dir (Path): A kt work dir with at least one finished stage.
        gallery_size (int): Test images in the gallery. Defaults to 12.
        device (str, optional): Where to run models (default: cuda if available).
        start_task (callable): Progress display: ``start_task(what, steps)`` returns a
            function called once per step done.
        data_root (Path, optional): The stages' data folder (default: a folder where kt
            has seen their data); read only for what is not cached.

    Returns:
        Report: The figures and images.
    """
    from ..devices import checked_device
    from ..scoring.student_scores import student_records
    from ..scoring.test_outputs import cached_test_outputs, validation_rows
    from ..stages.work_dir import StageData, trained_stages

    started = time.monotonic()
    work_dir = Path(work_dir)
    stages = trained_stages(work_dir)
    device = checked_device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    data = StageData(data_root)
    advance = start_task('test outputs (cached after the first run)', len(stages))
    outputs = []
    for stage in stages:
        outputs.append(cached_test_outputs(stage.dir, stage.digest, stage.config,
                                           stage.checkpoint, device, data=data))
        advance()
    from .gallery import load_members, test_dataset
    configs, members = load_members(stages)
    dataset = test_dataset(data.config(configs[0]))
    classes = list(dataset.metainfo['classes'])
    labels = outputs[0]['labels']
    report = Report(dict(kt_version=__version__, work_dir=str(work_dir)))
    report.figures['run'] = run_figures(work_dir, stages, configs, classes, len(labels))
    report.figures['sequence'] = sequence_figures(work_dir, stages, configs, outputs,
                                                  validation_rows(stages, device, data))
    report.figures['sequence']['students'] = [
        {key: value.to_dict() if hasattr(value, 'to_dict') else value
         for key, value in record.items()}
        for record in student_records(work_dir, stages, outputs, device, None, data)]
    report.figures['sequence']['exports'] = exports(work_dir)
    report.figures['ablations'] = ablation_figures(work_dir, report)
    report.figures['curves'] = curve_figures(work_dir, stages, report)
    names = [f'stage {stage.index}' for stage in stages]
    probabilities = {name: output['logits'].softmax(dim=1) for name, output in zip(names,
                                                                                 outputs)}
    ensemble = fuse([output['logits'] for output in outputs])
    per_class = per_class_figures(probabilities, ensemble, labels, classes)
    if len(classes) <= CONFUSION_IMAGE_CLASSES:
        report.images['confusion'] = confusion_image(per_class['confusion'], classes)
    report.figures['per_class'] = per_class
    models = [calibration(name, p, labels) for name, p in probabilities.items()]
    if len(stages) > 1:
        models.append(calibration('ensemble', ensemble, labels))
    report.images['reliability'] = reliability_diagram(models)
    report.figures['calibration'] = [vars(model) for model in models]
    report.figures['gallery'] = gallery_figures(stages, configs, members, dataset, outputs,
                                                gallery_size, report, start_task)
    report.figures['generated'] = dict(
        at=datetime.datetime.now().astimezone().isoformat(timespec='seconds'),
        host=socket.gethostname(), seconds=round(time.monotonic() - started, 2))
    return report


def run_figures(work_dir: Path, stages: list, configs: list, classes: list,
                images: int) -> dict:
    """Section 1: the run's settings, backbones, seeds, times and files."""
    from ..stages.validation_config import checkpoint_label, checkpoint_rule
    settings = run_settings(work_dir, stages)
    records = stage_records(work_dir)
    updated = sorted(r['updated'] for r in records if isinstance(r.get('updated'), str))
    seeds = sorted({r['settings']['seed'] for r in records
                    if isinstance(r.get('settings'), dict) and 'seed' in r['settings']})
    return dict(
        dataset=settings.get('dataset'), data_root=settings.get('data_root'),
        classes=len(classes), test_images=images,
        backbones=[backbone_name(cfg) for cfg in configs],
        alpha=settings.get('alpha'), weighting=settings.get('weighting'),
        epochs=settings.get('epochs'), img_size=settings.get('img_size'),
        lr=settings.get('lr'), batch_size=settings.get('batch_size'),
        val_split=settings.get('val_split', 'none'),
        checkpoint=checkpoint_label(checkpoint_rule(configs[0])),
        pretrained=settings.get('pretrained'), frozen_stages=settings.get('frozen_stages'),
        output_stride=settings.get('output_stride'), seeds=seeds,
        stages_in_work_dir=len(records), first_record=updated[0] if updated else None,
        last_record=updated[-1] if updated else None,
        stage_dirs=[str(stage.dir.relative_to(work_dir)) for stage in stages])


def sequence_figures(work_dir: Path, stages: list, configs: list, outputs: list,
                     validation: Optional[list] = None) -> dict:
    """Section 2: each stage alone and in the ensemble 1..k, with 95% paired intervals (and
    on the validation split, ``validation``'s rows, for stages trained with one)."""
    from ..scoring.comparison_text import resolution
    from ..scoring.paired_statistics import compare_paired, estimate_accuracy
    from ..stages.manifest import Manifest

    indices = [stage.index for stage in stages]
    rows = ensemble_rows(outputs, indices, [stage.digest for stage in stages])
    manifest = Manifest(work_dir, writable=False)
    records, comparisons = [], []
    for position, row in enumerate(rows):
        single, together = estimate_accuracy(row.correct), estimate_accuracy(row.ensemble_correct)
        gain = None
        if position:
            gain = compare_paired(row.ensemble_correct, rows[0].correct,
                                  f'ensemble 1..{row.index}', 'stage 1')
            comparisons.append(gain)
        record = manifest.stage(row.digest) or {}
        records.append(dict(
            row.record(), backbone=backbone_name(configs[position]),
            top1_ci=[single.ci_low, single.ci_high],
            ensemble_top1_ci=[together.ci_low, together.ci_high],
            ensemble_vs_stage_1=gain and gain.to_dict(),
            oracle_top1=error_structure(outputs[:position + 1], indices[:position + 1]
                                        ).oracle_top1,
            train_seconds=record.get('train_seconds'),
            **(dict(val_top1=validation[position].top1,
                    val_ensemble_top1=validation[position].ensemble_top1)
               if validation else {})))
    errors = error_structure(outputs, indices)
    best = max(rows, key=lambda row: row.top1)
    against_best = None
    if len(rows) > 1:
        against_best = compare_paired(rows[-1].ensemble_correct, best.correct, 'ensemble',
                                      f'stage {best.index}')
        comparisons.append(against_best)
    images = len(outputs[0]['labels'])
    return dict(images=images, fusion='softmax', stages=records,
                validation_images=len(validation[0].correct) if validation else None,
                ensemble_vs_best_member=against_best and against_best.to_dict(),
                error_structure=errors.record(),
                resolution=resolution(comparisons, images) if comparisons else '')


def ablation_figures(work_dir: Path, report: Report) -> dict:
    """Section 3: the work dir's Table 2 / Table 3 JSON, and their plots (redrawn with
    intervals from the figure data the JSON keeps, else the PNG beside it)."""
    found = {}
    for kind, ablation in ablations(work_dir).items():
        data = ablation['data']
        png = ablation['png']
        if isinstance(data.get('figure'), dict):
            from .ablation_plots import draw_figure
            from .plots import figure_png
            try:
                png = figure_png(draw_figure(data['figure']))
            except (KeyError, TypeError, ValueError):
                pass
        if png:
            report.images[f'ablate_{kind}'] = png
        found[kind] = data
    return found


def curve_figures(work_dir: Path, stages: list, report: Report) -> dict:
    """Section 4: each stage's training scalars (and the students'), one image."""
    from ..stages.config_files import read_stage_config
    from ..stages.validation_config import VALIDATION_KEY
    from ..stages.work_dir import distilled_students
    labelled = {f'stage {stage.index}': val_loop_curve(
        stage_scalars(stage.dir), read_stage_config(Path(stage.config)).get(VALIDATION_KEY))
        for stage in stages}
    for number, student in enumerate(distilled_students(work_dir), start=1):
        labelled[f'student {number}'] = stage_scalars(student.dir)
    labelled = {label: scalars for label, scalars in labelled.items() if scalars}
    if labelled:
        report.images['curves'] = curves_image(labelled)
    return {label: {name: [list(point) for point in points]
                    for name, points in scalars.items()} for label, scalars in labelled.items()}


def gallery_figures(stages: list, configs: list, members: list, dataset, outputs: list,
                    count: int, report: Report, start_task: StartTask) -> dict:
    """Section 5: the gallery's images picked from the cached outputs, then each member's
    prediction, attention map and Grad-CAM on them; one PNG strip per image."""
    from .gallery import (BOTH_RIGHT, BOTH_WRONG, GALLERY_RULE, GalleryPick, dataset_images,
                          gallery_steps, image_views, pick_gallery)
    from .prediction_panels import draw_strip, title_lines

    labels = outputs[0]['labels']
    picks = pick_gallery(outputs[0]['logits'].softmax(dim=1),
                         fuse([output['logits'] for output in outputs]), labels, count)
    if len(stages) == 1:  # no ensemble: say what the one model did
        kinds = {BOTH_WRONG: 'model 1 wrong', BOTH_RIGHT: 'model 1 right'}
        picks = [GalleryPick(pick.index, kinds[pick.kind]) for pick in picks]
    classes = list(dataset.metainfo['classes'])
    images = dataset_images(dataset, picks, labels)
    advance = start_task('gallery: attention maps and Grad-CAMs',
                         gallery_steps(len(members), len(images)))
    methods = ['attention', 'gradcam']
    views = image_views(configs, members, [f'stage {s.index}' for s in stages], images,
                        methods, advance)
    lines = title_lines(views, classes, methods, cell=160) if views else 0
    records = []
    for view, image in zip(views, images):
        strip = draw_strip(view, classes, methods, cell=160, title_lines=lines)
        report.strips.append(_jpeg(strip))
        records.append(dict(
            file=image.path.name, kind=view.kind, true=classes[view.true_label],
            members=[dict(stage=m.label, predicted=classes[m.predicted],
                          probability=m.probability, right=m.predicted == view.true_label)
                     for m in view.members],
            ensemble=None if view.ensemble is None else dict(
                predicted=classes[view.ensemble[0]], probability=view.ensemble[1],
                right=view.ensemble[0] == view.true_label)))
    return dict(rule=GALLERY_RULE, images=records)


def _jpeg(picture) -> bytes:
    """A gallery strip as JPEG: photographs and heat maps, a fifth of their PNG size."""
    import io
    buffer = io.BytesIO()
    picture.save(buffer, format='JPEG', quality=90)
    return buffer.getvalue()
