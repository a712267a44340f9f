# Caption-quality-weighted caption loss (SFTCap): each training caption's loss is
# weighted by its grade (mean TF-IDF, normalised over the dataset). No teacher.
_base_ = ['./_kd_base_capdemo.py']
train_dataloader = dict(dataset=dict(grade='tfidf'))
model = dict(caption_loss=dict(_delete_=True, type='QualityWeightedCaptionLoss',
                               smoothing=0.1, gamma=1.0))
