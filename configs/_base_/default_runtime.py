# Runtime settings shared by every kt config.
default_scope = 'mmpretrain'
# Registers KTClassifier, SpatialAttention, OrthogonalLoss, SequentialTeacherHook, ...
custom_imports = dict(imports=['registry_plugins'], allow_failed_imports=False)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # A checkpoint every epoch (only the newest kept) lets a stopped run
    # resume; the model a stage hands on is its LAST epoch's, never one picked
    # by test accuracy (the authors' code did that), unless a user asks for a
    # best epoch with --checkpoint (best.pth; best-test is labelled as chosen on
    # the test set wherever kt prints it).
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=1, save_last=True),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='VisualizationHook', enable=False),
    # Checkpoints of tensors and plain values only: kt loads every file
    # weights-only, so no checkpoint can run code.
    weights_only_checkpoint=dict(type='WeightsOnlyCheckpointHook'),
    # Random streams that depend on (seed, epoch) alone: a resumed run
    # trains exactly the weights of an uninterrupted one.
    epoch_seed=dict(type='EpochSeedHook'),
)

env_cfg = dict(
    # cuDNN times its convolution algorithms for each new input shape and keeps the fastest
    # (training crops have one size); the runs differ from each other in the last bits.
    cudnn_benchmark=True,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    # tools/train.py switches to gloo when no GPU is present.
    dist_cfg=dict(backend='nccl'),
)

vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)

log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
