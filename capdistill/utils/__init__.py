from .checkpoint import (CheckpointError, load_full_checkpoint, load_matching_state,
                         load_student_checkpoint, resolve_checkpoint, state_dict_of,
                         strip_student_prefix, trust_directory)

__all__ = ['CheckpointError', 'load_full_checkpoint', 'load_matching_state',
           'load_student_checkpoint', 'resolve_checkpoint', 'state_dict_of',
           'strip_student_prefix', 'trust_directory']
