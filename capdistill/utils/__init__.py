from .checkpoint import (CheckpointError, load_full_checkpoint, load_matching_state,
                         state_dict_of, trust_directory)

__all__ = ['CheckpointError', 'load_full_checkpoint', 'load_matching_state', 'state_dict_of',
           'trust_directory']
