"""Segmentation models, fixed-step training, evaluation and safetensors checkpoints.

Modules: ``models`` (registry: unet, lraspp, deeplabv3), ``arrays`` (splits in memory,
augmentation), ``loop`` (train, predict, evaluate), ``metrics`` (confusion matrix, mIoU),
``checkpoint`` (safetensors).
"""
