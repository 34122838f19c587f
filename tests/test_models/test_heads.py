import torch
from mmpretrain.registry import MODELS

import registry_plugins  # noqa: F401


def test_global_max_pooling_takes_the_spatial_maximum():
    feats = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    neck = MODELS.build(dict(type='GlobalMaxPooling'))
    torch.testing.assert_close(neck(feats), feats[:, :, -1, -1])
    (pooled, ) = neck((feats, ))
    assert pooled.shape == (2, 3)


def test_bn_mlp_head_has_the_authors_layers_and_shapes():
    head = MODELS.build(
        dict(type='BNMLPClsHead', num_classes=7, in_channels=16, hidden_channels=12))
    layers = [type(m).__name__ for m in head.hidden] + [type(head.fc).__name__]
    assert layers == ['BatchNorm1d', 'Linear', 'BatchNorm1d', 'ELU', 'Linear']
    assert head.hidden[1].in_features == 16 and head.fc.in_features == 12
    head.eval()
    feats = (torch.randn(4, 16), )
    scores = head(feats)
    assert scores.shape == (4, 7)
    torch.testing.assert_close(scores, head.fc(head.pre_logits(feats)))
