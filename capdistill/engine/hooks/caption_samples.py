"""Log a few sample captions (teacher, student, references) at each validation."""
import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from capdistill.registry import HOOKS


@HOOKS.register_module()
class CaptionSamplesHook(Hook):
    """After each validation, log ``num_samples`` videos of the first validation batch:
    the student's caption, the teacher's (distillation runs only) and the references.

    The teacher is frozen, so its captions of these videos are decoded once and reused
    (the teacher is not re-evaluated on every validation).
    """

    priority = 'LOW'

    def __init__(self, num_samples=3, max_refs=2):
        self.num_samples, self.max_refs = num_samples, max_refs
        self._teacher_captions = {}
        self._lines = None

    def before_val_epoch(self, runner):
        self._lines = None

    def after_val_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if self._lines is not None or not outputs:
            return
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        outputs = list(outputs)[:self.num_samples]
        teacher = getattr(model, 'teacher', None)
        if teacher is not None:
            vids = [str(o.get('video_id', i)) for i, o in enumerate(outputs)]
            if any(v not in self._teacher_captions for v in vids):
                data = model.data_preprocessor(data_batch, False)
                inputs = {k: v[:len(outputs)] if torch.is_tensor(v) else v
                          for k, v in data['inputs'].items()}
                ids = teacher.generate(inputs)
                for v, row in zip(vids, ids.tolist()):
                    self._teacher_captions[v] = teacher.tokenizer.decode(row)
        lines = []
        for i, out in enumerate(outputs):
            vid = str(out.get('video_id', i))
            lines.append(f'[{vid}] student: {out.get("pred_caption", "")}')
            if teacher is not None:
                lines.append(f'[{vid}] teacher: {self._teacher_captions[vid]}')
            for ref in list(out.get('refs') or [])[:self.max_refs]:
                lines.append(f'[{vid}] reference: {ref}')
        self._lines = lines

    def after_val_epoch(self, runner, metrics=None):
        if self._lines:
            runner.logger.info('Sample captions (epoch %d):\n%s', runner.epoch,
                               '\n'.join(self._lines))
