from .run_guards import EpochSeedHook, FiniteLossHook, NonFiniteLossError  # noqa: F401
