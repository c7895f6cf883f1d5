"""The public path of verl-ext's dataset classes: ``data.custom_cls.path=pkg://verl_ext.datasets``
(they live in ``verl_ext.data.datasets``)."""
from verl_ext.data.datasets import DATASETS, ChatSFTDataset, DataOptions, PromptResponseDataset

__all__ = ["DATASETS", "ChatSFTDataset", "DataOptions", "PromptResponseDataset"]
