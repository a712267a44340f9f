"""Type tests for settings read from configs and arguments (``True`` is not a count)."""
import math
import numbers


def is_int(value):
    """An integer (numpy's too) that is not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value):
    """A finite real number (numpy's too) that is not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) \
        and math.isfinite(value)


def check_int(name, value, low, error=ValueError):
    """Raise ``error`` naming ``name`` unless ``value`` is an integer ``>= low``."""
    if not is_int(value) or value < low:
        raise error(f'{name} must be an integer >= {low}, got {value!r}')
