"""Export the deployed student of a training run as safetensors + json.

    python tools/export_student.py CHECKPOINT CONFIG --out DIR [--name NAME]

Writes DIR/NAME.safetensors (student weights only: no teacher, no connectors, no
optimizer) and DIR/NAME.json (its model config with the vocabulary embedded). Load it
with ``capdistill.apis.export.load_exported_student(DIR)`` or
``init_captioner(None, 'DIR/NAME.safetensors')``.
"""
import argparse

import capdistill
from capdistill.apis.export import export_student
from capdistill.utils.cli import friendly_main


@friendly_main
def main():
    capdistill.setup_runtime()  # compatibility patches, for this process only
    parser = argparse.ArgumentParser(description='Export a student as safetensors + json')
    parser.add_argument('checkpoint', help='full mmengine checkpoint of the run')
    parser.add_argument('config', help='the run\'s config (distillation or captioner)')
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument('--name', help='file name stem (default: the config name)')
    args = parser.parse_args()
    st_path, js_path = export_student(args.config, args.checkpoint, args.out, args.name)
    print(f'Wrote {st_path}\nWrote {js_path}')


if __name__ == '__main__':
    main()
