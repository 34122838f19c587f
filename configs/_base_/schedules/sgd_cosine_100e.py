# The paper's schedule (Sec. 4.2): SGD with momentum 0.9 and weight decay
# 5e-4; lr 0.01 for the new head and 0.001 (x 0.1) for the pretrained
# backbone; cosine annealing stepped once per epoch over 100 epochs.
# Changing max_epochs? Change param_scheduler's T_max and end to match.
max_epochs = 100

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=5e-4),
    paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.1)}),
)

param_scheduler = dict(
    type='CosineAnnealingLR', T_max=max_epochs, by_epoch=True, begin=0, end=max_epochs)

# The whole test set is scored after the last epoch (and every val_interval).
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=10)
val_cfg = dict()
test_cfg = dict()

# The paper's batch: 32 in total. With K GPUs give each batch_size=32 // K, or
# run with --auto-scale-lr to scale the lr linearly from this base.
auto_scale_lr = dict(base_batch_size=32)
