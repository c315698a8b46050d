"""Few-shot image classification on metalearn: Omniglot, mini-ImageNet, CIFAR-FS and embedded glyphs."""
