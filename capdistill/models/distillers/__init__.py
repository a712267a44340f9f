from .algorithm import DistillAlgorithm, DistillConfigError, TeacherChangedError, parse_source
from .exported import build_exported_student
from .connectors import IdentityConnector, LinearConnector, MLPConnector
from .recorders import ModuleOutputRecorder, RecorderError, RecorderManager
from .student_only import (build_distilled_student, deployed_captioner_config,
                           deployed_captioner_path, deployed_model, deploys_a_wrapped_captioner,
                           is_distillation, student_only_config)
from .teacher_cache import TeacherCache
from .teachers import FrozenTeacher, Teachers, load_teacher_weights, mixture_logits

__all__ = ['DistillAlgorithm', 'DistillConfigError', 'TeacherChangedError', 'parse_source',
           'IdentityConnector', 'LinearConnector', 'MLPConnector', 'ModuleOutputRecorder',
           'RecorderError',
           'RecorderManager', 'TeacherCache', 'Teachers', 'FrozenTeacher', 'load_teacher_weights',
           'mixture_logits', 'build_exported_student', 'build_distilled_student',
           'is_distillation', 'student_only_config', 'deploys_a_wrapped_captioner',
           'deployed_captioner_path',
           'deployed_captioner_config', 'deployed_model']
