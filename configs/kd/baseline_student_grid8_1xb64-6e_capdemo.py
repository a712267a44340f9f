# The scratch student of the kd table: no teacher, same 6-epoch schedule as the kd runs.
_base_ = ['./_kd_base_capdemo.py']
