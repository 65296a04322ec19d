"""Hub integration: cards rendered from artifact folders, push, and reproduce."""

from hf_srdistill.hub.cards import dataset_card, model_card, write_dataset_card, write_model_card
from hf_srdistill.hub.folders import FolderError, check_dataset_folder, check_model_folder
from hf_srdistill.hub.push import HubPushError, push_dataset, push_model

__all__ = ["dataset_card", "model_card", "write_dataset_card", "write_model_card", "FolderError",
           "check_dataset_folder", "check_model_folder", "HubPushError", "push_dataset", "push_model"]
