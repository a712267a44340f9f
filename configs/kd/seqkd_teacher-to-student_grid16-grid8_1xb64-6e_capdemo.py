# Sequence-level KD (Kim & Rush, 2016): besides the references, the student learns the
# teacher's beam-search caption of each video, decoded once and cached in a json file.
_base_ = ['./_kd_base_capdemo.py']
model = dict(
    _delete_=True, type='DistillAlgorithm',
    student={{_base_._student}}, teacher={{_base_._teacher}},
    teacher_ckpt={{_base_._teacher_ckpt}},
    seq_kd=dict(beam_size=3, cache_file='work_dirs/kd_cache/capdemo_teacher_beam3.json'),
    distill_losses=dict(loss_seq=dict(
        type='SequenceKDLoss', smoothing=0.1, loss_weight=1.0,
        inputs=dict(student='seq_logits', targets='seq_targets'))))
