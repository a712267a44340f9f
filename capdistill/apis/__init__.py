from .inference import deployed_model, init_captioner

__all__ = ['deployed_model', 'init_captioner']
