# The scratch student of the 20%-captioned study: the captioned 20% only, no teacher.
_base_ = ['./_cap20_base_capdemo.py']
