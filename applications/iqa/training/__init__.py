"""Learning a quality prior and adapting it: `tasks` (distortion-specific tasks and their batches), `prior`
(`PriorConfig`, meta-training with any core algorithm), `algorithms` (a prior's settings to a core
algorithm, refusing what it cannot honour), `finetune` (Adam on a target database)."""
