"""Cards for artifact folders: one import for the dataset and model card renderers."""

from hf_srdistill.hub.card_text import HUB_ID, TEMPLATES
from hf_srdistill.hub.dataset_card import dataset_card, write_dataset_card
from hf_srdistill.hub.model_card import eval_results, model_card, write_model_card

__all__ = ["HUB_ID", "TEMPLATES", "dataset_card", "write_dataset_card", "eval_results", "model_card",
           "write_model_card"]
