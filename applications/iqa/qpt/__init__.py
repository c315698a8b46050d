"""Quality-aware contrastive pre-training (QPT, Zhao et al., CVPR 2023): a label-free quality prior.

`degradations` (random chains of our 25 distortion types at continuous strengths), `loss` (the
quality-aware InfoNCE), `data` (unlabelled images -> contrastive batches), `algorithm` (the loss as a
`MetaAlgorithm`, so the core `MetaTrainer` gives checkpoints and resume), `backbone` (the network with its
projection head, and the backbone file that initialises `train`, `finetune`, `lodo` and `cross`),
`pretrain` (the run).
"""
