from .caption_samples import CaptionSamplesHook
from .checkpoint_match import CheckpointMatchHook, require_matching_checkpoint
from .data_requirements import DataRequirementsHook
from .ema import StudentEMAHook
from .loss_weight_schedule import LossWeightScheduleHook, resolve_target, schedule_value
from .mid_epoch_checkpoint import MidEpochCheckpointHook
from .run_guards import EpochSeedHook, FiniteLossHook, NonFiniteLossError  # noqa: F401
from .teacher_check import TeacherFrozenCheckHook

__all__ = ['CaptionSamplesHook', 'CheckpointMatchHook', 'require_matching_checkpoint',
           'DataRequirementsHook', 'MidEpochCheckpointHook', 'StudentEMAHook',
           'LossWeightScheduleHook', 'resolve_target', 'schedule_value',
           'TeacherFrozenCheckHook', 'EpochSeedHook', 'FiniteLossHook', 'NonFiniteLossError']
