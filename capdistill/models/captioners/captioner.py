"""The captioner: visual encoder -> temporal encoder -> caption head."""
import torch
from mmengine.model import BaseModel

from capdistill.registry import BACKBONES, HEADS, LOSSES, MODELS, STUDENTS, TEACHERS, TOKENIZERS
from capdistill.utils.requirements import ModelConfigError
from capdistill.utils.values import check_int
from .decoding import check_decode_settings
from .decoding import decode as run_decode


@MODELS.register_module()
@TEACHERS.register_module()
@STUDENTS.register_module()
class Captioner(BaseModel):
    """A video captioner over precomputed frame features; teacher and student alike.

    Args:
        visual_encoder (dict): frame features -> tokens (``BACKBONES``).
        encoder (dict): temporal encoder over the tokens (``BACKBONES``).
        head (dict): caption head (``HEADS``); ``vocab_size`` comes from the tokenizer.
        tokenizer (dict): the captions' tokenizer (``TOKENIZERS``).
        caption_loss (dict): loss on the ground-truth caption (``LOSSES``).
        feature_key (str): which input this model reads (e.g. ``teacher_feats``).
        max_len (int): caption words, without BOS/EOS.
        decode (dict): decoding settings: ``strategy`` ('greedy' or 'beam'),
            ``beam_size``, ``length_penalty``, ``min_len``, ``no_repeat_ngram``,
            ``use_cache`` (False: the reference's slow loop, re-running the head over
            a full-length caption buffer for every token) and ``ban_special`` (never generate PAD or BOS; default True).
    """

    def __init__(self, visual_encoder, encoder, head, tokenizer,
                 caption_loss=dict(type='LabelSmoothingLoss', smoothing=0.1),
                 feature_key='feats', max_len=22, decode=None,
                 data_preprocessor=dict(type='CaptionDataPreprocessor'), init_cfg=None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        check_int('Captioner max_len (caption words)', max_len, 1, ModelConfigError)
        self.tokenizer = TOKENIZERS.build(tokenizer)
        self.visual_encoder = BACKBONES.build(visual_encoder)
        self.encoder = BACKBONES.build(encoder)
        head = dict(head, vocab_size=self.tokenizer.vocab_size, max_len=max_len + 2)
        rows = getattr(self.tokenizer, 'base_ids', None)
        if rows is not None and head.get('clip_embedding'):  # a compact vocabulary's CLIP rows
            head['clip_embedding'] = dict(path=head['clip_embedding'], rows=rows)
        self.head = HEADS.build(head)
        self._check_widths()
        self.caption_loss = LOSSES.build(caption_loss)
        self.feature_key = feature_key
        self.max_len = max_len
        self.decode_cfg = dict(strategy='greedy', use_cache=True, ban_special=True)
        self.decode_cfg.update(decode or {})
        check_decode_settings(self.decode_cfg, self.tokenizer.vocab_size)

    def _check_widths(self):
        """The head reads the visual tokens as they are: every stage must have its width."""
        word_embed = getattr(self.head, 'word_embed', None)
        width = getattr(word_embed, 'embedding_dim', None)
        for part in ('visual_encoder', 'encoder'):
            got = getattr(getattr(self, part), 'embed_dim', None)
            if width is not None and got is not None and got != width:
                raise ModelConfigError(
                    f'the captioner\'s {part}.embed_dim is {got} but its head.embed_dim is '
                    f'{width}; the head reads the visual tokens at its own width, so give them '
                    'one width.')

    def encode(self, inputs):
        """Visual tokens ``(B, N, E)`` and their mask from the batch inputs."""
        feats = inputs[self.feature_key]
        mask = inputs[f'{self.feature_key}_mask']
        x, mask = self.visual_encoder(feats, mask)
        return self.encoder(x, mask)

    def caption_logits(self, inputs, tokens, return_hidden=False):
        """Teacher-forced logits ``(B, L-1, V)`` predicting ``tokens[:, 1:]``."""
        memory, mask = self.encode(inputs)
        return self.head(memory, mask, tokens[:, :-1], return_hidden=return_hidden)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        return self.caption_logits(inputs, data_samples['tokens'])

    def loss(self, inputs, data_samples):
        tokens = data_samples['tokens']
        logits = self.caption_logits(inputs, tokens)
        return dict(loss_caption=self.caption_loss(logits, tokens[:, 1:],
                                                   data_samples.get('weight')))

    @torch.no_grad()
    def generate(self, inputs, **decode):
        """Generated token ids ``(B, <=max_len+1)`` for a batch."""
        if decode:
            check_decode_settings(decode, self.tokenizer.vocab_size)
        cfg = dict(self.decode_cfg, **decode)
        if cfg.pop('ban_special', True):
            cfg.setdefault('banned_ids', sorted({self.tokenizer.pad_id, self.tokenizer.bos_id}
                                                - {self.tokenizer.eos_id}))
        memory, mask = self.encode(inputs)
        return run_decode(self.head, memory, mask, self.tokenizer.bos_id,
                          self.tokenizer.eos_id, self.max_len + 1, **cfg)

    def student_state_dict(self):
        """The weights a deployed captioner needs (all of them, for a plain captioner)."""
        return self.state_dict()

    def predict(self, inputs, data_samples=None):
        ids = self.generate(inputs)
        captions = [self.tokenizer.decode(row.tolist()) for row in ids]
        samples = data_samples or {}
        out = []
        for i, cap in enumerate(captions):
            item = dict(pred_caption=cap)
            for key in ('video_id', 'refs'):
                if key in samples:
                    item[key] = samples[key][i]
            out.append(item)
        return out
