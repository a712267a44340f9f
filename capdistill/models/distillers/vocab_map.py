"""A teacher on a full vocabulary teaching a student on a compact one.

A compact student (:class:`~capdistill.datasets.tokenizers.CompactTokenizer`) predicts
over a subset of the teacher's tokens. Token-level terms compare the two
distributions over the student's tokens: the teacher's logits are gathered at the
student's tokens and renormalised there,

    log p_T(v | student vocabulary) = log_softmax(t_logits[..., index])[v],

i.e. the teacher's distribution conditioned on the next token being one the student can
say (the mass it puts elsewhere is dropped, not moved to an "other" slot). The
teacher reads the student's captions through the same map (compact id -> teacher id),
and ``t_word_embed`` becomes the teacher's embedding rows at ``index``.
"""
import torch

from capdistill.utils.requirements import ModelConfigError


class VocabMapError(ModelConfigError):
    """A student token the teacher's vocabulary does not have."""


def student_to_teacher_index(s_tok, t_tok):
    """``index[i]`` = the teacher id of student token ``i`` (a LongTensor).

    PAD, BOS and EOS map by role; every other token by its text. Raises
    :class:`VocabMapError` naming the student tokens the teacher lacks.
    """
    t_ids = {tok: i for i, tok in enumerate(t_tok.tokens())}
    roles = {s_tok.pad_id: t_tok.pad_id, s_tok.bos_id: t_tok.bos_id, s_tok.eos_id: t_tok.eos_id}
    index, missing = [], []
    for i, tok in enumerate(s_tok.tokens()):
        j = roles.get(i, t_ids.get(tok))
        if j is None:
            missing.append(tok)
        index.append(-1 if j is None else j)
    if missing:
        shown = ', '.join(repr(m) for m in missing[:10])
        more = f' and {len(missing) - 10} more' if len(missing) > 10 else ''
        raise VocabMapError(
            f"{len(missing)} student token(s) are not in the teacher's vocabulary: {shown}"
            f'{more}; build the student\'s compact vocabulary over the teacher\'s tokenizer '
            '(CompactTokenizer base=the teacher\'s tokenizer config).')
    return torch.tensor(index, dtype=torch.long)


def gather_logits(t_logits, index):
    """The teacher's log-probabilities over the student's tokens (renormalised there)."""
    return torch.log_softmax(t_logits.index_select(-1, index.to(t_logits.device)).float(),
                             dim=-1).to(t_logits.dtype)


class VocabMap:
    """Student-to-teacher token map used by the distillation algorithm.

    ``caption_logits`` runs the teacher on student caption ids and returns its
    distributions over the student's tokens; ``word_embed`` selects the teacher's
    embedding rows of the student's tokens.
    """

    def __init__(self, index):
        self.index = index

    @classmethod
    def build(cls, student_tokenizer, teacher_tokenizer):
        """A map for a compact student, or None where ids already agree."""
        if not getattr(student_tokenizer, 'compact', False):
            return None
        return cls(student_to_teacher_index(student_tokenizer, teacher_tokenizer))

    def to_teacher(self, tokens):
        return self.index.to(tokens.device)[tokens]

    def caption_logits(self, teacher, inputs, tokens, return_hidden=False):
        """The teacher teacher-forced on student ``tokens``, its logits gathered onto the
        student's tokens and renormalised (hidden states unchanged)."""
        out = teacher.caption_logits(inputs, self.to_teacher(tokens), return_hidden=return_hidden)
        if return_hidden:
            return gather_logits(out[0], self.index), out[1]
        return gather_logits(out, self.index)

    @classmethod
    def teacher_for(cls, student, teacher):
        """``teacher`` itself, or for a compact student a view of it that scores
        student token rows and answers over the student's tokens (on-policy rows)."""
        vmap = cls.build(student.tokenizer, teacher.tokenizer)
        return teacher if vmap is None else _StudentVocabTeacher(teacher, vmap, student.tokenizer)

    def word_embed(self, weight):
        """The teacher's word embedding rows of the student's tokens."""
        return weight.index_select(0, self.index.to(weight.device))



class _StudentVocabTeacher:
    """The teacher seen through a :class:`VocabMap`: ``caption_logits`` takes student
    ids and gives log-probabilities over the student's tokens; the rest is the teacher's."""

    def __init__(self, teacher, vmap, tokenizer):
        self.teacher, self.vmap, self.tokenizer = teacher, vmap, tokenizer

    def caption_logits(self, inputs, tokens, return_hidden=False):
        return self.vmap.caption_logits(self.teacher, inputs, tokens, return_hidden)

    def __getattr__(self, name):
        return getattr(self.teacher, name)


__all__ = ['VocabMap', 'VocabMapError', 'gather_logits', 'student_to_teacher_index']
