# Shared part of the token-divergence rows: supervised KD on the reference captions, as the
# word-KD row, with one divergence of capdistill/models/losses/divergences.py in place of
# WordKLLoss (tau 1, the setting of MiniLLM, DistiLLM and GKD; mean over caption tokens).
# The teacher's outputs come from a cache of its full distribution over the 74-word
# vocabulary (topk=None: exact, 0.6 kB per token), filled by the first run that meets a
# caption and shared by every divergence row and seed: the demo teacher's input for a caption
# is the same every epoch (all 16 frames, no augmentation), so the cached logits are the
# live teacher's (checked on a batch: configs/kd/README.md, "Token divergences on capdemo").
_base_ = ['./_kd_base_capdemo.py']
_teacher_cache = dict(cache_dir='work_dirs/kd_cache/capdemo_teacher_logits-all',
                      topk=None, mode='auto')
