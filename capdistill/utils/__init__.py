from .checkpoint import CheckpointError, load_full_checkpoint, state_dict_of

__all__ = ['CheckpointError', 'load_full_checkpoint', 'state_dict_of']
