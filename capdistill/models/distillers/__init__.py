from .algorithm import DistillAlgorithm, TeacherChangedError, parse_source
from .exported import build_exported_student
from .connectors import IdentityConnector, LinearConnector, MLPConnector
from .recorders import ModuleOutputRecorder, RecorderError, RecorderManager
from .teacher_cache import TeacherCache

__all__ = ['DistillAlgorithm', 'TeacherChangedError', 'parse_source', 'IdentityConnector',
           'LinearConnector', 'MLPConnector', 'ModuleOutputRecorder', 'RecorderError',
           'RecorderManager', 'TeacherCache', 'build_exported_student']
