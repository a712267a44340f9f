from .algorithm import DistillAlgorithm, TeacherChangedError, parse_source
from .connectors import IdentityConnector, LinearConnector, MLPConnector
from .recorders import ModuleOutputRecorder, RecorderError, RecorderManager
from .teacher_cache import TeacherCache

__all__ = ['DistillAlgorithm', 'TeacherChangedError', 'parse_source', 'IdentityConnector',
           'LinearConnector', 'MLPConnector', 'ModuleOutputRecorder', 'RecorderError',
           'RecorderManager', 'TeacherCache']
