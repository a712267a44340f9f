"""Procedural rendering of the capdemo videos and their reference captions.

A video shows one or two flat shapes on a plain dark background. Each shape has a
shape (circle, square, triangle, cross), a colour, a size (small, big) and an action
(moving left/right/up/down, bouncing, growing, shrinking, spinning). The design makes
colour easy, the shape of small objects hard at a coarse 8x8 grid but visible at
16x16, and the direction of motion a question about time: start positions are drawn
so that the mean frame does not tell a left mover from a right mover.
"""
import math

import numpy as np

SIZE = 64          # frame side in pixels
NUM_FRAMES = 16
FPS = 8

SHAPES = ('circle', 'square', 'triangle', 'cross')
COLOURS = {
    'red': (220, 40, 40), 'green': (40, 190, 60), 'blue': (50, 90, 235),
    'yellow': (235, 220, 40), 'purple': (160, 60, 205), 'orange': (245, 140, 30),
}
SIZES = ('small', 'big')
ACTIONS = ('left', 'right', 'up', 'down', 'bounce', 'grow', 'shrink', 'spin')

# Words of the caption grammar; each key has interchangeable phrasings.
SIZE_WORDS = {'small': ('small', 'tiny', 'little'), 'big': ('big', 'large', 'huge')}
SHAPE_WORDS = {'circle': ('circle', 'ball', 'disc'), 'square': ('square', 'box', 'block'),
               'triangle': ('triangle',), 'cross': ('cross', 'plus sign')}
ACTION_PHRASES = {
    'left': ('moves to the left', 'is moving left', 'slides leftwards', 'goes to the left',
             'travels left'),
    'right': ('moves to the right', 'is moving right', 'slides rightwards',
              'goes to the right', 'travels right'),
    'up': ('moves up', 'is moving upwards', 'rises', 'goes up', 'slides upwards'),
    'down': ('moves down', 'is moving downwards', 'falls', 'goes down', 'slides downwards'),
    'bounce': ('bounces', 'is bouncing', 'bounces up and down', 'hops up and down',
               'jumps up and down'),
    'grow': ('grows', 'is growing', 'gets bigger', 'becomes larger', 'expands'),
    'shrink': ('shrinks', 'is shrinking', 'gets smaller', 'becomes smaller', 'contracts'),
    'spin': ('spins', 'is spinning', 'rotates', 'turns around', 'is rotating'),
}
ONE_OBJECT = ('{a} {va}', '{a} {va} on the screen', 'there is {a} that {va}')
TWO_OBJECTS = ('{a} {va} while {b} {vb}', '{a} {va} and {b} {vb}', '{b} {vb} while {a} {va}',
               '{b} {vb} as {a} {va}')

_RADIUS = {'small': (4.0, 5.0), 'big': (9.0, 11.0)}


def sample_object(rng):
    """Draw the attributes of one object (spinning circles would be invisible)."""
    shape = SHAPES[rng.integers(len(SHAPES))]
    actions = [a for a in ACTIONS if not (shape == 'circle' and a == 'spin')]
    action = actions[rng.integers(len(actions))]
    if action == 'grow':
        size = 'small'
    elif action == 'shrink':
        size = 'big'
    else:
        size = SIZES[rng.integers(len(SIZES))]
    colour = list(COLOURS)[rng.integers(len(COLOURS))]
    return dict(shape=shape, colour=colour, size=size, action=action)


def _trajectory(obj, rng):
    """Per-frame offsets (dx, dy), radius and angle, relative to the start point."""
    t = np.linspace(0.0, 1.0, NUM_FRAMES)
    r0 = rng.uniform(*_RADIUS[obj['size']])
    dx = np.zeros(NUM_FRAMES)
    dy = np.zeros(NUM_FRAMES)
    radius = np.full(NUM_FRAMES, r0)
    # Still objects lean a little, so a tilted shape alone does not mean "spin".
    angle = np.full(NUM_FRAMES, rng.uniform(-15, 15))
    action = obj['action']
    travel = rng.uniform(18, 28)
    if action in ('left', 'right'):
        dx = travel * t * (-1 if action == 'left' else 1)
    elif action in ('up', 'down'):
        dy = travel * t * (-1 if action == 'up' else 1)
    elif action == 'bounce':
        dy = -rng.uniform(10, 16) * np.abs(np.sin(np.pi * 2 * t + rng.uniform(0, 0.3)))
    elif action == 'grow':
        radius = r0 * (1 + rng.uniform(1.0, 1.4) * t)
    elif action == 'shrink':
        radius = r0 * (1 - rng.uniform(0.5, 0.65) * t)
    elif action == 'spin':
        speed = rng.uniform(12, 22) * (1 if rng.random() < 0.5 else -1)
        angle = angle + speed * np.arange(NUM_FRAMES)
    return dx, dy, radius, angle


def _place(dx, dy, radius, rng, margin=1.0):
    """A start point that keeps the whole trajectory inside the frame."""
    reach = radius.max() * 1.15 + margin
    lo_x, hi_x = reach - dx.min(), SIZE - reach - dx.max()
    lo_y, hi_y = reach - dy.min(), SIZE - reach - dy.max()
    x0 = rng.uniform(lo_x, hi_x) if hi_x > lo_x else (lo_x + hi_x) / 2
    y0 = rng.uniform(lo_y, hi_y) if hi_y > lo_y else (lo_y + hi_y) / 2
    return x0 + dx, y0 + dy


def _sdf(shape, px, py, r):
    """Signed distance (pixels, negative inside) of a shape centred at the origin."""
    if shape == 'circle':
        return np.sqrt(px ** 2 + py ** 2) - r
    if shape == 'square':
        return np.maximum(np.abs(px), np.abs(py)) - 0.85 * r
    if shape == 'triangle':
        inner = 0.6 * r  # inradius; apex points up (negative y)
        edges = [(0.0, 1.0), (math.sqrt(3) / 2, -0.5), (-math.sqrt(3) / 2, -0.5)]
        return np.max([nx * px + ny * (py - 0.15 * r) for nx, ny in edges], axis=0) - inner
    if shape == 'cross':
        width = 0.35 * r
        bar_h = np.maximum(np.abs(px) - r, np.abs(py) - width)
        bar_v = np.maximum(np.abs(px) - width, np.abs(py) - r)
        return np.minimum(bar_h, bar_v)
    raise ValueError(f'unknown shape {shape!r}')


def plan_video(objects, rng):
    """Trajectories for the objects of one video, trying to keep two objects apart."""
    for attempt in range(30):
        tracks = []
        for obj in objects:
            dx, dy, radius, angle = _trajectory(obj, rng)
            x, y = _place(dx, dy, radius, rng)
            tracks.append(dict(x=x, y=y, radius=radius, angle=angle))
        if len(tracks) < 2:
            return tracks
        a, b = tracks
        gap = np.hypot(a['x'] - b['x'], a['y'] - b['y']) - 1.2 * (a['radius'] + b['radius'])
        if gap.min() > 1.0 or attempt == 29:
            return tracks
    return tracks


def render_video(objects, tracks, background, colour_jitter):
    """Render ``(NUM_FRAMES, SIZE, SIZE, 3)`` uint8 frames."""
    coords = np.arange(SIZE, dtype=np.float64) + 0.5
    gy, gx = np.meshgrid(coords, coords, indexing='ij')
    frames = np.empty((NUM_FRAMES, SIZE, SIZE, 3), np.float64)
    frames[:] = background
    for obj, track, jitter in zip(objects, tracks, colour_jitter):
        colour = np.clip(np.array(COLOURS[obj['colour']], np.float64) + jitter, 0, 255)
        for i in range(NUM_FRAMES):
            theta = math.radians(track['angle'][i])
            cos, sin = math.cos(theta), math.sin(theta)
            qx, qy = gx - track['x'][i], gy - track['y'][i]
            px, py = cos * qx + sin * qy, -sin * qx + cos * qy
            alpha = np.clip(0.5 - _sdf(obj['shape'], px, py, track['radius'][i]), 0, 1)
            frames[i] = frames[i] * (1 - alpha[..., None]) + colour * alpha[..., None]
    return np.round(frames).astype(np.uint8)


def _noun_phrase(obj, rng):
    words = []
    if rng.random() < 0.6:
        options = SIZE_WORDS[obj['size']]
        words.append(options[rng.integers(len(options))])
    words.append(obj['colour'])
    options = SHAPE_WORDS[obj['shape']]
    words.append(options[rng.integers(len(options))])
    article = 'an' if words[0][0] in 'aeiou' else 'a'
    return ' '.join([article] + words)


def _verb_phrase(obj, rng):
    options = ACTION_PHRASES[obj['action']]
    return options[rng.integers(len(options))]


def make_captions(objects, rng, count=5):
    """``count`` different paraphrases describing all objects of a video."""
    captions = []
    for _ in range(count * 20):
        if len(objects) == 1:
            template = ONE_OBJECT[rng.integers(len(ONE_OBJECT))]
            text = template.format(a=_noun_phrase(objects[0], rng),
                                   va=_verb_phrase(objects[0], rng))
        else:
            template = TWO_OBJECTS[rng.integers(len(TWO_OBJECTS))]
            text = template.format(a=_noun_phrase(objects[0], rng),
                                   va=_verb_phrase(objects[0], rng),
                                   b=_noun_phrase(objects[1], rng),
                                   vb=_verb_phrase(objects[1], rng))
        if text not in captions:
            captions.append(text)
            if len(captions) == count:
                break
    return captions


def vocabulary():
    """Every word the caption grammar can produce."""
    words = {'a', 'an', 'while', 'and', 'as', 'on', 'the', 'screen', 'there', 'is', 'that'}
    for group in (SIZE_WORDS.values(), SHAPE_WORDS.values(), ACTION_PHRASES.values()):
        for options in group:
            for phrase in options:
                words.update(phrase.split())
    words.update(COLOURS)
    return sorted(words)


def write_mp4(path, frames, fps=FPS):
    """Encode uint8 RGB frames as an MPEG-4 (Part 2) mp4.

    MPEG-4 Part 2 rather than H.264: libx264 here does not give byte-identical files
    for identical frames from run to run, and the demo data must be reproducible.
    """
    import av
    container = av.open(str(path), mode='w')
    try:
        stream = container.add_stream('mpeg4', rate=fps)
        stream.options = {'qscale': '2'}
        stream.codec_context.thread_count = 1
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = 'yuv420p'
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format='rgb24')):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    finally:
        container.close()
