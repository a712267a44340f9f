"""Temporal encoders (HAM, LSTM, pooling, stacks) and the transformer decoder head."""
import pytest
import torch

from capdistill.models.backbones import HAM, EncoderStack, LSTMEncoder, PoolingEncoder
from capdistill.models.captioners import PrefixLMHead, TransformerDecoderHead


def tokens_and_mask(b=3, n=5, d=16):
    torch.manual_seed(0)
    x = torch.randn(b, n, d)
    mask = torch.ones(b, n, dtype=torch.bool)
    mask[1, 3:] = False
    return x, mask


@pytest.mark.parametrize('enc', [
    HAM(16, num_actions=4, num_heads=2), LSTMEncoder(16), PoolingEncoder('mean'),
    PoolingEncoder('max', keep_tokens=True),
    EncoderStack([dict(type='TransformerEncoder', embed_dim=16, depth=1, num_heads=2),
                  dict(type='HAM', embed_dim=16, num_actions=4, num_heads=2)])])
def test_encoders_ignore_padding(enc):
    enc.eval()
    x, mask = tokens_and_mask()
    y, m = enc(x, mask)
    assert y.shape[0] == 3 and y.shape[-1] == 16 and m.shape == y.shape[:2]
    x2 = x.clone()
    x2[1, 3:] = 100.0  # padded frames must not change the valid outputs
    y2, _ = enc(x2, mask)
    torch.testing.assert_close(y[m][:0], y2[m][:0])
    torch.testing.assert_close(y[1][m[1]], y2[1][m[1]], atol=1e-5, rtol=1e-5)


def test_ham_features():
    ham = HAM(16, num_actions=4, num_heads=2).eval()
    x, mask = tokens_and_mask()
    out = ham.forward_features(x, mask)
    assert out['actions'].shape == (3, 4, 16) and out['objects'].shape == (3, 5, 16)
    assert out['tokens'].shape == (3, 6, 16) and out['mask'][:, -1].all()
    seen = {}
    ham.objects.register_forward_hook(lambda m, i, o: seen.setdefault('obj', o))
    ham(x, mask)
    assert torch.equal(seen['obj'], out['objects'])


@pytest.mark.parametrize('cls', [PrefixLMHead, TransformerDecoderHead])
def test_heads_tied_and_clip_embedding(cls, tmp_path):
    head = cls(vocab_size=30, embed_dim=16, depth=1, num_heads=2, max_len=8)
    assert head._logits(torch.zeros(1, 16)).shape == (1, 30)
    with pytest.raises(FileNotFoundError, match='model_zoo'):
        cls(vocab_size=30, embed_dim=16, clip_embedding=str(tmp_path / 'missing.pt'))
    weight = torch.randn(30, 16)
    torch.save({'state_dict': {'token_embedding.weight': weight}}, tmp_path / 'clip.pt')
    head = cls(vocab_size=30, embed_dim=16, depth=1, num_heads=2,
               clip_embedding=str(tmp_path / 'clip.pt'))
    assert torch.equal(head.word_embed.weight, weight)
    with pytest.raises(ValueError, match='embed_dim'):
        cls(vocab_size=30, embed_dim=8, num_heads=2, clip_embedding=str(tmp_path / 'clip.pt'))


def _captioner(**change):
    cfg = dict(type='Captioner', feature_key='feats',
               visual_encoder=dict(type='FeatureProjector', in_dim=8, embed_dim=16),
               encoder=dict(type='TransformerEncoder', embed_dim=16, depth=1, num_heads=2),
               head=dict(type='PrefixLMHead', embed_dim=16, depth=1, num_heads=2),
               tokenizer=dict(type='WordTokenizer', words=['a', 'ball', 'rolls']), max_len=5)
    for key, value in change.items():
        part, _, name = key.rpartition('.')
        (cfg[part] if part else cfg)[name] = value
    from mmengine.registry import DefaultScope

    from capdistill.registry import MODELS
    with DefaultScope.overwrite_default_scope('capdistill'):
        return MODELS.build(cfg)


@pytest.mark.parametrize('change,error', [
    ({'head.num_heads': 3}, 'PrefixLMHead embed_dim 16 is not divisible by num_heads 3'),
    ({'head.depth': 0}, 'PrefixLMHead depth must be an integer >= 1, got 0'),
    ({'encoder.embed_dim': 0}, 'TransformerEncoder embed_dim must be an integer >= 1, got 0'),
    ({'head.type': 'TransformerDecoderHead', 'head.num_heads': 5},
     'TransformerDecoderHead embed_dim 16 is not divisible by num_heads 5'),
    ({'max_len': 0}, 'Captioner max_len .caption words. must be an integer >= 1, got 0'),
    ({'head.embed_dim': 32}, "encoder.embed_dim is 16 but its head.embed_dim is 32"),
])
def test_sizes_that_cannot_run_stop_at_build(change, error):
    """Sizes that torch would only refuse at the first step, deep inside attention (or,
    for depth, train a head without blocks), are refused when the model is built."""
    from capdistill.utils.requirements import ModelConfigError
    assert _captioner().head.vocab_size > 3  # the sizes above are the only change
    with pytest.raises(ModelConfigError, match=error):
        _captioner(**change)
