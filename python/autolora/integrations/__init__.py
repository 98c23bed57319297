"""AutoLoRA inside other people's training loops. trainer.py: a transformers.Trainer subclass that runs
the search, the rank selection and the retraining in one `train()`; arguments.py: its options;
peft_config.py: a PEFT LoraConfig read as inject's arguments (`inject_like`).

Imported on demand (`from autolora.integrations.trainer import AutoLoraTrainer`): `import autolora`
does not pull in transformers' Trainer and accelerate.
"""
