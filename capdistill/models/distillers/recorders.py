"""Recorders: capture the outputs of named module instances through forward hooks.

A recorder hooks one module *instance* (``model.get_submodule(path)``); nothing is
patched on the module's class, so other instances of the same class are untouched.
The hook handle is kept and removed by :meth:`ModuleOutputRecorder.remove`.

Every call of the module while the recorder is active is stored in order, so a module
called once per decoding step (incremental decoding) yields one entry per step: the
*step index* is the call's position. ``step=None`` expects exactly one call (teacher
forcing); ``step=k`` picks call ``k`` (negative counts from the end); ``step='stack'``
stacks all calls along dim 1 and ``step='cat'`` concatenates them along dim 1.
"""
import difflib

import torch


class RecorderError(RuntimeError):
    """A recorder wired to a module that does not exist or that never ran."""


def find_module(model, path, owner='model'):
    """``model.get_submodule(path)`` with a readable error naming close module paths."""
    if path in ('', None):
        return model
    try:
        return model.get_submodule(path)
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n]
        close = difflib.get_close_matches(path, names, n=3, cutoff=0.4)
        hint = f' Did you mean: {", ".join(close)}?' if close else ''
        raise RecorderError(f'Recorder: the {owner} has no module {path!r}.{hint} '
                            f'Its modules include: {", ".join(names[:12])}'
                            f'{" ..." if len(names) > 12 else ""}.') from None


def _select(output, index):
    if index is None:
        return output
    if isinstance(output, dict):
        return output[index]
    return output[index]


class ModuleOutputRecorder:
    """Records the output (or one element of a tuple/dict output) of one module.

    Args:
        model (nn.Module): the model the module path is resolved in.
        module (str): dotted path of the module instance, e.g. ``'encoder.objects'``.
        output (int | str, optional): element of a tuple/dict output to keep.
        step (None | int | 'stack' | 'cat'): which call(s) to return, see the module doc.
        name (str): the recorder's name, for error messages.
        owner (str): 'student' or 'teacher', for error messages.
    """

    def __init__(self, model, module, output=None, step=None, name='recorder',
                 owner='model'):
        if step not in (None, 'stack', 'cat') and not isinstance(step, int):
            raise ValueError(f"Recorder {name!r}: step must be None, an int, 'stack' or "
                             f"'cat', not {step!r}.")
        self.name, self.owner, self.module_path = name, owner, module
        self.output, self.step = output, step
        self.module = find_module(model, module, owner)
        self.active = False
        self.records = []
        self.handle = self.module.register_forward_hook(self._hook)

    def _hook(self, module, args, output):
        if self.active:
            try:
                self.records.append(_select(output, self.output))
            except (KeyError, IndexError, TypeError) as exc:
                raise RecorderError(
                    f'Recorder {self.name!r}: output={self.output!r} cannot be taken from '
                    f'the output of {self.owner}.{self.module_path} '
                    f'({type(output).__name__}): {exc}') from None

    def reset(self):
        self.records = []

    def start(self):
        self.reset()
        self.active = True

    def stop(self):
        self.active = False

    @property
    def fired(self):
        return bool(self.records)

    def get(self):
        """The recorded tensor for the last forward (see ``step``)."""
        if not self.records:
            raise RecorderError(
                f'Recorder {self.name!r} never fired: {self.owner}.{self.module_path} was '
                f'not called in the {self.owner} forward used for distillation (teacher-'
                'forced caption_logits). Record a module on that path, e.g. one listed by '
                f'[n for n, _ in {self.owner}.named_modules()].')
        if self.step is None:
            if len(self.records) != 1:
                raise RecorderError(
                    f'Recorder {self.name!r}: {self.owner}.{self.module_path} ran '
                    f'{len(self.records)} times in one forward; set step= (an index, '
                    "'stack' or 'cat') to say which call(s) to use.")
            return self.records[0]
        if self.step == 'stack':
            return torch.stack(self.records, dim=1)
        if self.step == 'cat':
            return torch.cat(self.records, dim=1)
        return self.records[self.step]

    def remove(self):
        """Remove the forward hook; the recorder records nothing afterwards."""
        if self.handle is not None:
            self.handle.remove()
            self.handle = None
        self.records = []


class RecorderManager:
    """The recorders of one distillation algorithm, by name."""

    def __init__(self, models, cfgs):
        self.recorders = {}
        for name, cfg in (cfgs or {}).items():
            cfg = dict(cfg)
            source = cfg.pop('source', None)
            if source not in models:
                raise RecorderError(f'Recorder {name!r}: source must be one of '
                                    f'{sorted(models)}, not {source!r}.')
            if 'module' not in cfg:
                raise RecorderError(f"Recorder {name!r}: give module='dotted.path'.")
            unknown = set(cfg) - {'module', 'output', 'step'}
            if unknown:
                raise RecorderError(f'Recorder {name!r}: unknown keys {sorted(unknown)}; '
                                    'use source, module, output, step.')
            self.recorders[name] = ModuleOutputRecorder(models[source], name=name,
                                                        owner=source, **cfg)

    def __contains__(self, name):
        return name in self.recorders

    def __iter__(self):
        return iter(self.recorders)

    def source(self, name):
        return self.recorders[name].owner

    def start(self, source):
        for rec in self.recorders.values():
            if rec.owner == source:
                rec.start()

    def stop(self, source):
        for rec in self.recorders.values():
            if rec.owner == source:
                rec.stop()

    def get(self, name):
        return self.recorders[name].get()

    def check_fired(self, names):
        silent = [n for n in names if not self.recorders[n].fired]
        if silent:
            self.recorders[silent[0]].get()  # raises with the full explanation

    def remove(self):
        for rec in self.recorders.values():
            rec.remove()
