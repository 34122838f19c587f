"""The TorchScript operators kt's own exports contain, for every backbone kt ships.

    python tools/torchscript_operators.py [--check]

traces the ensemble module ``kt export`` writes (untrained members at 32 px: the operators do
not depend on the weights) for each shipped backbone, two timm CNNs, the max-pooling / BN-MLP
head of ``configs/kt/resnet50-maxpool-bnmlp_kt_cub.py``, both fusions, with and without
attention maps and in-graph normalisation, and prints the operators of all their methods.
``ktcli/deployment/torchscript_check.py`` allows these (plus a reviewed set of pure tensor
operators) and nothing else; ``--check`` exits 1 when a traced operator is missing there.
"""
import argparse
import sys
import warnings
from pathlib import Path

if __package__ in (None, '') and (Path(__file__).resolve().parents[1] / 'ktcli').is_dir():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402

from ktcli.deployment.ensemble_module import EnsembleModule  # noqa: E402
from ktcli.deployment.torchscript_check import ALLOWED, graph_operators  # noqa: E402
from ktcli.resources import CONFIG_ROOT  # noqa: E402
from ktcli.stages.settings import TrainSettings  # noqa: E402
from ktcli.stages.stage_config import compose_stage_config
from registry_plugins import build_model_from_config  # noqa: E402

BACKBONES = ('resnet18_tiny', 'resnet50', 'vgg16', 'efficientnet_lite0', 'timm/resnet18',
             'timm/convnext_atto')
BNMLP_CONFIG = CONFIG_ROOT / 'kt' / 'resnet50-maxpool-bnmlp_kt_cub.py'


def member_configs() -> list:
    """A stage config per backbone (no pretrained weights), and the BN-MLP head's."""
    configs = []
    for backbone in BACKBONES:
        settings = TrainSettings(dataset='demo', data_root='unused', backbone=backbone,
                                 pretrained='none', img_size=32, epochs=1)
        configs.append(compose_stage_config(settings, [], Path('unused')))
    bnmlp = Config.fromfile(str(BNMLP_CONFIG))
    bnmlp.model.backbone.init_cfg = None
    configs.append(bnmlp)
    return configs


def traced_operators() -> set:
    """The operators of every traced variant of the ensembles of these members."""
    operators = set()
    members = [build_model_from_config(cfg).eval() for cfg in member_configs()]
    example = torch.rand(2, 3, 32, 32) * 255
    # One member per ensemble (more add no operators), the first backbone twice.
    for group in [members[:1] * 2] + [[member] for member in members[1:]]:
        for fusion in ('softmax', 'logits'):
            for with_attention in (False, True):
                for in_graph in (False, True):
                    module = EnsembleModule(group, fusion, with_attention, in_graph)
                    with torch.no_grad(), warnings.catch_warnings():
                        warnings.simplefilter('ignore')
                        traced = torch.jit.trace(module.eval(), example, check_trace=False)
                    operators |= graph_operators(traced)
    return operators


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--check', action='store_true',
                        help='exit 1 if a traced operator is not allowed')
    args = parser.parse_args()
    operators = traced_operators()
    for name in sorted(operators):
        print(name, '' if name in ALLOWED else '(NOT ALLOWED)')
    missing = operators - ALLOWED
    if args.check and missing:
        raise SystemExit(f'{len(missing)} traced operators are not allowed: '
                         f'{", ".join(sorted(missing))}')


if __name__ == '__main__':
    main()
