"""Training: the transform net, VGG perceptual losses, data, checkpoints. Imports torch on use only."""
