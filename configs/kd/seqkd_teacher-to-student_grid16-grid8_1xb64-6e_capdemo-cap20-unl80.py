# Sequence-level KD in the 20%-captioned study: the student learns the references of the
# captioned 20% and the 20%-teacher's beam-3 captions of every train video, the other 80%
# included as unlabeled videos (no caption loss on them). Each unlabeled video gives 5
# samples per epoch, as a captioned one has 5 captions: 4200 samples an epoch, so 6 epochs
# are the same number of steps as the 30 of the 20% scratch student.
_base_ = ['./_cap20_base_capdemo.py']
train_dataloader = dict(dataset=dict(unlabeled_ids='splits/capdemo_train-unl80_list.json',
                                     unlabeled_repeat=5))
model = dict(
    _delete_=True, type='DistillAlgorithm',
    student={{_base_._student}}, teacher={{_base_._teacher}},
    teacher_ckpt={{_base_._teacher_ckpt}},
    # not the full-data teacher's cache: the captions are keyed by video id only
    seq_kd=dict(beam_size=3, cache_file='work_dirs/kd_cache/capdemo-cap20_teacher_beam3.json'),
    distill_losses=dict(loss_seq=dict(
        type='SequenceKDLoss', smoothing=0.1, loss_weight=1.0,
        inputs=dict(student='seq_logits', targets='seq_targets'))))
train_cfg = dict(max_epochs=6, val_interval=6)
default_hooks = dict(checkpoint=dict(interval=6))
