# Word-level KD (tau^2 KL(p_T^tau || p_S^tau), tau 2, as the word-KD row) from the demo
# teacher with CLIP's full byte-pair vocabulary (baseline_teacher-clipbpe_...) into the
# compact-vocabulary student (baseline_student-compact_...): the teacher's distribution over
# 49,408 tokens is gathered onto the student's tokens and renormalised there
# (capdistill/models/distillers/vocab_map.py; every student token must exist in the
# teacher's vocabulary, checked at build). The gathered teacher distributions are cached
# (full, over the student's tokens), filled by the first run and shared by the seeds.
_base_ = ['./baseline_student-compact_grid8_1xb64-6e_capdemo.py']
model = dict(
    _delete_=True, type='DistillAlgorithm',
    student={{_base_._student}}, teacher={{_base_._teacher}},
    teacher_ckpt={{_base_._teacher_ckpt}},
    teacher_cache=dict(cache_dir='work_dirs/kd_cache/capdemo_clipbpe-teacher_compact-logits-all',
                       topk=None, mode='auto'),
    distill_losses=dict(loss_word=dict(type='WordKLLoss', tau=2.0, loss_weight=1.0)))
