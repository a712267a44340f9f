"""The distillation algorithm: a student learning from a frozen teacher."""
import inspect
import os

import torch
from mmengine.logging import print_log
from mmengine.model import BaseModel

from capdistill.registry import LOSSES, MODELS, STUDENTS, TEACHERS
from capdistill.utils import load_full_checkpoint, load_matching_state, state_dict_of

# Tensors every distillation step offers to the losses, by name.
DEFAULT_INPUTS = dict(student='s_logits', teacher='t_logits', mask='mask')


def _required_args(module):
    params = inspect.signature(module.forward).parameters.values()
    return [p.name for p in params
            if p.default is inspect.Parameter.empty
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


@MODELS.register_module()
class DistillAlgorithm(BaseModel):
    """Owns a trainable student and a frozen teacher; the Runner trains it like any model.

    The teacher is kept outside the module tree: it is not in the state dict (the
    checkpoint holds the student only), never wrapped in DDP, always in eval mode,
    has ``requires_grad=False`` and runs under ``no_grad``. ``.to()``/``.cuda()``
    still move it.

    Args:
        student (dict): the student captioner (``STUDENTS``).
        teacher (dict): the teacher captioner (``TEACHERS``).
        teacher_ckpt (str): the teacher run's checkpoint (mmengine .pth).
        distill_losses (dict): name -> loss config (``LOSSES``). A loss config may
            carry ``inputs=dict(arg=tensor_name)``; the tensors offered are
            ``s_logits``, ``t_logits`` (teacher-forced logits on the ground-truth
            caption) and ``mask`` (True on caption tokens).
        student_loss_weight (float): weight of the student's own caption loss.
    """

    def __init__(self, student, teacher, teacher_ckpt=None, distill_losses=None,
                 student_loss_weight=1.0, data_preprocessor=dict(type='CaptionDataPreprocessor'),
                 init_cfg=None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.student = STUDENTS.build(student)
        teacher = TEACHERS.build(teacher)
        if teacher_ckpt is not None:
            self._load_teacher(teacher, teacher_ckpt)
        else:
            print_log('DistillAlgorithm: no teacher_ckpt given; the teacher keeps its '
                      'initial weights.', logger='current', level=30)
        teacher.eval()
        teacher.requires_grad_(False)
        self.__dict__['teacher'] = teacher  # not a submodule, see the class docstring
        self.student_loss_weight = student_loss_weight
        self.distill_losses = torch.nn.ModuleDict()
        self.loss_inputs = {}
        for name, cfg in (distill_losses or {}).items():
            cfg = dict(cfg)
            mapping = cfg.pop('inputs', None)
            loss = LOSSES.build(cfg)
            mapping = dict(mapping or {k: v for k, v in DEFAULT_INPUTS.items()
                                       if k in inspect.signature(loss.forward).parameters})
            unfed = [a for a in _required_args(loss) if a not in mapping]
            if unfed:
                raise ValueError(f'distill loss {name!r} ({cfg["type"]}): no input feeds '
                                 f'argument(s) {unfed}; add them to its inputs=dict(...).')
            self.distill_losses[name] = loss
            self.loss_inputs[name] = mapping

    @staticmethod
    def _load_teacher(teacher, path):
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f'Teacher checkpoint not found: {path}. Train the teacher first (tools/'
                'train.py with its config) or set model.teacher_ckpt to its .pth file.')
        state = state_dict_of(load_full_checkpoint(path))
        load_matching_state(teacher, state, f'Teacher checkpoint {path}')

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        self.teacher._apply(fn, *args, **kwargs)
        return self

    def train(self, mode=True):
        super().train(mode)
        self.teacher.eval()
        return self

    def forward(self, inputs, data_samples=None, mode='tensor'):
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.student.predict(inputs, data_samples)
        return self.student(inputs, data_samples, mode='tensor')

    def loss(self, inputs, data_samples):
        tokens = data_samples['tokens']
        targets = tokens[:, 1:]
        s_logits = self.student.caption_logits(inputs, tokens)
        losses = {}
        if self.student_loss_weight:
            losses['student.loss_caption'] = self.student_loss_weight * self.student.caption_loss(
                s_logits, targets, data_samples.get('weight'))
        if self.distill_losses:
            with torch.no_grad():
                t_logits = self.teacher.caption_logits(inputs, tokens)
            tensors = dict(s_logits=s_logits, t_logits=t_logits,
                           mask=targets != self.student.tokenizer.pad_id)
            for name, loss in self.distill_losses.items():
                kwargs = {arg: tensors[src] for arg, src in self.loss_inputs[name].items()}
                losses[f'distill.{name}'] = loss(**kwargs)
        return losses
