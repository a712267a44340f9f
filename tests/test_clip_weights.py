"""open_clip visual towers from local weight files: open_clip checkpoints and OpenAI's
TorchScript releases, with a tiny architecture registered for the test."""
import json

import numpy as np
import pytest
import torch

from capdistill.models.backbones.frame_encoders import OpenCLIPVisual
from capdistill.utils.checkpoint import CheckpointError

TINY = {'embed_dim': 32,
        'vision_cfg': {'image_size': 64, 'layers': 2, 'width': 64, 'head_width': 32,
                       'patch_size': 32},
        'text_cfg': {'context_length': 77, 'vocab_size': 49408, 'width': 64, 'heads': 2,
                     'layers': 1}}


@pytest.fixture(scope='module')
def tiny_clip(tmp_path_factory):
    import open_clip
    cfg_dir = tmp_path_factory.mktemp('open_clip_cfg')
    (cfg_dir / 'TinyCLIP-capdistill-test.json').write_text(json.dumps(TINY))
    open_clip.add_model_config(str(cfg_dir))
    torch.manual_seed(0)
    return open_clip.create_model('TinyCLIP-capdistill-test', pretrained=None,
                                  load_weights=False).eval()


def _same_visual_weights(encoder, model):
    expected = model.visual.state_dict()
    got = encoder.visual.state_dict()
    return set(got) == set(expected) and all(torch.equal(got[k], expected[k]) for k in got)


def test_open_clip_training_checkpoint(tiny_clip, tmp_path):
    # open_clip's training checkpoints: {'epoch', 'state_dict' with DDP's 'module.' prefix}
    path = tmp_path / 'epoch_1.pt'
    torch.save({'epoch': 1, 'state_dict': {f'module.{k}': v
                                           for k, v in tiny_clip.state_dict().items()}}, path)
    enc = OpenCLIPVisual('TinyCLIP-capdistill-test', checkpoint=str(path))
    assert _same_visual_weights(enc, tiny_clip) and enc.feature_dim == 32
    frames = np.random.default_rng(0).integers(0, 256, (3, 70, 90, 3), dtype=np.uint8)
    feats = enc.encode_frames(frames)
    assert feats.shape == (3, 32) and torch.equal(feats, enc.encode_frames(frames))


def test_openai_torchscript_release(tiny_clip, tmp_path):
    class Release(torch.nn.Module):
        """Stands in for OpenAI's archive: a TorchScript module with CLIP's weight names."""

        def __init__(self, model):
            super().__init__()
            self.visual = model.visual
            self.token_embedding = model.token_embedding

        def forward(self, x):
            return x

    path = tmp_path / 'ViT-tiny.pt'
    torch.jit.save(torch.jit.trace(Release(tiny_clip), torch.zeros(1)), str(path))
    enc = OpenCLIPVisual('TinyCLIP-capdistill-test', checkpoint=str(path))
    assert _same_visual_weights(enc, tiny_clip)
    # OpenAI's weights were trained with QuickGELU; the tower is built with it
    acts = {type(m).__name__ for m in enc.visual.modules()}
    assert 'QuickGELU' in acts and 'GELU' not in acts


def test_checkpoint_of_another_architecture(tiny_clip, tmp_path):
    path = tmp_path / 'not_clip.pt'
    torch.save({'encoder.weight': torch.zeros(2, 2)}, path)
    with pytest.raises(CheckpointError, match='no "visual.\\*" weights'):
        OpenCLIPVisual('TinyCLIP-capdistill-test', checkpoint=str(path))
    path = tmp_path / 'other.pt'
    torch.save({'visual.proj': torch.zeros(2, 2)}, path)
    with pytest.raises(CheckpointError, match=r'proj is \(2, 2\) but TinyCLIP-capdistill-test'):
        OpenCLIPVisual('TinyCLIP-capdistill-test', checkpoint=str(path))
    path.write_bytes(path.read_bytes()[:100])  # truncated download
    with pytest.raises(CheckpointError, match='cannot be read'):
        OpenCLIPVisual('TinyCLIP-capdistill-test', checkpoint=str(path))
